"""Enrich a DataFrame through one task group: plan one input per row, run the unique inputs,
and join each run's answer, confidence and citations back onto its rows.

Pure engine: no IPython, no widgets. :func:`plan_batch` renders the rows (sending nothing),
:func:`run_batch` creates the group, adds the runs in chunks, follows the group's events until
it is idle and streams the results back; :func:`resume_batch` finishes an interrupted batch
from the run ids recorded so far (:func:`store_recorder` records them in the run store);
:meth:`BatchResult.frame` is the enriched DataFrame.
"""

from __future__ import annotations

import datetime
import json
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api.errors import ParallelError, StreamInterrupted
from ..api.models import (
    Event,
    GroupStatusEvent,
    StateEvent,
    TaskGroupStatus,
    TaskOutput,
    TaskRequest,
)
from ..api.validation import LIMITS, validate_run_input
from ..spec import SpecError, input_from_value, output_to_task_spec
from ..spec.grammar import Section, parse_input
from ..spec.interpolate import interpolate
from ..spec.schema import describe
from ..view.frames import CONFIDENCE_LEVELS, basis_rows
from .batch_state import MAX_PREVIEW

if TYPE_CHECKING:
    import pandas as pd

    from ..api.client import Client
    from .store import RunStore

__all__ = [
    "MAX_RUNS_PER_REQUEST",
    "BatchPlan",
    "BatchRecorder",
    "BatchResult",
    "Recorder",
    "Recorders",
    "RowLabels",
    "RunOutcome",
    "StoreRecorder",
    "plan_batch",
    "resume_batch",
    "run_batch",
    "store_recorder",
]

MAX_RUNS_PER_REQUEST = LIMITS.group_inputs_per_request
"""The most runs the API accepts in one add-runs request."""

PREVIEW_RUNS = MAX_PREVIEW
"""The most answers fetched at a time for the live preview."""
PREVIEW_SECONDS = 2.0
"""The least time between two fetches of answers for the live preview."""

# The run has completed, so its result is there at once unless the service is struggling.
_PREVIEW_TIMEOUT = 5.0
# A stream that drops this many times in a row without delivering anything is not coming back.
_MAX_EMPTY_RECONNECTS = 5
_RESULT_STATUSES = ("completed", "failed")
ERROR_COLUMN = "_error"
ROW_COLUMN = "row"

Recorder = Callable[[str, str, TaskRequest], None]
"""Called with ``(taskgroup_id, run_id, request)`` for each run as soon as it is created."""


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What a batch will send: the unique requests, and for each row (by position) the number
    of the request that answers it. Identical rendered inputs share one request."""

    requests: tuple[TaskRequest, ...]
    row_requests: tuple[int, ...]
    index: tuple[Hashable, ...]
    default_task_spec: dict[str, Any] | None

    @property
    def processor(self) -> str:
        return self.requests[0].processor

    def rows_of(self) -> list[list[int]]:
        """For each request, the positions of the rows it answers."""
        rows: list[list[int]] = [[] for _ in self.requests]
        for position, number in enumerate(self.row_requests):
            rows[number].append(position)
        return rows


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One run's end: its output (without the raw payload, to keep batches small) or error."""

    run_id: str
    status: str
    output: TaskOutput | None = None
    error: str | None = None


@dataclass(slots=True)
class BatchResult:
    """The runs of one batch, one :class:`RunOutcome` per unique request (None: no result)."""

    taskgroup_id: str
    plan: BatchPlan
    run_ids: list[str | None]
    outcomes: list[RunOutcome | None] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """The number of unique requests that did not complete."""
        return sum(1 for o in self.outcomes if o is None or o.output is None)

    def frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` (index and order kept) with one column per output field, its
        ``<field>_confidence`` and ``<field>_citations`` (list of URLs), and ``_error`` for
        the rows whose run failed. An output field named like an input column is suffixed
        ``_result`` rather than overwriting the input."""

        if len(df) != len(self.plan.row_requests):
            raise ValueError(
                f"the DataFrame has {len(df)} rows but the batch was planned for "
                f"{len(self.plan.row_requests)}; pass the DataFrame given to plan_batch"
            )
        outcomes = [self.outcomes[n] for n in self.plan.row_requests]
        enriched = df.copy()
        for name in self._field_names():
            column = f"{name}_result" if name in df.columns else name
            cells = [_field_cells(o, name) for o in outcomes]
            values = _objects([c[0] for c in cells], df.index)
            # A missing value keeps the column object (ints stay ints, the gap stays None)
            # rather than turning every year into a float.
            enriched[column] = values.infer_objects() if values.notna().all() else values
            enriched[f"{column}_confidence"] = _objects([c[1] for c in cells], df.index)
            enriched[f"{column}_citations"] = _objects([c[2] for c in cells], df.index)
        enriched[ERROR_COLUMN] = _objects([_error_of(o) for o in outcomes], df.index)
        return enriched

    @property
    def basis_df(self) -> pd.DataFrame:
        """Every row's basis, one line per citation: ``row`` (the input's index label),
        ``field, confidence, reasoning, url, title, excerpt``; confidence ordered low <
        medium < high."""
        import pandas as pd

        lines = [
            (label, *basis)
            for label, number in zip(self.plan.index, self.plan.row_requests, strict=True)
            for basis in _basis_of(self.outcomes[number])
        ]
        columns = [ROW_COLUMN, "field", "confidence", "reasoning", "url", "title", "excerpt"]
        frame = pd.DataFrame(lines, columns=columns, dtype=object)
        found = dict.fromkeys(c for c in frame["confidence"] if c)
        levels = [*CONFIDENCE_LEVELS, *(c for c in found if c not in CONFIDENCE_LEVELS)]
        frame["confidence"] = pd.Categorical(frame["confidence"], categories=levels, ordered=True)
        return frame

    def _field_names(self) -> list[str]:
        """Top-level output fields: the schema's order first, then any others as they came."""
        names = dict.fromkeys(_schema_fields(self.plan.default_task_spec))
        for outcome in self.outcomes:
            if outcome is not None and outcome.output is not None:
                content = outcome.output.content
                names.update(dict.fromkeys(content if isinstance(content, dict) else ["output"]))
        return list(names)


# -- planning ------------------------------------------------------------------------------


def plan_batch(
    df: pd.DataFrame,
    *,
    input_template: str | None,
    output: str | Mapping[str, Any] | None,
    processor: str,
) -> BatchPlan:
    """One input per row of ``df``: ``input_template`` with ``{{column}}`` filled from the
    row, or the row itself as a JSON object; rows with identical inputs share one request.
    Raises SpecError (naming the row) for a template or input the API would reject."""
    if len(df) == 0:
        raise SpecError(None, "the DataFrame has no rows — there is nothing to enrich")
    spec = output_to_task_spec(output, processor)
    render = _template_renderer(input_template) if input_template is not None else input_from_value
    numbers: dict[str, int] = {}
    requests: list[TaskRequest] = []
    row_requests: list[int] = []
    for label, row in zip(df.index, _rows(df), strict=True):
        value = _for_row(label, render, row)
        key = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if key not in numbers:
            numbers[key] = len(requests)
            requests.append(_checked(TaskRequest(processor=processor, input=value), label))
        row_requests.append(numbers[key])
    return BatchPlan(tuple(requests), tuple(row_requests), tuple(df.index), spec)


def _rows(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    columns = [str(c) for c in df.columns]
    for values in df.itertuples(index=False, name=None):
        yield {name: _python(value) for name, value in zip(columns, values, strict=True)}


def _python(value: Any) -> Any:
    """A cell as plain Python: numpy scalars unwrapped, timestamps as ISO text, NaN/NA None."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value


def _template_renderer(template: str) -> Callable[[dict[str, Any]], str | dict[str, Any]]:
    section = Section(template)
    parsed = parse_input(section)
    return lambda row: interpolate(parsed, row, section)


def _for_row(
    label: Hashable, render: Callable[[dict[str, Any]], str | dict[str, Any]], row: dict[str, Any]
) -> str | dict[str, Any]:
    try:
        return render(row)
    except SpecError as exc:
        raise SpecError(None, f"row {label!r}: {exc.message}") from None


def _checked(request: TaskRequest, label: Hashable) -> TaskRequest:
    errors = validate_run_input(request.to_body()).errors
    if errors:
        raise SpecError(None, f"row {label!r}: {describe(errors[0])}")
    return request


def _schema_fields(spec: dict[str, Any] | None) -> list[str]:
    schema = ((spec or {}).get("output_schema") or {}).get("json_schema") or {}
    return [str(name) for name in schema.get("properties") or {}]


# -- recording -----------------------------------------------------------------------------


class BatchRecorder:
    """Told about a batch as it is created, so an interrupted batch can be resumed: the group
    as soon as it exists, each add-runs answer as soon as it returns, and the end.
    Each method does nothing here; a recorder overrides the ones it needs."""

    def group(self, taskgroup_id: str, plan: BatchPlan) -> None:
        """The group exists (told again on a resume); no run is added before this returns."""

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        """One add-runs request created these ``(request number, run id)`` pairs."""

    def finished(self, result: BatchResult) -> None:
        """The group is idle and its results are collected."""


@dataclass(slots=True)
class _CallbackRecorder(BatchRecorder):
    """A plain :data:`Recorder` callback, told about each run."""

    callback: Recorder

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        for number, run_id in added:
            self.callback(taskgroup_id, run_id, plan.requests[number])


@dataclass(slots=True)
class StoreRecorder(BatchRecorder):
    """Records the batch in the run store: the group row (with ``key`` and ``recipe``, see
    :meth:`RunStore.record_group`) and each add-runs answer in one transaction."""

    store: RunStore
    endpoint: str
    key: str | None = None
    recipe: Mapping[str, Any] | None = None

    def group(self, taskgroup_id: str, plan: BatchPlan) -> None:
        rows = len(plan.row_requests)
        self.store.record_group(
            taskgroup_id, plan.processor, rows, self.endpoint, key=self.key, recipe=self.recipe
        )

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        self.store.record_group_runs(taskgroup_id, added)

    def finished(self, result: BatchResult) -> None:
        self.store.record_group_status(result.taskgroup_id, "completed", is_active=False)


def store_recorder(
    store: RunStore,
    endpoint: str,
    *,
    key: str | None = None,
    recipe: Mapping[str, Any] | None = None,
) -> StoreRecorder:
    """A recorder that keeps the batch in ``store``, so :func:`resume_batch` can finish it with
    ``store.group_runs(taskgroup_id)`` as the known runs."""
    return StoreRecorder(store, endpoint, key, recipe)


class RowLabels(BatchRecorder):
    """Which rows each run answers, learned as runs are added (``known`` seeds a resume), so a
    live view can name rows instead of run ids. Call it with a run id for its label."""

    def __init__(self, plan: BatchPlan, known: Mapping[int, str] | None = None) -> None:
        self._plan = plan
        self._rows = plan.rows_of()
        self._labels: dict[str, str] = {}
        self._learn((known or {}).items())

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        self._learn(added)

    def _learn(self, added: Iterable[tuple[int, str]]) -> None:
        for number, run_id in added:
            rows = self._rows[number]
            more = f" (+{len(rows) - 1} identical)" if len(rows) > 1 else ""
            self._labels[run_id] = f"{self._plan.index[rows[0]]}{more}"

    def __call__(self, run_id: str) -> str:
        return self._labels.get(run_id, run_id)


@dataclass(slots=True)
class _Recorders(BatchRecorder):
    """Several recorders told the same things, in order."""

    recorders: tuple[BatchRecorder, ...]

    def group(self, taskgroup_id: str, plan: BatchPlan) -> None:
        for recorder in self.recorders:
            recorder.group(taskgroup_id, plan)

    def runs(self, taskgroup_id: str, plan: BatchPlan, added: Sequence[tuple[int, str]]) -> None:
        for recorder in self.recorders:
            recorder.runs(taskgroup_id, plan, added)

    def finished(self, result: BatchResult) -> None:
        for recorder in self.recorders:
            recorder.finished(result)


Recorders = Recorder | BatchRecorder | Sequence[BatchRecorder] | None
"""What ``recorder=`` accepts: a callback per run, a recorder, several recorders, or None."""


def _batch_recorder(recorder: Recorders) -> BatchRecorder:
    if isinstance(recorder, BatchRecorder):
        return recorder
    if recorder is None:
        return BatchRecorder()
    if isinstance(recorder, Sequence):
        return _Recorders(tuple(recorder))
    return _CallbackRecorder(recorder)


# -- running -------------------------------------------------------------------------------


def run_batch(
    client: Client,
    plan: BatchPlan,
    *,
    chunk_size: int = MAX_RUNS_PER_REQUEST,
    on_event: Callable[[Event], None] | None = None,
    recorder: Recorders = None,
) -> BatchResult:
    """Run ``plan`` as one task group and return every run's outcome.

    The group is passed to ``recorder`` as soon as it exists. Runs are added ``chunk_size``
    at a time (at most 1,000) with the plan's default task spec, each id passed to
    ``recorder`` as it comes back; progress is followed on the group's event stream (every
    event goes to ``on_event``) until the group is idle, then the results are streamed from
    the group's runs.
    """
    _check_chunk_size(chunk_size)
    group = client.create_group()
    result = BatchResult(group.taskgroup_id, plan, [None] * len(plan.requests))
    return _finish(client, result, chunk_size, on_event, _batch_recorder(recorder))


def resume_batch(
    client: Client,
    plan: BatchPlan,
    taskgroup_id: str,
    known: Mapping[int, str],
    *,
    chunk_size: int = MAX_RUNS_PER_REQUEST,
    on_event: Callable[[Event], None] | None = None,
    recorder: Recorders = None,
) -> BatchResult:
    """Finish a batch of ``plan`` that was interrupted after its group was created.

    ``known`` maps request numbers to the run ids already created (for a batch recorded with
    :func:`store_recorder`, ``store.group_runs(taskgroup_id)``). Only the requests without
    one are added; the rest is exactly :func:`run_batch`.
    """
    _check_chunk_size(chunk_size)
    strangers = sorted(n for n in known if not 0 <= n < len(plan.requests))
    if strangers:
        raise ValueError(
            f"run ids are known for request numbers {strangers}, but the plan has "
            f"{len(plan.requests)} requests; pass the plan the batch was started with"
        )
    run_ids = [known.get(n) for n in range(len(plan.requests))]
    result = BatchResult(taskgroup_id, plan, run_ids)
    return _finish(client, result, chunk_size, on_event, _batch_recorder(recorder), resume=True)


def _check_chunk_size(chunk_size: int) -> None:
    if not 1 <= chunk_size <= MAX_RUNS_PER_REQUEST:
        raise ValueError(
            f"chunk_size must be between 1 and {MAX_RUNS_PER_REQUEST} (the API's limit per "
            f"request), not {chunk_size}"
        )


def _finish(
    client: Client,
    result: BatchResult,
    chunk_size: int,
    on_event: Callable[[Event], None] | None,
    recorder: BatchRecorder,
    *,
    resume: bool = False,
) -> BatchResult:
    recorder.group(result.taskgroup_id, result.plan)
    if resume and None in result.run_ids:
        found = _reconcile(client, result)
        if found:
            recorder.runs(result.taskgroup_id, result.plan, found)
    status = _add_runs(client, result, chunk_size, recorder)
    if status is None:
        status = client.retrieve_group(result.taskgroup_id).status
    if _still_going(status, result):
        _follow(client, result.taskgroup_id, on_event)
    elif on_event is not None:
        # Every run has already ended (a re-read, a fast batch): its history is not replayed.
        on_event(GroupStatusEvent(event_id=None, status=status))
    result.outcomes = _collect(client, result, on_event)
    recorder.finished(result)
    return result


def _add_runs(
    client: Client, result: BatchResult, chunk_size: int, recorder: BatchRecorder
) -> TaskGroupStatus | None:
    """Add the requests that have no run yet, recording each answer before the next request.
    Returns the group's status after the last request (None if none was needed)."""
    status: TaskGroupStatus | None = None
    requests = result.plan.requests
    missing = [n for n, run_id in enumerate(result.run_ids) if run_id is None]
    for start in range(0, len(missing), chunk_size):
        numbers = missing[start : start + chunk_size]
        chunk = [requests[n] for n in numbers]
        added = client.add_runs(result.taskgroup_id, chunk, result.plan.default_task_spec)
        if len(added.run_ids) != len(chunk):
            raise RuntimeError(
                f"task group {result.taskgroup_id} answered {len(added.run_ids)} run ids for "
                f"{len(chunk)} inputs; check the group with retrieve_group before retrying"
            )
        pairs = list(zip(numbers, added.run_ids, strict=True))
        for number, run_id in pairs:
            result.run_ids[number] = run_id
        recorder.runs(result.taskgroup_id, result.plan, pairs)
        status = added.status
    return status


def _still_going(status: TaskGroupStatus, result: BatchResult) -> bool:
    """Whether the group may still have runs to end. A status that does not count every run
    yet is stale (the service may skip recomputing it for bulk adds): assume it is going."""
    return status.is_active or status.num_task_runs < sum(1 for r in result.run_ids if r)


def _reconcile(client: Client, result: BatchResult) -> list[tuple[int, str]]:
    """The group's runs that no request is tied to yet, matched to the requests without a run
    by processor and input (a plan never holds two identical requests)."""
    missing = {
        _input_key(request.processor, request.input): number
        for number, request in enumerate(result.plan.requests)
        if result.run_ids[number] is None
    }
    tied = set(result.run_ids)
    found: list[tuple[int, str]] = []
    for event in _group_runs(client, result.taskgroup_id, None, include_input=True):
        if event.run.run_id in tied:
            continue
        run_input = event.input or {}
        number = missing.pop(_input_key(run_input.get("processor"), run_input.get("input")), None)
        if number is not None:
            result.run_ids[number] = event.run.run_id
            found.append((number, event.run.run_id))
    return found


def _input_key(processor: Any, value: Any) -> str:
    return json.dumps([processor, value], sort_keys=True, ensure_ascii=False)


class _Answers:
    """Fetches the answers of the newest completed runs now and then while a batch is being
    followed, for the live preview: the group's events say that a run ended, not what it
    found. At most :data:`PREVIEW_RUNS` results every :data:`PREVIEW_SECONDS` seconds."""

    def __init__(self, client: Client, on_event: Callable[[Event], None]) -> None:
        self._client = client
        self._on_event = on_event
        self._pending: deque[str] = deque(maxlen=PREVIEW_RUNS)
        self._last = time.monotonic()

    def saw(self, event: Event) -> None:
        if isinstance(event, StateEvent) and event.run.status == "completed":
            self._pending.append(event.run.run_id)
        now = time.monotonic()
        if self._pending and now - self._last >= PREVIEW_SECONDS:
            self._last = now
            while self._pending:
                self._fetch(self._pending.popleft())

    def _fetch(self, run_id: str) -> None:
        try:
            result = self._client.result(run_id, timeout=_PREVIEW_TIMEOUT)
        except ParallelError:
            return  # only a preview: the answer is collected with the others at the end
        self._on_event(StateEvent(run=result.run, output=result.output))


def _follow(client: Client, taskgroup_id: str, on_event: Callable[[Event], None] | None) -> None:
    """Read the group's events until it is idle, resuming after the last event on a drop."""
    answers = _Answers(client, on_event) if on_event is not None else None
    last_event_id: str | None = None
    empty_drops = 0
    while True:
        idle = False
        delivered = False
        try:
            with client.group_events(taskgroup_id, last_event_id) as stream:
                for event in stream:
                    delivered = True
                    last_event_id = getattr(event, "event_id", None) or last_event_id
                    if isinstance(event, GroupStatusEvent):
                        idle = not event.status.is_active
                    if on_event is not None:
                        on_event(event)
                    if answers is not None:
                        answers.saw(event)
        except StreamInterrupted:
            empty_drops = 0 if delivered else empty_drops + 1
            if empty_drops >= _MAX_EMPTY_RECONNECTS:
                raise
            continue
        # A stream also ends on a server-side timeout while runs are still going.
        if idle or not client.retrieve_group(taskgroup_id).status.is_active:
            return


def _collect(
    client: Client, result: BatchResult, on_event: Callable[[Event], None] | None
) -> list[RunOutcome | None]:
    """Every run's outcome from the group's runs streams; failures and the last few answers
    also go to ``on_event``, so the view ends complete however the group was followed."""
    numbers = {run_id: n for n, run_id in enumerate(result.run_ids) if run_id is not None}
    outcomes: list[RunOutcome | None] = [None] * len(result.run_ids)
    latest: deque[StateEvent] = deque(maxlen=PREVIEW_RUNS)
    for status in _RESULT_STATUSES:
        for event in _group_runs(client, result.taskgroup_id, status):
            number = numbers.get(event.run.run_id)
            if number is not None:
                outcomes[number] = _outcome(event)
                if event.output is not None:
                    latest.append(event)
                elif on_event is not None:
                    on_event(event)  # a failure, counted once by the view however it arrives
    if on_event is not None:
        for event in latest:
            on_event(event)
    return outcomes


def _group_runs(
    client: Client, taskgroup_id: str, status: str | None, *, include_input: bool = False
) -> Iterator[StateEvent]:
    """The group's runs with ``status`` (None: all), with their outputs when they have a
    status, with their inputs if asked; resumed after a drop."""
    last_event_id: str | None = None
    empty_drops = 0
    while True:
        delivered = False
        try:
            with client.group_runs(
                taskgroup_id,
                status=status,
                include_input=include_input,
                include_output=status is not None,
                last_event_id=last_event_id,
            ) as stream:
                for event in stream:
                    if isinstance(event, StateEvent):
                        delivered = True
                        last_event_id = event.event_id or last_event_id
                        yield event
            return
        except StreamInterrupted:
            empty_drops = 0 if delivered else empty_drops + 1
            if empty_drops >= _MAX_EMPTY_RECONNECTS:
                raise


def _outcome(event: StateEvent) -> RunOutcome:
    run, output = event.run, event.output
    if run.status == "completed" and output is not None:
        slim = TaskOutput(output.type, output.content, output.basis, output.output_schema)
        return RunOutcome(run.run_id, run.status, output=slim)
    message = run.error.message if run.error and run.error.message else f"run {run.status}"
    return RunOutcome(run.run_id, run.status, error=message)


# -- joining -------------------------------------------------------------------------------


def _field_cells(outcome: RunOutcome | None, name: str) -> tuple[Any, str | None, Any]:
    """A row's value, confidence and citation URLs for one top-level field."""
    if outcome is None or outcome.output is None:
        return None, None, None
    content = outcome.output.content
    value = content.get(name) if isinstance(content, dict) else content
    confidence = None
    urls: dict[str, None] = {}
    for basis in outcome.output.basis:
        if basis.field == name:
            confidence = basis.confidence
        if basis.field == name or basis.field.startswith(f"{name}."):
            urls.update(dict.fromkeys(c.url for c in basis.citations if c.url))
    return value, confidence, list(urls)


def _objects(values: list[Any], index: pd.Index) -> pd.Series:
    """A column that keeps None as None (a plain list would become NaN)."""
    import pandas as pd

    return pd.Series(values, index=index, dtype=object)


def _error_of(outcome: RunOutcome | None) -> str | None:
    if outcome is None:
        return "no result: the run did not complete or fail (was it cancelled?)"
    return outcome.error


def _basis_of(outcome: RunOutcome | None) -> Sequence[tuple[Any, ...]]:
    if outcome is None or outcome.output is None:
        return ()
    return basis_rows(outcome.output)
