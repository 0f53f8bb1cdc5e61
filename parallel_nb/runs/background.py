"""Background runs: the cell returns at once with a :class:`RunHandle` while a worker follows.

A worker thread does all the network work (the event stream, then the result) through
:func:`~.runner.fetch`, folding and throttling exactly as a foreground run does, and completes a
``concurrent.futures.Future``. Nothing it needs runs on the kernel's event loop, so
``handle.result()`` may block any thread, the kernel's own included, without deadlock.

The worker never touches the view: it leaves each state it would draw in a :class:`_Feed`, and
the newest one is drawn, at most ``refresh_hz`` times a second, by a drawing thread of the
handle's own (started when the handle is made under a running event loop, as in a kernel) and
by ``result()`` or ``await`` while they wait. A thread rather than a task on the kernel's loop,
so the panel keeps moving while a later cell blocks that loop (``time.sleep``): widget updates
and display updates from a thread reach the front end (ipykernel >= 7.0.1 routes them to the
cell running at the time, which is fine for both, as they are addressed by model and display
id). Drawing is serialised by a lock, so the thread and a waiting ``result()`` never interleave.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Generator
from concurrent import futures
from typing import TYPE_CHECKING, Any

from ..result import TaskResult
from .runner import MAX_REFRESH_HZ, check_refresh_hz, fetch
from .state import RunState, created

if TYPE_CHECKING:
    from ..api.client import Client
    from ..api.models import TaskRequest, TaskRun
    from ..view.panel import RunView
    from .runner import RunRecorder

__all__ = ["RunHandle", "follow_in_background"]


def follow_in_background(
    client: Client,
    run: TaskRun,
    *,
    request: TaskRequest | None = None,
    view: RunView | None = None,
    timeout: float | None = None,
    refresh_hz: float = MAX_REFRESH_HZ,
    recorder: RunRecorder | None = None,
) -> RunHandle:
    """Follow an existing ``run`` on a worker thread; return its handle at once.

    ``view`` is drawn now, in the calling cell, then kept up to date by the handle's drawing
    thread when an event loop is running here (a kernel). ``timeout`` limits the watching, as
    for a foreground run.
    """
    interval = 1.0 / check_refresh_hz(refresh_hz)
    state = created(RunState(processor=run.processor), run)
    if view is not None:
        view.update(state)  # shown in the calling cell's output, which later redraws update
    feed = _Feed(state)
    future: futures.Future[TaskResult] = futures.Future()

    def work() -> None:
        try:
            result = fetch(
                client,
                run,
                request=request,
                view=feed,
                timeout=timeout,
                refresh_hz=refresh_hz,
                recorder=recorder,
            )
        except BaseException as exc:  # the handle raises it from result() or await
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=work, name=f"parallel-nb {run.run_id}", daemon=True).start()
    handle = RunHandle(run.run_id, future, view=view, feed=feed, interval=interval)
    handle._keep_drawn()
    return handle


class _Feed:
    """The worker's stand-in for the view: it keeps the newest state for the owner to draw."""

    def __init__(self, state: RunState) -> None:
        self._lock = threading.Lock()
        self._pending: RunState | None = None
        self.latest = state

    def update(self, state: RunState) -> None:
        with self._lock:
            self._pending = self.latest = state

    def close(self) -> None:
        """Nothing to release: the handle closes the real view once it has drawn the end."""

    def take(self) -> RunState | None:
        """The state not drawn yet, if any (older undrawn states are skipped)."""
        with self._lock:
            state, self._pending = self._pending, None
        return state


class RunHandle:
    """A run followed in the background: ``.run_id``, ``.status``, ``.done()``,
    ``.result(timeout=None)`` (blocks), and ``await handle``.

    ``result()`` returns the run's :class:`~parallel_nb.result.TaskResult` or raises what a
    foreground run would (``RunFailed``, ``RequestTimeoutError`` for ``--timeout``); it raises
    ``TimeoutError`` if ``timeout`` seconds pass first, and the run goes on being followed.
    """

    def __init__(
        self,
        run_id: str,
        future: futures.Future[TaskResult],
        *,
        view: RunView | None = None,
        feed: _Feed | None = None,
        interval: float = 1.0 / MAX_REFRESH_HZ,
    ) -> None:
        self._run_id = run_id
        self._future = future
        self._view = view
        self._feed = feed
        self._interval = interval
        self._view_closed = view is None
        self._draw_lock = threading.Lock()
        self._drawing: threading.Thread | None = None

    @classmethod
    def finished(cls, result: TaskResult) -> RunHandle:
        """A handle for a result that is already known (a cache hit)."""
        future: futures.Future[TaskResult] = futures.Future()
        future.set_result(result)
        return cls(result.run_id, future)

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def view(self) -> RunView | None:
        """The live view (``handle.view.widget`` is the panel's widget, to embed elsewhere)."""
        return self._view

    @property
    def status(self) -> str:
        """The run's status as last seen: queued, running, completed, failed, cancelled;
        ``interrupted`` when ``--timeout`` stopped the watching, ``error`` if following broke."""
        if self._feed is not None:
            return self._feed.latest.status
        return self._future.result().status

    def done(self) -> bool:
        """Whether following the run has ended (``result()`` then returns or raises at once)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> TaskResult:
        """Wait for the run's result, ``timeout`` seconds at most (None: as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._future.done():
                self._pump()
                wait = self._interval
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError(
                            f"run {self.run_id} is still {self.status} after {timeout:g} s; it "
                            "goes on and this handle keeps following it: call .result() again"
                        )
                futures.wait([self._future], timeout=wait)
        except KeyboardInterrupt:
            print(
                f"parallel-nb: stopped waiting for run {self.run_id}; it is still followed in "
                "the background, so .result() can wait for it again",
                file=sys.stderr,
            )
            raise
        self._pump()
        return self._future.result()

    def __await__(self) -> Generator[Any, None, TaskResult]:
        self._keep_drawn()
        try:
            return (yield from asyncio.wrap_future(self._future).__await__())
        finally:
            self._pump()  # the end is drawn before the awaiting code goes on

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r}, status={self.status!r})"

    # -- drawing ---------------------------------------------------------------------------------

    def _keep_drawn(self) -> None:
        """Under a running event loop (a kernel), draw from a thread of this handle's own until
        the run's end is drawn. Without one, ``result()`` draws while it waits: nothing else
        would show a terminal's text view, and printing from a thread would cut into its prompt."""
        if self._view_closed or self._drawing is not None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._drawing = threading.Thread(
            target=self._keep_drawing, name=f"parallel-nb view {self.run_id}", daemon=True
        )
        self._drawing.start()

    def _keep_drawing(self) -> None:
        while not self._view_closed:
            self._pump()
            futures.wait([self._future], timeout=self._interval)

    def _pump(self) -> None:
        """Draw the newest state; once the run's end is drawn, close the view."""
        with self._draw_lock:
            if self._view_closed or self._view is None or self._feed is None:
                return
            # Checked before taking: every state the worker sends precedes the future's end.
            done = self._future.done()
            state = self._feed.take()
            if state is not None:
                self._view.update(state)
            if done:
                self._view_closed = True
                self._view.close()
