"""The emulator's HTTP surface: Task API routes under ``/v1`` and ``/v1beta``, plus stats.

Every route goes through one wrapper that checks ``x-api-key``, injects configured faults,
applies the rate limit to task-creating POSTs, turns errors into the documented envelope and
counts the answer. Request bodies are checked with :mod:`parallel_nb.api.validation`, the same
checks the client runs, so a 422 here names the same field the client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from parallel_nb.api.processors import PROCESSORS
from parallel_nb.api.validation import LIMITS, validate_run_input, validate_task_spec

from . import wire
from .engine import Engine, Group, Run, StreamLimits
from .faults import FaultDecision, FaultInjector, RateLimiter
from .knowledge import Knowledge
from .webhooks import WebhookSender

if TYPE_CHECKING:
    from .server import EmulatorConfig

__all__ = ["ApiError", "Emulator", "create_app"]

PREFIXES = ("/v1", "/v1beta")
RUN_STATUSES = (
    "queued",
    "action_required",
    "running",
    "completed",
    "failed",
    "cancelling",
    "cancelled",
)
# Beta request fields and the parallel-beta value the service documents for each.
BETA_FIELDS = {
    "enable_events": "events-sse-2025-07-24",
    "mcp_servers": "mcp-server-2025-07-17",
    "webhook": "webhook-2025-08-12",
}
_PROCESSOR_LIST = ", ".join(PROCESSORS)

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error answer: status, message, optional detail object and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(
            wire.error_body(self.message, self.detail), self.status, headers=self.headers
        )


class DroppedStream(Exception):
    """Raised inside an event stream to cut the connection abruptly (the ``drop`` fault)."""


class _HideDroppedStreams(logging.Filter):
    """Keeps deliberate stream cuts out of uvicorn's error log; real errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedStream))


def field_errors(problems: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The 422 ``detail``: one ``{"field", "message"}`` entry per problem."""
    return {"errors": [{"field": name, "message": message} for name, message in problems]}


def unprocessable(problems: list[tuple[str, str]]) -> ApiError:
    """A 422 naming the first problem in its message and every problem in its detail."""
    name, message = problems[0]
    summary = f"Invalid request: {name}: {message}"
    if len(problems) > 1:
        summary += f" ({len(problems)} problems in all, listed in error.detail.errors)"
    return ApiError(422, summary, field_errors(problems))


def invalid(name: str, message: str) -> ApiError:
    """A 422 about one field."""
    return unprocessable([(name, message)])


@dataclass(slots=True)
class _Route:
    method: str
    path: str
    handler: Handler
    creates: bool = False
    streams: bool = False


class Emulator:
    """The state behind one emulator app: engine, faults, limiter and request counters."""

    def __init__(self, config: EmulatorConfig, knowledge: Knowledge) -> None:
        self.config = config
        self.webhooks = WebhookSender(config.effective_webhook_secret, config.time_scale)
        self.engine = Engine(
            knowledge, time_scale=config.time_scale, seed=config.seed, webhooks=self.webhooks
        )
        self.injector = FaultInjector(config.fault_spec, config.seed)
        self.limiter = RateLimiter(config.rate_limit)
        self.limits = StreamLimits(config.stream_max_seconds, config.keepalive_seconds)
        self.requests: dict[str, Counter[str]] = {}
        self.open_streams = 0

    def stats(self) -> dict[str, Any]:
        return {
            "runs_created": self.engine.runs_created,
            "runs_by_status": {s: n for s, n in self.engine.status_counts.items() if n},
            "groups_created": self.engine.groups_created,
            "requests": {route: dict(codes) for route, codes in self.requests.items() if codes},
            "faults_injected": dict(self.injector.counts),
            "open_streams": self.open_streams,
        }

    # -- plumbing --------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        table = [
            _Route("POST", "/tasks/runs", self.create_run, creates=True),
            _Route("GET", "/tasks/runs/{run_id}", self.retrieve_run),
            _Route("GET", "/tasks/runs/{run_id}/input", self.retrieve_input),
            _Route("GET", "/tasks/runs/{run_id}/result", self.result),
            _Route("GET", "/tasks/runs/{run_id}/events", self.run_events, streams=True),
            _Route("POST", "/tasks/groups", self.create_group),
            _Route("GET", "/tasks/groups/{group_id}", self.retrieve_group),
            _Route("POST", "/tasks/groups/{group_id}/runs", self.add_runs, creates=True),
            _Route("GET", "/tasks/groups/{group_id}/runs", self.group_runs, streams=True),
            _Route("GET", "/tasks/groups/{group_id}/events", self.group_events, streams=True),
            _Route("GET", "/tasks/groups/{group_id}/runs/{run_id}", self.group_run),
        ]
        routes = [
            Route(
                "/_emulator/stats",
                self._endpoint(_Route("GET", "/_emulator/stats", self.stats_endpoint), False),
                methods=["GET"],
            )
        ]
        for prefix in PREFIXES:
            for spec in table:
                spec = _Route(
                    spec.method, prefix + spec.path, spec.handler, spec.creates, spec.streams
                )
                routes.append(Route(spec.path, self._endpoint(spec, True), methods=[spec.method]))
        return routes

    def _endpoint(self, spec: _Route, faulty: bool) -> Handler:
        counter = self.requests.setdefault(f"{spec.method} {spec.path}", Counter())

        async def endpoint(request: Request) -> Response:
            try:
                api_key = self._authenticate(request)
                if faulty:
                    request.state.fault = await self._inject(spec.method, spec.streams)
                if spec.creates:
                    self._rate_limit(api_key)
                response = await spec.handler(request)
            except ApiError as exc:
                response = exc.response()
            counter[str(response.status_code)] += 1
            return response

        return endpoint

    def _authenticate(self, request: Request) -> str:
        supplied = request.headers.get("x-api-key", "")
        if not supplied:
            raise ApiError(401, "Missing API key: send your key in the x-api-key header")
        expected = self.config.api_key
        if expected is not None and not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise ApiError(
                401, "Invalid API key: x-api-key does not match the key this emulator was given"
            )
        return supplied

    async def _inject(self, method: str, streaming: bool) -> FaultDecision:
        decision = self.injector.decide(method=method, streaming=streaming)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.status == 429:
            retry_after = str(self.injector.spec.retry_after)
            raise ApiError(
                429,
                f"Rate limit exceeded (injected fault); retry after {retry_after} s",
                headers={"retry-after": retry_after},
            )
        if decision.status is not None:
            raise ApiError(
                decision.status,
                f"Injected fault: the emulator answered {decision.status} on purpose; retry",
            )
        return decision

    def _rate_limit(self, api_key: str) -> None:
        wait = self.limiter.hit(api_key)
        if wait is not None:
            retry_after = str(max(1, math.ceil(wait)))
            raise ApiError(
                429,
                f"Rate limit exceeded: at most {self.limiter.per_minute} task-creating requests "
                f"per minute per API key; retry after {retry_after} s",
                headers={"retry-after": retry_after},
            )

    def _stream(self, request: Request, events: AsyncGenerator[dict[str, Any], None]) -> Response:
        fault: FaultDecision = request.state.fault
        return StreamingResponse(
            self._frames(events, fault.drop_after),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )

    async def _frames(
        self, events: AsyncGenerator[dict[str, Any], None], drop_after: int | None
    ) -> AsyncIterator[bytes]:
        self.open_streams += 1
        try:
            sent = 0
            async for event in events:
                yield wire.sse_frame(event)
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    self.injector.record("drop")
                    raise DroppedStream(f"drop fault after {sent} frames")
        finally:
            self.open_streams -= 1
            await events.aclose()

    # -- lookups and input checks ----------------------------------------------------------

    def _run(self, request: Request, message: str = "Run id not found") -> Run:
        run = self.engine.runs.get(request.path_params["run_id"])
        if run is None:
            raise ApiError(404, message)
        return run

    def _group(self, request: Request) -> Group:
        group = self.engine.groups.get(request.path_params["group_id"])
        if group is None:
            raise ApiError(404, "TaskGroup not found")
        return group

    def _check_input(
        self, body: Any, betas: frozenset[str], path: str = ""
    ) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
        """Problems and warnings for one TaskRunInput; raises for 403 and unknown interactions."""
        if not isinstance(body, Mapping):
            return [(path.rstrip(".") or "body", "a task run input must be a JSON object")], []
        processor = body.get("processor")
        if isinstance(processor, str) and processor and processor not in PROCESSORS:
            hint = f"unknown processor {processor!r}; use one of {_PROCESSOR_LIST}"
            raise ApiError(
                403,
                "Forbidden: invalid processor in request",
                field_errors([(f"{path}processor", hint)]),
            )
        previous = body.get("previous_interaction_id")
        if isinstance(previous, str) and previous not in self.engine.runs:
            hint = "no run has this id; pass the interaction_id of an earlier run"
            raise ApiError(
                422,
                f"Invalid interaction id: {previous}",
                field_errors([(f"{path}previous_interaction_id", hint)]),
            )
        report = validate_run_input(body)
        problems = [(path + p.field, p.message) for p in report.errors]
        problems += [(path + name, message) for name, message in _beta_field_problems(body)]
        warnings = [p.as_warning() for p in report.warnings]
        warnings += _beta_warnings(body, betas, path)
        return problems, warnings

    # -- runs ------------------------------------------------------------------------------

    async def create_run(self, request: Request) -> Response:
        body = await _json_object(request)
        problems, warnings = self._check_input(body, _betas(request))
        if problems:
            raise unprocessable(problems)
        run = self.engine.create_run(body, warnings)
        return JSONResponse(run.wire(), 202)

    async def retrieve_run(self, request: Request) -> Response:
        return JSONResponse(self._run(request).wire())

    async def retrieve_input(self, request: Request) -> Response:
        return JSONResponse(self._run(request).request)

    async def result(self, request: Request) -> Response:
        timeout = _int_param(request, "timeout", default=600)
        run = self._run(request, "Run failed or run id not found")
        if not await self.engine.wait_until_done(run, timeout):
            raise ApiError(408, "Request timed out; run still active")
        if run.status != "completed":
            raise ApiError(404, "Run failed or run id not found")
        return JSONResponse({"run": run.wire(), "output": self.engine.output(run)})

    async def run_events(self, request: Request) -> Response:
        run = self._run(request)
        return self._stream(request, self.engine.run_events(run, self.limits))

    # -- groups ----------------------------------------------------------------------------

    async def create_group(self, request: Request) -> Response:
        body = await _json_object(request, allow_empty=True)
        metadata = body.get("metadata")
        # Group metadata follows the run metadata rules; reuse those checks on a metadata-only
        # body and keep only what they say about metadata.
        problems = [
            (p.field, p.message)
            for p in validate_run_input({"metadata": metadata}).errors
            if p.field.startswith("metadata")
        ]
        if problems:
            raise unprocessable(problems)
        return JSONResponse(self.engine.create_group(metadata).wire())

    async def retrieve_group(self, request: Request) -> Response:
        return JSONResponse(self._group(request).wire())

    async def add_runs(self, request: Request) -> Response:
        group = self._group(request)
        body = await _json_object(request)
        # refresh_status trades status freshness for speed on the service; here the status is
        # always fresh, so the value is only checked.
        _bool_param(request, "refresh_status", default=True)
        inputs = body.get("inputs")
        limit = LIMITS.group_inputs_per_request
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= limit:
            count = f"{len(inputs):,} were sent" if isinstance(inputs, list) else "none were sent"
            raise invalid(
                "inputs",
                f"inputs must be a list of 1 to {limit:,} task run inputs; {count}; "
                "split larger batches across several requests",
            )
        default_spec = body.get("default_task_spec")
        spec_report = validate_task_spec(default_spec, path="default_task_spec")
        if spec_report.errors:
            raise unprocessable([(p.field, p.message) for p in spec_report.errors])
        betas = _betas(request)
        checked = []
        problems: list[tuple[str, str]] = []
        for index, item in enumerate(inputs):
            if isinstance(item, Mapping) and item.get("task_spec") is None and default_spec:
                item = {**item, "task_spec": default_spec}
            found, warnings = self._check_input(item, betas, f"inputs.{index}.")
            problems += found
            checked.append((item, warnings))
        if problems:
            raise unprocessable(problems)
        return JSONResponse(self.engine.add_runs(group, checked))

    async def group_runs(self, request: Request) -> Response:
        group = self._group(request)
        after = _cursor_param(request, len(group.run_ids))
        status = request.query_params.get("status") or None
        if status is not None and status not in RUN_STATUSES:
            raise invalid(
                "status", f"unknown status {status!r}; use one of {', '.join(RUN_STATUSES)}"
            )
        events = self.engine.group_runs(
            group,
            after,
            status,
            _bool_param(request, "include_input", default=False),
            _bool_param(request, "include_output", default=False),
        )
        return self._stream(request, _iterate(events))

    async def group_events(self, request: Request) -> Response:
        group = self._group(request)
        after = _cursor_param(request, len(group.log))
        timeout = _float_param(request, "timeout")
        return self._stream(request, self.engine.group_events(group, after, timeout, self.limits))

    async def group_run(self, request: Request) -> Response:
        group = self._group(request)
        run = self._run(request)
        if run.group_id != group.group_id:
            raise ApiError(404, "Run id not found in this task group")
        return JSONResponse(run.wire())

    async def stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())


# -- request parsing -----------------------------------------------------------------------


async def _json_object(request: Request, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            return {}
        raise invalid("body", "the request body is empty; send a JSON object")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid(
            "body",
            f"the request body is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}); send a JSON object",
        ) from None
    except UnicodeDecodeError:
        raise invalid("body", "the request body is not UTF-8 text") from None
    if not isinstance(value, dict):
        raise invalid("body", f"the request body must be a JSON object, not {type(value).__name__}")
    return value


def _betas(request: Request) -> frozenset[str]:
    """The ``parallel-beta`` values: a comma list, whitespace trimmed, unknown ones kept."""
    header = request.headers.get("parallel-beta", "")
    return frozenset(value.strip() for value in header.split(",") if value.strip())


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise invalid(name, f"{name} must be a whole number of seconds >= 0, not {raw!r}")
    return value


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise invalid(name, f"{name} must be a number of seconds >= 0, not {raw!r}")
    return value


def _bool_param(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid(name, f"{name} must be true or false, not {raw!r}")


def _cursor_param(request: Request, size: int) -> int:
    """``last_event_id`` as a position: events after it are sent; absent means from the start."""
    raw = request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or int(raw) > size:
        raise invalid(
            "last_event_id",
            f"{raw!r} is not an event id of this stream; pass an event_id "
            "received from it, or omit last_event_id to start from the beginning",
        )
    return int(raw)


def _beta_field_problems(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Shape checks for the beta fields the engine acts on (the shared checks skip them)."""
    problems = []
    enable_events = body.get("enable_events")
    if enable_events is not None and not isinstance(enable_events, bool):
        problems.append(("enable_events", "enable_events must be true, false or null"))
    webhook = body.get("webhook")
    if webhook is not None:
        url = webhook.get("url") if isinstance(webhook, Mapping) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(("webhook.url", "webhook needs a url starting with http(s)://"))
        types = webhook.get("event_types") if isinstance(webhook, Mapping) else None
        if types is not None and (
            not isinstance(types, list) or any(t != "task_run.status" for t in types)
        ):
            problems.append(("webhook.event_types", 'event_types may only list "task_run.status"'))
    return problems


def _beta_warnings(body: Mapping[str, Any], betas: frozenset[str], path: str) -> list[dict]:
    """Warn when a beta field comes without its ``parallel-beta`` value: the service documents
    the header as required, so such a field may be ignored there."""
    return [
        {
            "type": "warning",
            "message": f"{name} is a beta feature: send the header parallel-beta: {beta}",
            "detail": {"field": path + name},
        }
        for name, beta in BETA_FIELDS.items()
        if body.get(name) is not None and beta not in betas
    ]


async def _iterate(events: list[dict[str, Any]]) -> AsyncGenerator[dict[str, Any], None]:
    for event in events:
        yield event


# -- application ---------------------------------------------------------------------------


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(
        404, f"Not found: {request.url.path} is not a Task API path (try /v1/tasks/runs)"
    ).response()


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(405, f"Method {request.method} is not allowed on {request.url.path}").response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    return ApiError(500, f"Internal emulator error: {type(exc).__name__}: {exc}").response()


def create_app(config: EmulatorConfig, knowledge: Knowledge) -> Starlette:
    """The Starlette app for ``config``; its Emulator state is ``app.state.emulator``."""
    emulator = Emulator(config, knowledge)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedStreams) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_HideDroppedStreams())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        emulator.engine.close()
        await emulator.webhooks.aclose()

    app = Starlette(
        routes=emulator.routes(),
        exception_handlers={
            404: _not_found,
            405: _method_not_allowed,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app
