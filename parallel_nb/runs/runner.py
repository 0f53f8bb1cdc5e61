"""Follow one run from creation to its result, keeping a live view of it up to date.

:func:`execute` and :func:`fetch` block the calling thread. A daemon worker thread only reads
the run's event stream into a queue; the calling thread folds the events into a
:class:`~.state.RunState` and draws the view, at most ``refresh_hz`` times a second however
fast events arrive. Widgets are never touched from the worker, because ipykernel routes widget
and output messages by thread and updates from other threads get lost. :func:`aexecute` does
the same as a coroutine on the caller's event loop (no thread, no nested loop).

The service's word is final: a stream that closes early or breaks is reopened (backing off while
it makes no progress; replays are folded without repeats) until it carries the run's final
state; when events are unavailable, the run is polled until it ends and its answer is asked of
``/result``. Nothing is ever guessed locally. The Task API cannot cancel a
run, so a timeout or Ctrl-C only stops watching; the run goes on and ``%parallel attach
RUN_ID`` follows it again. A :class:`RunRecorder` hears of each run the moment it exists and
again when it ends, which is how the run store never loses one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import queue
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from ..api.errors import ParallelError, RequestTimeoutError, RunFailed, StreamInterrupted
from ..api.models import Event, StateEvent, TaskOutput, TaskRequest, TaskRun
from ..api.retry import NO_RETRIES, RetryPolicy, start_backoff
from ..result import TaskResult
from .state import RunState, created, errored, fold, interrupted

if TYPE_CHECKING:
    from ..api.client import AsyncClient, Client
    from ..api.stream import EventStream
    from ..view.panel import RunView

__all__ = [
    "MAX_REFRESH_HZ",
    "OUTPUT_GRACE",
    "RunRecorder",
    "aexecute",
    "check_refresh_hz",
    "create",
    "execute",
    "fetch",
    "previous_interaction_id",
]

MAX_REFRESH_HZ = 4.0
"""Most redraws per second. Faster only queues comm messages that the front end draws late."""

OUTPUT_GRACE = 2.0
"""Seconds to wait for a completed run's output on the stream before asking ``/result``: a
stream may send the output with a second final state event, a moment after the status."""

# The longest the calling thread blocks in one wait: on Windows a blocked wait does not see
# Ctrl-C until it returns.
_MAX_WAIT = 0.25


class RunRecorder(Protocol):
    """Hears of a run as soon as it exists and when its end is known (the run store's hook)."""

    def started(self, run: TaskRun) -> None:
        """``run`` exists: just created (called before its id is handed back), or retrieved."""

    def finished(self, run: TaskRun, output: TaskOutput | None) -> None:
        """``run`` ended as the service reports it; ``output`` is the answer of a completed run."""


def check_refresh_hz(value: float) -> float:
    """``value`` if it is a usable redraw rate (more than 0, at most :data:`MAX_REFRESH_HZ`)."""
    if not 0 < value <= MAX_REFRESH_HZ:
        raise ValueError(
            f"refresh_hz must be more than 0 and at most {MAX_REFRESH_HZ:g} redraws per second, "
            f"not {value!r}"
        )
    return float(value)


def previous_interaction_id(value: object) -> str:
    """The interaction id to continue from: that of a TaskResult or TaskRun, or a run id."""
    if isinstance(value, TaskResult):
        value = value.run
    if isinstance(value, TaskRun):
        # Older answers carry no interaction id; the service then accepts the run id.
        return value.interaction_id or value.run_id
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the previous run id is empty; pass a TaskResult or a run id")
        return value
    raise TypeError(
        f"expected a TaskResult, a TaskRun or a run id (trun_...), not {type(value).__name__}"
    )


def create(client: Client, request: TaskRequest, *, recorder: RunRecorder | None = None) -> TaskRun:
    """Create a run for ``request``; ``recorder`` hears of it before this returns.

    The request is sent from a helper thread, so Ctrl-C stops only the wait: if the service
    creates the run anyway, it is still recorded when the answer arrives. On Ctrl-C this says
    so and re-raises.
    """
    answer: futures.Future[TaskRun] = futures.Future()

    def send() -> None:
        try:
            answer.set_result(client.create_run(request))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            answer.set_exception(exc)

    threading.Thread(target=send, name="parallel-nb create", daemon=True).start()
    try:
        # Short waits: a blocked wait does not see Ctrl-C on Windows until it returns.
        while not futures.wait([answer], timeout=_MAX_WAIT).done:
            pass
        run = answer.result()
        # Recorded here, not on the helper thread, so that the store is written from the
        # caller's thread (one connection), except when the caller has given up waiting.
        if recorder is not None:
            recorder.started(run)
    except KeyboardInterrupt:
        if recorder is not None:
            answer.add_done_callback(lambda done: _record_answer(done, recorder))
        print(_interrupted_while_creating(recorder is not None), file=sys.stderr)
        raise
    return run


def _record_answer(answer: futures.Future[TaskRun], recorder: RunRecorder) -> None:
    """Record the run of a create nobody waits for any more, if the service created one."""
    if answer.exception() is None:
        recorder.started(answer.result())


def execute(
    client: Client,
    request: TaskRequest,
    *,
    view: RunView | None = None,
    timeout: float | None = None,
    refresh_hz: float = MAX_REFRESH_HZ,
    recorder: RunRecorder | None = None,
) -> TaskResult:
    """Create a run for ``request`` and follow it to its result, drawing ``view`` meanwhile.

    Raises :class:`RunFailed` if the run fails or is cancelled, and
    :class:`RequestTimeoutError` when ``timeout`` seconds (counted from this call) pass first.
    On Ctrl-C it says how to follow the run again and re-raises. In every case the view is left
    showing how the run ended, then closed. ``recorder`` hears of the run as :func:`create`
    says, and of its end.
    """
    started = time.monotonic()
    watch = _Watch(
        RunState(processor=request.processor), view, request, refresh_hz, timeout, recorder
    )
    with watch:
        watch.draw(started)
        run = create(client, request, recorder=recorder)
        watch.begin(run, time.monotonic())
        return _follow(client, watch, run.run_id)


async def aexecute(
    client: AsyncClient,
    request: TaskRequest,
    *,
    view: RunView | None = None,
    timeout: float | None = None,
    refresh_hz: float = MAX_REFRESH_HZ,
    recorder: RunRecorder | None = None,
) -> TaskResult:
    """:func:`execute` as a coroutine on the running event loop; cancelling it is like Ctrl-C."""
    started = time.monotonic()
    watch = _Watch(
        RunState(processor=request.processor), view, request, refresh_hz, timeout, recorder
    )
    with watch:
        watch.draw(started)
        run = await _acreate(client, request, recorder)
        watch.begin(run, time.monotonic())
        return await _afollow(client, watch, run.run_id)


def fetch(
    client: Client,
    run: str | TaskRun,
    *,
    request: TaskRequest | None = None,
    view: RunView | None = None,
    timeout: float | None = None,
    refresh_hz: float = MAX_REFRESH_HZ,
    recorder: RunRecorder | None = None,
) -> TaskResult:
    """The result of an existing run (its id, or the run as just retrieved); one that is still
    going is followed live until it ends.

    A run that has already ended is not drawn (its TaskResult shows it). ``request`` is the
    request the run was created for, if known. Raises as :func:`execute` does.
    """
    run_id = run if isinstance(run, str) else run.run_id
    watch = _Watch(
        RunState(processor="", run_id=run_id), view, request, refresh_hz, timeout, recorder
    )
    with watch:
        if isinstance(run, str):
            run = client.retrieve_run(run)
        if recorder is not None:
            recorder.started(run)
        if not run.is_terminal:
            watch.begin(run, time.monotonic())
            return _follow(client, watch, run.run_id)
        watch.ended(run)
        if run.status == "completed":
            # The answer is ready, so no wait is involved and ``timeout`` has nothing to limit.
            answer = client.result(run.run_id)
            watch.finish(answer.run, answer.output, time.monotonic())
        else:
            watch.finish(run, None, time.monotonic())
        return watch.result()


async def _acreate(
    client: AsyncClient, request: TaskRequest, recorder: RunRecorder | None
) -> TaskRun:
    """:func:`create` as a coroutine: cancelling it stops the wait, not the request."""
    sending = asyncio.ensure_future(client.create_run(request))
    sending.add_done_callback(lambda task: _record_created(task, recorder))
    try:
        return await asyncio.shield(sending)
    except asyncio.CancelledError:
        print(_interrupted_while_creating(recorder is not None), file=sys.stderr)
        raise


def _record_created(task: asyncio.Future[TaskRun], recorder: RunRecorder | None) -> None:
    # Also takes a failed request's exception, so that a task nobody awaits after a
    # cancellation does not log "exception was never retrieved".
    if task.cancelled() or task.exception() is not None:
        return
    if recorder is not None:
        recorder.started(task.result())


def _interrupted_while_creating(recorded: bool) -> str:
    text = (
        "parallel-nb: interrupted while creating the run. The request may already have reached "
        "the service, which then runs it (and charges for it) although nothing waits for it"
    )
    if recorded:
        return f"{text}; if so, it is recorded when the answer arrives: %parallel history lists it."
    return f"{text}."


# -- what following a run decides (shared by the thread and asyncio drivers) ------------------


@dataclass(frozen=True, slots=True)
class _StreamEnded:
    """The reader's last item: it will send no more events (because of ``error``, if set)."""

    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class _Note:
    """A word from the reader for the view (live updates gave way to polling, and why)."""

    text: str


_Item = Event | _Note | _StreamEnded


class _Reconnects:
    """When to open a run's event stream again, and when to give up on events and poll.

    A connection made progress if it carried more events than any before it (run streams
    replay from the start) or stayed open a while (the service closes streams after 570 s, and
    a quiet run may have nothing new by then): the backoff starts afresh. Connections that
    break, or close with nothing new, back off per the client's retry policy until it is used
    up.
    """

    def __init__(self, policy: RetryPolicy | None) -> None:
        self.policy = policy or NO_RETRIES
        self._backoff = start_backoff(policy)
        self._most = 0

    def after(self, seen: _Connection) -> float | None:
        """Seconds to wait before reopening a stream after the connection ``seen``; None when
        events should be given up for polling."""
        if seen.count > self._most or seen.open_for() >= _LONG_CONNECTION:
            self._most = max(self._most, seen.count)
            self._backoff.reset()
            if not seen.broke:
                return 0.0  # the server ended a stream that carried news (its time limit)
        return self._backoff.next_delay()


class _Connection:
    """What one connection to a run's event stream carried."""

    def __init__(self) -> None:
        self.count = 0
        self.first_event_at: float | None = None
        self.final = False  # a final state arrived
        self.answered = False  # ... with all it ends with (a completed run's output)
        self.broke = False

    def saw(self, event: Event) -> None:
        self.count += 1
        if self.first_event_at is None:
            self.first_event_at = time.monotonic()
        if isinstance(event, StateEvent) and event.run.is_terminal:
            self.final = True
            self.answered = self.answered or (
                event.run.status != "completed" or event.output is not None
            )

    def open_for(self) -> float:
        """Seconds from the first event until now (0 if none came)."""
        return 0.0 if self.first_event_at is None else time.monotonic() - self.first_event_at

    @property
    def settled(self) -> bool:
        """Whether reading can stop: the run's end arrived with its answer, or the stream
        ended normally after the final state (the answer then comes from ``/result``). A
        stream cut after a final state without the output is reopened: its replay carries the
        trace and the output."""
        return self.answered or (self.final and not self.broke)


def _polling_note(reason: str) -> str:
    return f"live updates unavailable ({reason}); checking the run every few seconds"


# A connection that delivered events for this long was no failure, whatever it carried.
_LONG_CONNECTION = 30.0
# Why the reader polls: streams kept breaking, or kept closing cleanly with nothing new.
_BROKE = "the event stream kept breaking"
_NO_NEWS = "the event stream kept closing without news"


class _Step(enum.Enum):
    WAIT = "wait"  # for more events
    DONE = "done"  # the service's final state is known, with the output of a completed run
    FETCH = "fetch"  # ask /result: the stream broke, or a completed run's output is late
    TIMEOUT = "timeout"


def _is_final(event: Event) -> bool:
    return isinstance(event, StateEvent) and event.run.is_terminal


class _Watch:
    """Following one run, less the I/O: folding what arrives, when to draw, what to do next.

    As a context manager it leaves the view showing how the watch ended (interrupted, an error)
    and closes it, whatever ends it.
    """

    def __init__(
        self,
        state: RunState,
        view: RunView | None,
        request: TaskRequest | None,
        refresh_hz: float,
        timeout: float | None,
        recorder: RunRecorder | None = None,
    ) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError(
                f"timeout must be a number of seconds, 0 or more, or None to wait until the run "
                f"ends; not {timeout!r}"
            )
        self._interval = 1.0 / check_refresh_hz(refresh_hz)
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.state = state
        self._view = view
        self._request = request
        self._recorder = recorder
        self._final_run: TaskRun | None = None  # the first final state the service reported
        self._final_at = 0.0
        self._ended = False
        self._drawn_at: float | None = None
        self._dirty = False

    def __enter__(self) -> _Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        now = time.monotonic()
        if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            self._interrupted(now)
        elif isinstance(exc, Exception) and not self.state.is_terminal:
            self._change(errored(self.state, str(exc), now))
        # A view that never showed the run (fetch of a finished run) is not drawn at the end.
        if self._dirty and self._drawn_at is not None:
            self.draw(now)
        if self._view is not None:
            self._view.close()

    # -- drawing ----------------------------------------------------------------------------

    def draw(self, now: float) -> None:
        if self._view is not None:
            self._view.update(self.state)
        self._drawn_at = now
        self._dirty = False

    def draw_if_due(self, now: float) -> None:
        if self._dirty and (self._drawn_at is None or now >= self._drawn_at + self._interval):
            self.draw(now)

    def flush(self, now: float) -> None:
        if self._dirty:
            self.draw(now)

    def _change(self, state: RunState) -> None:
        self.state = state
        self._dirty = True

    # -- what arrives -----------------------------------------------------------------------

    def begin(self, run: TaskRun, now: float) -> None:
        """The run exists: start its clock and show it at once."""
        self._change(created(self.state, run, now))
        self.draw(now)

    def take(self, item: _Item, now: float) -> None:
        if isinstance(item, _Note):
            self._change(dataclasses.replace(self.state, note=item.text))
            return
        if isinstance(item, _StreamEnded):
            self._ended = True
            if item.error is not None:
                note = f"live updates stopped: {item.error}"
                self._change(dataclasses.replace(self.state, note=note))
            return
        self._change(fold(self.state, item, now))
        if self._final_run is None and _is_final(item):
            self._final_run = item.run
            self._final_at = now

    def ended(self, run: TaskRun) -> None:
        """The run was found already ended; its answer is still to come (``finish``)."""
        self._final_run = run

    def finish(self, run: TaskRun, output: TaskOutput | None, now: float) -> None:
        """Take the service's final answer from outside the stream (``/result``, the run)."""
        answer = fold(self.state, StateEvent(run=run, output=output), now)
        # An answer, not a stream event: the event count stays what the stream sent.
        self._change(dataclasses.replace(answer, events=self.state.events))
        self._final_run = run

    # -- what next --------------------------------------------------------------------------

    def step(self, now: float) -> _Step:
        # The deadline comes first, so a timeout behaves the same however fast the run is.
        if self._deadline is not None and now >= self._deadline:
            return _Step.TIMEOUT
        if self._final_run is None:
            # The reader only ends before the final state when the stream broke.
            return _Step.FETCH if self._ended else _Step.WAIT
        if not self._awaiting_output():
            return _Step.DONE
        if self._ended or now >= self._final_at + OUTPUT_GRACE:
            return _Step.FETCH
        return _Step.WAIT

    def wait(self, now: float) -> float:
        """Seconds the driver may wait for the next item before something else is due."""
        due = [now + _MAX_WAIT]
        if self._deadline is not None:
            due.append(self._deadline)
        if self._dirty and self._drawn_at is not None:
            due.append(self._drawn_at + self._interval)
        if self._awaiting_output():
            due.append(self._final_at + OUTPUT_GRACE)
        return max(0.0, min(due) - now)

    def remaining(self, now: float) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - now)

    def _awaiting_output(self) -> bool:
        run = self._final_run
        return run is not None and run.status == "completed" and self.state.output is None

    # -- endings ----------------------------------------------------------------------------

    def result(self) -> TaskResult:
        """The run's TaskResult once it completed; raises :class:`RunFailed` otherwise."""
        run = self._final_run
        assert run is not None, "result() before the service reported a final state"
        if self._recorder is not None:
            self._recorder.finished(run, self.state.output)
        if run.status != "completed":
            message = run.error.message if run.error is not None else ""
            raise RunFailed(run.run_id, message, run.status)
        return TaskResult(run=run, output=self.state.output, request=self._request)

    def timed_out(self, run_id: str, now: float) -> RequestTimeoutError:
        """Mark the view interrupted; the error to raise for the timeout."""
        self._change(interrupted(self.state, now))
        return RequestTimeoutError(
            408,
            f"stopped watching run {run_id} after {self._timeout:g} s; "
            "the run continues on the server",
            run_id=run_id,
            hint=_fetch_later(run_id),
        )

    def _interrupted(self, now: float) -> None:
        run_id = self.state.run_id
        if run_id is None:
            note = "interrupted while creating the run; if the service created it, it goes on"
            self._change(interrupted(self.state, now, note=note))
            return
        if self._awaiting_output():
            print(
                f"parallel-nb: stopped fetching the result of run {run_id}, which completed on "
                f"the server; {_fetch_later(run_id)}",
                file=sys.stderr,
            )
            return
        if self.state.is_terminal:
            return  # it ended anyway: nothing goes on, nothing to fetch later
        self._change(interrupted(self.state, now))
        print(
            f"parallel-nb: stopped watching run {run_id}, which continues on the server "
            f"(the Task API cannot cancel a run); {_fetch_later(run_id)}",
            file=sys.stderr,
        )


def _fetch_later(run_id: str) -> str:
    return (
        f"follow it again with %parallel attach {run_id} (or get its result with "
        f"%parallel result {run_id} or parallel_nb.fetch({run_id!r}))"
    )


# -- the blocking driver: a worker thread reads, the calling thread folds and draws ---------------


class _EventReader:
    """The worker thread: puts the run's events on ``events``, reopening the stream until it has
    carried the run's final state (or polling the run when events are unavailable), then puts
    a :class:`_StreamEnded`."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.events: queue.Queue[_Item] = queue.Queue()
        self._client = client
        self._run_id = run_id
        # A test double or wrapper without a retry policy reconnects only after progress.
        self._reconnects = _Reconnects(getattr(client, "retry", None))
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._stream: EventStream | None = None
        self._thread = threading.Thread(
            target=self._read, name=f"parallel-nb events {run_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the worker from the calling thread; a read blocked on the network ends at once."""
        with self._lock:
            self._stopped.set()
            stream = self._stream
        if stream is not None:
            stream.close()

    def _open(self) -> EventStream | None:
        # Under the lock, so that stop() either sees this stream or this sees stop().
        with self._lock:
            if self._stopped.is_set():
                return None
            self._stream = self._client.events(self._run_id)
            return self._stream

    def _read(self) -> None:
        error: Exception | None = None
        try:
            unavailable = self._read_streams()
            if unavailable is not None:
                self.events.put(_Note(_polling_note(unavailable)))
                self._poll()
        except Exception as exc:  # whatever it is, the calling thread must hear of it, not hang
            error = exc
        finally:
            self.events.put(_StreamEnded(error))

    def _read_streams(self) -> str | None:
        """Read streams until one carries the final state (or stop()); else why events are
        unavailable."""
        while (stream := self._open()) is not None:
            seen = _Connection()
            try:
                for event in stream:
                    self.events.put(event)
                    seen.saw(event)
            except StreamInterrupted:
                seen.broke = True
            except ParallelError as exc:  # could not connect, even after retrying
                return None if seen.final else str(exc)
            if seen.settled:
                return None
            delay = self._reconnects.after(seen)
            if delay is None:
                return _BROKE if seen.broke else _NO_NEWS
            if self._stopped.wait(delay):
                return None
        return None

    def _poll(self) -> None:
        """Put the run's state each time it changes, until it ends (or stop())."""
        last, unchanged = None, 0
        while not self._stopped.is_set():
            run = self._client.retrieve_run(self._run_id)
            if run.status != last:
                self.events.put(StateEvent(run=run))
                last, unchanged = run.status, 0
            else:
                unchanged += 1
            if run.is_terminal or self._stopped.wait(self._reconnects.policy.poll_delay(unchanged)):
                return


def _follow(client: Client, watch: _Watch, run_id: str) -> TaskResult:
    reader = _EventReader(client, run_id)
    reader.start()
    try:
        while (step := watch.step(time.monotonic())) is _Step.WAIT:
            try:
                item = reader.events.get(timeout=watch.wait(time.monotonic()))
            except queue.Empty:
                pass
            else:
                watch.take(item, time.monotonic())
            watch.draw_if_due(time.monotonic())
    finally:
        reader.stop()
    if step is _Step.TIMEOUT:
        raise watch.timed_out(run_id, time.monotonic())
    if step is _Step.FETCH:
        watch.flush(time.monotonic())  # show why live updates stopped before blocking on /result
        try:
            answer = client.result(run_id, timeout=watch.remaining(time.monotonic()))
        except RequestTimeoutError:
            raise watch.timed_out(run_id, time.monotonic()) from None
        except RunFailed:
            watch.finish(client.retrieve_run(run_id), None, time.monotonic())
        else:
            watch.finish(answer.run, answer.output, time.monotonic())
    return watch.result()


# -- the asyncio driver: a reader task and the caller's coroutine on one loop -------------------


async def _aread(client: AsyncClient, run_id: str, events: asyncio.Queue[_Item]) -> None:
    """:class:`_EventReader` as a task; cancelling the task ends it."""
    error: Exception | None = None
    try:
        reconnects = _Reconnects(client.retry)
        unavailable = await _aread_streams(client, run_id, events, reconnects)
        if unavailable is not None:
            events.put_nowait(_Note(_polling_note(unavailable)))
            await _apoll(client, run_id, events, reconnects.policy)
    except Exception as exc:  # whatever it is, the waiting coroutine must hear of it, not hang
        error = exc
    finally:
        events.put_nowait(_StreamEnded(error))


async def _aread_streams(
    client: AsyncClient, run_id: str, events: asyncio.Queue[_Item], reconnects: _Reconnects
) -> str | None:
    """:meth:`_EventReader._read_streams` as a coroutine."""
    while True:
        seen = _Connection()
        try:
            async with client.events(run_id) as stream:
                async for event in stream:
                    events.put_nowait(event)
                    seen.saw(event)
        except StreamInterrupted:
            seen.broke = True
        except ParallelError as exc:  # could not connect, even after retrying
            return None if seen.final else str(exc)
        if seen.settled:
            return None
        delay = reconnects.after(seen)
        if delay is None:
            return _BROKE if seen.broke else _NO_NEWS
        await asyncio.sleep(delay)


async def _apoll(
    client: AsyncClient, run_id: str, events: asyncio.Queue[_Item], policy: RetryPolicy
) -> None:
    """:meth:`_EventReader._poll` as a coroutine."""
    last, unchanged = None, 0
    while True:
        run = await client.retrieve_run(run_id)
        if run.status != last:
            events.put_nowait(StateEvent(run=run))
            last, unchanged = run.status, 0
        else:
            unchanged += 1
        if run.is_terminal:
            return
        await asyncio.sleep(policy.poll_delay(unchanged))


async def _next_item(events: asyncio.Queue[_Item], timeout: float) -> _Item | None:
    try:
        return events.get_nowait()
    except asyncio.QueueEmpty:
        pass
    try:
        return await asyncio.wait_for(events.get(), timeout)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
        return None


async def _afollow(client: AsyncClient, watch: _Watch, run_id: str) -> TaskResult:
    events: asyncio.Queue[_Item] = asyncio.Queue()
    reader = asyncio.create_task(_aread(client, run_id, events))
    try:
        while (step := watch.step(time.monotonic())) is _Step.WAIT:
            item = await _next_item(events, watch.wait(time.monotonic()))
            if item is not None:
                watch.take(item, time.monotonic())
            watch.draw_if_due(time.monotonic())
    finally:
        reader.cancel()
        await asyncio.wait({reader})  # let it close its stream; never raises its exception
    if step is _Step.TIMEOUT:
        raise watch.timed_out(run_id, time.monotonic())
    if step is _Step.FETCH:
        watch.flush(time.monotonic())
        try:
            answer = await client.result(run_id, timeout=watch.remaining(time.monotonic()))
        except RequestTimeoutError:
            raise watch.timed_out(run_id, time.monotonic()) from None
        except RunFailed:
            watch.finish(await client.retrieve_run(run_id), None, time.monotonic())
        else:
            watch.finish(answer.run, answer.output, time.monotonic())
    return watch.result()
