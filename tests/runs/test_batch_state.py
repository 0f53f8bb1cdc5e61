"""The batch reducer over a scripted sequence of group events: counts, progress, throughput and
ETA, failures and previews, and replays that must not count a run twice."""

from __future__ import annotations

from typing import Any

import pytest

from parallel_nb.api.models import Event, GroupStatusEvent, StateEvent, UnknownEvent
from parallel_nb.runs.batch_state import BatchState, fold_batch


def group(runs: int, active: bool = True, **counts: int) -> GroupStatusEvent:
    status = {"num_task_runs": runs, "task_run_status_counts": counts, "is_active": active}
    return GroupStatusEvent.from_dict({"event_id": None, "status": status})


def ended(run_id: str, status: str, *, error: str | None = None, content: Any = None) -> StateEvent:
    payload: dict[str, Any] = {
        "run": {
            "run_id": run_id,
            "status": status,
            "is_active": False,
            "processor": "core",
            "error": {"message": error} if error else None,
        }
    }
    if content is not None:
        payload["output"] = {"type": "json", "content": content, "basis": []}
    return StateEvent.from_dict(payload)


def replay(events: list[tuple[float, Event]], state: BatchState | None = None) -> BatchState:
    state = BatchState() if state is None else state
    for now, event in events:
        state = fold_batch(state, event, now)
    return state


SCRIPT: list[tuple[float, Event]] = [
    (10.0, group(4, queued=4)),
    (11.0, group(4, running=2, queued=2)),
    (
        12.0,
        ended("trun_1", "completed", content={"ceo": "Ada", "hq": "Paris", "year": 1999, "x": 1}),
    ),
    (12.0, group(4, completed=1, running=2, queued=1)),
    (14.0, ended("trun_2", "failed", error="boom: <script>alert(1)</script>")),
    (14.0, group(4, completed=1, failed=1, running=2)),
]


def test_nothing_is_known_before_the_first_event() -> None:
    state = BatchState()
    assert (state.runs, state.completed, state.failed, state.progress) == (0, 0, 0, 0.0)
    assert state.throughput is None and state.eta is None


def test_counts_progress_and_rate_follow_the_events() -> None:
    state = replay(SCRIPT)
    assert state.runs == 4
    assert dict(state.counts) == {"completed": 1, "failed": 1, "running": 2}
    assert (state.completed, state.failed, state.finished) == (1, 1, 2)
    assert state.progress == 50.0
    assert state.started_at == 10.0 and state.elapsed == 4.0
    assert state.throughput == 0.5  # 2 runs ended in 4 s
    assert state.eta == 4.0  # 2 runs left at 0.5 runs/s
    assert state.events == len(SCRIPT)


def test_eta_is_unknown_until_a_run_ends() -> None:
    state = replay(SCRIPT[:2])
    assert state.runs == 4 and state.progress == 0.0
    assert state.throughput is None and state.eta is None


def test_failures_keep_run_id_and_message() -> None:
    state = replay(SCRIPT)
    assert state.failures == (("trun_2", "boom: <script>alert(1)</script>"),)


def test_a_failure_without_message_says_how_the_run_ended() -> None:
    state = replay([(0.0, ended("trun_9", "cancelled"))])
    assert state.failures == (("trun_9", "run cancelled"),)
    assert state.failed == 1


def test_the_preview_keeps_the_first_few_fields_of_completed_runs() -> None:
    state = replay(SCRIPT)
    assert state.preview == (("trun_1", (("ceo", "Ada"), ("hq", "Paris"), ("year", 1999))),)
    text = replay([(0.0, ended("trun_3", "completed", content="a report"))])
    assert text.preview == (("trun_3", (("output", "a report"),)),)


def test_a_run_is_counted_when_it_ends_and_previewed_when_its_answer_arrives() -> None:
    state = replay([(0.0, ended("trun_4", "completed"))])  # the group's events carry no output
    assert state.completed == 1 and state.preview == ()
    state = replay([(1.0, ended("trun_4", "completed", content={"ceo": "Ada"}))], state)
    assert state.completed == 1
    assert state.preview == (("trun_4", (("ceo", "Ada"),)),)
    again = replay([(2.0, ended("trun_4", "completed", content={"ceo": "Ada"}))], state)
    assert again.preview == state.preview  # one line per row, however often it arrives


def test_runs_are_named_by_their_rows_when_a_labeller_is_given() -> None:
    labels = {"trun_1": "STRIPE", "trun_2": "FIG (+1 identical)"}
    state = BatchState()
    for now, event in SCRIPT:
        state = fold_batch(state, event, now, labels.__getitem__)
    assert [label for label, _ in state.preview] == ["STRIPE"]
    assert state.failures == (("FIG (+1 identical)", "boom: <script>alert(1)</script>"),)


def test_a_replayed_end_is_not_counted_twice() -> None:
    state = replay(SCRIPT)
    again = replay(SCRIPT[2:3] + SCRIPT[4:5], state)
    assert (again.completed, again.failed) == (1, 1)
    assert again.failures == state.failures and again.preview == state.preview


def test_a_replayed_older_group_status_does_not_move_progress_back() -> None:
    state = replay([*SCRIPT, (15.0, group(4, queued=4))])
    assert dict(state.counts) == {"completed": 1, "failed": 1, "running": 2}
    assert state.progress == 50.0


def test_runs_seen_ending_count_before_the_group_reports_them() -> None:
    state = replay([(0.0, group(3, running=3)), (1.0, ended("trun_1", "completed"))])
    assert state.completed == 1 and state.progress == pytest.approx(100 / 3)


def test_failures_and_previews_are_bounded_to_the_newest() -> None:
    events: list[tuple[float, Event]] = [
        (float(i), ended(f"trun_f{i}", "failed", error=f"e{i}")) for i in range(8)
    ]
    events += [(float(i), ended(f"trun_c{i}", "completed", content={"n": i})) for i in range(8)]
    state = replay(events)
    assert [run_id for run_id, _ in state.failures] == [f"trun_f{i}" for i in range(3, 8)]
    assert [run_id for run_id, _ in state.preview] == [f"trun_c{i}" for i in range(3, 8)]
    assert (state.completed, state.failed) == (8, 8)


def test_the_group_going_idle_is_kept_and_other_events_only_counted() -> None:
    state = replay([(0.0, group(1, active=False, completed=1)), (1.0, UnknownEvent("ping"))])
    assert not state.is_active and state.completed == 1 and state.events == 2
    assert state.progress == 100.0 and state.eta == 0.0


def test_status_counts_take_runs_seen_ending_off_a_stale_report() -> None:
    # The group last said 6 queued; since then one run was seen completing, one failing.
    state = replay(
        [
            (0.0, group(6, queued=6)),
            (1.0, ended("trun_1", "completed")),
            (2.0, ended("trun_2", "failed", error="boom")),
        ]
    )
    assert state.counts == (("queued", 6),)  # the report itself is kept as it came
    assert state.status_counts == (("completed", 1), ("failed", 1), ("queued", 4))
    fresh = replay([(3.0, group(6, completed=1, failed=1, running=3, queued=1))], state)
    assert fresh.status_counts == (("completed", 1), ("failed", 1), ("queued", 1), ("running", 3))
