"""Simulated task runs and task groups: lifecycle, timings, event timelines and waiters.

Everything runs on the server's event loop. A run stores only its request and a few numbers;
its answer, progress messages and statistics are regenerated deterministically from
``(seed, processor, input, task spec)`` whenever a client asks, so ten thousand stored runs stay
cheap. Timers move each run queued -> running -> completed | failed whether or not anyone is
watching, and every change wakes whoever waits on that run or its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from parallel_nb.api.processors import PROCESSORS, Processor
from parallel_nb.api.validation import normalize_output_schema

from . import wire
from .knowledge import Answer, Knowledge
from .webhooks import WebhookSender

__all__ = ["Engine", "Group", "Run", "StreamLimits"]

_ANSWER_CACHE_SIZE = 512
# A run waits in the queue for this share of its total simulated time.
_QUEUE_SHARE = (0.03, 0.10)
_REDUCED_STATS_AT = (0.25, 0.5, 0.75)
_SAMPLE_SIZE = 5


def run_key(seed: int, processor: str, input: Any, task_spec: Any) -> int:
    """The number every random choice about a run derives from: equal requests, equal runs."""
    canonical = json.dumps(
        [seed, processor, input, task_spec], sort_keys=True, separators=(",", ":")
    )
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


@dataclass(slots=True, eq=False)
class Run:
    """One task run: its request as submitted, its planned timings and its current state."""

    run_id: str
    request: dict[str, Any]
    processor: Processor
    key: int
    created_at: float
    queue_seconds: float
    run_seconds: float
    warnings: list[dict[str, Any]] | None
    full_events: bool
    group_id: str | None = None
    status: str = "queued"
    modified_at: float = 0.0
    started_at: float | None = None
    error: dict[str, Any] | None = None

    @property
    def is_active(self) -> bool:
        return wire.is_active(self.status)

    @property
    def output_schema(self) -> dict[str, Any]:
        """The normalized output schema; runs without a task spec use the auto schema."""
        spec = self.request.get("task_spec")
        if not isinstance(spec, Mapping):
            return {"type": "auto"}
        return normalize_output_schema(spec["output_schema"])

    def wire(self) -> dict[str, Any]:
        return wire.task_run(
            run_id=self.run_id,
            status=self.status,
            processor=self.processor.name,
            created_at=self.created_at,
            modified_at=self.modified_at,
            metadata=self.request.get("metadata"),
            warnings=self.warnings,
            error=self.error,
            taskgroup_id=self.group_id,
        )


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """One entry of a group's event log: a run's final state or a group status snapshot."""

    at: float
    run_id: str | None = None
    status: dict[str, Any] | None = None


@dataclass(slots=True, eq=False)
class Group:
    group_id: str
    metadata: dict[str, Any] | None
    created_at: float
    modified_at: float
    run_ids: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    # Event ids are positions in this log, counted from 1, so resuming is a slice.
    log: list[GroupEvent] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        return wire.group_status(self.counts, self.modified_at)

    @property
    def is_active(self) -> bool:
        return any(self.counts[status] for status in wire.ACTIVE_STATUSES)

    def wire(self) -> dict[str, Any]:
        return {
            "taskgroup_id": self.group_id,
            "metadata": self.metadata,
            "created_at": wire.timestamp(self.created_at),
            "status": self.status(),
        }


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How long one event stream may stay open, and how often an idle one re-sends state."""

    max_seconds: float
    keepalive_seconds: float


@dataclass(frozen=True, slots=True)
class _Step:
    at: float  # seconds after the run started
    event: dict[str, Any]

    @property
    def is_stats(self) -> bool:
        return self.event["type"] == "task_run.progress_stats"


class Engine:
    """Owns every run and group of one emulator; all methods run on the server loop."""

    def __init__(
        self, knowledge: Knowledge, *, time_scale: float, seed: int, webhooks: WebhookSender
    ) -> None:
        self.knowledge = knowledge
        self.time_scale = time_scale
        self.seed = seed
        self.webhooks = webhooks
        self.runs: dict[str, Run] = {}
        self.groups: dict[str, Group] = {}
        self.status_counts: Counter[str] = Counter()
        self.groups_created = 0
        self.closing = False
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._waiters: dict[str, asyncio.Event] = {}

    # -- runs ------------------------------------------------------------------------------

    def create_run(
        self, request: dict[str, Any], warnings: list[dict[str, Any]], group: Group | None = None
    ) -> Run:
        """Store a validated TaskRunInput as a queued run and start its clock."""
        processor = PROCESSORS[request["processor"]]
        key = run_key(self.seed, processor.name, request["input"], request.get("task_spec"))
        timing = random.Random(f"{key}:timing")
        total = timing.uniform(processor.min_seconds, processor.max_seconds) * self.time_scale
        queue_seconds = total * timing.uniform(*_QUEUE_SHARE)
        enable_events = request.get("enable_events")
        now = time.time()
        run = Run(
            run_id=wire.new_run_id(),
            request=request,
            processor=processor,
            key=key,
            created_at=now,
            modified_at=now,
            queue_seconds=queue_seconds,
            run_seconds=total - queue_seconds,
            warnings=None,
            full_events=processor.is_premium if enable_events is None else bool(enable_events),
            group_id=group.group_id if group else None,
        )
        run.warnings = [*warnings, *self.answer(run).warnings] or None
        self.runs[run.run_id] = run
        self.status_counts[run.status] += 1
        if group is not None:
            group.run_ids.append(run.run_id)
            group.counts[run.status] += 1
        asyncio.get_running_loop().call_later(queue_seconds, self._start, run)
        return run

    @property
    def runs_created(self) -> int:
        return len(self.runs)

    def answer(self, run: Run) -> Answer:
        """The run's answer, regenerated from its key when not cached."""
        cached = self._answers.get(run.run_id)
        if cached is not None:
            self._answers.move_to_end(run.run_id)
            return cached
        answer = self.knowledge.answer(
            input=run.request["input"],
            output_schema=run.output_schema,
            processor=run.processor,
            rng=random.Random(f"{run.key}:answer"),
        )
        self._answers[run.run_id] = answer
        if len(self._answers) > _ANSWER_CACHE_SIZE:
            self._answers.popitem(last=False)
        return answer

    def output(self, run: Run) -> dict[str, Any] | None:
        return self.answer(run).output if run.status == "completed" else None

    def _start(self, run: Run) -> None:
        self._set_status(run, "running")
        run.started_at = run.modified_at
        asyncio.get_running_loop().call_later(run.run_seconds, self._finish, run)

    def _finish(self, run: Run) -> None:
        answer = self.answer(run)
        if answer.error is not None:
            run.error = {"ref_id": wire.new_ref_id(), "message": answer.error, "detail": None}
        self._set_status(run, "failed" if answer.error is not None else "completed")
        group = self.groups.get(run.group_id) if run.group_id else None
        if group is not None:
            self._log(group, GroupEvent(run.modified_at, run_id=run.run_id))
            self._log(group, GroupEvent(run.modified_at, status=group.status()))
        webhook = run.request.get("webhook")
        if isinstance(webhook, Mapping) and _wants_status_events(webhook):
            self.webhooks.send(str(webhook["url"]), run.wire())

    def _set_status(self, run: Run, status: str) -> None:
        self.status_counts[run.status] -= 1
        self.status_counts[status] += 1
        group = self.groups.get(run.group_id) if run.group_id else None
        if group is not None:
            group.counts[run.status] -= 1
            group.counts[status] += 1
        run.status = status
        run.modified_at = time.time()
        if group is not None:
            group.modified_at = run.modified_at
            self._notify(group.group_id)
        self._notify(run.run_id)

    async def wait_until_done(self, run: Run, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the run to finish; True if it has."""
        deadline = time.monotonic() + timeout
        while run.is_active and not self.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self._wait(run.run_id, remaining)
        return not run.is_active

    # -- groups ----------------------------------------------------------------------------

    def create_group(self, metadata: dict[str, Any] | None) -> Group:
        now = time.time()
        group = Group(wire.new_group_id(), metadata, created_at=now, modified_at=now)
        self.groups[group.group_id] = group
        self.groups_created += 1
        self._log(group, GroupEvent(now, status=group.status()))
        return group

    def add_runs(
        self, group: Group, requests: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> dict[str, Any]:
        """Add validated (request, warnings) pairs to a group; the TaskGroupRunResponse."""
        first_batch = not group.run_ids
        run_cursor = None if first_batch else str(len(group.run_ids))
        event_cursor = None if first_batch else str(len(group.log))
        run_ids = [
            self.create_run(request, warnings, group).run_id for request, warnings in requests
        ]
        group.modified_at = time.time()
        self._log(group, GroupEvent(group.modified_at, status=group.status()))
        return {
            "status": group.status(),
            "run_ids": run_ids,
            "run_cursor": run_cursor,
            "event_cursor": event_cursor,
        }

    def _log(self, group: Group, event: GroupEvent) -> None:
        group.log.append(event)
        self._notify(group.group_id)

    def render_group_event(self, group: Group, index: int) -> dict[str, Any]:
        """Log entry ``index`` (0-based) as a wire event; its event id is ``index + 1``."""
        entry = group.log[index]
        event_id = str(index + 1)
        if entry.run_id is not None:
            run = self.runs[entry.run_id]
            return {
                "type": "task_run.state",
                "event_id": event_id,
                "input": None,
                "run": run.wire(),
                "output": None,
            }
        return {"type": "task_group_status", "event_id": event_id, "status": entry.status}

    async def group_events(
        self, group: Group, after: int, timeout: float | None, limits: StreamLimits
    ) -> AsyncIterator[dict[str, Any]]:
        """Group log entries after position ``after``, live until the group goes idle."""
        window = limits.max_seconds if timeout is None else min(timeout, limits.max_seconds)
        deadline = time.monotonic() + window
        position = after
        while True:
            while position < len(group.log):
                yield self.render_group_event(group, position)
                position += 1
            remaining = deadline - time.monotonic()
            if not group.is_active or self.closing or remaining <= 0:
                return
            await self._wait(group.group_id, min(remaining, limits.keepalive_seconds))
            idle = time.time() - group.log[-1].at
            if position == len(group.log) and idle >= limits.keepalive_seconds:
                # Keep-alive as a real, resumable status event: comments would crash SDKs.
                self._log(group, GroupEvent(time.time(), status=group.status()))

    def group_runs(
        self,
        group: Group,
        after: int,
        status: str | None,
        include_input: bool,
        include_output: bool,
    ) -> list[dict[str, Any]]:
        """One ``task_run.state`` per run added after cursor ``after`` (matching ``status``)."""
        events = []
        for position, run_id in enumerate(group.run_ids[after:], start=after + 1):
            run = self.runs[run_id]
            if status is not None and run.status != status:
                continue
            events.append(
                {
                    "type": "task_run.state",
                    "event_id": str(position),
                    "input": run.request if include_input else None,
                    "run": run.wire(),
                    "output": self.output(run) if include_output else None,
                }
            )
        return events

    # -- run event streams -----------------------------------------------------------------

    async def run_events(self, run: Run, limits: StreamLimits) -> AsyncIterator[dict[str, Any]]:
        """A run's event stream: current state, the trace so far (with only the latest
        statistics), live events, and a final state carrying the output or the error."""
        deadline = time.monotonic() + limits.max_seconds
        yield self._state_event(run, with_output=False)
        shown_status = run.status
        steps: list[_Step] | None = None
        sent = 0
        latest_stats = _stats_event(self.answer(run), 0.0)
        last_frame = time.monotonic()
        while True:
            if run.status != shown_status and run.is_active:
                shown_status = run.status
                yield self._state_event(run, with_output=False)
                last_frame = time.monotonic()
            if run.started_at is not None:
                steps = steps if steps is not None else self.timeline(run)
                due = _due(steps, sent, run)
                for step in _without_superseded_stats(steps[sent:due]):
                    yield step.event
                    last_frame = time.monotonic()
                for step in steps[sent:due]:
                    if step.is_stats:
                        latest_stats = step.event
                sent = due
            if not run.is_active:
                yield self._state_event(run, with_output=True)
                return
            now = time.monotonic()
            if self.closing or now >= deadline:
                return
            if now - last_frame >= limits.keepalive_seconds:
                # Keep-alive is a data event: SSE comments crash the official SDK (ref §5.4).
                yield latest_stats
                last_frame = now
            wait = min(deadline - now, limits.keepalive_seconds - (now - last_frame))
            if steps is not None and sent < len(steps) and run.started_at is not None:
                next_at = run.started_at + steps[sent].at - time.time()
                wait = min(wait, max(next_at, 0.0))
            await self._wait(run.run_id, wait)

    def _state_event(self, run: Run, *, with_output: bool) -> dict[str, Any]:
        return {
            "type": "task_run.state",
            "event_id": None,
            "input": None,
            "run": run.wire(),
            "output": self.output(run) if with_output else None,
        }

    def timeline(self, run: Run) -> list[_Step]:
        """The run's progress events with their offsets, regenerated from its key."""
        answer = self.answer(run)
        rng = random.Random(f"{run.key}:timeline")
        completed = answer.error is None
        if run.full_events:
            marks = _message_marks(answer, rng, completed)
        else:
            marks = [(at, None, "") for at in _REDUCED_STATS_AT]
        if completed:
            marks.append((1.0, None, ""))
        assert run.started_at is not None
        steps = []
        for at, kind, message in sorted(marks, key=lambda mark: mark[0]):
            if kind is None:
                event = _stats_event(answer, at)
            else:
                moment = run.started_at + at * run.run_seconds
                event = {
                    "type": f"task_run.progress_msg.{kind}",
                    "message": message,
                    "timestamp": wire.timestamp(moment),
                }
            steps.append(_Step(at * run.run_seconds, event))
        return steps

    # -- waiting ---------------------------------------------------------------------------

    async def _wait(self, key: str, timeout: float) -> None:
        """Sleep until ``key`` (a run or group id) changes, or ``timeout`` seconds pass."""
        event = self._waiters.get(key)
        if event is None:
            event = self._waiters[key] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(timeout, 0.0))

    def _notify(self, key: str) -> None:
        event = self._waiters.pop(key, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Wake every waiter so open streams and blocked requests end promptly."""
        self.closing = True
        for key in list(self._waiters):
            self._notify(key)


def _wants_status_events(webhook: Mapping[str, Any]) -> bool:
    # Absent event_types means the only type there is; an explicit list must name it.
    types = webhook.get("event_types")
    return types is None or "task_run.status" in types


def _due(steps: list[_Step], sent: int, run: Run) -> int:
    """How many steps are due: all once the run is over, else those whose time has come."""
    if not run.is_active:
        return len(steps)
    assert run.started_at is not None
    elapsed = time.time() - run.started_at
    due = sent
    while due < len(steps) and steps[due].at <= elapsed:
        due += 1
    return due


def _without_superseded_stats(steps: list[_Step]) -> list[_Step]:
    """Drop every statistics event that a later one in the same batch replaces."""
    last_stats = max((i for i, step in enumerate(steps) if step.is_stats), default=-1)
    return [step for i, step in enumerate(steps) if not step.is_stats or i == last_stats]


def _message_marks(
    answer: Answer, rng: random.Random, completed: bool
) -> list[tuple[float, str | None, str]]:
    """(fraction of the run, message kind or None for statistics, text) for a full stream."""
    trace = answer.trace
    marks: list[tuple[float, str | None, str]] = [(0.0, "exec_status", "Starting research")]
    marks += _spread(trace.plan, 0.01, 0.12, "plan", rng)
    for at, kind, text in [
        *_spread(trace.searches, 0.12, 0.6, "search", rng),
        *_spread(trace.results, 0.35, 0.9, "result", rng),
    ]:
        marks += [(at, kind, text), (min(at + 0.01, 0.99), None, "")]
    if completed:
        marks.append((0.95, "exec_status", "Writing the answer"))
    return marks


def _spread(
    texts: list[str], start: float, end: float, kind: str, rng: random.Random
) -> list[tuple[float, str, str]]:
    """Place ``texts`` in order at jittered points between ``start`` and ``end``."""
    width = (end - start) / max(len(texts), 1)
    return [
        (start + width * (i + rng.uniform(0.1, 0.9)), kind, text) for i, text in enumerate(texts)
    ]


def _stats_event(answer: Answer, progress: float) -> dict[str, Any]:
    """Statistics at ``progress`` (0..1): counts and the sample grow with it."""
    trace = answer.trace
    read_urls = trace.sources[: math.ceil(len(trace.sources) * progress)]
    return {
        "type": "task_run.progress_stats",
        "progress_meter": round(100.0 * progress, 1),
        "source_stats": {
            "num_sources_considered": round(trace.sources_considered * progress),
            "num_sources_read": round(trace.sources_read * progress),
            "sources_read_sample": read_urls[-_SAMPLE_SIZE:],
        },
    }
