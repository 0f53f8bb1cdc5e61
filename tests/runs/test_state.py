"""The run-state reducer: event by event, replays after a reconnect, bounds, late and odd events."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx

from parallel_nb.api.models import Event, TaskRun, parse_event
from parallel_nb.runs.state import (
    INTERRUPTED_NOTE,
    MAX_MESSAGES,
    RunState,
    created,
    errored,
    fold,
    interrupted,
)

RUN_ID = "trun_" + "a" * 32


def run_json(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": RUN_ID,
        "status": status,
        "is_active": status in ("queued", "running"),
        "processor": "core",
        "created_at": "2025-08-06T00:52:58.619503Z",
        "modified_at": "2025-08-06T00:52:59.495063Z",
        **extra,
    }


def state_event(status: str, output: dict[str, Any] | None = None, **run: Any) -> Event:
    return parse_event(
        {
            "type": "task_run.state",
            "event_id": None,
            "input": None,
            "run": run_json(status, **run),
            "output": output,
        }
    )


def stats_event(progress: float | None, considered: int | None, read: int | None) -> Event:
    return parse_event(
        {
            "type": "task_run.progress_stats",
            "progress_meter": progress,
            "source_stats": {
                "num_sources_considered": considered,
                "num_sources_read": read,
                "sources_read_sample": [f"https://example.org/{n}" for n in range(read or 0)],
            },
        }
    )


def message_event(kind: str, text: str, second: int) -> Event:
    return parse_event(
        {
            "type": f"task_run.progress_msg.{kind}",
            "message": text,
            "timestamp": f"2025-08-06T00:53:{second:02d}.000000Z",
        }
    )


OUTPUT = {
    "type": "json",
    "content": {"gdp": "$3.1 trillion (2023)"},
    "basis": [{"field": "gdp", "reasoning": "r", "citations": [], "confidence": "high"}],
}


def fold_all(
    state: RunState, events: list[Event], start: float = 0.0, step: float = 1.0
) -> RunState:
    """Fold ``events`` one per ``step`` seconds from ``start``."""
    for index, event in enumerate(events):
        state = fold(state, event, now=start + index * step)
    return state


def without_counter(state: RunState) -> RunState:
    return dataclasses.replace(state, events=0)


def test_created_takes_the_run_and_starts_the_clock() -> None:
    run = TaskRun.from_dict(
        run_json("queued", warnings=[{"type": "spec_validation_warning", "message": "w1"}])
    )
    state = created(RunState(processor="lite"), run, now=10.0)
    assert (state.run_id, state.status, state.processor) == (RUN_ID, "queued", "core")
    assert state.warnings == ("w1",)
    assert state.started_at == 10.0
    assert state.finished_at is None
    assert not state.is_terminal


def test_a_whole_run_folds_to_its_final_state() -> None:
    events = [
        state_event("running"),
        message_event("exec_status", "Starting research", 1),
        stats_event(10, 50, 2),
        message_event("plan", "I will look at INSEE", 2),
        stats_event(60, 120, 9),
        state_event("completed", OUTPUT),
    ]
    start = created(RunState("core"), TaskRun.from_dict(run_json("queued")), now=100.0)
    state = fold_all(start, events, start=101.0)

    assert state.status == "completed"
    assert state.is_terminal
    assert state.progress == 100.0
    assert (state.sources_considered, state.sources_read) == (120, 9)
    assert len(state.sources_sample) == 9
    assert [m[:2] for m in state.messages] == [
        ("exec_status", "Starting research"),
        ("plan", "I will look at INSEE"),
    ]
    assert state.output is not None and state.output.content == OUTPUT["content"]
    assert state.finished_at == 106.0
    assert state.elapsed == 6.0
    assert state.events == len(events)


def test_a_replay_after_reconnect_gives_the_same_state() -> None:
    trace = [message_event("search", f"query {n}", n % 60) for n in range(70)]
    first = [state_event("running"), *trace[:40], stats_event(30, 80, 5)]
    # The service replays the whole trace and only the latest stats, then goes on.
    replay = [state_event("running"), *trace[:40], stats_event(30, 80, 5)]
    rest = [*trace[40:], stats_event(70, 150, 12), state_event("completed", OUTPUT)]

    # All at one instant, so only the replay itself could make a difference.
    once = fold_all(RunState("core"), first + rest, step=0)
    twice = fold_all(RunState("core"), first + replay + rest, step=0)

    assert without_counter(twice) == without_counter(once)
    assert twice.events == once.events + len(replay)
    assert len(once.messages) == MAX_MESSAGES
    assert once.messages[-1][1] == "query 69"


def test_a_replay_of_messages_older_than_the_window_adds_nothing() -> None:
    trace = [message_event("plan", f"step {n}", n) for n in range(MAX_MESSAGES + 5)]
    state = fold_all(RunState("core"), trace)
    assert fold_all(state, trace[:5]).messages == state.messages


def test_messages_keep_only_the_newest_ones_in_order() -> None:
    state = fold_all(RunState("core"), [message_event("plan", f"m{n}", n) for n in range(60)])
    assert len(state.messages) == MAX_MESSAGES
    assert [m[1] for m in state.messages] == [f"m{n}" for n in range(10, 60)]

    small = fold_all(
        RunState("core", max_messages=3), [message_event("plan", f"m{n}", n) for n in range(5)]
    )
    assert [m[1] for m in small.messages] == ["m2", "m3", "m4"]


def test_only_identical_messages_are_deduplicated() -> None:
    same = message_event("plan", "Looking up GDP", 5)
    later = message_event("plan", "Looking up GDP", 6)
    other_kind = message_event("search", "Looking up GDP", 5)
    state = fold_all(RunState("core"), [same, same, later, other_kind])
    assert state.messages == (
        ("plan", "Looking up GDP", "2025-08-06T00:53:05.000000Z"),
        ("plan", "Looking up GDP", "2025-08-06T00:53:06.000000Z"),
        ("search", "Looking up GDP", "2025-08-06T00:53:05.000000Z"),
    )


def test_a_late_non_final_state_does_not_reopen_a_finished_run() -> None:
    done = fold_all(RunState("core"), [state_event("running"), state_event("completed", OUTPUT)])
    late = fold(done, state_event("running"), now=50.0)
    assert late.status == "completed"
    assert late.finished_at == done.finished_at
    assert late.output == done.output
    assert late.progress == 100.0


def test_a_final_state_arriving_before_the_trace_still_ends_the_run() -> None:
    events = [
        state_event("completed", OUTPUT),
        message_event("plan", "an older plan message", 1),
        stats_event(40, 10, 3),
        state_event("running"),
    ]
    state = fold_all(RunState("core"), events, start=5.0)
    assert state.status == "completed"
    assert state.finished_at == 5.0
    assert state.progress == 100.0
    assert [m[1] for m in state.messages] == ["an older plan message"]
    assert state.sources_read == 3


def test_progress_is_clamped_and_never_moves_back() -> None:
    assert fold(RunState("core"), stats_event(150, 1, 1), now=0).progress == 100.0
    assert fold(RunState("core"), stats_event(-5, 1, 1), now=0).progress == 0.0

    state = fold_all(RunState("core"), [stats_event(60, 100, 10), stats_event(20, 90, 8)])
    assert state.progress == 60.0
    # Counts come from the service: the latest report wins.
    assert (state.sources_considered, state.sources_read) == (90, 8)


def test_missing_stats_keep_what_was_known() -> None:
    state = fold_all(RunState("core"), [stats_event(40, 100, 10), stats_event(None, None, None)])
    assert (state.progress, state.sources_considered, state.sources_read) == (40.0, 100, 10)
    assert len(state.sources_sample) == 10


def test_a_failed_run_keeps_its_error_message() -> None:
    failed = state_event(
        "failed", error={"ref_id": "ref_1", "message": "Task execution failed: no sources"}
    )
    state = fold_all(RunState("core"), [state_event("running"), failed], start=3.0)
    assert state.status == "failed"
    assert state.error == "Task execution failed: no sources"
    assert state.finished_at == 4.0
    assert state.progress is None


def test_an_error_event_is_recorded_without_changing_the_status() -> None:
    error = parse_event({"type": "error", "error": {"ref_id": "r42", "message": "stream hiccup"}})
    state = fold_all(RunState("core"), [state_event("running"), error])
    assert state.status == "running"
    assert state.error == "stream hiccup (ref_id r42)"
    assert not state.is_terminal


def test_unknown_events_are_only_counted() -> None:
    before = fold(RunState("core"), state_event("running"), now=1.0)
    after = fold(before, parse_event({"type": "task_run.new_thing", "x": 1}), now=2.0)
    assert after == dataclasses.replace(before, events=before.events + 1)


def test_interrupted_notes_the_run_goes_on_and_stops_the_clock() -> None:
    running = fold(RunState("core"), state_event("running"), now=1.0)
    state = interrupted(running, now=4.0)
    assert (state.status, state.note, state.finished_at) == ("interrupted", INTERRUPTED_NOTE, 4.0)
    assert state.is_terminal
    assert state.elapsed == 3.0


def test_local_endings_never_override_a_final_status() -> None:
    done = fold(RunState("core"), state_event("completed", OUTPUT), now=1.0)
    assert interrupted(done, now=9.0) == done
    lost = errored(done, "connection reset", now=9.0)
    assert (lost.status, lost.error, lost.finished_at) == ("completed", "connection reset", 1.0)

    running = fold(RunState("core"), state_event("running"), now=1.0)
    assert errored(running, "connection reset", now=2.0).status == "error"


def test_elapsed_is_none_before_the_run_starts() -> None:
    assert RunState("core").elapsed is None


def test_folding_the_emulator_stream_matches_its_result(client: httpx.Client) -> None:
    body = {"processor": "core", "input": "What was the GDP of France in 2023?"}
    run = client.post("/v1/tasks/runs", json=body).json()
    result = client.get(f"/v1/tasks/runs/{run['run_id']}/result").json()
    stream = client.get(f"/v1/tasks/runs/{run['run_id']}/events").text
    events = [
        parse_event(json.loads(line.removeprefix("data: ")))
        for line in stream.splitlines()
        if line.startswith("data: ")
    ]

    start = created(RunState("core"), TaskRun.from_dict(run), now=0.0)
    state = fold_all(start, events)
    assert state.status == "completed"
    assert state.output is not None
    assert state.output.content == result["output"]["content"]
    # A completed run's stream replays everything: folding it again changes nothing.
    assert without_counter(fold_all(state, events, start=99.0)) == without_counter(state)
