"""Ctrl-C in each phase of a run — while it is created, while its events stream, while its result
is fetched — stops watching, keeps the run (recorded), says how to follow it again, re-raises.

SIGINT comes from a timer thread, as a user's Interrupt does; a scripted client (or a slowed-down
client method) holds the run in the phase under test.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from scripted_api import RUN_ID, RecordingView, ScriptedClient, request, run, state

from parallel_nb.api.client import Client
from parallel_nb.api.errors import ConnectionFailed
from parallel_nb.api.models import TaskOutput, TaskRequest, TaskRun, TaskRunResult
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.runs.runner import aexecute, execute, fetch
from parallel_nb.runs.store import RunStore

GDP = "What was the GDP of France in 2023?"
TRUN = re.compile(r"trun_[0-9a-f]{32}")


class Recorder:
    """A RunRecorder that keeps what it heard: ``runs`` (started) and ``ends`` (finished)."""

    def __init__(self) -> None:
        self.runs: list[TaskRun] = []
        self.ends: list[tuple[TaskRun, TaskOutput | None]] = []

    def started(self, run: TaskRun) -> None:
        self.runs.append(run)

    def finished(self, run: TaskRun, output: TaskOutput | None) -> None:
        self.ends.append((run, output))

    def first_run(self, timeout: float = 10.0) -> TaskRun:
        """The first run heard of, waiting for it as long as ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.runs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.runs, "the run was never recorded"
        return self.runs[0]


class SlowCreate(ScriptedClient):
    """Creating a run takes ``seconds``: the service is slow to answer the POST."""

    def __init__(self, *args: Any, seconds: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seconds = seconds

    def create_run(self, request: TaskRequest) -> TaskRun:
        time.sleep(self._seconds)
        return super().create_run(request)


class StalledResult(ScriptedClient):
    """``/result`` does not answer until the caller gives up."""

    def result(self, run_id: str, *, timeout: float | None = None) -> TaskRunResult:
        self.result_calls += 1
        time.sleep(30)
        raise AssertionError("the interrupt should have ended this wait")


@pytest.fixture
def interrupt_after() -> Iterator[Any]:
    timers: list[threading.Timer] = []

    def arm(seconds: float) -> None:
        timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
        timers.append(timer)
        timer.start()

    yield arm
    for timer in timers:
        timer.cancel()


# -- while the run is created --------------------------------------------------------------------


def test_interrupt_while_creating_keeps_and_records_the_run(
    interrupt_after: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = SlowCreate([[state("completed", output=True)]], seconds=0.8)
    view, recorder = RecordingView(), Recorder()
    interrupt_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        execute(client, request(), view=view, recorder=recorder)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "interrupted while creating the run" in err
    assert "may already have reached the service" in err and "%parallel history" in err
    assert view.last.status == "interrupted" and "creating" in (view.last.note or "")
    assert view.closed == 1
    # The service answered after the interrupt: the run is recorded all the same.
    assert recorder.first_run().run_id == RUN_ID
    assert recorder.ends == []


async def test_cancelling_aexecute_while_creating_still_records_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class SlowAsyncCreate:
        async def create_run(self, request: TaskRequest) -> TaskRun:
            await asyncio.sleep(0.3)
            return run("queued")

    recorder = Recorder()
    task = asyncio.create_task(aexecute(SlowAsyncCreate(), request(), recorder=recorder))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "interrupted while creating the run" in capsys.readouterr().err
    await asyncio.sleep(0.5)
    assert [r.run_id for r in recorder.runs] == [RUN_ID]


# -- while its events stream --------------------------------------------------------------------


def test_interrupt_while_streaming_says_how_to_attach(
    interrupt_after: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = ScriptedClient([[state("running"), 30.0]])
    view, recorder = RecordingView(), Recorder()
    interrupt_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        execute(client, request(), view=view, recorder=recorder)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert f"stopped watching run {RUN_ID}, which continues on the server" in err
    assert f"%parallel attach {RUN_ID}" in err
    assert [r.run_id for r in recorder.runs] == [RUN_ID] and recorder.ends == []
    assert view.last.status == "interrupted" and client.streams[0].closed


# -- while its result is fetched ------------------------------------------------------------------


def test_interrupt_while_fetching_a_completed_runs_result(
    interrupt_after: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The stream reports completion without the output, so the runner asks /result.
    client = StalledResult([[state("running"), state("completed")]])
    recorder = Recorder()
    interrupt_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        execute(client, request(), view=RecordingView(), recorder=recorder)  # type: ignore[arg-type]
    assert client.result_calls == 1
    err = capsys.readouterr().err
    assert f"stopped fetching the result of run {RUN_ID}, which completed on the server" in err
    assert f"%parallel attach {RUN_ID}" in err
    assert recorder.ends == []  # nothing is recorded as the run's end but the service's


def test_interrupt_while_fetching_after_the_stream_broke(
    interrupt_after: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = StalledResult([[state("running"), ConnectionFailed("connection reset")]])
    client.final = run("running")  # polled, the run is still going: the runner waits on /result
    interrupt_after(0.5)
    with pytest.raises(KeyboardInterrupt):
        execute(client, request(), view=RecordingView())  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert f"stopped watching run {RUN_ID}, which continues on the server" in err
    assert f"%parallel attach {RUN_ID}" in err


def test_interrupt_while_fetching_an_ended_runs_result_by_id(
    interrupt_after: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = StalledResult([], final=run("completed"))
    interrupt_after(0.3)
    with pytest.raises(KeyboardInterrupt):
        fetch(client, RUN_ID, view=RecordingView())  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert f"stopped fetching the result of run {RUN_ID}, which completed on the server" in err


# -- the same, through the magic against the emulator --------------------------------------------


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    with start_emulator(time_scale=0.03, api_key="slow-key") as emulator:
        monkeypatch.setenv("PARALLEL_API_KEY", "slow-key")
        monkeypatch.setenv("PARALLEL_BASE_URL", emulator.base_url)
        monkeypatch.delenv("PARALLEL_NB_DEMO", raising=False)
        yield emulator


def store(ip: InteractiveShell) -> RunStore:
    return ip.magics_manager.registry["ParallelMagics"].store()


def test_a_cell_interrupted_while_creating_is_followed_not_paid_twice(
    ip: InteractiveShell,
    slow: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    interrupt_after: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_create = Client.create_run

    def slow_create(self: Client, request: TaskRequest) -> TaskRun:
        time.sleep(0.8)  # a slow network: the POST is still on its way when Ctrl-C comes
        return real_create(self, request)

    monkeypatch.setattr(Client, "create_run", slow_create)
    interrupt_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        ip.run_cell_magic("parallel", "lite", GDP)
    assert "%parallel history" in capsys.readouterr().err
    deadline = time.monotonic() + 10
    while not store(ip).history(1) and time.monotonic() < deadline:
        time.sleep(0.02)
    [recorded] = store(ip).history(1)  # recorded although the cell had stopped waiting

    result = ip.run_cell_magic("parallel", "lite", GDP)

    assert result.run_id == recorded.run_id and result.status == "completed"
    assert slow.stats()["runs_created"] == 1


def test_a_cell_interrupted_while_streaming_can_be_attached_to(
    ip: InteractiveShell, slow: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt_once_streaming() -> None:
        deadline = time.monotonic() + 20
        while slow.stats()["open_streams"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_streaming, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        ip.run_cell_magic("parallel", "lite", GDP)
    err = capsys.readouterr().err
    run_id = TRUN.search(err).group()
    assert f"%parallel attach {run_id}" in err and "continues on the server" in err
    assert store(ip).get(run_id).is_active

    attached = ip.run_line_magic("parallel", f"attach {run_id}")

    assert attached.run_id == run_id and attached.status == "completed"
    assert slow.stats()["runs_created"] == 1
    assert store(ip).get(run_id).result is not None


def test_an_attach_interrupted_while_fetching_the_result_says_so(
    ip: InteractiveShell,
    slow: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    interrupt_after: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Client("slow-key", slow.base_url) as api:
        run_id = api.create_run(TaskRequest(processor="lite", input=GDP)).run_id
        api.result(run_id, timeout=60)  # the run has completed on the server

    def stalled(self: Client, run_id: str, *, timeout: float | None = None) -> TaskRunResult:
        time.sleep(30)
        raise AssertionError("the interrupt should have ended this wait")

    with monkeypatch.context() as patch:
        patch.setattr(Client, "result", stalled)
        interrupt_after(0.3)
        with pytest.raises(KeyboardInterrupt):
            ip.run_line_magic("parallel", f"attach {run_id}")
    err = capsys.readouterr().err
    assert f"stopped fetching the result of run {run_id}, which completed on the server" in err
    assert ip.run_line_magic("parallel", f"attach {run_id}").status == "completed"
