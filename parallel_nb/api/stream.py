"""Server-sent event streams of the Task API as iterators of typed events (via httpx-sse).

A stream connects when iteration starts, not when it is created, so a runner can hand a stream
to a worker thread and still abort it at any time. Frames with empty ``data`` (keep-alives) are
skipped; each ``data`` is JSON dispatched on its ``type`` by :func:`~.models.parse_event`,
never on the SSE ``event:`` name. Streams end when the server closes them.

Connecting is retried per the target's :class:`~.retry.RetryPolicy` (connection errors, 408,
429, 5xx); a stream that breaks after it opened raises :class:`~.errors.StreamInterrupted`,
for the caller to open it again (run streams replay from the start).
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack, suppress
from dataclasses import dataclass, field

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError, aconnect_sse, connect_sse

from .errors import ParallelError, StreamInterrupted, connection_failed
from .models import Event, UnknownEvent, parse_event
from .retry import Backoff, Outcome, RetryPolicy, is_safe_to_retry_get, retry_after, start_backoff

__all__ = ["AsyncEventStream", "EventStream", "StreamTarget", "decode_event", "route_missing"]

# A 404 whose message names the run or group is about that object; any other 404 means the
# route itself is missing (an older or newer API version), so the next prefix is worth a try.
_ABOUT_THE_OBJECT = re.compile(r"\b(run|task ?group)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where a stream connects: ``urls`` in order, each tried only if the route before it is
    missing (:func:`route_missing`); ``on_error`` turns an error response into an exception;
    ``retry`` says how failed connects are tried again (None: never)."""

    urls: tuple[str, ...]
    base_url: str
    on_error: Callable[[httpx.Response], ParallelError]
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy | None = None

    def retry_delay(self, outcome: Outcome, backoff: Backoff) -> float:
        """Seconds to wait before connecting again after ``outcome``; raises the error to
        report when it is not worth another try (or the retries are used up)."""
        if is_safe_to_retry_get(outcome):
            asked = retry_after(outcome) if isinstance(outcome, httpx.Response) else None
            delay = backoff.next_delay(asked)
            if delay is not None:
                return delay
        if isinstance(outcome, httpx.Response):
            raise self.on_error(outcome)
        raise connection_failed(self.base_url, outcome) from outcome


def decode_event(sse: ServerSentEvent) -> Event | None:
    """The event in one SSE frame, or None for a frame without data."""
    if not sse.data:
        return None
    try:
        data = json.loads(sse.data)
    except ValueError:
        return UnknownEvent(type="", raw={"data": sse.data})
    if not isinstance(data, Mapping):
        return UnknownEvent(type="", raw={"data": data})
    return parse_event(data)


def route_missing(response: httpx.Response) -> bool:
    """True for a 404 about the path rather than the run: no Task API error envelope, or an
    envelope whose message does not mention a run or task group."""
    if response.status_code != 404:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return True
    return not _ABOUT_THE_OBJECT.search(str(error.get("message") or ""))


def _abort(response: httpx.Response) -> None:
    """Close a response, waking a thread that is blocked reading it.

    Closing the socket alone does not interrupt a ``recv()`` running in another thread on
    Linux; shutting it down does.
    """
    network_stream = response.extensions.get("network_stream")
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    response.close()


class EventStream:
    """The events of one stream. Iterate it once; ``close()`` may be called from any thread
    and makes an iteration blocked in another thread end promptly (without an error).

    Use it as a context manager (or call ``close()``) when you stop before the end.
    """

    def __init__(self, http: httpx.Client, target: StreamTarget) -> None:
        self._http = http
        self._target = target
        self._lock = threading.Lock()
        self._closed = False
        self._response: httpx.Response | None = None
        self._iterator: Iterator[Event] | None = None

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._iterator is None:
            self._iterator = self._events()
        return next(self._iterator)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            response = self._response
        if response is not None:
            _abort(response)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventStream {self._target.urls[0]} {state}>"

    def _events(self) -> Iterator[Event]:
        with ExitStack() as stack:
            source = self._connect(stack)
            if source is None:
                return
            try:
                for sse in source.iter_sse():
                    event = decode_event(sse)
                    if event is not None:
                        yield event
            except SSEError as exc:
                raise ParallelError(
                    f"{self._target.urls[0]} is not an event stream: {exc}"
                ) from None
            except (httpx.TransportError, httpx.StreamError) as exc:
                if self._closed:
                    return  # close() cut the connection: the expected end, not a failure
                if isinstance(exc, httpx.StreamError):
                    raise
                raise connection_failed(
                    self._target.base_url,
                    exc,
                    "keep reading the event stream from",
                    StreamInterrupted,
                ) from exc

    def _connect(self, stack: ExitStack) -> EventSource | None:
        """Open the stream, trying again per the retry policy; None if it was closed meanwhile.

        A close() during a wait between tries takes effect when the wait ends (no connection
        is open meanwhile).
        """
        backoff = start_backoff(self._target.retry)
        while True:
            opened = self._open(stack)
            if opened is None or isinstance(opened, EventSource):
                return opened
            backoff.policy.sleep(self._target.retry_delay(opened, backoff))

    def _open(self, stack: ExitStack) -> EventSource | Outcome | None:
        """One try: the first URL whose route exists opened, or what went wrong; None if the
        stream was closed meanwhile."""
        target = self._target
        for index, url in enumerate(target.urls):
            if self._closed:
                return None
            attempt = ExitStack()
            try:
                source = attempt.enter_context(
                    connect_sse(
                        self._http,
                        "GET",
                        url,
                        params=dict(target.params),
                        # Never back to the pool: httpx hands a connection back the moment its
                        # body ends, and a close() then would cut another request's connection
                        # (_abort shuts the socket down).
                        headers={**target.headers, "connection": "close"},
                    )
                )
            except httpx.TransportError as exc:
                return exc
            response = source.response
            if response.is_success:
                with self._lock:
                    self._response = response
                    closed = self._closed
                stack.push(attempt)
                return None if closed else source
            with attempt:
                response.read()
            if not (index + 1 < len(target.urls) and route_missing(response)):
                return response
        return None


class AsyncEventStream:
    """The async twin of :class:`EventStream`: ``async for`` it; ``await aclose()`` to stop.

    To stop an iteration running in another task, cancel that task.
    """

    def __init__(self, http: httpx.AsyncClient, target: StreamTarget) -> None:
        self._http = http
        self._target = target
        self._closed = False
        self._iterator: AsyncGenerator[Event, None] | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._iterator is None:
            self._iterator = self._events()
        return await self._iterator.__anext__()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        if self._iterator is not None:
            await self._iterator.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncEventStream {self._target.urls[0]} {state}>"

    async def _events(self) -> AsyncGenerator[Event, None]:
        async with AsyncExitStack() as stack:
            source = await self._connect(stack)
            if source is None:
                return
            try:
                async for sse in source.aiter_sse():
                    event = decode_event(sse)
                    if event is not None:
                        yield event
            except SSEError as exc:
                raise ParallelError(
                    f"{self._target.urls[0]} is not an event stream: {exc}"
                ) from None
            except (httpx.TransportError, httpx.StreamError) as exc:
                if self._closed:
                    return  # close() cut the connection: the expected end, not a failure
                if isinstance(exc, httpx.StreamError):
                    raise
                raise connection_failed(
                    self._target.base_url,
                    exc,
                    "keep reading the event stream from",
                    StreamInterrupted,
                ) from exc

    async def _connect(self, stack: AsyncExitStack) -> EventSource | None:
        """See :meth:`EventStream._connect`."""
        backoff = start_backoff(self._target.retry)
        while True:
            opened = await self._open(stack)
            if opened is None or isinstance(opened, EventSource):
                return opened
            await backoff.policy.async_sleep(self._target.retry_delay(opened, backoff))

    async def _open(self, stack: AsyncExitStack) -> EventSource | Outcome | None:
        target = self._target
        for index, url in enumerate(target.urls):
            if self._closed:
                return None
            attempt = AsyncExitStack()
            try:
                source = await attempt.enter_async_context(
                    aconnect_sse(
                        self._http,
                        "GET",
                        url,
                        params=dict(target.params),
                        headers=dict(target.headers),
                    )
                )
            except httpx.TransportError as exc:
                return exc
            response = source.response
            if response.is_success:
                stack.push_async_exit(attempt)
                return source
            async with attempt:
                await response.aread()
            if not (index + 1 < len(target.urls) and route_missing(response)):
                return response
        return None
