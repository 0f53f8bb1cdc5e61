"""The run store in the magics and the Python API: every run recorded, identical cells answered
from the cache (no request reaches the server) or joined to their run still going, ``--refresh``,
``%parallel attach``, ``history`` and ``cache clear``."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from scripted_api import point_at
from traitlets import TraitError

import parallel_nb
from parallel_nb import config
from parallel_nb.api.client import Client
from parallel_nb.api.errors import RunFailed
from parallel_nb.api.models import TaskRequest
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.result import TaskResult
from parallel_nb.runs.background import RunHandle
from parallel_nb.runs.store import RunStore
from parallel_nb.runs.tracking import HISTORY_COLUMNS

GDP = "What was the GDP of France in 2023?"
SLOW = 0.03  # emulator time scale: a lite run takes about a second, long enough to interrupt
RUN_ID = re.compile(r"trun_[0-9a-f]{32}")
CACHED_NOTE = re.compile(
    r"parallel-nb: cached result of run (trun_\w+) \(from \d+ s ago\); --refresh runs it again"
)


pytestmark = pytest.mark.usefixtures("on_emulator")


def cell(ip: InteractiveShell, line: str, body: str = GDP) -> object:
    return ip.run_cell_magic("parallel", line, body)


def store(ip: InteractiveShell) -> RunStore:
    return ip.magics_manager.registry["ParallelMagics"].store()


def api_requests(emulator: EmulatorHandle) -> int:
    """Every request the emulator has answered, except those for its own statistics."""
    requests = emulator.stats()["requests"]
    return sum(
        sum(codes.values()) for route, codes in requests.items() if "/_emulator" not in route
    )


def interrupt_once_streaming(stats: Callable[[], dict[str, Any]]) -> threading.Thread:
    """Send this process SIGINT once an emulator (its ``stats``) has an event stream open: the
    run exists and the cell is watching it."""

    def interrupt() -> None:
        deadline = time.monotonic() + 20
        while stats()["open_streams"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    return thread


# -- the cache ---------------------------------------------------------------------------------


def test_re_executing_a_cell_answers_from_the_cache_without_any_request(
    ip: InteractiveShell, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    first = cell(ip, "lite")
    assert isinstance(first, TaskResult) and not first.cached
    capsys.readouterr()
    before = api_requests(emulator)

    again = cell(ip, "lite")

    assert api_requests(emulator) == before  # no create, no GET: nothing reached the server
    assert isinstance(again, TaskResult) and again.cached
    assert again.run_id == first.run_id and again.output == first.output
    assert again.request is not None and again.request.input == GDP
    [note] = capsys.readouterr().out.splitlines()[:1]
    assert CACHED_NOTE.fullmatch(note) and first.run_id in note
    assert store(ip).get(first.run_id).cache_hits == 1


def test_refresh_creates_a_new_run_which_then_answers_the_cache(
    ip: InteractiveShell, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    first = cell(ip, "lite")
    created = emulator.stats()["runs_created"]
    fresh = cell(ip, "lite --refresh")
    assert emulator.stats()["runs_created"] == created + 1
    assert not fresh.cached and fresh.run_id != first.run_id
    capsys.readouterr()
    assert cell(ip, "lite").run_id == fresh.run_id  # the newest completed run answers


def test_a_different_request_is_not_a_cache_hit(
    ip: InteractiveShell, emulator: EmulatorHandle
) -> None:
    cell(ip, "lite")
    created = emulator.stats()["runs_created"]
    assert not cell(ip, "lite --metadata team=a").cached
    assert not cell(ip, "base").cached
    assert emulator.stats()["runs_created"] == created + 2


def test_a_cached_result_stored_in_var_is_marked_cached(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(ip, "lite gdp")
    with capture_output() as captured:
        assert cell(ip, "lite gdp") is None
    stored = ip.user_ns["gdp"]
    assert isinstance(stored, TaskResult) and stored.cached
    assert CACHED_NOTE.match(captured.stdout)
    [shown] = [o for o in captured.outputs if "text/html" in o.data]
    assert shown.metadata["parallel_nb"]["cached"] is True


def test_a_failed_run_is_not_cached(ip: InteractiveShell, emulator: EmulatorHandle) -> None:
    created = emulator.stats()["runs_created"]
    for _ in range(2):
        with pytest.raises(RunFailed):
            cell(ip, "lite", "Check this. emulator: fail")
    assert emulator.stats()["runs_created"] == created + 2
    assert [run.status for run in store(ip).history(2)] == ["failed", "failed"]


# -- one run per request while it is going ------------------------------------------------------


def test_a_cell_re_executed_while_its_run_is_going_follows_that_run(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_emulator(time_scale=SLOW, api_key="slow-key") as slow:
        point_at(monkeypatch, slow)
        interrupt_once_streaming(slow.stats)
        with pytest.raises(KeyboardInterrupt):
            cell(ip, "lite")
        run_id = RUN_ID.search(capsys.readouterr().err).group()
        assert store(ip).get(run_id).is_active  # recorded at once, before any result

        again = cell(ip, "lite")

        assert slow.stats()["runs_created"] == 1
        assert again.run_id == run_id and again.status == "completed" and not again.cached
        out = capsys.readouterr().out
        assert f"run {run_id} for this same request was started" in out
        assert "--refresh starts a new run" in out
    stored = store(ip).get(run_id)
    assert stored.status == "completed" and stored.result is not None


def test_a_run_the_service_forgot_is_replaced_by_a_new_one(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Demo mode keys runs by "demo", and a new kernel starts a new emulator that knows none of
    # the old one's runs: the stored active run must give way to a new run, not an error.
    monkeypatch.setenv("PARALLEL_NB_DEMO", "1")
    monkeypatch.setenv("PARALLEL_NB_TIME_SCALE", str(SLOW))
    config.reset_settings()
    try:
        demo = config.get_settings()
        interrupt_once_streaming(
            lambda: httpx.get(
                f"{demo.base_url}/_emulator/stats", headers={"x-api-key": demo.api_key}
            ).json()
        )
        with pytest.raises(KeyboardInterrupt):
            cell(ip, "lite")
        lost = RUN_ID.search(capsys.readouterr().err).group()
        config.reset_settings()  # the "restart": the demo emulator is gone with its runs

        result = cell(ip, "lite")

        assert result.status == "completed" and result.run_id != lost
        assert f"the service does not know run {lost}" in capsys.readouterr().out
        assert store(ip).get(lost).status == "unknown"
    finally:
        config.reset_settings()


def test_every_run_is_recorded_as_soon_as_it_exists(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start_emulator(time_scale=SLOW, api_key="slow-key") as slow:
        point_at(monkeypatch, slow)
        handle = cell(ip, "lite --bg")
        assert isinstance(handle, RunHandle)
        recorded = store(ip).get(handle.run_id)
        assert recorded is not None and recorded.is_active and recorded.result is None
        assert recorded.input_preview == GDP and recorded.processor == "lite"
        assert handle.result(60).status == "completed"
    assert store(ip).get(handle.run_id).result is not None


# -- %parallel attach / result ------------------------------------------------------------------


def test_attach_follows_any_run_and_stores_it_in_var(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start_emulator(time_scale=SLOW, api_key="slow-key") as slow:
        point_at(monkeypatch, slow)
        with Client("slow-key", slow.base_url) as api:
            run = api.create_run(TaskRequest(processor="lite", input=GDP))
        assert ip.run_line_magic("parallel", f"attach {run.run_id} attached") is None
    attached = ip.user_ns["attached"]
    assert isinstance(attached, TaskResult) and attached.run_id == run.run_id
    assert attached.status == "completed" and attached.output
    # A run created elsewhere is recorded too, by id (no cache key: no cell asked for it).
    recorded = store(ip).get(run.run_id)
    assert recorded.status == "completed" and recorded.key is None


def test_attach_in_the_background_returns_a_handle(
    ip: InteractiveShell, emulator: EmulatorHandle
) -> None:
    with Client(emulator.api_key, emulator.base_url) as api:
        run = api.create_run(TaskRequest(processor="lite", input=GDP))
    handle = ip.run_line_magic("parallel", f"attach {run.run_id} --bg")
    assert isinstance(handle, RunHandle) and handle.run_id == run.run_id
    assert handle.result(60).output


def test_attach_to_a_task_group_this_store_never_recorded_is_refused(
    ip: InteractiveShell,
) -> None:
    with pytest.raises(UsageError, match=r"tgrp_0123456789abcdef is not a task group recorded"):
        ip.run_line_magic("parallel", "attach tgrp_0123456789abcdef")


def test_over_is_refused_when_attaching_to_a_single_run(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match=r"--over is for task groups"):
        ip.run_line_magic("parallel", "attach trun_0123456789abcdef --over frame")


# -- %parallel history / cache clear -------------------------------------------------------------


def test_history_lists_the_newest_runs_first(ip: InteractiveShell) -> None:
    cell(ip, "lite")
    second = cell(ip, "lite", "What was the GDP of Germany in 2023?")
    cell(ip, "lite", "What was the GDP of Germany in 2023?")  # a cache hit

    frame = ip.run_line_magic("parallel", "history")

    assert tuple(frame.columns) == HISTORY_COLUMNS
    assert list(frame["input"]) == ["What was the GDP of Germany in 2023?", GDP]
    assert frame.loc[0, "run_id"] == second.run_id
    assert list(frame["cache_hits"]) == [1, 0]
    assert set(frame["status"]) == {"completed"} and set(frame["processor"]) == {"lite"}
    assert all(re.fullmatch(r"\d+ s", age) for age in frame["age"])
    assert len(ip.run_line_magic("parallel", "history 1")) == 1


def test_history_of_an_empty_store_says_so(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    frame = ip.run_line_magic("parallel", "history")
    assert frame.empty and tuple(frame.columns) == HISTORY_COLUMNS
    assert f"no runs recorded yet in {data_dir / 'runs.sqlite3'}" in capsys.readouterr().out


@pytest.mark.parametrize("count", ["0", "-3", "many"])
def test_history_needs_a_positive_count(ip: InteractiveShell, count: str) -> None:
    with pytest.raises(UsageError, match="expected a number of runs"):
        ip.run_line_magic("parallel", f"history {count}")


def test_cache_clear_forgets_results_so_cells_run_again(
    ip: InteractiveShell, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(ip, "lite")
    cell(ip, "base")
    capsys.readouterr()
    ip.run_line_magic("parallel", "cache clear")
    assert "forgot 2 stored results" in capsys.readouterr().out
    created = emulator.stats()["runs_created"]
    assert not cell(ip, "lite").cached
    assert emulator.stats()["runs_created"] == created + 1
    assert len(ip.run_line_magic("parallel", "history")) == 3  # the runs stay in the history


# -- configuration -------------------------------------------------------------------------------


def test_store_path_and_keep_input_are_configurable(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere" / "my-runs.sqlite3"
    ip.run_line_magic("config", f"ParallelMagics.store_path = {str(path)!r}")
    ip.run_line_magic("config", "ParallelMagics.keep_input = 'none'")
    result = cell(ip, "lite")
    assert path.exists()
    with RunStore(path) as kept:
        assert kept.get(result.run_id).input_preview is None
    ip.run_line_magic("parallel", "status")
    assert f"run store: {path} (keep_input=none)" in capsys.readouterr().out
    with pytest.raises(TraitError, match="keep_input must be one of"):
        ip.magics_manager.registry["ParallelMagics"].keep_input = "some"


def test_a_store_that_cannot_be_written_never_costs_the_run(
    ip: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    ip.run_line_magic("config", f"ParallelMagics.store_path = {str(blocker / 'runs.sqlite3')!r}")
    result = cell(ip, "lite")
    assert result.status == "completed" and result.output
    err = capsys.readouterr().err
    assert "could not read the run store" in err and "running without the cache" in err
    assert f"could not record run {result.run_id} in the run store" in err


# -- the Python API -------------------------------------------------------------------------------


def test_run_uses_the_cache_unless_refresh(
    emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    first = parallel_nb.run(GDP, processor="lite")
    created = emulator.stats()["runs_created"]
    again = parallel_nb.run(GDP, processor="lite")
    assert again.cached and again.run_id == first.run_id
    assert "refresh=True runs it again" in capsys.readouterr().out
    assert not parallel_nb.run(GDP, processor="lite", refresh=True).cached
    assert emulator.stats()["runs_created"] == created + 1


def test_run_in_the_background_returns_a_handle(emulator: EmulatorHandle) -> None:
    handle = parallel_nb.run(GDP, processor="lite", background=True)
    assert isinstance(handle, RunHandle)
    result = handle.result(60)
    assert result.status == "completed" and handle.done() and handle.status == "completed"
    cached = parallel_nb.run(GDP, processor="lite", background=True)
    assert cached.done() and cached.result().cached and cached.run_id == result.run_id


async def test_arun_uses_the_cache(emulator: EmulatorHandle) -> None:
    first = await parallel_nb.arun(GDP, processor="lite")
    again = await parallel_nb.arun(GDP, processor="lite")
    assert again.cached and again.run_id == first.run_id


async def test_arun_follows_an_identical_run_still_going(monkeypatch: pytest.MonkeyPatch) -> None:
    with start_emulator(time_scale=SLOW, api_key="slow-key") as slow:
        point_at(monkeypatch, slow)
        handle = parallel_nb.run(GDP, processor="lite", background=True)
        result = await parallel_nb.arun(GDP, processor="lite")
        assert slow.stats()["runs_created"] == 1
    assert result.run_id == handle.run_id and result.status == "completed"


def test_fetch_records_the_run(ip: InteractiveShell, emulator: EmulatorHandle) -> None:
    with Client(emulator.api_key, emulator.base_url) as api:
        run = api.create_run(TaskRequest(processor="lite", input=GDP))
    assert parallel_nb.fetch(run.run_id).status == "completed"
    assert store(ip).get(run.run_id).status == "completed"
