"""The Task API's JSON objects as frozen dataclasses, and the create-run request.

Response models are built with ``from_dict``, which ignores keys it does not know, tolerates
missing optional keys and keeps the original mapping in ``raw`` (so nothing the service sends is
lost when it adds fields). Events are dispatched on their JSON ``type`` string by
:func:`parse_event`; a type this module does not know becomes an :class:`UnknownEvent`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Citation",
    "ErrorEvent",
    "ErrorInfo",
    "Event",
    "FieldBasis",
    "GroupRunsResponse",
    "GroupStatusEvent",
    "MessageEvent",
    "RunWarning",
    "StateEvent",
    "StatsEvent",
    "TaskGroup",
    "TaskGroupStatus",
    "TaskOutput",
    "TaskRequest",
    "TaskRun",
    "TaskRunResult",
    "UnknownEvent",
    "parse_event",
]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# is_active is required on the wire; this is only the fallback when a payload omits it.
_ACTIVE_STATUSES = frozenset({"queued", "running", "cancelling"})
_MESSAGE_PREFIX = "task_run.progress_msg."

BETA_EVENTS = "events-sse-2025-07-24"
BETA_WEBHOOK = "webhook-2025-08-12"
BETA_FIELD_BASIS = "field-basis-2025-11-25"


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _mappings(value: Any) -> Iterable[Mapping[str, Any]]:
    """The mappings in a JSON list that may be null or absent."""
    if not isinstance(value, list):
        return ()
    return (item for item in value if isinstance(item, Mapping))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- runs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunWarning:
    """A warning the service attached to a run (``spec_validation_warning`` and others)."""

    type: str
    message: str
    detail: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunWarning:
        return cls(
            type=str(d.get("type") or "warning"),
            message=str(d.get("message") or ""),
            detail=_dict_or_none(d.get("detail")),
        )


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The ``error`` object of a failed run or an error event."""

    message: str
    ref_id: str | None = None
    detail: Any = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorInfo:
        return cls(
            message=str(d.get("message") or ""), ref_id=d.get("ref_id"), detail=d.get("detail")
        )


@dataclass(frozen=True, slots=True)
class TaskRun:
    """A run's status as the service reports it (``TaskRun``)."""

    run_id: str
    status: str
    is_active: bool
    processor: str
    created_at: str | None = None
    modified_at: str | None = None
    interaction_id: str | None = None
    warnings: tuple[RunWarning, ...] = ()
    error: ErrorInfo | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    taskgroup_id: str | None = None
    raw: Mapping[str, Any] = _raw()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskRun:
        status = str(d["status"])
        error = d.get("error")
        return cls(
            run_id=str(d["run_id"]),
            status=status,
            is_active=bool(d.get("is_active", status in _ACTIVE_STATUSES)),
            processor=str(d.get("processor") or ""),
            created_at=d.get("created_at"),
            modified_at=d.get("modified_at"),
            interaction_id=d.get("interaction_id"),
            warnings=tuple(RunWarning.from_dict(w) for w in _mappings(d.get("warnings"))),
            error=ErrorInfo.from_dict(error) if isinstance(error, Mapping) else None,
            metadata=_dict_or_none(d.get("metadata")) or {},
            taskgroup_id=d.get("taskgroup_id"),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class Citation:
    url: str
    title: str | None = None
    excerpts: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Citation:
        excerpts = d.get("excerpts") or ()
        return cls(
            url=str(d.get("url") or ""),
            title=d.get("title"),
            excerpts=tuple(str(e) for e in excerpts if e is not None),
        )


@dataclass(frozen=True, slots=True)
class FieldBasis:
    """Why one output field has its value: reasoning, citations and a confidence level.

    ``field`` is a dot path for nested fields and list items (``key_executives.0``).
    """

    field: str
    reasoning: str
    citations: tuple[Citation, ...] = ()
    confidence: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FieldBasis:
        return cls(
            field=str(d.get("field") or ""),
            reasoning=str(d.get("reasoning") or ""),
            citations=tuple(Citation.from_dict(c) for c in _mappings(d.get("citations"))),
            # The service sends "" when it has no confidence level.
            confidence=d.get("confidence") or None,
        )


@dataclass(frozen=True, slots=True)
class TaskOutput:
    """A run's answer: JSON ``content`` (a dict) or text (markdown), plus its basis."""

    type: Literal["json", "text"]
    content: dict[str, Any] | str
    basis: tuple[FieldBasis, ...] = ()
    output_schema: dict[str, Any] | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskOutput:
        content = d.get("content")
        kind = d.get("type") or ("json" if isinstance(content, Mapping) else "text")
        if kind == "json":
            content = _json_content(content)
        elif content is None:
            content = ""
        return cls(
            type="json" if kind == "json" else "text",
            content=content if isinstance(content, (dict, str)) else str(content),
            basis=tuple(FieldBasis.from_dict(b) for b in _mappings(d.get("basis"))),
            output_schema=_dict_or_none(d.get("output_schema")),
            raw=d,
        )


def _json_content(content: Any) -> dict[str, Any] | str:
    """JSON content as a dict; older docs show it as a JSON *string*, so decode that form."""
    if isinstance(content, Mapping):
        return dict(content)
    if isinstance(content, str):
        try:
            decoded = json.loads(content)
        except ValueError:
            return content
        return decoded if isinstance(decoded, dict) else content
    return {} if content is None else str(content)


@dataclass(frozen=True, slots=True)
class TaskRunResult:
    """``GET /result``: the completed run and its output."""

    run: TaskRun
    output: TaskOutput
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskRunResult:
        return cls(run=TaskRun.from_dict(d["run"]), output=TaskOutput.from_dict(d["output"]), raw=d)


# -- groups --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskGroupStatus:
    num_task_runs: int
    task_run_status_counts: dict[str, int]
    is_active: bool
    status_message: str | None = None
    modified_at: str | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskGroupStatus:
        counts = d.get("task_run_status_counts") or {}
        return cls(
            num_task_runs=_int_or_none(d.get("num_task_runs")) or 0,
            task_run_status_counts={str(k): int(v) for k, v in counts.items()},
            is_active=bool(d.get("is_active")),
            status_message=d.get("status_message"),
            modified_at=d.get("modified_at"),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class TaskGroup:
    taskgroup_id: str
    status: TaskGroupStatus
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskGroup:
        return cls(
            taskgroup_id=str(d["taskgroup_id"]),
            status=TaskGroupStatus.from_dict(d.get("status") or {}),
            metadata=_dict_or_none(d.get("metadata")) or {},
            created_at=d.get("created_at"),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class GroupRunsResponse:
    """``POST /groups/{id}/runs``: the new run ids and cursors for the group's streams."""

    status: TaskGroupStatus
    run_ids: tuple[str, ...]
    run_cursor: str | None = None
    event_cursor: str | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupRunsResponse:
        return cls(
            status=TaskGroupStatus.from_dict(d.get("status") or {}),
            run_ids=tuple(str(r) for r in d.get("run_ids") or ()),
            run_cursor=d.get("run_cursor"),
            event_cursor=d.get("event_cursor"),
            raw=d,
        )


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateEvent:
    """``task_run.state``: the run's status; the final one of a completed run has ``output``."""

    run: TaskRun
    input: dict[str, Any] | None = None
    output: TaskOutput | None = None
    event_id: str | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StateEvent:
        output = d.get("output")
        return cls(
            run=TaskRun.from_dict(d["run"]),
            input=_dict_or_none(d.get("input")),
            output=TaskOutput.from_dict(output) if isinstance(output, Mapping) else None,
            event_id=d.get("event_id"),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class StatsEvent:
    """``task_run.progress_stats``: progress (0..100) and source counts so far."""

    progress_meter: float | None = None
    sources_considered: int | None = None
    sources_read: int | None = None
    sources_sample: tuple[str, ...] = ()
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StatsEvent:
        stats = d.get("source_stats") or {}
        meter = d.get("progress_meter")
        return cls(
            progress_meter=float(meter) if isinstance(meter, (int, float)) else None,
            sources_considered=_int_or_none(stats.get("num_sources_considered")),
            sources_read=_int_or_none(stats.get("num_sources_read")),
            sources_sample=tuple(str(u) for u in stats.get("sources_read_sample") or ()),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """``task_run.progress_msg.<kind>``; ``kind`` is free-form (plan, search, tool, ...)."""

    kind: str
    message: str
    timestamp: str | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MessageEvent:
        return cls(
            kind=str(d["type"]).removeprefix(_MESSAGE_PREFIX),
            message=str(d.get("message") or ""),
            timestamp=d.get("timestamp"),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class GroupStatusEvent:
    """``task_group_status``: the group's run counts; ``event_id`` resumes the stream."""

    event_id: str | None
    status: TaskGroupStatus
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupStatusEvent:
        return cls(event_id=d.get("event_id"), status=TaskGroupStatus.from_dict(d["status"]), raw=d)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """``error``: something went wrong with the stream or the run's execution."""

    message: str
    ref_id: str | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorEvent:
        info = ErrorInfo.from_dict(d.get("error") or {})
        return cls(message=info.message, ref_id=info.ref_id, raw=d)


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event this client does not understand (a new type, or a malformed known one)."""

    type: str
    raw: Mapping[str, Any] = _raw()


Event = StateEvent | StatsEvent | MessageEvent | GroupStatusEvent | ErrorEvent | UnknownEvent

_EVENT_PARSERS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "task_run.state": StateEvent.from_dict,
    "task_run.progress_stats": StatsEvent.from_dict,
    "task_group_status": GroupStatusEvent.from_dict,
    "error": ErrorEvent.from_dict,
}


def parse_event(data: Mapping[str, Any]) -> Event:
    """The typed event for one SSE ``data`` object, chosen by its JSON ``type``.

    Never raises: an unknown type, or a known type whose payload lacks what it needs, becomes
    an :class:`UnknownEvent` so one odd event cannot end a stream.
    """
    kind = str(data.get("type") or "")
    parse = MessageEvent.from_dict if kind.startswith(_MESSAGE_PREFIX) else _EVENT_PARSERS.get(kind)
    if parse is None:
        return UnknownEvent(type=kind, raw=data)
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return UnknownEvent(type=kind, raw=data)


# -- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One run to create (``TaskRunInput``); ``to_body()`` is the JSON that is sent."""

    processor: str
    input: str | dict[str, Any]
    task_spec: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    source_policy: dict[str, Any] | None = None
    previous_interaction_id: str | None = None
    location: str | None = None
    enable_events: bool | None = None
    webhook: dict[str, Any] | None = None

    def to_body(self) -> dict[str, Any]:
        """The request body: fields left as None are omitted, not sent as null."""
        body: dict[str, Any] = {"processor": self.processor, "input": self.input}
        optional = {
            "task_spec": self.task_spec,
            "metadata": self.metadata,
            "source_policy": self.source_policy,
            "previous_interaction_id": self.previous_interaction_id,
            "enable_events": self.enable_events,
            "webhook": self.webhook,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if self.location is not None:
            body["advanced_settings"] = {"location": self.location}
        return body

    def beta_features(self) -> list[str]:
        """The ``parallel-beta`` values this request needs (field basis is always asked for)."""
        betas = []
        if self.enable_events is not None:
            betas.append(BETA_EVENTS)
        if self.webhook:
            betas.append(BETA_WEBHOOK)
        betas.append(BETA_FIELD_BASIS)
        return betas
