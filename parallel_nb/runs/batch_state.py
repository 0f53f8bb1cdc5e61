"""What the notebook knows about one batch (a task group), and the pure reducer that folds the
group's events into it.

:func:`fold_batch` is safe to feed a reconnect's replay: a run that terminates twice is counted
once, and an older group status never moves the counts back.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rpds import HashTrieSet

from ..api.models import Event, GroupStatusEvent, StateEvent

MAX_FAILURES = 5
MAX_PREVIEW = 5
PREVIEW_FIELDS = 3

# Runs that ended without an answer; the group counts them by status.
_FAILED_STATUSES = ("failed", "cancelled")
# Active statuses, in the order a run leaves them.
_ACTIVE_ORDER = ("queued", "running", "cancelling")

Failure = tuple[str, str]
"""(row label, error message)."""
Preview = tuple[str, tuple[tuple[str, Any], ...]]
"""(row label, the first few (field, value) pairs of its output; empty without output)."""
Labeller = Callable[[str], str]
"""The label of the rows a run answers, from its run id."""


@dataclass(frozen=True, slots=True)
class BatchState:
    """One batch as the views draw it; a new value for every event, never changed in place."""

    runs: int = 0  # runs in the group, as the service counts them
    counts: tuple[tuple[str, int], ...] = ()  # (status, runs), as the group last reported
    is_active: bool = True
    failures: tuple[Failure, ...] = ()  # the newest max_failures
    preview: tuple[Preview, ...] = ()  # the newest max_preview completed runs
    started_at: float | None = None  # time.monotonic() of the first event
    last_event_at: float | None = None
    events: int = 0
    max_failures: int = MAX_FAILURES
    max_preview: int = MAX_PREVIEW
    # Runs whose end this state has counted, so a replayed end is not counted again. Persistent
    # sets: each new state shares the old one's ids, so a 100,000-run batch folds in linear
    # time (a frozenset copy per event would be quadratic).
    seen_completed: HashTrieSet = dataclasses.field(default_factory=HashTrieSet, repr=False)
    seen_failed: HashTrieSet = dataclasses.field(default_factory=HashTrieSet, repr=False)

    def count(self, status: str) -> int:
        """Runs with ``status`` in the group's last report."""
        return dict(self.counts).get(status, 0)

    @property
    def completed(self) -> int:
        # The group's counts and the runs seen ending may each be ahead of the other.
        return max(self.count("completed"), len(self.seen_completed))

    @property
    def failed(self) -> int:
        reported = sum(self.count(status) for status in _FAILED_STATUSES)
        return max(reported, len(self.seen_failed))

    @property
    def status_counts(self) -> tuple[tuple[str, int], ...]:
        """Runs by status, the group's last report brought up to date with the runs seen
        ending since: they are counted as ended and taken off the active statuses (queued
        first), so the counts always add up to the runs."""
        counts = dict(self.counts)
        counts["completed"] = self.completed
        unreported = self.failed - sum(counts.get(s, 0) for s in _FAILED_STATUSES)
        if unreported > 0:
            counts["failed"] = counts.get("failed", 0) + unreported
        excess = sum(counts.values()) - max(self.runs, self.finished)
        for status in _ACTIVE_ORDER:
            taken = min(excess, counts.get(status, 0))
            if taken > 0:
                counts[status] -= taken
                excess -= taken
        return tuple((status, n) for status, n in sorted(counts.items()) if n > 0)

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def progress(self) -> float:
        """Percent of the runs that have ended (0..100)."""
        if self.runs <= 0:
            return 0.0
        return min(100.0, 100.0 * self.finished / self.runs)

    @property
    def elapsed(self) -> float | None:
        """Seconds from the first event to the latest one (not to now: the same state always
        draws the same)."""
        if self.started_at is None or self.last_event_at is None:
            return None
        return self.last_event_at - self.started_at

    @property
    def throughput(self) -> float | None:
        """Runs ended per second so far; None until one has ended after some time passed."""
        elapsed = self.elapsed
        if not elapsed or self.finished == 0:
            return None
        return self.finished / elapsed

    @property
    def eta(self) -> float | None:
        """Seconds until every run has ended at the current throughput; None when unknown."""
        rate = self.throughput
        if rate is None:
            return None
        return max(0, self.runs - self.finished) / rate


def fold_batch(
    state: BatchState, event: Event, now: float | None = None, label: Labeller | None = None
) -> BatchState:
    """``state`` after ``event`` from the group's stream arrived at ``now`` (monotonic);
    ``label`` names a run's rows in the preview and failures (default: the run id)."""
    now = time.monotonic() if now is None else now
    state = dataclasses.replace(
        state,
        events=state.events + 1,
        started_at=now if state.started_at is None else state.started_at,
        last_event_at=now,
    )
    if isinstance(event, GroupStatusEvent):
        return _fold_group(state, event)
    if isinstance(event, StateEvent):
        return _fold_run(state, event, label or str)
    return state


def _fold_group(state: BatchState, event: GroupStatusEvent) -> BatchState:
    status = event.status
    counts = tuple(sorted(status.task_run_status_counts.items()))
    # A replayed, older status reports fewer ended runs: keep the newer counts.
    if _ended(counts) < _ended(state.counts):
        return state
    return dataclasses.replace(
        state,
        runs=max(state.runs, status.num_task_runs),
        counts=counts,
        is_active=status.is_active,
    )


def _fold_run(state: BatchState, event: StateEvent, label: Labeller) -> BatchState:
    run = event.run
    if run.status == "completed":
        # The group's events carry no answers: a run is counted when it ends and previewed
        # when its answer arrives (fetched for the preview, or collected at the end).
        if run.run_id not in state.seen_completed:
            state = dataclasses.replace(
                state, seen_completed=state.seen_completed.insert(run.run_id)
            )
        if event.output is None:
            return state
        preview = _newest(state.preview, (label(run.run_id), _fields(event)), state.max_preview)
        return dataclasses.replace(state, preview=preview)
    if run.run_id in state.seen_completed or run.run_id in state.seen_failed:
        return state
    if run.status in _FAILED_STATUSES:
        message = run.error.message if run.error and run.error.message else f"run {run.status}"
        return dataclasses.replace(
            state,
            seen_failed=state.seen_failed.insert(run.run_id),
            failures=_newest(state.failures, (label(run.run_id), message), state.max_failures),
        )
    return state


def _ended(counts: tuple[tuple[str, int], ...]) -> int:
    return sum(n for status, n in counts if status in ("completed", *_FAILED_STATUSES))


def _fields(event: StateEvent) -> tuple[tuple[str, Any], ...]:
    if event.output is None:
        return ()
    content = event.output.content
    pairs = content.items() if isinstance(content, dict) else [("output", content)]
    return tuple((str(name), value) for name, value in list(pairs)[:PREVIEW_FIELDS])


def _newest(kept: tuple[Any, ...], item: Any, limit: int) -> tuple[Any, ...]:
    """``kept`` with ``item`` last (an older entry for the same label replaced), at most
    ``limit`` long."""
    if limit <= 0:
        return ()
    return (*(k for k in kept if k[0] != item[0]), item)[-limit:]
