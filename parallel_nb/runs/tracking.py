"""Runs kept in the run store: a request is answered from the cache, joins its identical run
that is still going, or creates a run that is recorded the moment it exists.

:func:`submit` is the one path the magics and :func:`parallel_nb.run` take. Before anything is
sent it looks the request up (:func:`plan`, no network): a completed identical run answers at
once from its stored result (nothing reaches the service), an active one is followed instead of
paying again, and only otherwise is a run created. :class:`StoreRecorder` is the runner's
:class:`~.runner.RunRecorder` that writes to the store. A store that cannot be read or written
never costs a run: the problem is reported and the run goes on without the cache.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..api.errors import NotFoundError
from ..api.models import TaskOutput, TaskRequest, TaskRun, TaskRunResult
from ..result import TaskResult
from .background import RunHandle, follow_in_background
from .runner import MAX_REFRESH_HZ, create, execute, fetch
from .store import RunStore, StoredRun, request_key

if TYPE_CHECKING:
    import pandas as pd

    from ..api.client import AsyncClient, Client
    from ..view.panel import RunView

__all__ = [
    "HISTORY_COLUMNS",
    "Plan",
    "StoreRecorder",
    "aactive_run",
    "active_run",
    "age_text",
    "history_frame",
    "plan",
    "submit",
]

HISTORY_COLUMNS = ("run_id", "status", "processor", "age", "input", "cache_hits")

# Recorded for a run the service does not know (a demo emulator forgets its runs when the
# kernel restarts): not active, not completed, so the cache never offers it again.
_UNKNOWN = "unknown"

# What a store can fail with: SQLite itself, the file system, a result without wire JSON.
_STORE_ERRORS = (sqlite3.Error, OSError, ValueError)


class StoreRecorder:
    """Records runs in ``store``: with ``request`` and ``key``, as that request's run (a cache
    entry once it completes); without, by id only (runs attached to by id)."""

    def __init__(
        self,
        store: RunStore,
        *,
        request: TaskRequest | None = None,
        key: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.store = store
        self._request = request
        self._key = key
        self._endpoint = endpoint
        self._warned = False

    def started(self, run: TaskRun) -> None:
        if self._request is not None and self._key is not None and self._endpoint is not None:
            self._write(
                run,
                self.store.record_created,
                run,
                self._request,
                key=self._key,
                endpoint=self._endpoint,
            )
        else:
            self._write(run, self.store.record_status, run)

    def finished(self, run: TaskRun, output: TaskOutput | None) -> None:
        if run.status == "completed" and output is not None:
            self._write(run, self.store.record_result, TaskRunResult(run=run, output=output))
        elif run.status in ("failed", "cancelled"):
            self._write(run, self.store.record_failed, run)
        else:
            self._write(run, self.store.record_status, run)

    def cache_hit(self, run: TaskRun) -> None:
        """Count that ``run``'s stored result answered a request."""
        self._write(run, self.store.mark_cache_hit, run.run_id)

    def _write(self, run: TaskRun, method: Callable[..., None], *args: Any, **kw: Any) -> None:
        try:
            method(*args, **kw)
        except _STORE_ERRORS as exc:
            if not self._warned:
                self._warned = True
                print(
                    f"parallel-nb: warning: could not record run {run.run_id} in the run store "
                    f"({exc}); the run itself is not affected, but re-running this cell will "
                    "not find it",
                    file=sys.stderr,
                )


@dataclass(frozen=True, slots=True)
class Plan:
    """What a request needs, as far as the store knows: ``cached`` (the answer, nothing to
    send), ``previous`` (an identical run that was active when last seen), or neither (create).
    ``recorder`` records whatever run ends up answering the request."""

    recorder: StoreRecorder
    cached: TaskResult | None = None
    previous: StoredRun | None = None


def plan(
    store: RunStore,
    request: TaskRequest,
    *,
    endpoint: str,
    refresh: bool = False,
    refresh_hint: str = "refresh=True",
) -> Plan:
    """Look ``request`` up in ``store`` (no network); a cache hit is counted and announced.

    ``refresh`` skips the lookup, so a new run is created; ``refresh_hint`` is how the user asks
    for that (``--refresh`` in a cell), for the one-line notes.
    """
    key = request_key(request, endpoint)
    recorder = StoreRecorder(store, request=request, key=key, endpoint=endpoint)
    if refresh:
        return Plan(recorder)
    try:
        found = store.find(key)
    except _STORE_ERRORS as exc:
        print(
            f"parallel-nb: warning: could not read the run store ({exc}); running without the "
            "cache",
            file=sys.stderr,
        )
        return Plan(recorder)
    if found is None:
        return Plan(recorder)
    answer = found.task_run_result()
    if answer is None:
        age = age_text(time.time() - found.created_at)
        seen = (
            "completed, its result not yet fetched"
            if found.status == "completed"
            else ("had not ended when last seen")
        )
        print(
            f"parallel-nb: run {found.run_id} for this same request was started {age} ago and "
            f"{seen}; following it instead of paying for another ({refresh_hint} starts a new run)"
        )
        return Plan(recorder, previous=found)
    recorder.cache_hit(answer.run)
    age = age_text(time.time() - found.updated_at)
    print(
        f"parallel-nb: cached result of run {found.run_id} (from {age} ago); {refresh_hint} "
        "runs it again"
    )
    return Plan(
        recorder, cached=TaskResult(answer.run, answer.output, request=request, cached=True)
    )


def active_run(client: Client, planned: Plan) -> TaskRun | None:
    """The planned previous run as the service reports it now; None (and forgotten) if the
    service does not know it."""
    if planned.previous is None:
        return None
    try:
        return client.retrieve_run(planned.previous.run_id)
    except NotFoundError:
        _forget(planned)
        return None


async def aactive_run(client: AsyncClient, planned: Plan) -> TaskRun | None:
    """:func:`active_run` on the caller's event loop."""
    if planned.previous is None:
        return None
    try:
        return await client.retrieve_run(planned.previous.run_id)
    except NotFoundError:
        _forget(planned)
        return None


def _forget(planned: Plan) -> None:
    previous = planned.previous
    assert previous is not None
    gone = TaskRun(
        run_id=previous.run_id, status=_UNKNOWN, is_active=False, processor=previous.processor
    )
    planned.recorder.finished(gone, None)
    print(
        f"parallel-nb: the service does not know run {previous.run_id} (a demo emulator "
        "forgets its runs when the kernel restarts); creating a new run"
    )


def submit(
    client: Client,
    request: TaskRequest,
    *,
    store: RunStore,
    endpoint: str,
    new_view: Callable[[], RunView | None],
    refresh: bool = False,
    refresh_hint: str = "refresh=True",
    background: bool = False,
    timeout: float | None = None,
    refresh_hz: float = MAX_REFRESH_HZ,
) -> TaskResult | RunHandle:
    """Answer ``request``: from the cache, by following its identical active run, or with a new
    run, recorded in ``store`` all along. ``new_view`` makes the live view (not called for a
    cache hit: there is nothing to watch). With ``background`` the run is created here (so a
    bad request fails in the cell) and a :class:`RunHandle` is returned at once."""
    planned = plan(store, request, endpoint=endpoint, refresh=refresh, refresh_hint=refresh_hint)
    if planned.cached is not None:
        return RunHandle.finished(planned.cached) if background else planned.cached
    run = active_run(client, planned)
    recorder = planned.recorder
    if background:
        run = run or create(client, request, recorder=recorder)
        return follow_in_background(
            client,
            run,
            request=request,
            view=new_view(),
            timeout=timeout,
            refresh_hz=refresh_hz,
            recorder=recorder,
        )
    view = new_view()
    if run is not None:
        return fetch(
            client,
            run,
            request=request,
            view=view,
            timeout=timeout,
            refresh_hz=refresh_hz,
            recorder=recorder,
        )
    return execute(
        client, request, view=view, timeout=timeout, refresh_hz=refresh_hz, recorder=recorder
    )


def age_text(seconds: float) -> str:
    """A duration as people say it: "12 s", "5 min", "3 h", "2 days"."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600:.0f} h"
    return f"{seconds // 86400:.0f} days"


def history_frame(store: RunStore, limit: int) -> pd.DataFrame:
    """The ``limit`` newest runs of ``store``, newest first, one row each (HISTORY_COLUMNS)."""
    import pandas as pd

    now = time.time()
    rows = [
        (
            run.run_id,
            run.status,
            run.processor,
            age_text(now - run.created_at),
            run.input_preview,
            run.cache_hits,
        )
        for run in store.history(limit)
    ]
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
