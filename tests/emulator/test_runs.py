"""Task runs over real HTTP: create, retrieve, input, blocking result, and the run event stream."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sse_frames import iter_events, read_events

from parallel_nb.emulator import EmulatorHandle, start_emulator

KEY = "test-key"
RUN_ID = re.compile(r"^trun_[0-9a-f]{32}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
UNKNOWN_RUN = "trun_" + "0" * 32
MESSAGE_TYPES = {
    "task_run.progress_msg.exec_status",
    "task_run.progress_msg.plan",
    "task_run.progress_msg.search",
    "task_run.progress_msg.result",
}
SPEC = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {"launch_date": {"type": "string"}},
            "required": ["launch_date"],
            "additionalProperties": False,
        },
    }
}
# At time scale 0.02 these pro-fast inputs run for about 2 s and 3.7 s (timings are seeded).
SHORT_LIVE_INPUT = "Describe JWST"
LONG_LIVE_INPUT = "JWST history"


def _client(handle: EmulatorHandle) -> httpx.Client:
    return httpx.Client(base_url=handle.base_url, headers={"x-api-key": KEY}, timeout=30.0)


@pytest.fixture(scope="module")
def live() -> Iterator[EmulatorHandle]:
    """Runs take seconds here, so tests can watch them move."""
    with start_emulator(time_scale=0.02, api_key=KEY) as handle:
        yield handle


@pytest.fixture(scope="module")
def short_streams() -> Iterator[EmulatorHandle]:
    """Streams end after 1 s and an idle stream re-sends its state every 0.2 s."""
    with start_emulator(
        time_scale=0.02, api_key=KEY, stream_max_seconds=1.0, keepalive_seconds=0.2
    ) as handle:
        yield handle


def create(client: httpx.Client, prefix: str = "/v1", **body: Any) -> dict[str, Any]:
    response = client.post(f"{prefix}/tasks/runs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"].startswith("task_run.progress_msg.")]


def stats(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "task_run.progress_stats"]


@pytest.mark.parametrize("prefix", ["/v1", "/v1beta"])
def test_create_returns_a_queued_run(client: httpx.Client, prefix: str) -> None:
    run = create(client, prefix, processor="core", input="JWST launch date", metadata={"row": 7})
    assert RUN_ID.match(run["run_id"])
    assert run["interaction_id"] == run["run_id"]
    assert run["status"] == "queued" and run["is_active"] is True
    assert run["created_at"] == run["modified_at"]
    assert TIMESTAMP.match(run["created_at"])
    assert run["processor"] == "core"
    assert run["metadata"] == {"row": 7}
    assert run["taskgroup_id"] is None and run["error"] is None
    assert set(run) == {
        "run_id",
        "interaction_id",
        "status",
        "is_active",
        "warnings",
        "error",
        "processor",
        "metadata",
        "taskgroup_id",
        "created_at",
        "modified_at",
    }


@pytest.mark.parametrize("prefix", ["/v1", "/v1beta"])
def test_result_blocks_until_completion(client: httpx.Client, prefix: str) -> None:
    run = create(client, prefix, processor="base", input="When did JWST launch?", task_spec=SPEC)
    response = client.get(f"{prefix}/tasks/runs/{run['run_id']}/result", params={"timeout": 10})
    assert response.status_code == 200
    result = response.json()
    assert result["run"]["status"] == "completed" and result["run"]["is_active"] is False
    assert result["run"]["modified_at"] > result["run"]["created_at"]
    assert result["output"]["type"] == "json"
    assert set(result["output"]["content"]) == {"launch_date"}
    assert result["output"]["basis"][0]["field"] == "launch_date"
    retrieved = client.get(f"{prefix}/tasks/runs/{run['run_id']}").json()
    assert retrieved == result["run"]


def test_input_is_returned_as_submitted(client: httpx.Client) -> None:
    body = {
        "processor": "lite",
        "input": {"company": "Example Co", "year": 2024},
        "metadata": {"source": "crm", "score": 1.5, "ok": True},
        "source_policy": {"include_domains": ["example.com"]},
        "task_spec": SPEC,
    }
    run = create(client, **body)
    assert client.get(f"/v1/tasks/runs/{run['run_id']}/input").json() == body


def test_unknown_ids_are_404_with_the_documented_messages(client: httpx.Client) -> None:
    cases = {
        f"/v1/tasks/runs/{UNKNOWN_RUN}": "Run id not found",
        f"/v1/tasks/runs/{UNKNOWN_RUN}/input": "Run id not found",
        f"/v1/tasks/runs/{UNKNOWN_RUN}/events": "Run id not found",
        f"/v1/tasks/runs/{UNKNOWN_RUN}/result": "Run failed or run id not found",
    }
    for path, message in cases.items():
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"] == message


def test_failed_run_has_an_error_and_no_result(client: httpx.Client) -> None:
    run = create(client, processor="core", input="emulator: fail please")
    response = client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": 10})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Run failed or run id not found"
    failed = client.get(f"/v1/tasks/runs/{run['run_id']}").json()
    assert failed["status"] == "failed" and failed["is_active"] is False
    assert failed["error"]["message"] and failed["error"]["ref_id"]
    events = read_events(client, f"/v1/tasks/runs/{run['run_id']}/events")
    assert events[-1]["type"] == "task_run.state"
    assert events[-1]["run"]["status"] == "failed" and events[-1]["output"] is None


def test_result_times_out_with_408_while_the_run_is_active(live: EmulatorHandle) -> None:
    with _client(live) as client:
        run = create(client, processor="ultra", input="A long deep research question")
        for timeout in (0, 1):
            response = client.get(
                f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": timeout}
            )
            assert response.status_code == 408
            assert response.json()["error"]["message"] == "Request timed out; run still active"
        assert client.get(f"/v1/tasks/runs/{run['run_id']}").json()["is_active"] is True


def test_completed_run_stream_replays_everything(client: httpx.Client) -> None:
    run = create(client, processor="pro", input="Tell me about the James Webb Space Telescope")
    client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": 10})
    events = read_events(client, f"/v1/tasks/runs/{run['run_id']}/events")
    first, last = events[0], events[-1]
    assert first["type"] == "task_run.state" and first["event_id"] is None
    assert last["type"] == "task_run.state" and last["run"]["status"] == "completed"
    result = client.get(f"/v1/tasks/runs/{run['run_id']}/result").json()
    assert last["output"] == result["output"]
    assert {m["type"] for m in messages(events)} == MESSAGE_TYPES
    assert all(TIMESTAMP.match(m["timestamp"]) and m["message"] for m in messages(events))
    # A replay carries only the latest statistics: the final ones.
    [final_stats] = stats(events)
    assert final_stats["progress_meter"] == 100
    sample = final_stats["source_stats"]["sources_read_sample"]
    assert 0 < len(sample) <= 5 and all(url.startswith("http") for url in sample)


def test_live_stream_reports_rising_progress(live: EmulatorHandle) -> None:
    with _client(live) as client:
        run = create(client, processor="pro-fast", input=SHORT_LIVE_INPUT)
        with client.stream("GET", f"/v1/tasks/runs/{run['run_id']}/events") as response:
            events = list(iter_events(response))
    assert [e["run"]["status"] for e in events if e["type"] == "task_run.state"][-1] == (
        "completed"
    )
    meters = [s["progress_meter"] for s in stats(events)]
    assert len(meters) >= 3 and meters == sorted(meters) and meters[-1] == 100
    read = [s["source_stats"]["num_sources_read"] for s in stats(events)]
    considered = [s["source_stats"]["num_sources_considered"] for s in stats(events)]
    assert read == sorted(read) and considered == sorted(considered) and read[-1] > read[0]
    stamps = [m["timestamp"] for m in messages(events)]
    assert stamps == sorted(stamps)


def test_reconnect_replays_the_trace_with_only_the_latest_stats(live: EmulatorHandle) -> None:
    with _client(live) as client:
        run = create(client, processor="pro-fast", input=LONG_LIVE_INPUT)
        url = f"/v1/tasks/runs/{run['run_id']}/events"
        seen: list[dict[str, Any]] = []
        with client.stream("GET", url) as response:
            for event in iter_events(response):
                seen.append(event)
                # Leave after two statistics and a message after them: mid-run.
                if len(stats(seen)) >= 2 and seen[-1]["type"] in MESSAGE_TYPES:
                    break
        assert seen[-1]["type"] in MESSAGE_TYPES, "the run ended before the test disconnected"
        with client.stream("GET", url) as response:
            replay = list(iter_events(response))
    assert replay[0]["type"] == "task_run.state"
    first_messages = messages(seen)
    # The earlier messages come back first, in order, with their original timestamps.
    assert messages(replay)[: len(first_messages)] == first_messages
    cut = replay.index(first_messages[-1])
    assert len(stats(replay[:cut])) <= 1
    assert replay[-1]["type"] == "task_run.state" and replay[-1]["output"] is not None


def test_stream_closes_after_stream_max_seconds(short_streams: EmulatorHandle) -> None:
    with _client(short_streams) as client:
        run = create(client, processor="ultra", input="An hour-long investigation")
        url = f"/v1/tasks/runs/{run['run_id']}/events"
        for _ in range(2):  # closes cleanly, and a reconnect starts over with the state
            events = read_events(client, url)
            assert events[0]["type"] == "task_run.state"
            assert all(e["run"]["is_active"] for e in events if e["type"] == "task_run.state")


def test_idle_stream_keeps_alive_with_data_events(short_streams: EmulatorHandle) -> None:
    with _client(short_streams) as client:
        run = create(client, processor="ultra", input="Quiet run", enable_events=False)
        events = read_events(client, f"/v1/tasks/runs/{run['run_id']}/events")
    keepalives = stats(events)
    assert len(keepalives) >= 2
    assert all(k["source_stats"]["num_sources_read"] is not None for k in keepalives)


@pytest.mark.parametrize(
    ("processor", "enable_events", "full"),
    [
        ("core", None, False),
        ("lite", False, False),
        ("core", True, True),
        ("pro", None, True),
    ],
)
def test_enable_events_chooses_full_or_reduced_stream(
    client: httpx.Client, processor: str, enable_events: bool | None, full: bool
) -> None:
    body: dict[str, Any] = {"processor": processor, "input": "JWST mirror size"}
    if enable_events is not None:
        body["enable_events"] = enable_events
    run = create(client, **body)
    client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": 10})
    events = read_events(client, f"/v1/tasks/runs/{run['run_id']}/events")
    assert events[0]["type"] == events[-1]["type"] == "task_run.state"
    assert stats(events)
    assert bool(messages(events)) is full


def wait_for_open_streams(handle: EmulatorHandle, count: int) -> int:
    """Poll until ``count`` streams are open (or 10 s pass); the last figure seen."""
    deadline = time.monotonic() + 10
    while (open_streams := handle.stats()["open_streams"]) != count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return open_streams


def test_disconnected_streams_are_no_longer_counted(live: EmulatorHandle) -> None:
    # Streams other tests left are closing on their own; start from none.
    assert wait_for_open_streams(live, 0) == 0
    with _client(live) as client:
        run = create(client, processor="ultra", input="Watched then abandoned")
        with client.stream("GET", f"/v1/tasks/runs/{run['run_id']}/events") as response:
            events = iter_events(response)  # kept referenced: closing it closes the connection
            next(events)
            assert live.stats()["open_streams"] == 1
    assert wait_for_open_streams(live, 0) == 0


def test_stats_count_runs_and_requests(client: httpx.Client, emulator: EmulatorHandle) -> None:
    before = emulator.stats()
    run = create(client, processor="lite", input="stats check")
    client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": 10})
    after = client.get("/_emulator/stats").json()
    assert after["runs_created"] == before["runs_created"] + 1
    assert after["runs_by_status"]["completed"] >= before["runs_by_status"].get("completed", 0) + 1
    created = after["requests"]["POST /v1/tasks/runs"]["202"]
    assert created == before["requests"].get("POST /v1/tasks/runs", {}).get("202", 0) + 1
    assert set(after) == {
        "runs_created",
        "runs_by_status",
        "groups_created",
        "requests",
        "faults_injected",
        "open_streams",
    }
