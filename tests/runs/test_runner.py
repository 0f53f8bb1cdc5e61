"""The runner: runs followed over real HTTP against the emulator, and scripted streams for the
traffic the emulator cannot produce (bursts, broken and closing streams, stalls)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from scripted_api import (
    RUN_ID,
    RecordingView,
    ScriptedClient,
    burst,
    request,
    run,
    state,
    stats,
)

from parallel_nb.api.client import AsyncClient, Client
from parallel_nb.api.errors import ConnectionFailed, RequestTimeoutError, RunFailed
from parallel_nb.api.models import TaskRequest
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.result import TaskResult
from parallel_nb.runs.runner import (
    MAX_REFRESH_HZ,
    aexecute,
    check_refresh_hz,
    execute,
    fetch,
    previous_interaction_id,
)

GDP = "What was the GDP of France in 2023?"


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[Client]:
    with Client(emulator.api_key, emulator.base_url) as client:
        yield client


def test_execute_follows_a_run_to_its_result(api: Client) -> None:
    view = RecordingView()
    events_on = TaskRequest(processor="core", input=GDP, enable_events=True)
    result = execute(api, events_on, view=view)
    assert isinstance(result, TaskResult)
    assert result.status == "completed"
    assert result.request is not None and result.request.input == GDP
    assert isinstance(result.output, str) and "France" in result.output
    assert view.states[0].status == "creating"
    assert view.last.status == "completed" and view.last.run_id == result.run_id
    assert view.last.progress == 100.0 and view.last.messages
    assert view.closed == 1


def test_views_are_only_drawn_from_the_calling_thread(api: Client) -> None:
    view = RecordingView()
    execute(api, request("lite", GDP), view=view)
    assert view.threads == {threading.get_ident()}


def test_a_failed_run_raises_run_failed_with_its_id(api: Client) -> None:
    view = RecordingView()
    with pytest.raises(RunFailed) as caught:
        execute(api, request("lite", "Look this up. emulator: fail"), view=view)
    assert caught.value.run_id.startswith("trun_")
    assert caught.value.status == "failed"
    assert "could not complete the research" in caught.value.message
    assert view.last.status == "failed" and view.last.run_id == caught.value.run_id
    assert view.closed == 1


def test_fetch_returns_a_finished_run_without_drawing(api: Client) -> None:
    created = api.create_run(request("lite", GDP))
    api.result(created.run_id, timeout=30)
    view = RecordingView()
    result = fetch(api, created.run_id, view=view)
    assert result.run_id == created.run_id and result.status == "completed"
    assert result.output is not None
    assert view.states == []


def test_fetch_follows_a_run_that_is_still_going() -> None:
    with start_emulator(time_scale=0.02, api_key="k") as slow, Client("k", slow.base_url) as api:
        created = api.create_run(request("lite", GDP))
        view = RecordingView()
        result = fetch(api, created.run_id, view=view)
    assert result.status == "completed"
    assert view.states and view.last.status == "completed"


def test_a_burst_of_events_is_drawn_at_the_refresh_rate_not_per_event() -> None:
    client = ScriptedClient([burst(1000, batches=10, pause=0.05)])
    view = RecordingView()
    started = time.monotonic()
    result = execute(client, request(), view=view, refresh_hz=4.0)
    duration = time.monotonic() - started
    assert result.status == "completed"
    assert view.last.events == 1002  # every event was folded, even those never drawn
    # creating + created + at most one per 1/4 s + the final draw
    assert len(view.states) <= duration * 4.0 + 3
    assert len(view.states) < 50


def test_the_stream_is_reopened_until_the_final_state() -> None:
    early_close = [state("running"), stats(40.0)]
    client = ScriptedClient([early_close, [state("running"), state("completed", output=True)]])
    result = execute(client, request(), view=RecordingView())
    assert result.status == "completed"
    assert len(client.streams) == 2
    assert client.result_calls == 0  # the output came with the final state event


def test_a_broken_stream_falls_back_to_the_result_endpoint() -> None:
    broken = [state("running"), ConnectionFailed("connection reset")]
    client = ScriptedClient([broken])
    view = RecordingView()
    result = execute(client, request(), view=view)
    assert result.status == "completed" and result.output == {"gdp": "$3.1 trillion"}
    assert client.result_calls == 1
    assert any(s.note and "connection reset" in s.note for s in view.states)


def test_a_completed_state_without_output_is_completed_from_the_result_endpoint() -> None:
    client = ScriptedClient([[state("running"), state("completed")]])
    result = execute(client, request(), view=RecordingView())
    assert result.output == {"gdp": "$3.1 trillion"}
    assert client.result_calls == 1


def test_a_failed_state_event_raises_with_the_services_message() -> None:
    failing = [state("running"), state("failed", error="no sources found")]
    client = ScriptedClient([failing], final=run("failed", error="no sources found"))
    with pytest.raises(RunFailed, match="no sources found") as caught:
        execute(client, request(), view=RecordingView())
    assert caught.value.run_id == RUN_ID


def test_timeout_stops_watching_and_says_the_run_goes_on() -> None:
    stalled = [state("running"), 30.0]  # the pause ends only when the runner closes the stream
    client = ScriptedClient([stalled])
    view = RecordingView()
    with pytest.raises(RequestTimeoutError) as caught:
        execute(client, request(), view=view, timeout=0.3)
    assert caught.value.run_id == RUN_ID
    assert f"%parallel result {RUN_ID}" in str(caught.value)
    assert view.last.status == "interrupted"
    assert client.streams[0].closed


def test_interrupt_prints_the_run_id_and_reraises(capsys: pytest.CaptureFixture[str]) -> None:
    client = ScriptedClient([[state("running"), 30.0]])
    view = RecordingView()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            execute(client, request(), view=view)
    finally:
        timer.cancel()
    err = capsys.readouterr().err
    assert f"%parallel result {RUN_ID}" in err
    assert "continues on the server" in err
    assert view.last.status == "interrupted" and view.closed == 1
    assert client.streams[0].closed


async def test_aexecute_runs_on_the_callers_event_loop(emulator: EmulatorHandle) -> None:
    view = RecordingView()
    async with AsyncClient(emulator.api_key, emulator.base_url) as api:
        result = await aexecute(api, request("lite", GDP), view=view)
    assert result.status == "completed" and result.output
    assert view.threads == {threading.get_ident()}
    assert view.last.status == "completed"


async def test_aexecute_raises_run_failed(emulator: EmulatorHandle) -> None:
    async with AsyncClient(emulator.api_key, emulator.base_url) as api:
        with pytest.raises(RunFailed):
            await aexecute(api, request("lite", "emulator: fail please"))


def test_previous_interaction_id_accepts_results_runs_and_ids() -> None:
    finished = TaskResult(run=run("completed"), output=None)
    assert previous_interaction_id(finished) == RUN_ID
    assert previous_interaction_id(run("completed")) == RUN_ID
    assert previous_interaction_id("trun_123") == "trun_123"
    with pytest.raises(TypeError, match="not int"):
        previous_interaction_id(42)


@pytest.mark.parametrize("rate", [0, -1, MAX_REFRESH_HZ + 1])
def test_refresh_rates_outside_the_limit_are_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="refresh_hz"):
        check_refresh_hz(rate)
