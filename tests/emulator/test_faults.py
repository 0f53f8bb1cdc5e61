"""Fault injection and the rate limit, parsed and then met over real HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.emulator.faults import FaultSpec, RateLimiter

KEY = "test-key"
LITE = {"processor": "lite", "input": "fault test"}


def _client(handle: EmulatorHandle, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=handle.base_url, headers={"x-api-key": key}, timeout=30.0)


@pytest.fixture
def emulator_with(request: pytest.FixtureRequest) -> Iterator[EmulatorHandle]:
    """An instant emulator with the options given through ``with_options``."""
    with start_emulator(**{"time_scale": 0, "api_key": KEY, **request.param}) as handle:
        yield handle


def with_options(**options: object) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("emulator_with", [options], indirect=True, ids=[""])


def test_fault_spec_grammar() -> None:
    spec = FaultSpec.parse(
        " 429=0.2, 500=0.1,503=0.1,drop=0.3,slow=0.1,slow_seconds=1.5,retry_after=2"
    )
    assert spec.statuses == {429: 0.2, 500: 0.1, 503: 0.1}
    assert (spec.drop, spec.slow, spec.slow_seconds, spec.retry_after) == (0.3, 0.1, 1.5, 2)
    assert FaultSpec.parse("") == FaultSpec.parse(None) == FaultSpec()
    assert FaultSpec.parse("408=1").statuses == {408: 1.0}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("teapot=0.1", "unknown fault 'teapot'"),
        ("200=0.5", "unknown fault '200'"),
        ("500", "has no value"),
        ("500=often", "needs a number"),
        ("drop=1.5", "between 0 and 1"),
        ("429=0.6,500=0.6", "more than 1"),
        ("slow_seconds=-1", ">= 0"),
        ("500@put=0.1", "unknown scope 'put'"),
        ("500@get=0.6,503@stream=0.6", "event stream request add up to more than 1"),
        ("429=0.6,503@post=0.6", "POST request add up to more than 1"),
    ],
)
def test_fault_spec_errors_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        FaultSpec.parse(text)


@with_options(faults="429=0.5,503=0.5,retry_after=3")
def test_status_faults_answer_before_anything_happens(emulator_with: EmulatorHandle) -> None:
    seen: Counter[int] = Counter()
    with _client(emulator_with) as client:
        for _ in range(20):
            response = client.post("/v1/tasks/runs", json=LITE)
            seen[response.status_code] += 1
            assert response.json()["type"] == "error"
            if response.status_code == 429:
                assert response.headers["retry-after"] == "3"
        stats = client.get("/_emulator/stats").json()  # the stats route is never faulted
    assert set(seen) == {429, 503}
    assert stats["faults_injected"] == {"429": seen[429], "503": seen[503]}
    assert stats["runs_created"] == 0
    assert stats["requests"]["POST /v1/tasks/runs"] == {"429": seen[429], "503": seen[503]}


@with_options(faults="500=0.5", seed=7)
def test_faults_follow_the_seed(emulator_with: EmulatorHandle) -> None:
    def statuses(handle: EmulatorHandle) -> list[int]:
        with _client(handle) as client:
            return [client.get("/v1/tasks/groups/tgrp_x").status_code for _ in range(30)]

    first = statuses(emulator_with)
    assert set(first) == {404, 500}
    with start_emulator(time_scale=0, api_key=KEY, faults="500=0.5", seed=7) as again:
        assert statuses(again) == first


@with_options(faults="slow=1,slow_seconds=0.1")
def test_slow_fault_delays_but_serves(emulator_with: EmulatorHandle) -> None:
    with _client(emulator_with) as client:
        for _ in range(3):
            assert client.post("/v1/tasks/runs", json=LITE).status_code == 202
    assert emulator_with.stats()["faults_injected"] == {"slow": 3}


@with_options(faults="drop=1")
def test_drop_fault_cuts_streams_mid_body(emulator_with: EmulatorHandle) -> None:
    with _client(emulator_with) as client:
        run = client.post("/v1/tasks/runs", json={**LITE, "processor": "pro"}).json()
        client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": 10})
        url = f"/v1/tasks/runs/{run['run_id']}/events"
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                response.read()
        # Non-stream requests are untouched by drop.
        assert client.get(f"/v1/tasks/runs/{run['run_id']}").status_code == 200
    stats = emulator_with.stats()
    assert stats["faults_injected"] == {"drop": 1}
    assert stats["open_streams"] == 0


@with_options(rate_limit=3, api_key=None)
def test_rate_limit_counts_task_creating_posts_per_key(emulator_with: EmulatorHandle) -> None:
    with _client(emulator_with, "key-a") as client:
        group_id = client.post("/v1/tasks/groups", json={}).json()["taskgroup_id"]
        assert client.post("/v1/tasks/runs", json=LITE).status_code == 202
        assert client.post("/v1/tasks/runs", json=LITE).status_code == 202
        added = client.post(f"/v1/tasks/groups/{group_id}/runs", json={"inputs": [LITE]})
        assert added.status_code == 200
        limited = client.post("/v1/tasks/runs", json=LITE)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "3 task-creating requests per minute" in limited.json()["error"]["message"]
        assert (
            client.post(f"/v1/tasks/groups/{group_id}/runs", json={"inputs": [LITE]}).status_code
            == 429
        )
        # GETs and group creation do not count.
        assert client.get(f"/v1/tasks/groups/{group_id}").status_code == 200
        assert client.post("/v1/tasks/groups", json={}).status_code == 200
    with _client(emulator_with, "key-b") as other:
        assert other.post("/v1/tasks/runs", json=LITE).status_code == 202
    assert emulator_with.stats()["runs_created"] == 4


def test_rate_limiter_window_slides() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.hit("k") is None and limiter.hit("k") is None
    assert limiter.hit("k") == pytest.approx(60.0)
    now[0] = 30.0
    assert limiter.hit("k") == pytest.approx(30.0)
    now[0] = 60.0
    assert limiter.hit("k") is None
    assert RateLimiter(0).hit("k") is None


@with_options(faults="500=1")
def test_faults_also_hit_streams_before_they_start(emulator_with: EmulatorHandle) -> None:
    with _client(emulator_with) as client:
        response = client.get("/v1/tasks/groups/tgrp_x/events")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"


def test_scoped_faults_apply_to_their_kind_of_request_only() -> None:
    spec = FaultSpec.parse("429=0.1,500@get=0.2,503@post=0.3,502@stream=0.4,500@stream=0.1")
    assert spec.statuses == {429: 0.1}
    assert spec.statuses_for("POST", streaming=False) == {429: 0.1, 503: 0.3}
    assert spec.statuses_for("GET", streaming=False) == {429: 0.1, 500: 0.2}
    assert spec.statuses_for("GET", streaming=True) == {
        429: 0.1,
        500: pytest.approx(0.3),
        502: 0.4,
    }


@with_options(faults="500@get=1,503@stream=0")
def test_a_get_scoped_fault_spares_creates(emulator_with: EmulatorHandle) -> None:
    with _client(emulator_with) as client:
        created = client.post("/v1/tasks/runs", json=LITE)
        assert created.status_code == 202
        assert client.get(f"/v1/tasks/runs/{created.json()['run_id']}").status_code == 500
        assert client.get(f"/v1/tasks/runs/{created.json()['run_id']}/events").status_code == 500
    stats = emulator_with.stats()
    assert stats["runs_created"] == 1
    assert stats["faults_injected"] == {"500": 2}


@with_options(faults="503@stream=1")
def test_a_stream_scoped_fault_spares_plain_reads(emulator_with: EmulatorHandle) -> None:
    with _client(emulator_with) as client:
        run_id = client.post("/v1/tasks/runs", json=LITE).json()["run_id"]
        assert client.get(f"/v1/tasks/runs/{run_id}").status_code == 200
        assert client.get(f"/v1/tasks/runs/{run_id}/events").status_code == 503
