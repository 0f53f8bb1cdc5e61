"""Batches kept in the run store: an identical batch resumes (or re-reads) the task group that
already answers it, and a recorded group can be attached to by id.

:func:`submit_batch` is the one path ``%%parallel --over`` and :func:`parallel_nb.enrich` take,
as :func:`~.tracking.submit` is for single runs: before anything is sent it looks the batch up
by its key (the endpoint, the default task spec and every request in order). A group still
going is resumed, adding only the runs it lacks; a completed one is read again, creating
nothing; otherwise a new group is created, recorded before any run is added.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..api.errors import NotFoundError
from .batch import BatchPlan, BatchResult, RowLabels, resume_batch, run_batch, store_recorder
from .batch_state import Labeller
from .store import RunStore, StoredRun, batch_key
from .tracking import age_text

if TYPE_CHECKING:
    from ..api.client import Client
    from ..api.models import Event

__all__ = ["BatchStart", "Feed", "find_batch", "group_to_attach", "recorded_group", "submit_batch"]

_UNKNOWN = "unknown"


class Feed(Protocol):
    """A live view's feed: called with each group event, closed once at the end."""

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchStart:
    """Where a batch begins: a new group (``taskgroup_id`` None), or the recorded group that
    answers it, with the runs it already has by request number."""

    key: str
    taskgroup_id: str | None = None
    known: Mapping[int, str] = field(default_factory=dict)


def find_batch(
    client: Client,
    store: RunStore,
    plan: BatchPlan,
    *,
    endpoint: str,
    refresh: bool = False,
    refresh_hint: str = "refresh=True",
) -> BatchStart:
    """The recorded group for ``plan`` that is still going or completed, announced in one line;
    a group the service no longer knows is forgotten. ``refresh`` skips the lookup."""
    key = batch_key(plan.requests, plan.default_task_spec, endpoint)
    if refresh:
        return BatchStart(key)
    found = store.find(key, kind="group")
    if found is None:
        return BatchStart(key)
    try:
        client.retrieve_group(found.run_id)
    except NotFoundError:
        store.record_group_status(found.run_id, _UNKNOWN, is_active=False)
        print(
            f"parallel-nb: the service does not know task group {found.run_id} (a demo "
            "emulator forgets its groups when the kernel restarts); starting a new batch"
        )
        return BatchStart(key)
    known = store.group_runs(found.run_id)
    print(_found_text(found, len(known), len(plan.requests), refresh_hint))
    return BatchStart(key, found.run_id, known)


def _found_text(found: StoredRun, known: int, requests: int, refresh_hint: str) -> str:
    age = age_text(time.time() - found.created_at)
    if found.status == "completed":
        return (
            f"parallel-nb: this batch completed in task group {found.run_id} ({age} ago); "
            f"reading its results again, no run is created ({refresh_hint} researches again)"
        )
    return (
        f"parallel-nb: resuming task group {found.run_id}, started {age} ago for this same "
        f"batch: {known} of {requests} runs exist, only the others are added "
        f"({refresh_hint} starts a new batch)"
    )


def recorded_group(store: RunStore, taskgroup_id: str) -> StoredRun:
    """The record of group ``taskgroup_id`` (its recipe, key, processor). Raises ValueError,
    saying what to do instead, for a group this store did not record."""
    stored = store.get(taskgroup_id)
    if stored is None or stored.kind != "group":
        raise ValueError(
            f"{taskgroup_id} is not a task group recorded in {store.path}; attach ties rows to "
            "runs with the record this kernel's batches write, so run the --over cell (or "
            "enrich()) that started it, in the kernel whose run store holds it"
        )
    return stored


def group_to_attach(store: RunStore, group: StoredRun, plan: BatchPlan) -> BatchStart:
    """The recorded ``group`` (see :func:`recorded_group`), checked to be a batch of ``plan``.
    Raises ValueError for a group started from other rows."""
    key = batch_key(plan.requests, plan.default_task_spec, group.endpoint or "")
    if group.key is not None and group.key != key:
        raise ValueError(
            f"{group.run_id} was started from other rows or another cell than these "
            f"{len(plan.row_requests)} rows; pass the DataFrame and the cell it was started with"
        )
    return BatchStart(key, group.run_id, store.group_runs(group.run_id))


def submit_batch(
    client: Client,
    plan: BatchPlan,
    start: BatchStart,
    *,
    store: RunStore,
    endpoint: str,
    new_feed: Callable[[Labeller], Feed],
    recipe: Mapping[str, Any] | None = None,
    chunk_size: int,
) -> BatchResult:
    """Run ``plan`` from ``start`` (see :func:`find_batch`), recorded in ``store`` all along and
    drawn by the feed ``new_feed`` makes (given the labeller that names each run's rows)."""
    labels = RowLabels(plan, start.known)
    recorder = [store_recorder(store, endpoint, key=start.key, recipe=recipe), labels]
    feed = new_feed(labels)
    try:
        if start.taskgroup_id is None:
            return run_batch(client, plan, chunk_size=chunk_size, on_event=feed, recorder=recorder)
        return resume_batch(
            client,
            plan,
            start.taskgroup_id,
            start.known,
            chunk_size=chunk_size,
            on_event=feed,
            recorder=recorder,
        )
    finally:
        feed.close()
