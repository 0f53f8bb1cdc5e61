"""The run store: what it keeps (and never keeps), which run find() picks, and many writers at
once (threads of one process, and separate processes) on one SQLite file."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from parallel_nb.api.client import Client
from parallel_nb.api.models import TaskOutput, TaskRequest, TaskRun, TaskRunResult
from parallel_nb.emulator import start_emulator
from parallel_nb.runs.store import (
    PREVIEW_CHARS,
    SCHEMA_VERSION,
    RunStore,
    StoredRun,
    batch_key,
    default_store_path,
    request_key,
)

GDP = "What was the GDP of France in 2023?"
ENDPOINT = "https://api.parallel.ai"


def task_run(run_id: str, status: str = "queued", error: str | None = None) -> TaskRun:
    data: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "is_active": status in ("queued", "running"),
        "processor": "lite",
        "created_at": "2025-01-01T00:00:00Z",
    }
    if error is not None:
        data["error"] = {"message": error}
    return TaskRun.from_dict(data)


def completed(run_id: str, answer: str = "3.03 trillion USD") -> TaskRunResult:
    return TaskRunResult.from_dict(
        {
            "run": {**task_run(run_id).raw, "status": "completed", "is_active": False},
            "output": {"type": "json", "content": {"gdp": answer}, "basis": []},
        }
    )


def submit(store: RunStore, run_id: str, request: TaskRequest, endpoint: str = ENDPOINT) -> str:
    """Record a run created for ``request``; returns its cache key."""
    key = request_key(request, endpoint)
    store.record_created(task_run(run_id), request, key=key, endpoint=endpoint)
    return key


def file_bytes(store: RunStore) -> bytes:
    """Everything SQLite has on disk for the store: the database, its WAL and shared memory."""
    files = sorted(store.path.parent.glob(store.path.name + "*"))
    assert store.path in files
    return b"".join(path.read_bytes() for path in files)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(tmp_path / "runs.sqlite3") as runs:
        yield runs


# -- location and lifetime -----------------------------------------------------------------


def test_default_path_honours_the_data_dir_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARALLEL_NB_DATA_DIR", str(tmp_path / "data"))
    assert default_store_path() == tmp_path / "data" / "runs.sqlite3"
    assert RunStore().path == tmp_path / "data" / "runs.sqlite3"


def test_default_path_is_the_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARALLEL_NB_DATA_DIR", raising=False)
    expected = Path(platformdirs.user_data_dir("parallel-nb")) / "runs.sqlite3"
    assert default_store_path() == expected


def test_importing_and_constructing_touch_no_file(tmp_path: Path) -> None:
    code = "import parallel_nb.runs.store as s; print(s.RunStore().path)"
    env = {**os.environ, "PARALLEL_NB_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    env.pop("XDG_DATA_HOME", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path / "data" / "runs.sqlite3")
    assert list(tmp_path.iterdir()) == []


def test_first_use_creates_a_private_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "runs.sqlite3"
    with RunStore(path) as runs:
        assert runs.history() == []
    assert path.exists()
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    request = TaskRequest("lite", GDP)
    with RunStore(path) as first:
        key = submit(first, "trun_1", request)
        first.record_result(completed("trun_1"))
    with RunStore(path) as second:
        found = second.find(key)
        assert found is not None and found.run_id == "trun_1"
        result = found.task_run_result()
        assert result is not None and result.output.content == {"gdp": "3.03 trillion USD"}


def test_a_store_from_a_newer_version_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with (
        RunStore(path) as runs,
        pytest.raises(sqlite3.OperationalError, match=r"newer parallel-nb.*upgrade"),
    ):
        runs.history()


def test_keep_input_must_be_a_known_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'full', 'preview', 'none'.*'everything'"):
        RunStore(tmp_path / "runs.sqlite3", keep_input="everything")  # type: ignore[arg-type]


# -- what is kept --------------------------------------------------------------------------


def test_request_key_depends_on_the_whole_request_and_the_endpoint() -> None:
    request = TaskRequest("lite", GDP)
    key = request_key(request, ENDPOINT)
    assert len(key) == 64 and key == request_key(TaskRequest("lite", GDP), ENDPOINT + "/")
    others = [
        request_key(TaskRequest("core", GDP), ENDPOINT),
        request_key(TaskRequest("lite", GDP + "?"), ENDPOINT),
        request_key(TaskRequest("lite", GDP, task_spec={"output_schema": "a report"}), ENDPOINT),
        request_key(TaskRequest("lite", GDP, enable_events=True), ENDPOINT),
        request_key(request, "demo"),
    ]
    assert len({key, *others}) == len(others) + 1


def test_dict_input_keys_in_any_order_give_one_key() -> None:
    a = TaskRequest("lite", {"company": "Stripe", "year": 2024})
    b = TaskRequest("lite", {"year": 2024, "company": "Stripe"})
    assert request_key(a, ENDPOINT) == request_key(b, ENDPOINT)


@pytest.mark.parametrize("mode", ["full", "preview", "none"])
def test_keep_input_modes(tmp_path: Path, mode: str) -> None:
    tail = "TAIL-MARKER-PAST-THE-PREVIEW"
    text = "x" * PREVIEW_CHARS + tail
    request = TaskRequest("lite", text, metadata={"cell": "SPEC-MARKER"})
    with RunStore(tmp_path / "runs.sqlite3", keep_input=mode) as runs:  # type: ignore[arg-type]
        submit(runs, "trun_1", request)
        stored = runs.get("trun_1")
        on_disk = file_bytes(runs)
    assert stored is not None and stored.key == request_key(request, ENDPOINT)
    if mode == "none":
        assert stored.input_preview is None and stored.request is None
        assert b"xxxxxxxxxx" not in on_disk
    else:
        assert stored.input_preview == "x" * (PREVIEW_CHARS - 1) + "…"
        assert len(stored.input_preview) == PREVIEW_CHARS
    if mode == "full":
        assert stored.request == request.to_body()
        assert tail.encode() in on_disk and b"SPEC-MARKER" in on_disk
    else:
        assert stored.request is None
        assert tail.encode() not in on_disk and b"SPEC-MARKER" not in on_disk


def test_json_input_preview_is_compact_json(store: RunStore) -> None:
    submit(store, "trun_1", TaskRequest("lite", {"company": "Stripe", "year": 2024}))
    stored = store.get("trun_1")
    assert stored is not None and stored.input_preview == '{"company":"Stripe","year":2024}'


def test_the_api_key_is_never_written(tmp_path: Path) -> None:
    sentinel = "SENTINEL-KEY-d41d8cd98f00b204"
    request = TaskRequest("lite", GDP)
    with (
        start_emulator(time_scale=0, api_key=sentinel) as emulator,
        Client(sentinel, emulator.base_url) as client,
        RunStore(tmp_path / "runs.sqlite3", keep_input="full") as runs,
    ):
        run = client.create_run(request)
        key = request_key(request, emulator.base_url)
        runs.record_created(run, request, key=key, endpoint=emulator.base_url)
        runs.record_status(client.retrieve_run(run.run_id))
        runs.record_result(client.result(run.run_id))
        assert repr(runs.get(run.run_id)).count(sentinel) == 0
        on_disk = file_bytes(runs)
        assert run.run_id.encode() in on_disk  # the files read are the ones written
        assert sentinel.encode() not in on_disk
    assert sentinel.encode() not in file_bytes(runs)


def test_a_result_built_from_parts_is_stored_as_wire_json(store: RunStore) -> None:
    wire = completed("trun_1")
    parts = TaskRunResult(run=wire.run, output=wire.output)
    submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_result(parts)
    stored = store.get("trun_1")
    assert stored is not None and stored.result == dict(wire.raw)


def test_a_result_from_parts_keeps_the_parts_status(store: RunStore) -> None:
    wire = completed("trun_1")
    stale_run = TaskRun.from_dict({**wire.run.raw, "status": "running", "is_active": True})
    finished = dataclasses.replace(stale_run, status="completed", is_active=False)
    store.record_result(TaskRunResult(run=finished, output=wire.output))
    stored = store.get("trun_1")
    assert stored is not None and stored.status == "completed"
    result = stored.task_run_result()
    assert result is not None and result.run.status == "completed" and not result.run.is_active


def test_a_result_without_wire_json_is_refused(store: RunStore) -> None:
    bare = TaskRunResult(
        run=TaskRun("trun_1", "completed", False, "lite"), output=TaskOutput("text", "hi")
    )
    with pytest.raises(ValueError, match="trun_1 carries no wire JSON"):
        store.record_result(bare)


# -- find, history, cache ------------------------------------------------------------------


def test_find_returns_an_active_run_then_its_result(store: RunStore) -> None:
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    active = store.find(key)
    assert active is not None and active.is_active and active.result is None
    store.record_status(task_run("trun_1", "running"))
    running = store.find(key)
    assert running is not None and running.status == "running"
    store.record_result(completed("trun_1"))
    done = store.find(key)
    assert done is not None and done.status == "completed" and not done.is_active
    assert done.task_run_result() == completed("trun_1")


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_find_ignores_failed_and_cancelled_runs(store: RunStore, status: str) -> None:
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_failed(task_run("trun_1", status, error="no sources"))
    assert store.find(key) is None
    failed = store.get("trun_1")
    assert failed is not None and failed.status == status and failed.error == "no sources"
    # Re-running the failed cell creates a new run, and that one is found.
    submit(store, "trun_2", TaskRequest("lite", GDP))
    found = store.find(key)
    assert found is not None and found.run_id == "trun_2"


def test_record_failed_marks_a_still_active_run_failed(store: RunStore) -> None:
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_failed(task_run("trun_1", "running"))
    stored = store.get("trun_1")
    assert stored is not None and stored.status == "failed" and not stored.is_active
    assert store.find(key) is None


def test_find_returns_a_completed_run_whose_result_was_not_stored(store: RunStore) -> None:
    # Interrupted between the final status and the result: fetch it, never pay again.
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_status(TaskRun("trun_1", "completed", False, "lite"))
    found = store.find(key)
    assert found is not None and found.run_id == "trun_1" and found.task_run_result() is None


def test_threads_share_one_connection_so_none_is_left_behind(store: RunStore) -> None:
    store.history()  # open the file first
    fds = len(os.listdir("/proc/self/fd"))
    request = TaskRequest("lite", GDP)
    threads = [
        threading.Thread(target=submit, args=(store, f"trun_{i:032x}", request)) for i in range(50)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(store.history(limit=100)) == 50
    assert len(os.listdir("/proc/self/fd")) <= fds + 2  # not one connection per finished thread


def test_find_returns_the_newest_match_for_that_key_only(store: RunStore) -> None:
    key = submit(store, "trun_old", TaskRequest("lite", GDP))
    store.record_result(completed("trun_old", "old"))
    submit(store, "trun_new", TaskRequest("lite", GDP))
    store.record_result(completed("trun_new", "new"))
    other = submit(store, "trun_other", TaskRequest("core", GDP))
    found = store.find(key)
    assert found is not None and found.run_id == "trun_new"
    assert found.result is not None and found.result["output"]["content"] == {"gdp": "new"}
    assert store.find(other) is not None and store.find(other).run_id == "trun_other"  # type: ignore[union-attr]
    assert store.find("0" * 64) is None


def test_recording_again_updates_the_same_row(store: RunStore) -> None:
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    created_at = store.get("trun_1").created_at  # type: ignore[union-attr]
    submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_status(task_run("trun_1", "running"))
    store.record_status(task_run("trun_1", "running"))
    store.record_result(completed("trun_1", "first"))
    store.record_result(completed("trun_1", "second"))
    rows = store.history()
    assert [row.run_id for row in rows] == ["trun_1"]
    assert rows[0].created_at == created_at and rows[0].updated_at >= created_at
    assert rows[0].key == key
    assert rows[0].result is not None and rows[0].result["output"]["content"] == {"gdp": "second"}


def test_a_late_status_never_undoes_a_finished_run(store: RunStore) -> None:
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_result(completed("trun_1"))
    store.record_status(task_run("trun_1", "running"))
    submit(store, "trun_1", TaskRequest("lite", GDP))
    stored = store.find(key)
    assert stored is not None and stored.status == "completed" and not stored.is_active
    assert stored.result is not None


def test_a_run_not_created_here_is_recorded_without_a_cache_key(store: RunStore) -> None:
    store.record_result(completed("trun_elsewhere"))
    stored = store.get("trun_elsewhere")
    assert stored is not None and stored.key is None and stored.status == "completed"
    assert stored.task_run_result() is not None


def test_history_is_newest_first_and_limited(store: RunStore) -> None:
    for i in range(5):
        submit(store, f"trun_{i}", TaskRequest("lite", f"question {i}"))
    assert [row.run_id for row in store.history()] == [f"trun_{i}" for i in range(4, -1, -1)]
    assert [row.run_id for row in store.history(limit=2)] == ["trun_4", "trun_3"]
    assert all(isinstance(row, StoredRun) for row in store.history())


def test_cache_hits_and_clear_cache(store: RunStore) -> None:
    key = submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_result(completed("trun_1"))
    submit(store, "trun_2", TaskRequest("lite", "another question"))
    store.record_result(completed("trun_2"))
    submit(store, "trun_3", TaskRequest("lite", "still running"))
    store.mark_cache_hit("trun_1")
    store.mark_cache_hit("trun_1")
    assert store.find(key).cache_hits == 2  # type: ignore[union-attr]

    assert store.clear_cache() == 2
    assert store.find(key) is None
    assert store.clear_cache() == 0
    # The runs stay in the history; the active one is still found.
    assert {row.run_id for row in store.history()} == {"trun_1", "trun_2", "trun_3"}
    assert store.find(request_key(TaskRequest("lite", "still running"), ENDPOINT)) is not None
    # A new identical run becomes the cache entry.
    submit(store, "trun_4", TaskRequest("lite", GDP))
    store.record_result(completed("trun_4"))
    assert store.find(key).run_id == "trun_4"  # type: ignore[union-attr]


# -- concurrent writers --------------------------------------------------------------------

ROWS = 200

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from parallel_nb.api.models import TaskRequest, TaskRun, TaskRunResult
    from parallel_nb.runs.store import RunStore, request_key

    path, tag, go, rows = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.002)
    with RunStore(path) as store:
        for i in range(rows):
            run_id = f"trun_{tag}_{i}"
            request = TaskRequest("lite", f"{tag} question {i}")
            run = TaskRun(run_id, "queued", True, "lite")
            store.record_created(run, request, key=request_key(request, "demo"), endpoint="demo")
            run_json = {"run_id": run_id, "status": "completed", "is_active": False,
                        "processor": "lite"}
            output = {"type": "text", "content": f"answer {i}"}
            store.record_result(TaskRunResult.from_dict({"run": run_json, "output": output}))
    print("done", flush=True)
    """
)


def assert_all_written(path: Path, tags: list[str]) -> None:
    with RunStore(path) as runs:
        rows = runs.history(limit=len(tags) * ROWS + 10)
    expected = {f"trun_{tag}_{i}" for tag in tags for i in range(ROWS)}
    assert {row.run_id for row in rows} == expected
    assert all(row.status == "completed" and row.result is not None for row in rows)


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    # Both start on a file that does not exist yet, so creating it races too.
    path, go = tmp_path / "runs.sqlite3", tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, str(go), str(ROWS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    go.touch()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.strip() == "done" and "locked" not in err
    assert_all_written(path, ["a", "b"])


def test_eight_threads_write_at_once(store: RunStore) -> None:
    tags = [f"t{n}" for n in range(8)]
    start = threading.Barrier(len(tags))
    errors: list[BaseException] = []

    def write(tag: str) -> None:
        try:
            start.wait()
            for i in range(ROWS):
                run_id = f"trun_{tag}_{i}"
                submit(store, run_id, TaskRequest("lite", f"{tag} question {i}"), "demo")
                store.record_result(completed(run_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert_all_written(store.path, tags)


# -- task groups ---------------------------------------------------------------------------


def test_a_group_is_recorded_with_its_runs_by_request_number(store: RunStore) -> None:
    store.record_group("tgrp_1", "core", 40, ENDPOINT + "/")
    store.record_group_runs("tgrp_1", [(0, "trun_a"), (7, "trun_b")])
    store.record_group_runs("tgrp_2", [(0, "trun_c")])
    group = store.get("tgrp_1")
    assert group is not None and group.kind == "group" and group.is_active
    assert group.processor == "core" and group.input_preview == "40 rows"
    assert group.endpoint == ENDPOINT and group.key is None
    assert store.group_runs("tgrp_1") == {0: "trun_a", 7: "trun_b"}
    assert store.group_runs("tgrp_unknown") == {}
    assert [row.run_id for row in store.history()] == ["tgrp_1"]

    store.record_group("tgrp_1", "core", 40, ENDPOINT)  # resuming records it again
    store.record_group_status("tgrp_1", "completed", is_active=False)
    done = store.get("tgrp_1")
    assert done is not None and done.status == "completed" and not done.is_active
    assert done.created_at == group.created_at


def test_a_batch_finds_its_group_by_key_and_keeps_its_recipe(store: RunStore) -> None:
    requests = [TaskRequest("lite", "Stripe"), TaskRequest("lite", "Figma")]
    spec = {"output_schema": {"type": "text"}}
    key = batch_key(requests, spec, ENDPOINT)
    assert key == batch_key(requests, spec, ENDPOINT + "/")
    assert key != batch_key(requests[::-1], spec, ENDPOINT)  # request numbers would differ
    assert key != batch_key(requests, None, ENDPOINT)
    assert key != batch_key(requests, spec, "https://elsewhere.example")

    recipe = {"input": "Research {{company}}", "output": "ceo", "over": "companies"}
    store.record_group("tgrp_1", "lite", 2, ENDPOINT, key=key, recipe=recipe)
    found = store.find(key, kind="group")
    assert found is not None and found.run_id == "tgrp_1" and found.request == recipe
    assert store.find(key) is None  # a single run's lookup never answers with a group

    store.record_group_status("tgrp_1", "completed", is_active=False)
    assert store.find(key, kind="group") is not None
    store.clear_cache()
    assert store.find(key, kind="group") is None
    assert store.get("tgrp_1").request == recipe  # type: ignore[union-attr]


def test_a_group_recipe_is_not_kept_without_input(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite3", keep_input="none") as runs:
        runs.record_group("tgrp_1", "lite", 2, ENDPOINT, key="k", recipe={"input": "secret"})
        group = runs.get("tgrp_1")
        assert group is not None and group.request is None and group.key == "k"


def test_a_group_is_never_a_cache_entry(store: RunStore) -> None:
    store.record_group("tgrp_1", "lite", 1, ENDPOINT)
    store.record_group_status("tgrp_1", "completed", is_active=False)
    assert store.find(request_key(TaskRequest("lite", GDP), ENDPOINT)) is None
    # record_group_status only ever touches groups.
    submit(store, "trun_1", TaskRequest("lite", GDP))
    store.record_group_status("trun_1", "completed", is_active=False)
    run = store.get("trun_1")
    assert run is not None and run.status == "queued" and run.kind == "run"


def test_a_version_1_file_is_migrated_keeping_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    with RunStore(path) as runs:
        key = submit(runs, "trun_1", TaskRequest("lite", GDP))
        runs.record_result(completed("trun_1"))
    # What version 1 wrote: the runs table only.
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE group_runs")
        db.execute("PRAGMA user_version = 1")
    with RunStore(path) as runs:
        found = runs.find(key)
        assert found is not None and found.run_id == "trun_1" and found.result is not None
        runs.record_group_runs("tgrp_1", [(0, "trun_2")])
        assert runs.group_runs("tgrp_1") == {0: "trun_2"}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
