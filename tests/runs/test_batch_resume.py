"""Resuming an interrupted batch from the run store, over real HTTP against an emulator whose
runs take a while (so the batch is still going when it is interrupted): no run is created twice
and every row completes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pytest
from scripted_api import COMPANIES

from parallel_nb.api.client import Client
from parallel_nb.api.models import Event, GroupStatusEvent, StateEvent
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.runs import batch
from parallel_nb.runs.batch import (
    BatchPlan,
    RowLabels,
    StoreRecorder,
    plan_batch,
    resume_batch,
    run_batch,
    store_recorder,
)
from parallel_nb.runs.store import RunStore

OUTPUT = "founded (integer): the year the company was founded\nceo: the current CEO"
ADD_RUNS = "POST /v1/tasks/groups/{group_id}/runs"
ROWS = 40
KEY = "resume-key"


class Interrupted(KeyboardInterrupt):
    """The user pressing stop at a chosen point of the batch."""


class StopAfterRun(StoreRecorder):
    """Records like the store recorder, then interrupts once request ``last`` is recorded."""

    def __init__(self, store: RunStore, endpoint: str, last: int) -> None:
        super().__init__(store, endpoint)
        self.last = last

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        super().runs(taskgroup_id, plan, added)
        if any(number == self.last for number, _ in added):
            raise Interrupted


class StopBeforeRecording(StoreRecorder):
    """Interrupts after add-runs answered for request ``first`` but before that answer is
    recorded: the runs exist on the service and nowhere in the store."""

    def __init__(self, store: RunStore, endpoint: str, first: int) -> None:
        super().__init__(store, endpoint)
        self.first = first

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        if any(number == self.first for number, _ in added):
            raise Interrupted
        super().runs(taskgroup_id, plan, added)


class StopAfterGroup(StoreRecorder):
    def group(self, taskgroup_id: str, plan: BatchPlan) -> None:
        super().group(taskgroup_id, plan)
        raise Interrupted


@pytest.fixture(scope="module")
def slow() -> Iterator[EmulatorHandle]:
    # lite takes 10-60 s of API time, so 0.2-1.2 s here: the batch outlives the interrupt.
    with start_emulator(time_scale=0.02, api_key=KEY) as handle:
        yield handle


@pytest.fixture
def api(slow: EmulatorHandle) -> Iterator[Client]:
    with Client(KEY, slow.base_url) as client:
        yield client


@pytest.fixture
def plan() -> BatchPlan:
    return plan_batch(frame(), input_template=None, output=OUTPUT, processor="lite")


def frame() -> pd.DataFrame:
    return pd.DataFrame({"company": [COMPANIES[i % 10] for i in range(ROWS)], "n": range(ROWS)})


def the_group(store: RunStore) -> str:
    [group] = [row for row in store.history() if row.kind == "group"]
    return group.run_id


def add_requests(emulator: EmulatorHandle) -> int:
    return sum(emulator.stats()["requests"].get(ADD_RUNS, {}).values())


def resume(api: Client, plan: BatchPlan, path: Path, endpoint: str) -> tuple[str, RunStore]:
    """Resume the batch recorded at ``path`` the way a restarted kernel would."""
    store = RunStore(path)
    taskgroup_id = the_group(store)
    known = store.group_runs(taskgroup_id)
    result = resume_batch(
        api, plan, taskgroup_id, known, chunk_size=20, recorder=store_recorder(store, endpoint)
    )
    assert result.run_ids[: len(known)] == [known[n] for n in range(len(known))]
    assert result.failed == 0
    enriched = result.frame(frame())
    assert enriched["founded"].notna().all() and enriched["_error"].isna().all()
    assert enriched.iloc[0]["ceo"] == "Patrick Collison"  # row 0 is Stripe
    assert store.group_runs(taskgroup_id) == dict(enumerate(result.run_ids))
    return taskgroup_id, store


def test_interrupted_after_the_first_chunk_resumes_without_recreating_runs(
    api: Client, slow: EmulatorHandle, plan: BatchPlan, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite3"
    before = slow.stats()["runs_created"]
    with RunStore(path) as store, pytest.raises(Interrupted):
        run_batch(api, plan, chunk_size=20, recorder=StopAfterRun(store, slow.base_url, 19))
    assert slow.stats()["runs_created"] == before + 20

    with RunStore(path) as store:
        group = store.get(the_group(store))
        assert group is not None and group.kind == "group" and group.is_active
        assert group.processor == "lite" and group.input_preview == f"{ROWS} rows"
        assert sorted(store.group_runs(group.run_id)) == list(range(20))

    taskgroup_id, store = resume(api, plan, path, slow.base_url)
    with store:
        assert slow.stats()["runs_created"] == before + ROWS  # none twice
        group = store.get(taskgroup_id)
        assert group is not None and group.status == "completed" and not group.is_active


def test_runs_created_but_never_recorded_are_found_by_input_not_bought_again(
    api: Client, slow: EmulatorHandle, plan: BatchPlan, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite3"
    before = slow.stats()["runs_created"]
    with RunStore(path) as store, pytest.raises(Interrupted):
        run_batch(api, plan, chunk_size=20, recorder=StopBeforeRecording(store, slow.base_url, 20))
    assert slow.stats()["runs_created"] == before + ROWS
    with RunStore(path) as store:
        assert sorted(store.group_runs(the_group(store))) == list(range(20))

    adds = add_requests(slow)
    _, store = resume(api, plan, path, slow.base_url)
    store.close()
    assert add_requests(slow) == adds  # the second chunk's runs were matched, not re-added
    assert slow.stats()["runs_created"] == before + ROWS


def test_interrupted_while_following_resumes_without_adding_runs(
    api: Client, slow: EmulatorHandle, plan: BatchPlan, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite3"
    before = slow.stats()["runs_created"]
    seen: list[Event] = []

    def stop_after_three(event: Event) -> None:
        seen.append(event)
        if len(seen) == 3:
            raise Interrupted

    with RunStore(path) as store, pytest.raises(Interrupted):
        run_batch(
            api, plan, on_event=stop_after_three, recorder=store_recorder(store, slow.base_url)
        )
    adds = add_requests(slow)

    _, store = resume(api, plan, path, slow.base_url)
    store.close()
    assert add_requests(slow) == adds
    assert slow.stats()["runs_created"] == before + ROWS


def test_interrupted_right_after_the_group_was_created_loses_nothing(
    api: Client, slow: EmulatorHandle, plan: BatchPlan, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite3"
    before = slow.stats()["runs_created"]
    with RunStore(path) as store, pytest.raises(Interrupted):
        run_batch(api, plan, recorder=StopAfterGroup(store, slow.base_url))
    with RunStore(path) as store:
        assert store.group_runs(the_group(store)) == {}

    _, store = resume(api, plan, path, slow.base_url)
    store.close()
    assert slow.stats()["runs_created"] == before + ROWS


def test_resume_refuses_run_ids_the_plan_has_no_request_for(api: Client, plan: BatchPlan) -> None:
    with pytest.raises(ValueError, match=r"request numbers \[40\].*has 40 requests.*the plan"):
        resume_batch(api, plan, "tgrp_unknown", {0: "trun_a", 40: "trun_b"})


def test_answers_reach_the_live_view_while_the_batch_runs(
    api: Client, slow: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "PREVIEW_SECONDS", 0.0)  # fetch as soon as a run ends
    df = frame().iloc[:12]
    seen: list[Event] = []
    run_batch(
        api,
        plan_batch(df, input_template=None, output=OUTPUT, processor="lite"),
        on_event=seen.append,
    )

    idle = max(
        i for i, e in enumerate(seen) if isinstance(e, GroupStatusEvent) and not e.status.is_active
    )
    answered = [e for e in seen[:idle] if isinstance(e, StateEvent) and e.output is not None]
    assert answered, "no answer was fetched while the group was still running"
    assert all(e.run.status == "completed" for e in answered)
    # The last answers also arrive after collection, so a fast batch ends with a preview too.
    assert any(isinstance(e, StateEvent) and e.output is not None for e in seen[idle:])


def test_row_labels_name_each_run_by_its_first_row() -> None:
    df = pd.DataFrame({"company": ["Stripe", "Figma", "Stripe"]}, index=["a", "b", "c"])
    plan = plan_batch(df, input_template=None, output=None, processor="lite")
    labels = RowLabels(plan, {1: "trun_figma"})
    labels.runs("tgrp_1", plan, [(0, "trun_stripe")])
    assert labels("trun_stripe") == "a (+1 identical)"
    assert labels("trun_figma") == "b"
    assert labels("trun_other") == "trun_other"
