"""Client and AsyncClient: the Task API's runs and task groups over httpx.

Both share one description of every call (:class:`_Api`: URLs, headers, bodies, how answers
and errors are read, when to try again), so the sync and async classes only differ in how they
do I/O. Errors become the exceptions of :mod:`.errors`; the API key is sent in ``x-api-key``
and never shown.

Failed requests are retried per a :class:`~.retry.RetryPolicy`: reads and stream connects on
any transient failure, creates only where the service cannot have created anything (see
:mod:`.retry`); an ambiguous create raises :class:`~.errors.AmbiguousCreateError` instead.
``/result``'s 408 "still running" is not a failure: it is asked again until the deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from .. import __version__
from .errors import (
    APIError,
    NotFoundError,
    ParallelError,
    RequestTimeoutError,
    RunFailed,
    ambiguous_create,
    api_error,
    connection_failed,
)
from .models import (
    BETA_FIELD_BASIS,
    GroupRunsResponse,
    TaskGroup,
    TaskRequest,
    TaskRun,
    TaskRunResult,
)
from .retry import (
    Backoff,
    Outcome,
    RetryPolicy,
    is_ambiguous_create,
    is_safe_to_retry_create,
    is_safe_to_retry_get,
    retry_after,
    start_backoff,
)
from .stream import AsyncEventStream, EventStream, StreamTarget

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_RETRY", "AsyncClient", "Client", "RetryPolicy"]

DEFAULT_BASE_URL = "https://api.parallel.ai"
USER_AGENT = f"parallel-nb/{__version__}"
# The longest wait the service documents for one /result call (its default).
MAX_RESULT_WAIT = 600
# Extra read time on top of the server-side wait, so the server answers 408 before httpx gives up.
_RESULT_READ_MARGIN = 30.0
_CONNECT_TIMEOUT = 10.0
_FAILED_STATUSES = frozenset({"failed", "cancelled"})

M = TypeVar("M")


def _seg(value: str) -> str:
    """An id as one URL path segment."""
    if not value:
        raise ValueError("an empty id was given; pass the run or task group id")
    return quote(value, safe="")


def _merge_betas(requests: Iterable[TaskRequest]) -> list[str]:
    betas: dict[str, None] = {}
    for request in requests:
        betas.update(dict.fromkeys(request.beta_features()))
    return list(betas)


@dataclass(frozen=True, slots=True)
class _Creates:
    """A request that creates something billable: what it creates, and how a user can find out
    whether it exists when the answer was lost."""

    subject: str
    check: str


DEFAULT_RETRY = RetryPolicy()
"""The policy clients use unless given another: up to 6 tries within a minute of failing."""

_CREATES_RUN = _Creates(
    "the run",
    "Look for it among your recent runs before sending the request again (%parallel history "
    "in a notebook, or your runs on the Parallel platform); sending it again creates a new "
    "run, charged separately.",
)
_CREATES_GROUP = _Creates(
    "the task group",
    "Create another group if you need one: a group is only a container, its runs are what is "
    "charged.",
)


def _creates_runs_in(taskgroup_id: str, count: int) -> _Creates:
    runs = "run" if count == 1 else f"{count} runs"
    return _Creates(
        f"the {runs} added to task group {taskgroup_id}",
        f"Count the group's runs with retrieve_group({taskgroup_id!r}) before adding them again.",
    )


class _Api:
    """Everything about a call that does not depend on sync or async I/O."""

    def __init__(
        self, api_key: str | None, base_url: str | None, retry: RetryPolicy | None
    ) -> None:
        key = api_key or os.environ.get("PARALLEL_API_KEY")
        if not key:
            raise ParallelError(
                "no API key: pass api_key=... or set PARALLEL_API_KEY "
                "(parallel_nb.config.get_client() falls back to the embedded emulator)"
            )
        self.key = key
        url = base_url or os.environ.get("PARALLEL_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(
                f"retry must be a RetryPolicy, or None to turn retries off; not {retry!r}"
            )
        self.retry = retry

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self, betas: Sequence[str] = ()) -> dict[str, str]:
        headers = {"x-api-key": self.key, "user-agent": USER_AGENT}
        if betas:
            headers["parallel-beta"] = ",".join(betas)
        return headers

    def error(
        self, response: httpx.Response, run_id: str | None = None, processor: str | None = None
    ) -> APIError:
        return api_error(
            response.status_code,
            response.content,
            run_id,
            processor=processor,
            retry_after=retry_after(response),
            secret=self.key,
        )

    def backoff(self) -> Backoff:
        return start_backoff(self.retry)

    def retry_delay(
        self,
        outcome: Outcome,
        backoff: Backoff,
        *,
        creates: _Creates | None,
        long_poll: bool,
        run_id: str | None,
        processor: str | None,
    ) -> float:
        """Seconds to wait before sending a failed request again; raises the error to report
        when it is not to be sent again (not transient, out of retries, or an ambiguous
        create, which is never repeated). A ``long_poll``'s 408 is its "not yet" answer, which
        the caller handles: it is raised at once."""
        safe = is_safe_to_retry_create if creates is not None else is_safe_to_retry_get
        not_yet = long_poll and isinstance(outcome, httpx.Response) and outcome.status_code == 408
        if safe(outcome) and not not_yet:
            asked = retry_after(outcome) if isinstance(outcome, httpx.Response) else None
            delay = backoff.next_delay(asked)
            if delay is not None:
                return delay
        if isinstance(outcome, httpx.Response):
            failure: ParallelError = self.error(outcome, run_id, processor)
            cause: BaseException | None = None
        else:
            failure = connection_failed(self.base_url, outcome)
            cause = outcome
        if creates is not None and is_ambiguous_create(outcome):
            what = cause or failure
            ambiguous = ambiguous_create(creates.subject, creates.check, self.base_url, what)
            raise ambiguous from what
        raise failure from cause

    def parse(self, response: httpx.Response, build: Callable[[Mapping[str, Any]], M]) -> M:
        """The answer's JSON built into a model; a malformed answer is a clear ParallelError."""
        try:
            return build(response.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ParallelError(
                f"unexpected answer from {response.request.method} {response.request.url} "
                f"(HTTP {response.status_code}): {type(exc).__name__}: {exc}; is "
                f"{self.base_url} the Task API?"
            ) from None

    def stream_target(
        self,
        paths: Sequence[str],
        params: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> StreamTarget:
        return StreamTarget(
            urls=tuple(self.url(p) for p in paths),
            base_url=self.base_url,
            on_error=lambda response: self.error(response, run_id),
            headers=self.headers(),
            params=dict(params or {}),
            retry=self.retry,
        )

    def run_events_target(self, run_id: str) -> StreamTarget:
        # GA route first; /v1beta serves deployments that only have the beta route.
        paths = [f"/{version}/tasks/runs/{_seg(run_id)}/events" for version in ("v1", "v1beta")]
        return self.stream_target(paths, run_id=run_id)

    @staticmethod
    def group_runs_params(
        status: str | Sequence[str] | None,
        include_input: bool,
        include_output: bool,
        last_event_id: str | None,
    ) -> dict[str, str]:
        params = {
            "include_input": "true" if include_input else "false",
            "include_output": "true" if include_output else "false",
        }
        if status is not None:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if last_event_id is not None:
            params["last_event_id"] = last_event_id
        return params

    @staticmethod
    def add_runs_body(
        inputs: Sequence[TaskRequest | Mapping[str, Any]], default_task_spec: dict[str, Any] | None
    ) -> dict[str, Any]:
        runs = [r.to_body() if isinstance(r, TaskRequest) else dict(r) for r in inputs]
        body: dict[str, Any] = {"inputs": runs}
        if default_task_spec is not None:
            body["default_task_spec"] = default_task_spec
        return body

    @staticmethod
    def add_runs_betas(inputs: Sequence[TaskRequest | Mapping[str, Any]]) -> list[str]:
        requests = [r for r in inputs if isinstance(r, TaskRequest)]
        return _merge_betas(requests) if requests else [BETA_FIELD_BASIS]

    def result_timeout(self, run_id: str, waited: float) -> RequestTimeoutError:
        return RequestTimeoutError(
            408,
            f"no result after {waited:.0f} s; run {run_id} is still active on the server",
            run_id=run_id,
            hint=f"fetch it later with client.result({run_id!r}) (the run keeps going)",
        )


class _Deadline:
    """The server-side wait for each /result call within an optional overall timeout."""

    def __init__(self, timeout: float | None) -> None:
        self.started = time.monotonic()
        self.timeout = timeout

    def next_wait(self) -> int | None:
        """Whole seconds the next call may wait on the server; None once time is up.

        The service takes whole seconds, so a call never waits past the deadline except the
        last one, which waits one second when less than that remains.
        """
        if self.timeout is None:
            return MAX_RESULT_WAIT
        remaining = self.timeout - (time.monotonic() - self.started)
        if remaining <= 0:
            return None
        return max(1, min(MAX_RESULT_WAIT, int(remaining)))

    @property
    def waited(self) -> float:
        return time.monotonic() - self.started


def _result_http_timeout(wait: int) -> httpx.Timeout:
    read = wait + _RESULT_READ_MARGIN
    return httpx.Timeout(read, connect=_CONNECT_TIMEOUT)


def _failure(run: TaskRun) -> RunFailed | None:
    if run.status not in _FAILED_STATUSES:
        return None
    return RunFailed(run.run_id, run.error.message if run.error else "", run.status)


class Client:
    """A synchronous Task API client.

    ``api_key`` and ``base_url`` default to ``PARALLEL_API_KEY`` and ``PARALLEL_BASE_URL``
    (else ``https://api.parallel.ai``). Pass ``http_client`` to reuse your own
    ``httpx.Client``; it is then yours to close. ``retry`` says how failed requests are tried
    again (``None``: never); whatever it says, a create that may have succeeded is never sent
    twice.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        http_client: httpx.Client | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        self._api = _Api(api_key, base_url, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT))
        )

    @property
    def base_url(self) -> str:
        return self._api.base_url

    @property
    def retry(self) -> RetryPolicy | None:
        """How failed requests are tried again; None when they are not."""
        return self._api.retry

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        run_id: str | None = None,
        processor: str | None = None,
        betas: Sequence[str] = (),
        creates: _Creates | None = None,
        long_poll: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """The successful answer to a request, retried per the policy. ``creates`` marks a
        request that creates something billable (retried only when nothing can exist);
        ``long_poll`` one whose 408 means "not yet" (see :meth:`_Api.retry_delay`)."""
        backoff = self._api.backoff()
        while True:
            outcome: Outcome
            try:
                response = self._http.request(
                    method, self._api.url(path), headers=self._api.headers(betas), **kwargs
                )
            except httpx.TransportError as exc:
                outcome = exc
            else:
                if not response.is_error:
                    return response
                outcome = response
            delay = self._api.retry_delay(
                outcome,
                backoff,
                creates=creates,
                long_poll=long_poll,
                run_id=run_id,
                processor=processor,
            )
            backoff.policy.sleep(delay)

    # -- runs ------------------------------------------------------------------------------

    def create_run(self, request: TaskRequest) -> TaskRun:
        response = self._send(
            "POST",
            "/v1/tasks/runs",
            json=request.to_body(),
            betas=request.beta_features(),
            processor=request.processor,
            creates=_CREATES_RUN,
        )
        return self._api.parse(response, TaskRun.from_dict)

    def retrieve_run(self, run_id: str) -> TaskRun:
        response = self._send("GET", f"/v1/tasks/runs/{_seg(run_id)}", run_id=run_id)
        return self._api.parse(response, TaskRun.from_dict)

    def retrieve_input(self, run_id: str) -> dict[str, Any]:
        response = self._send("GET", f"/v1/tasks/runs/{_seg(run_id)}/input", run_id=run_id)
        return self._api.parse(response, dict)

    def result(self, run_id: str, *, timeout: float | None = None) -> TaskRunResult:
        """Wait for a run's result: ``timeout`` seconds in all (None = as long as it takes).

        Raises :class:`RunFailed` for a failed or cancelled run, and
        :class:`RequestTimeoutError` when the run is still active after ``timeout``.
        """
        deadline = _Deadline(timeout)
        while (wait := deadline.next_wait()) is not None:
            try:
                response = self._send(
                    "GET",
                    f"/v1/tasks/runs/{_seg(run_id)}/result",
                    run_id=run_id,
                    params={"timeout": wait},
                    betas=[BETA_FIELD_BASIS],
                    timeout=_result_http_timeout(wait),
                    long_poll=True,
                )
            except RequestTimeoutError:
                continue
            except NotFoundError as not_found:
                # /result says 404 both for a failed run and an unknown id; the run tells which.
                failure = _failure(self.retrieve_run(run_id))
                raise (failure or not_found) from None
            return self._api.parse(response, TaskRunResult.from_dict)
        raise self._api.result_timeout(run_id, deadline.waited)

    def events(self, run_id: str) -> EventStream:
        """The run's event stream (connects when iteration starts; replays from the start)."""
        return EventStream(self._http, self._api.run_events_target(run_id))

    # -- task groups -----------------------------------------------------------------------

    def create_group(self, metadata: dict[str, Any] | None = None) -> TaskGroup:
        response = self._send(
            "POST", "/v1/tasks/groups", json={"metadata": metadata}, creates=_CREATES_GROUP
        )
        return self._api.parse(response, TaskGroup.from_dict)

    def retrieve_group(self, taskgroup_id: str) -> TaskGroup:
        response = self._send("GET", f"/v1/tasks/groups/{_seg(taskgroup_id)}")
        return self._api.parse(response, TaskGroup.from_dict)

    def add_runs(
        self,
        taskgroup_id: str,
        inputs: Sequence[TaskRequest | Mapping[str, Any]],
        default_task_spec: dict[str, Any] | None = None,
    ) -> GroupRunsResponse:
        response = self._send(
            "POST",
            f"/v1/tasks/groups/{_seg(taskgroup_id)}/runs",
            json=self._api.add_runs_body(inputs, default_task_spec),
            betas=self._api.add_runs_betas(inputs),
            creates=_creates_runs_in(taskgroup_id, len(inputs)),
        )
        return self._api.parse(response, GroupRunsResponse.from_dict)

    def group_events(self, taskgroup_id: str, last_event_id: str | None = None) -> EventStream:
        params = {"last_event_id": last_event_id} if last_event_id is not None else None
        target = self._api.stream_target([f"/v1/tasks/groups/{_seg(taskgroup_id)}/events"], params)
        return EventStream(self._http, target)

    def group_runs(
        self,
        taskgroup_id: str,
        *,
        status: str | Sequence[str] | None = None,
        include_input: bool = False,
        include_output: bool = False,
        last_event_id: str | None = None,
    ) -> EventStream:
        params = self._api.group_runs_params(status, include_input, include_output, last_event_id)
        target = self._api.stream_target([f"/v1/tasks/groups/{_seg(taskgroup_id)}/runs"], params)
        return EventStream(self._http, target)

    def retrieve_group_run(self, taskgroup_id: str, run_id: str) -> TaskRun:
        path = f"/v1/tasks/groups/{_seg(taskgroup_id)}/runs/{_seg(run_id)}"
        response = self._send("GET", path, run_id=run_id)
        return self._api.parse(response, TaskRun.from_dict)


class AsyncClient:
    """The asynchronous twin of :class:`Client`: the same methods, as coroutines; the event
    methods return :class:`AsyncEventStream` (``async for``)."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        self._api = _Api(api_key, base_url, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT))
        )

    @property
    def base_url(self) -> str:
        return self._api.base_url

    @property
    def retry(self) -> RetryPolicy | None:
        """How failed requests are tried again; None when they are not."""
        return self._api.retry

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        run_id: str | None = None,
        processor: str | None = None,
        betas: Sequence[str] = (),
        creates: _Creates | None = None,
        long_poll: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """See :meth:`Client._send`."""
        backoff = self._api.backoff()
        while True:
            outcome: Outcome
            try:
                response = await self._http.request(
                    method, self._api.url(path), headers=self._api.headers(betas), **kwargs
                )
            except httpx.TransportError as exc:
                outcome = exc
            else:
                if not response.is_error:
                    return response
                outcome = response
            delay = self._api.retry_delay(
                outcome,
                backoff,
                creates=creates,
                long_poll=long_poll,
                run_id=run_id,
                processor=processor,
            )
            await backoff.policy.async_sleep(delay)

    # -- runs ------------------------------------------------------------------------------

    async def create_run(self, request: TaskRequest) -> TaskRun:
        response = await self._send(
            "POST",
            "/v1/tasks/runs",
            json=request.to_body(),
            betas=request.beta_features(),
            processor=request.processor,
            creates=_CREATES_RUN,
        )
        return self._api.parse(response, TaskRun.from_dict)

    async def retrieve_run(self, run_id: str) -> TaskRun:
        response = await self._send("GET", f"/v1/tasks/runs/{_seg(run_id)}", run_id=run_id)
        return self._api.parse(response, TaskRun.from_dict)

    async def retrieve_input(self, run_id: str) -> dict[str, Any]:
        response = await self._send("GET", f"/v1/tasks/runs/{_seg(run_id)}/input", run_id=run_id)
        return self._api.parse(response, dict)

    async def result(self, run_id: str, *, timeout: float | None = None) -> TaskRunResult:
        """See :meth:`Client.result`."""
        deadline = _Deadline(timeout)
        while (wait := deadline.next_wait()) is not None:
            try:
                response = await self._send(
                    "GET",
                    f"/v1/tasks/runs/{_seg(run_id)}/result",
                    run_id=run_id,
                    params={"timeout": wait},
                    betas=[BETA_FIELD_BASIS],
                    timeout=_result_http_timeout(wait),
                    long_poll=True,
                )
            except RequestTimeoutError:
                continue
            except NotFoundError as not_found:
                failure = _failure(await self.retrieve_run(run_id))
                raise (failure or not_found) from None
            return self._api.parse(response, TaskRunResult.from_dict)
        raise self._api.result_timeout(run_id, deadline.waited)

    def events(self, run_id: str) -> AsyncEventStream:
        return AsyncEventStream(self._http, self._api.run_events_target(run_id))

    # -- task groups -----------------------------------------------------------------------

    async def create_group(self, metadata: dict[str, Any] | None = None) -> TaskGroup:
        response = await self._send(
            "POST", "/v1/tasks/groups", json={"metadata": metadata}, creates=_CREATES_GROUP
        )
        return self._api.parse(response, TaskGroup.from_dict)

    async def retrieve_group(self, taskgroup_id: str) -> TaskGroup:
        response = await self._send("GET", f"/v1/tasks/groups/{_seg(taskgroup_id)}")
        return self._api.parse(response, TaskGroup.from_dict)

    async def add_runs(
        self,
        taskgroup_id: str,
        inputs: Sequence[TaskRequest | Mapping[str, Any]],
        default_task_spec: dict[str, Any] | None = None,
    ) -> GroupRunsResponse:
        response = await self._send(
            "POST",
            f"/v1/tasks/groups/{_seg(taskgroup_id)}/runs",
            json=self._api.add_runs_body(inputs, default_task_spec),
            betas=self._api.add_runs_betas(inputs),
            creates=_creates_runs_in(taskgroup_id, len(inputs)),
        )
        return self._api.parse(response, GroupRunsResponse.from_dict)

    def group_events(self, taskgroup_id: str, last_event_id: str | None = None) -> AsyncEventStream:
        params = {"last_event_id": last_event_id} if last_event_id is not None else None
        target = self._api.stream_target([f"/v1/tasks/groups/{_seg(taskgroup_id)}/events"], params)
        return AsyncEventStream(self._http, target)

    def group_runs(
        self,
        taskgroup_id: str,
        *,
        status: str | Sequence[str] | None = None,
        include_input: bool = False,
        include_output: bool = False,
        last_event_id: str | None = None,
    ) -> AsyncEventStream:
        params = self._api.group_runs_params(status, include_input, include_output, last_event_id)
        target = self._api.stream_target([f"/v1/tasks/groups/{_seg(taskgroup_id)}/runs"], params)
        return AsyncEventStream(self._http, target)

    async def retrieve_group_run(self, taskgroup_id: str, run_id: str) -> TaskRun:
        path = f"/v1/tasks/groups/{_seg(taskgroup_id)}/runs/{_seg(run_id)}"
        response = await self._send("GET", path, run_id=run_id)
        return self._api.parse(response, TaskRun.from_dict)
