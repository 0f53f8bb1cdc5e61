"""The run store: every run this user submitted, kept in an embedded SQLite file.

A run is recorded the moment it is created (so a crash, an interrupt or a kernel restart never
loses its id), then updated with its status and finally its result, which is what lets an
identical cell be answered from the cache instead of paying for the run again.

The file lives in the per-user data directory (``$PARALLEL_NB_DATA_DIR`` overrides it). It is
safe with several threads and several kernels writing at once: WAL journal, a busy timeout,
one connection per thread and every write a single short statement. ``PRAGMA user_version``
holds the schema version so later releases can migrate. The API key is never written: it is in
neither a :class:`TaskRequest` nor the endpoint. The input is kept only as ``keep_input`` says.
Importing this module, or constructing a :class:`RunStore`, touches no file; the first call that
reads or writes creates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ..api.models import TaskRequest, TaskRun, TaskRunResult

__all__ = [
    "KEEP_INPUT_MODES",
    "PREVIEW_CHARS",
    "SCHEMA_VERSION",
    "RunStore",
    "StoredRun",
    "batch_key",
    "default_store_path",
    "request_key",
]

KeepInput = Literal["full", "preview", "none"]
KEEP_INPUT_MODES: tuple[str, ...] = ("full", "preview", "none")
PREVIEW_CHARS = 200
SCHEMA_VERSION = 2
DATA_DIR_ENV = "PARALLEL_NB_DATA_DIR"
FILE_NAME = "runs.sqlite3"
# How long a writer waits for another kernel's write to finish before giving up. Writes take
# microseconds, so only a stuck process could make anyone wait this long.
BUSY_TIMEOUT = 10.0

_TERMINAL = ("completed", "failed", "cancelled")

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL DEFAULT 'run',  -- 'group': a task group, run_id its tgrp_ id
    key           TEXT,                         -- request_key(); NULL for runs not created here
    endpoint      TEXT,
    processor     TEXT NOT NULL,
    status        TEXT NOT NULL,
    is_active     INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    input_preview TEXT,
    request_json  TEXT,                         -- only with keep_input='full'
    result_json   TEXT,                         -- the TaskRunResult wire JSON
    error         TEXT,
    cache_hits    INTEGER NOT NULL DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_by_age ON runs (created_at)",
    # Version 2: the runs of each task group (a 'group' row in runs), by request number, so an
    # interrupted batch resumes without creating any run twice.
    """
CREATE TABLE IF NOT EXISTS group_runs (
    taskgroup_id  TEXT NOT NULL,
    request_index INTEGER NOT NULL,
    run_id        TEXT NOT NULL,
    PRIMARY KEY (taskgroup_id, request_index)
)""",
)

# A status update never turns a finished run back into a running one: a late event from a
# stream must not undo the result another thread has already recorded.
_KEEP_FINISHED = f"runs.status IN {_TERMINAL!r} AND excluded.status NOT IN {_TERMINAL!r}"

_CREATED = f"""
INSERT INTO runs (run_id, key, endpoint, processor, status, is_active, created_at, updated_at,
                  input_preview, request_json)
VALUES (:run_id, :key, :endpoint, :processor, :status, :is_active, :now, :now,
        :input_preview, :request_json)
ON CONFLICT (run_id) DO UPDATE SET
    key = excluded.key, endpoint = excluded.endpoint, processor = excluded.processor,
    input_preview = excluded.input_preview, request_json = excluded.request_json,
    updated_at = excluded.updated_at,
    status = CASE WHEN {_KEEP_FINISHED} THEN runs.status ELSE excluded.status END,
    is_active = CASE WHEN {_KEEP_FINISHED} THEN runs.is_active ELSE excluded.is_active END
"""

_STATUS = f"""
INSERT INTO runs (run_id, processor, status, is_active, created_at, updated_at, error,
                  result_json)
VALUES (:run_id, :processor, :status, :is_active, :now, :now, :error, :result_json)
ON CONFLICT (run_id) DO UPDATE SET
    processor = excluded.processor, updated_at = excluded.updated_at,
    error = coalesce(excluded.error, runs.error),
    result_json = coalesce(excluded.result_json, runs.result_json),
    status = CASE WHEN {_KEEP_FINISHED} THEN runs.status ELSE excluded.status END,
    is_active = CASE WHEN {_KEEP_FINISHED} THEN runs.is_active ELSE excluded.is_active END
"""

# A group's request_json is its recipe (what the batch was planned from), so it can be
# attached to again from its id alone.
_GROUP = """
INSERT INTO runs (run_id, kind, key, endpoint, processor, status, is_active, created_at,
                  updated_at, input_preview, request_json)
VALUES (:run_id, 'group', :key, :endpoint, :processor, 'running', 1, :now, :now,
        :input_preview, :request_json)
ON CONFLICT (run_id) DO NOTHING
"""

_COLUMNS = (
    "run_id, kind, key, endpoint, processor, status, is_active, created_at, updated_at, "
    "input_preview, request_json, result_json, error, cache_hits"
)
_NEWEST_FIRST = "ORDER BY created_at DESC, rowid DESC"


def default_store_path() -> Path:
    """``$PARALLEL_NB_DATA_DIR/runs.sqlite3``, else ``runs.sqlite3`` in the user data directory
    (``~/.local/share/parallel-nb`` on Linux)."""
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser() / FILE_NAME
    # Imported here: only needed when no directory is configured.
    import platformdirs

    return Path(platformdirs.user_data_dir("parallel-nb")) / FILE_NAME


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(request: TaskRequest, endpoint: str) -> str:
    """The cache key of a request sent to ``endpoint``: the SHA-256 of its canonical JSON.

    Two cells get the same key exactly when they would send the same body (processor, rendered
    input, spec and options) to the same service.
    """
    payload = {"endpoint": endpoint.rstrip("/"), "body": request.to_body()}
    return hashlib.sha256(_canonical_json(payload).encode()).hexdigest()


def batch_key(requests: Sequence[TaskRequest], default_task_spec: Any, endpoint: str) -> str:
    """The key of a batch sent to ``endpoint``: the SHA-256 of its requests (in order) and its
    default task spec, so an identical batch finds the group that already answers it."""
    payload = {
        "endpoint": endpoint.rstrip("/"),
        "default_task_spec": default_task_spec,
        "bodies": [request.to_body() for request in requests],
    }
    return hashlib.sha256(_canonical_json(payload).encode()).hexdigest()


def input_preview(request: TaskRequest) -> str:
    """At most :data:`PREVIEW_CHARS` characters of the input (JSON input as compact JSON)."""
    text = request.input if isinstance(request.input, str) else _canonical_json(request.input)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class StoredRun:
    """One row of the store. Times are seconds since the epoch, on this machine's clock.

    ``result`` is the ``TaskRunResult`` wire JSON once the run completed (None after
    ``clear_cache``); ``request`` is the request body only when the store keeps full input.
    """

    run_id: str
    key: str | None
    endpoint: str | None
    processor: str
    status: str
    is_active: bool
    created_at: float
    updated_at: float
    input_preview: str | None
    result: dict[str, Any] | None = field(repr=False)
    cache_hits: int
    request: dict[str, Any] | None = field(default=None, repr=False)
    error: str | None = None
    kind: str = "run"

    def task_run_result(self) -> TaskRunResult | None:
        """The stored result as a model, or None if there is none."""
        return TaskRunResult.from_dict(self.result) if self.result is not None else None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredRun:
        return cls(
            run_id=row["run_id"],
            key=row["key"],
            endpoint=row["endpoint"],
            processor=row["processor"],
            status=row["status"],
            is_active=bool(row["is_active"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            input_preview=row["input_preview"],
            result=_loads(row["result_json"]),
            cache_hits=row["cache_hits"],
            request=_loads(row["request_json"]),
            error=row["error"],
            kind=row["kind"],
        )


def _loads(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text is not None else None


def _result_json(result: TaskRunResult) -> str:
    """The result's wire JSON. A result built from parts (not ``from_dict``) has no ``raw`` of
    its own, so it is rebuilt from the parts' wire data, with the run's status as the part says
    (its wire data may be from an earlier event)."""
    raw: Mapping[str, Any] = result.raw
    if not raw and result.run.raw:
        run = {**result.run.raw, "status": result.run.status, "is_active": result.run.is_active}
        raw = {"run": run, "output": result.output.raw}
    if not raw or not raw.get("output"):
        raise ValueError(
            f"the result of run {result.run.run_id} carries no wire JSON to store; build it "
            "with TaskRunResult.from_dict(...) from the service's answer"
        )
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)


class RunStore:
    """The runs of this user, in the SQLite file at ``path`` (default :func:`default_store_path`).

    ``keep_input``: ``"preview"`` (default) keeps the first 200 characters of each input,
    ``"full"`` also the whole request body, ``"none"`` nothing but the request's hash.
    Every method is safe to call from any thread; each thread gets its own connection.
    """

    def __init__(
        self, path: Path | str | None = None, *, keep_input: KeepInput = "preview"
    ) -> None:
        if keep_input not in KEEP_INPUT_MODES:
            raise ValueError(
                f"keep_input must be one of {', '.join(map(repr, KEEP_INPUT_MODES))}, "
                f"not {keep_input!r}"
            )
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.keep_input = keep_input
        # One connection per process, shared by threads behind a lock: every statement is
        # short, and a connection per thread would outlive its thread (background runs).
        self._lock = threading.Lock()
        self._shared: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._ready = False

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, keep_input={self.keep_input!r})"

    # -- writing ---------------------------------------------------------------------------

    def record_created(
        self, run: TaskRun, request: TaskRequest, *, key: str, endpoint: str
    ) -> None:
        """Record a run just created for ``request`` (call it at once, before following it).
        Recording the same run again updates it."""
        keep = self.keep_input
        self._write(
            _CREATED,
            run_id=run.run_id,
            key=key,
            endpoint=endpoint.rstrip("/"),
            processor=run.processor or request.processor,
            status=run.status,
            is_active=int(run.is_active),
            input_preview=input_preview(request) if keep != "none" else None,
            request_json=_canonical_json(request.to_body()) if keep == "full" else None,
        )

    def record_status(self, run: TaskRun) -> None:
        """Record a run's latest status. A finished run's status is never undone by an older
        one; a run not recorded before is added (without a cache key)."""
        self._record(run, error=run.error.message if run.error is not None else None)

    def record_result(self, result: TaskRunResult) -> None:
        """Record a completed run's result (its wire JSON), which makes it a cache entry."""
        self._record(result.run, result_json=_result_json(result))

    def record_failed(self, run: TaskRun) -> None:
        """Record that a run failed or was cancelled; ``find`` then ignores it."""
        status = run.status if run.status in ("failed", "cancelled") else "failed"
        failed = TaskRun(run_id=run.run_id, status=status, is_active=False, processor=run.processor)
        self._record(failed, error=run.error.message if run.error is not None else None)

    def record_group(
        self,
        taskgroup_id: str,
        processor: str,
        rows: int,
        endpoint: str,
        *,
        key: str | None = None,
        recipe: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a task group just created for a batch of ``rows`` rows (call it at once,
        before adding runs). ``key`` (:func:`batch_key`) lets an identical batch find it again;
        ``recipe`` (what the batch was planned from) is kept unless ``keep_input`` is "none".
        Recording it again keeps the first record."""
        keep = recipe is not None and self.keep_input != "none"
        self._write(
            _GROUP,
            run_id=taskgroup_id,
            key=key,
            endpoint=endpoint.rstrip("/"),
            processor=processor,
            input_preview=f"{rows} rows",
            request_json=_canonical_json(recipe) if keep else None,
        )

    def record_group_runs(self, taskgroup_id: str, runs: Iterable[tuple[int, str]]) -> None:
        """Record ``(request_index, run_id)`` pairs of the group's runs just created, all in one
        transaction: an interrupt cannot leave half of an add-runs answer unrecorded."""
        rows = [(taskgroup_id, index, run_id) for index, run_id in runs]
        with self._lock:
            connection = self._connection()
            # The connection autocommits each statement; one batch needs its own transaction.
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT OR REPLACE INTO group_runs (taskgroup_id, request_index, run_id) "
                    "VALUES (?, ?, ?)",
                    rows,
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def record_group_status(self, taskgroup_id: str, status: str, is_active: bool) -> None:
        """Record a task group's latest status."""
        self._write(
            "UPDATE runs SET status = :status, is_active = :is_active, updated_at = :now "
            "WHERE run_id = :run_id AND kind = 'group'",
            run_id=taskgroup_id,
            status=status,
            is_active=int(is_active),
        )

    def mark_cache_hit(self, run_id: str) -> None:
        """Count one more time the run's stored result answered a cell."""
        self._write(
            "UPDATE runs SET cache_hits = cache_hits + 1 WHERE run_id = :run_id", run_id=run_id
        )

    def clear_cache(self) -> int:
        """Forget every stored result, so the next identical cell creates a new run. The runs
        stay in the history. Returns how many results were forgotten."""
        return self._write(
            "UPDATE runs SET result_json = NULL, key = NULL, updated_at = :now "
            "WHERE status = 'completed' AND key IS NOT NULL"
        )

    # -- reading ---------------------------------------------------------------------------

    def find(self, key: str, kind: Literal["run", "group"] = "run") -> StoredRun | None:
        """The newest run (or task group) for ``key`` that completed or is still active. A
        completed run whose result was never stored (interrupted before it arrived) is returned
        too: its result is fetched, not paid for again. Failed and cancelled runs are ignored,
        so re-running a failed cell creates a new run."""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM runs WHERE key = ? AND kind = ? AND "
            "(status = 'completed' OR is_active = 1) "
            f"{_NEWEST_FIRST} LIMIT 1",
            (key, kind),
        )
        return StoredRun.from_row(rows[0]) if rows else None

    def get(self, run_id: str) -> StoredRun | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return StoredRun.from_row(rows[0]) if rows else None

    def group_runs(self, taskgroup_id: str) -> dict[int, str]:
        """The group's recorded runs: request number to run id."""
        rows = self._read(
            "SELECT request_index, run_id FROM group_runs WHERE taskgroup_id = ?", (taskgroup_id,)
        )
        return {row["request_index"]: row["run_id"] for row in rows}

    def history(self, limit: int = 50) -> list[StoredRun]:
        """The ``limit`` most recently created runs, newest first."""
        rows = self._read(f"SELECT {_COLUMNS} FROM runs {_NEWEST_FIRST} LIMIT ?", (limit,))
        return [StoredRun.from_row(row) for row in rows]

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store's connection; the next call opens a new one."""
        with self._lock:
            connection, self._shared = self._shared, None
            self._ready = False
        if connection is not None:
            connection.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _record(
        self, run: TaskRun, *, error: str | None = None, result_json: str | None = None
    ) -> None:
        self._write(
            _STATUS,
            run_id=run.run_id,
            processor=run.processor,
            status=run.status,
            is_active=int(run.is_active),
            error=error,
            result_json=result_json,
        )

    def _write(self, sql: str, **params: Any) -> int:
        """Run one write statement (its own transaction) and return the rows it changed."""
        params["now"] = time.time()
        with self._lock:
            return self._connection().execute(sql, params).rowcount

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def _connection(self) -> sqlite3.Connection:
        """The connection (call with the lock held), opened and the file created on first use.
        A forked child opens its own: SQLite connections must not cross a fork."""
        if self._shared is None or self._pid != os.getpid():
            self._shared, self._pid = self._open(), os.getpid()
        return self._shared

    def _open(self) -> sqlite3.Connection:
        self._create_file()
        # isolation_level=None: autocommit, so each write statement is its own short
        # transaction that takes the write lock at once (no read-then-upgrade deadlock).
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if not self._ready:
                self._migrate(connection)
                self._ready = True
            # NORMAL is durable against a crashed or killed kernel in WAL mode; only a power
            # cut can lose the last writes, and it makes each write several times cheaper.
            connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            connection.close()
            raise sqlite3.OperationalError(
                f"cannot use the run store at {self.path}: {exc}. Set {DATA_DIR_ENV} to a "
                "writable local directory (not a network drive) to keep it elsewhere."
            ) from exc
        return connection

    def _create_file(self) -> None:
        """Create the directory and an empty file readable by this user only: the store holds
        inputs and answers, which are nobody else's business."""
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Switch to WAL and bring the schema up to date, retrying while another process does
        the same: SQLite answers "locked" to a concurrent journal-mode switch at once, without
        waiting for the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                return self._migrate_once(connection)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate_once(self, connection: sqlite3.Connection) -> None:
        """One attempt, in one transaction, so two kernels opening a new file at once cannot
        both create the schema."""
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.OperationalError(
                    f"it was written by a newer parallel-nb (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}); upgrade parallel-nb"
                )
            if version < SCHEMA_VERSION:
                # Not executescript(): it would commit the transaction this runs in.
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
