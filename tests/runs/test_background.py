"""Background runs: RunHandle over real HTTP and scripted streams, several at once on one event
loop, ``%%parallel --bg`` in a shell driven by a running loop, and in a real kernel."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from scripted_api import RUN_ID, RecordingView, ScriptedClient, burst, request, run, state

from parallel_nb.api.client import Client
from parallel_nb.api.errors import RunFailed
from parallel_nb.api.models import TaskRequest
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.result import TaskResult
from parallel_nb.runs.background import RunHandle, follow_in_background

FOUNDED = {"Stripe": 2010, "Figma": 2012, "Shopify": 2006}
SPEC = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {"founded": {"type": "integer", "description": "year founded"}},
        },
    }
}


@pytest.fixture(scope="module")
def slow() -> Iterator[EmulatorHandle]:
    """Runs take a fraction of a second, so that several are live at the same time."""
    with start_emulator(time_scale=0.01, api_key="bg-key") as handle:
        yield handle


@pytest.fixture
def api(slow: EmulatorHandle) -> Iterator[Client]:
    with Client("bg-key", slow.base_url) as client:
        yield client


def company(name: str) -> TaskRequest:
    return TaskRequest(processor="lite", input={"company": name}, task_spec=SPEC)


def start(client: Client | ScriptedClient, name: str, view: RecordingView) -> RunHandle:
    created = client.create_run(company(name))
    return follow_in_background(client, created, request=company(name), view=view)  # type: ignore[arg-type]


async def test_three_background_runs_at_once_complete_with_their_own_results(
    api: Client, slow: EmulatorHandle
) -> None:
    before = slow.stats()["runs_created"]
    views = {name: RecordingView() for name in FOUNDED}
    handles = {name: start(api, name, views[name]) for name in FOUNDED}
    assert not any(handle.done() for handle in handles.values())  # returned at once

    results = await asyncio.gather(*handles.values())

    assert slow.stats()["runs_created"] == before + 3
    for (name, handle), result in zip(handles.items(), results, strict=True):
        assert isinstance(result, TaskResult) and result.run_id == handle.run_id
        assert result["founded"] == FOUNDED[name]
        view = views[name]
        assert view.last.status == "completed" and view.last.run_id == handle.run_id
        assert view.closed == 1
        # Drawn by the handle's drawing thread and the awaiting one, never by the worker.
        assert view.thread_names <= {
            threading.current_thread().name,
            f"parallel-nb view {handle.run_id}",
        }
        assert f"parallel-nb view {handle.run_id}" in view.thread_names


async def test_result_may_block_the_loops_own_thread_without_deadlock(api: Client) -> None:
    view = RecordingView()
    handle = start(api, "Stripe", view)
    # Blocks this thread, which runs the event loop: the worker thread needs neither.
    result = handle.result(timeout=60)
    assert result["founded"] == 2010 and handle.done() and handle.status == "completed"
    assert view.last.status == "completed" and view.closed == 1


async def test_the_loop_redraws_at_most_refresh_hz() -> None:
    client = ScriptedClient([burst(1000, batches=10, pause=0.05)])
    view = RecordingView()
    started = time.monotonic()
    handle = follow_in_background(client, run("queued"), view=view, refresh_hz=4.0)  # type: ignore[arg-type]
    result = await handle
    duration = time.monotonic() - started
    assert result.status == "completed" and view.last.events == 1002
    # the first draw + at most one per 1/4 s + the final one
    assert len(view.states) <= duration * 4.0 + 3
    assert view.closed == 1


def test_without_a_running_loop_result_draws_while_it_waits(api: Client) -> None:
    view = RecordingView()
    handle = start(api, "Figma", view)
    assert [s.status for s in view.states] == ["queued"]  # drawn once, in the calling "cell"
    result = handle.result(timeout=60)
    assert result["founded"] == 2012
    assert view.last.status == "completed" and view.closed == 1
    assert view.threads == {threading.get_ident()}


def test_result_with_a_timeout_raises_and_the_run_goes_on() -> None:
    client = ScriptedClient([[state("running"), 1.0, state("completed", output=True)]])
    handle = follow_in_background(client, run("queued"), view=RecordingView())  # type: ignore[arg-type]
    with pytest.raises(TimeoutError, match=f"run {RUN_ID} is still (queued|running) after 0.1 s"):
        handle.result(timeout=0.1)
    assert not handle.done()
    assert handle.result(timeout=30).status == "completed"


async def test_a_failed_run_raises_from_result_and_await() -> None:
    failing = [state("running"), state("failed", error="no sources found")]
    client = ScriptedClient([failing], final=run("failed", error="no sources found"))
    handle = follow_in_background(client, run("queued"))  # type: ignore[arg-type]
    with pytest.raises(RunFailed, match="no sources found"):
        await handle
    with pytest.raises(RunFailed):
        handle.result()
    assert handle.status == "failed"


def test_the_repr_names_the_run_and_its_status_only() -> None:
    client = ScriptedClient([[state("running"), 0.3, state("completed", output=True)]])
    handle = follow_in_background(client, run("queued"))  # type: ignore[arg-type]
    assert repr(handle) in (
        f"RunHandle(run_id='{RUN_ID}', status='queued')",
        f"RunHandle(run_id='{RUN_ID}', status='running')",
    )
    handle.result(timeout=30)
    assert repr(handle) == f"RunHandle(run_id='{RUN_ID}', status='completed')"


def test_a_finished_handle_answers_at_once() -> None:
    result = TaskResult(run("completed"), None, request=request(), cached=True)
    handle = RunHandle.finished(result)
    assert handle.done() and handle.status == "completed"
    assert handle.result(timeout=0) is result
    assert repr(handle) == f"RunHandle(run_id='{RUN_ID}', status='completed')"


# -- %%parallel --bg in a shell whose cells run on an event loop, as ipykernel's do ----------------


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, slow: EmulatorHandle) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("PARALLEL_API_KEY", "bg-key")
    monkeypatch.setenv("PARALLEL_BASE_URL", slow.base_url)
    monkeypatch.delenv("PARALLEL_NB_DEMO", raising=False)
    ip = InteractiveShell.instance()
    ip.extension_manager.load_extension("parallel_nb")
    yield ip
    ip.extension_manager.unload_extension("parallel_nb")


async def run_cell(shell: InteractiveShell, source: str) -> object:
    executed = await shell.run_cell_async(
        source, transformed_cell=shell.transform_cell(source), store_history=False
    )
    executed.raise_error()
    return executed.result


async def test_bg_cells_return_at_once_and_their_panels_update_from_the_loop(
    shell: InteractiveShell, slow: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    before = slow.stats()["runs_created"]
    for n, name in enumerate(FOUNDED):
        body = f'{{"company": "{name}"}}\n---\nfounded (integer): year founded'
        assert await run_cell(shell, f"%%parallel lite h{n} --bg\n{body}") is None
    handles: list[RunHandle] = [shell.user_ns[f"h{n}"] for n in range(len(FOUNDED))]
    assert slow.stats()["runs_created"] == before + 3

    # Nobody calls result(): the loop's tasks alone must draw every run to its end.
    deadline = time.monotonic() + 60
    while not all(h.done() for h in handles) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)  # a few of the drawing tasks' ticks
    out = capsys.readouterr().out
    for handle in handles:
        assert f"Parallel · lite · completed · run {handle.run_id}" in out
    answers = [(await handle)["founded"] for handle in handles]
    assert answers == list(FOUNDED.values())


# -- in a real kernel ----------------------------------------------------------------------------


@pytest.mark.slow
def test_in_a_kernel_result_blocks_a_later_cell_without_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("PARALLEL_NB_DEMO", "1")
    monkeypatch.setenv("PARALLEL_NB_TIME_SCALE", "0.02")  # the runs are still going in cell 4
    stripe = '{"company": "Stripe"}\n---\nfounded (integer): year founded'
    figma = '{"company": "Figma"}\n---\nfounded (integer): year founded'
    shopify = '{"company": "Shopify"}\n---\nfounded (integer): year founded'
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext parallel_nb"),
        nbformat.v4.new_code_cell(f"%%parallel lite h1 --bg\n{stripe}"),
        nbformat.v4.new_code_cell(f"%%parallel lite h2 --bg\n{figma}"),
        nbformat.v4.new_code_cell(
            "print('running:', h1.done(), h2.done())\n"
            "print('answers:', h1.result(60)['founded'], h2.result(60)['founded'])"
        ),
        nbformat.v4.new_code_cell(f"%%parallel lite h3 --bg\n{shopify}"),
        # Nothing blocks now: only the drawing task on the kernel's loop updates h3's panel.
        nbformat.v4.new_code_cell(
            "import asyncio\n"
            "while not h3.done():\n"
            "    await asyncio.sleep(0.05)\n"
            "await asyncio.sleep(0.6)\n"
            "print('panel:', repr(h3.view))"
        ),
    ]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()

    printed = "".join(o.get("text", "") for o in notebook.cells[3].outputs)
    assert "running: False False" in printed  # the cells returned before the runs ended
    assert "answers: 2010 2012" in printed
    for bg_cell in notebook.cells[1:3]:
        [panel] = [o for o in bg_cell.outputs if o.output_type == "display_data"]
        # The live panel, updated after its cell had returned, ends as static HTML.
        assert panel.data["text/plain"] == "RunPanel(processor='lite', status='completed')"
    printed = "".join(o.get("text", "") for o in notebook.cells[5].outputs)
    assert "panel: RunPanel(processor='lite', status='completed')" in printed


@pytest.mark.slow
def test_in_a_kernel_the_panel_moves_while_a_later_cell_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``time.sleep`` in a later cell blocks the kernel's event loop; the panel of a --bg run
    must still be updated meanwhile (its widget messages arrive while that cell is busy)."""
    from jupyter_client.manager import start_new_kernel

    monkeypatch.setenv("PARALLEL_NB_DEMO", "1")
    monkeypatch.setenv("PARALLEL_NB_TIME_SCALE", "0.05")  # a core run takes a few seconds
    manager, kernel = start_new_kernel(kernel_name="python3")
    try:
        kernel.execute_interactive("%load_ext parallel_nb", timeout=60)
        kernel.execute_interactive(
            "%%parallel core h --bg --events\nWhat was the GDP of France in 2023?", timeout=60
        )
        blocking = kernel.execute("import time; time.sleep(4); print(h.status)")
        updates, busy, printed = 0, True, ""
        while busy:
            message = kernel.get_iopub_msg(timeout=30)
            if message["parent_header"].get("msg_id") != blocking:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "comm_msg" and content["data"].get("method") == "update":
                updates += 1
            elif kind == "stream":
                printed += content["text"]
            busy = not (kind == "status" and content["execution_state"] == "idle")
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    # Several redraws of the panel reached the front end while the sleeping cell was running.
    assert updates >= 3, f"only {updates} widget updates while the kernel's loop was blocked"
    assert printed.strip() in {"running", "completed"}
