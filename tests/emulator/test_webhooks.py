"""Webhooks: Standard Webhooks signatures, delivery to a real local server, and retries."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.emulator.webhooks import sign, signing_key

KEY = "test-key"
SECRET = "whsec_" + base64.b64encode(b"a test secret of enough bytes").decode()
# Reference §8: raw key bytes "my_webhook_secret", written both ways.
VECTOR_BODY = (
    b'{"timestamp":"2025-04-23T20:21:48.037943Z","type":"task_run.status",'
    b'"data":{"run_id":"trun_1","status":"completed"}}'
)
VECTOR_SIGNATURE = "v1,klzNYfpNXs40dfKi0w2U2btG7E61nqTsrMaaUcZ8R0s="


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that answers with scripted statuses (then 200)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def wait_for(self, count: int, seconds: float = 15.0) -> list[Delivery]:
        deadline = time.monotonic() + seconds
        while len(self.deliveries) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.deliveries


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            box.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(box.statuses.pop(0) if box.statuses else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/parallel"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def emulator_with_secret() -> Iterator[EmulatorHandle]:
    with start_emulator(time_scale=0, api_key=KEY, webhook_secret=SECRET) as handle:
        yield handle


def verify(delivery: Delivery, secret: str) -> bool:
    expected = sign(
        secret,
        delivery.headers["webhook-id"],
        int(delivery.headers["webhook-timestamp"]),
        delivery.body,
    )
    return expected in delivery.headers["webhook-signature"].split(" ")


def create_with_webhook(handle: EmulatorHandle, url: str, text: str) -> dict[str, Any]:
    with httpx.Client(base_url=handle.base_url, headers={"x-api-key": KEY}) as client:
        response = client.post(
            "/v1/tasks/runs",
            json={
                "processor": "lite",
                "input": text,
                "webhook": {"url": url, "event_types": ["task_run.status"]},
            },
            headers={"parallel-beta": "webhook-2025-08-12"},
        )
    assert response.status_code == 202
    assert response.json()["warnings"] is None or all(
        w["detail"].get("field") != "webhook" for w in response.json()["warnings"]
    )
    return response.json()


def test_signature_matches_the_reference_vector_for_both_key_forms() -> None:
    for secret in ("my_webhook_secret", "whsec_bXlfd2ViaG9va19zZWNyZXQ="):
        assert signing_key(secret) == b"my_webhook_secret"
        assert sign(secret, "whevent_abc123def456", 1751498975, VECTOR_BODY) == VECTOR_SIGNATURE


def test_malformed_whsec_secret_is_rejected_at_start() -> None:
    with pytest.raises(ValueError, match="base64"):
        start_emulator(time_scale=0, webhook_secret="whsec_not base64!")


def test_completed_run_sends_a_signed_webhook(
    emulator_with_secret: EmulatorHandle, receiver: Receiver
) -> None:
    run = create_with_webhook(emulator_with_secret, receiver.url, "webhook please")
    [delivery] = receiver.wait_for(1)
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["webhook-id"].startswith("whevent_")
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 300
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert verify(delivery, SECRET)
    assert not verify(delivery, "whsec_" + base64.b64encode(b"another secret").decode())
    payload = json.loads(delivery.body)
    assert payload["type"] == "task_run.status"
    assert payload["data"]["run_id"] == run["run_id"]
    assert payload["data"]["status"] == "completed" and payload["data"]["is_active"] is False
    assert set(payload) == {"timestamp", "type", "data"}


def test_failed_run_also_sends_a_webhook(
    emulator_with_secret: EmulatorHandle, receiver: Receiver
) -> None:
    create_with_webhook(emulator_with_secret, receiver.url, "emulator: fail")
    [delivery] = receiver.wait_for(1)
    data = json.loads(delivery.body)["data"]
    assert data["status"] == "failed" and data["error"]["message"]
    assert verify(delivery, SECRET)


def test_failed_deliveries_are_retried_with_the_same_id(
    emulator_with_secret: EmulatorHandle, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    create_with_webhook(emulator_with_secret, receiver.url, "retry me")
    deliveries = receiver.wait_for(3)
    time.sleep(0.3)  # a fourth delivery would arrive after two more back-off steps at most
    assert len(receiver.deliveries) == 3
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1
    assert all(verify(d, SECRET) for d in deliveries)


def test_default_secret_is_a_random_whsec_one(receiver: Receiver) -> None:
    with start_emulator(time_scale=0, api_key=KEY) as handle:
        assert handle.webhook_secret.startswith("whsec_")
        create_with_webhook(handle, receiver.url, "default secret")
        [delivery] = receiver.wait_for(1)
        assert verify(delivery, handle.webhook_secret)
