"""What the notebook knows about one run, and the pure reducer that folds stream events into it.

:func:`fold` is safe to feed a reconnect's replay: messages already seen are not added again,
progress never moves back, and once the service has reported a final status no later event can
reopen the run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ..api.models import (
    TERMINAL_STATUSES,
    ErrorEvent,
    Event,
    MessageEvent,
    StateEvent,
    StatsEvent,
    TaskOutput,
    TaskRun,
)

MAX_MESSAGES = 50
INTERRUPTED_NOTE = "interrupted: the run continues on the server"

# Endings decided here, not by the service: the run itself may still be going.
_LOCAL_TERMINAL_STATUSES = frozenset({"interrupted", "error"})

Message = tuple[str, str, str | None]


@dataclass(frozen=True, slots=True)
class RunState:
    """One run as the views draw it; a new value for every event, never changed in place."""

    processor: str
    run_id: str | None = None
    # creating -> queued -> running -> completed|failed|cancelled; locally "interrupted", "error".
    status: str = "creating"
    progress: float | None = None  # 0..100
    sources_considered: int | None = None
    sources_read: int | None = None
    sources_sample: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()  # (kind, text, timestamp), the newest max_messages
    warnings: tuple[str, ...] = ()
    error: str | None = None
    output: TaskOutput | None = None
    started_at: float | None = None  # time.monotonic()
    finished_at: float | None = None
    events: int = 0
    note: str | None = None
    max_messages: int = MAX_MESSAGES
    # Every message ever kept, so a replay longer than the window is not added again.
    seen_messages: frozenset[Message] = dataclasses.field(default=frozenset(), repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES or self.status in _LOCAL_TERMINAL_STATUSES

    @property
    def elapsed(self) -> float | None:
        """Seconds since the run started, up to its end (or now while it runs)."""
        if self.started_at is None:
            return None
        end = time.monotonic() if self.finished_at is None else self.finished_at
        return end - self.started_at


def created(state: RunState, run: TaskRun, now: float | None = None) -> RunState:
    """``state`` once the service has created ``run``; the clock starts here."""
    now = time.monotonic() if now is None else now
    return dataclasses.replace(_with_run(state, run, now), started_at=now)


def fold(state: RunState, event: Event, now: float | None = None) -> RunState:
    """``state`` after ``event`` arrived at ``now`` (``time.monotonic()`` by default)."""
    now = time.monotonic() if now is None else now
    state = dataclasses.replace(
        state,
        events=state.events + 1,
        started_at=now if state.started_at is None else state.started_at,
    )
    if isinstance(event, StateEvent):
        return _fold_state(state, event, now)
    if isinstance(event, StatsEvent):
        return _fold_stats(state, event)
    if isinstance(event, MessageEvent):
        return _fold_message(state, (event.kind, event.message, event.timestamp))
    if isinstance(event, ErrorEvent):
        suffix = f" (ref_id {event.ref_id})" if event.ref_id else ""
        return dataclasses.replace(state, error=event.message + suffix)
    # Group status and unknown events say nothing about this run.
    return state


def interrupted(
    state: RunState, now: float | None = None, note: str = INTERRUPTED_NOTE
) -> RunState:
    """``state`` once the notebook stopped watching; an already finished run is left as it is."""
    if state.is_terminal:
        return state
    now = time.monotonic() if now is None else now
    return dataclasses.replace(state, status="interrupted", note=note, finished_at=now)


def errored(state: RunState, message: str, now: float | None = None) -> RunState:
    """``state`` after a local failure (the connection, say); a finished run keeps its status."""
    if state.is_terminal:
        return dataclasses.replace(state, error=message)
    now = time.monotonic() if now is None else now
    return dataclasses.replace(state, status="error", error=message, finished_at=now)


def _server_finished(state: RunState) -> bool:
    return state.status in TERMINAL_STATUSES


def _with_run(state: RunState, run: TaskRun, now: float) -> RunState:
    """``state`` taking the status the service reports in ``run``."""
    warnings = tuple(w.message for w in run.warnings)
    return dataclasses.replace(
        state,
        processor=run.processor or state.processor,
        run_id=run.run_id,
        status=run.status,
        warnings=warnings or state.warnings,
        error=run.error.message if run.error else state.error,
        finished_at=now if run.is_terminal else None,
        progress=100.0 if run.status == "completed" else state.progress,
    )


def _fold_state(state: RunState, event: StateEvent, now: float) -> RunState:
    # Events can arrive late or be replayed: the service's final word stands, though a
    # finished run's stream may send its output only with a second final state event.
    if _server_finished(state):
        if state.output is None and event.output is not None and event.run.is_terminal:
            return dataclasses.replace(state, output=event.output)
        return state
    state = _with_run(state, event.run, now)
    if event.output is not None:
        state = dataclasses.replace(state, output=event.output)
    return state


def _fold_stats(state: RunState, event: StatsEvent) -> RunState:
    progress = state.progress
    if event.progress_meter is not None:
        meter = min(100.0, max(0.0, event.progress_meter))
        progress = meter if progress is None else max(progress, meter)
    return dataclasses.replace(
        state,
        progress=progress,
        sources_considered=_latest(event.sources_considered, state.sources_considered),
        sources_read=_latest(event.sources_read, state.sources_read),
        sources_sample=event.sources_sample or state.sources_sample,
    )


def _fold_message(state: RunState, message: Message) -> RunState:
    if message in state.seen_messages:
        return state
    kept = (*state.messages, message)
    return dataclasses.replace(
        state,
        messages=kept[-state.max_messages :] if state.max_messages > 0 else (),
        seen_messages=state.seen_messages | {message},
    )


def _latest(reported: int | None, known: int | None) -> int | None:
    return known if reported is None else reported
