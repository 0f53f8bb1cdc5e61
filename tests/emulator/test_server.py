"""Starting and stopping the emulator in-process: binding, config checks, clean shutdown."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx
import pytest

from parallel_nb.emulator import DEFAULT_TIME_SCALE, EmulatorConfig, start_emulator


def test_import_starts_nothing() -> None:
    code = (
        "import threading, parallel_nb.emulator as e\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert e.DEFAULT_TIME_SCALE == 0.05\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_defaults_bind_loopback_on_a_free_port() -> None:
    assert DEFAULT_TIME_SCALE == 0.05
    with start_emulator() as first, start_emulator() as second:
        assert first.base_url.startswith("http://127.0.0.1:")
        assert first.base_url != second.base_url
        assert first.config.time_scale == DEFAULT_TIME_SCALE
        assert first.api_key is None
        # With no configured key any non-empty key is accepted.
        with httpx.Client(base_url=first.base_url, headers={"x-api-key": "anything"}) as client:
            assert client.get("/_emulator/stats").status_code == 200


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"time_scale": -1}, ValueError),
        ({"rate_limit": -5}, ValueError),
        ({"stream_max_seconds": 0}, ValueError),
        ({"api_key": ""}, ValueError),
        ({"faults": "drop=2"}, ValueError),
        ({"no_such_option": 1}, TypeError),
    ],
)
def test_bad_options_fail_before_starting(options: dict[str, object], error: type) -> None:
    before = threading.active_count()
    with pytest.raises(error):
        start_emulator(**options)
    assert threading.active_count() == before


def test_config_repr_hides_secrets() -> None:
    config = EmulatorConfig(api_key="sk-secret-value", webhook_secret="hook-secret-value")
    assert "secret-value" not in repr(config)


def test_stop_ends_open_streams_and_blocked_requests() -> None:
    handle = start_emulator(time_scale=1, api_key="k")
    client = httpx.Client(base_url=handle.base_url, headers={"x-api-key": "k"}, timeout=30)
    run = client.post("/v1/tasks/runs", json={"processor": "ultra", "input": "slow"}).json()
    outcomes: list[str] = []

    def block() -> None:
        try:
            response = client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": 600})
            outcomes.append(str(response.status_code))
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    def stream() -> None:
        try:
            with client.stream("GET", f"/v1/tasks/runs/{run['run_id']}/events") as response:
                response.read()
            outcomes.append("stream closed")
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    workers = [threading.Thread(target=block), threading.Thread(target=stream)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 10
    while handle.stats()["open_streams"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # let the result request reach its wait
    handle.stop()
    for worker in workers:
        worker.join(15)
    assert not any(worker.is_alive() for worker in workers)
    # Shutdown wakes the waiters: the blocked result answers 408, the stream ends cleanly.
    assert sorted(outcomes) == ["408", "stream closed"]
    assert not handle.running
    handle.stop()  # a second stop is harmless
    with pytest.raises(RuntimeError, match="stopped"):
        handle.stats()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.base_url}/_emulator/stats", headers={"x-api-key": "k"})
    client.close()
