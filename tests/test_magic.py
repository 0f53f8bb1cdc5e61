"""``%%parallel`` / ``%parallel`` on a real IPython shell, running real cells against the emulator,
and the Python API beside them (``parallel_nb.run``, ``arun``, ``fetch``)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from scripted_api import point_at
from traitlets import TraitError

import parallel_nb
from parallel_nb.api.client import Client
from parallel_nb.api.errors import RunFailed
from parallel_nb.api.models import TaskRequest
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.magic import ParallelMagics
from parallel_nb.result import TaskResult

GDP = "What was the GDP of France in 2023?"
STRIPE = '{"company": "Stripe"}\n---\nfounded (integer): year founded\nceo: current CEO\n'
RUN_ID = re.compile(r"trun_[0-9a-f]{32}")


pytestmark = pytest.mark.usefixtures("on_emulator")


def runs_created(emulator: EmulatorHandle) -> int:
    return emulator.stats()["runs_created"]


def cell(ip: InteractiveShell, line: str, body: str) -> Any:
    return ip.run_cell_magic("parallel", line, body)


# -- runs ------------------------------------------------------------------------------------------


def test_a_cell_runs_and_leaves_the_result_as_plain_outputs(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    executed = ip.run_cell(f"%%parallel lite\n{GDP}\n")
    assert executed.success
    result = executed.result
    assert isinstance(result, TaskResult) and result.status == "completed"
    assert list(result.output_df.columns) == ["field", "value", "type"]
    assert len(result.output_df) >= 1 and len(result.basis_df) >= 1
    bundle, _ = ip.display_formatter.format(result)
    assert "text/html" in bundle and bundle["text/plain"].startswith("TaskResult(")
    assert f"TaskResult(run_id='{result.run_id}'" in capsys.readouterr().out


def test_var_stores_the_result_and_shows_the_answer_not_the_citations(
    ip: InteractiveShell,
) -> None:
    with capture_output() as captured:
        assert cell(ip, "core stripe", STRIPE) is None
    stored = ip.user_ns["stripe"]
    assert isinstance(stored, TaskResult) and stored["ceo"] == "Patrick Collison"
    [shown] = [o for o in captured.outputs if "text/html" in o.data]
    assert shown.data["text/plain"].startswith(f"stripe = TaskResult(run_id='{stored.run_id}'")
    assert "Patrick Collison" in shown.data["text/html"]  # the answer is on screen
    first_url = stored.basis_df["url"].dropna().iloc[0]
    assert first_url not in shown.data["text/html"]  # the citation table stays in the variable
    assert "stripe.basis_df" in shown.data["text/html"]


def test_out_names_the_variable_too(ip: InteractiveShell) -> None:
    assert cell(ip, "--out gdp lite", GDP) is None
    assert ip.user_ns["gdp"].processor == "lite"


@pytest.mark.parametrize(
    ("line", "processor", "var"),
    [
        ("lite-fast answer", "lite-fast", "answer"),
        ("lite --no-widget answer", "lite", "answer"),  # options may sit between the words
        ("answer", "core", "answer"),  # a first word that is not a processor is the VAR
        ("--processor lite answer", "lite", "answer"),
    ],
)
def test_the_first_word_is_a_processor_only_if_it_names_one(
    ip: InteractiveShell, line: str, processor: str, var: str
) -> None:
    ip.user_ns.pop(var, None)
    cell(ip, line, GDP)
    assert ip.user_ns[var].processor == processor


def test_a_trailing_semicolon_hides_the_result_and_is_not_sent(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], emulator: EmulatorHandle
) -> None:
    # Uneven indentation is fine: the body is never tokenized as Python.
    assert cell(ip, "lite", f"{GDP}\n  for the\n record;\n") is None
    run_id = RUN_ID.findall(capsys.readouterr().out)[-1]
    with Client(emulator.api_key, emulator.base_url) as api:
        assert api.retrieve_input(run_id)["input"] == f"{GDP}\n  for the\n record"


def test_a_failed_run_raises_run_failed_with_a_short_traceback(ip: InteractiveShell) -> None:
    with pytest.raises(RunFailed) as caught:
        cell(ip, "lite", "Check this. emulator: fail")
    assert RUN_ID.fullmatch(caught.value.run_id)
    lines = caught.value._render_traceback_()
    assert 3 <= len(lines) <= 5
    text = "\n".join(lines)
    assert caught.value.run_id in text and "failed" in text


def test_a_failed_run_stops_run_all(ip: InteractiveShell) -> None:
    executed = ip.run_cell("%%parallel lite\nCheck this. emulator: fail\n")
    assert not executed.success
    assert isinstance(executed.error_in_exec, RunFailed)


def test_a_failed_run_is_still_stored_in_var(ip: InteractiveShell) -> None:
    with pytest.raises(RunFailed) as caught:
        cell(ip, "lite broken", "Check this. emulator: fail")
    stored = ip.user_ns["broken"]
    assert isinstance(stored, TaskResult)
    assert stored.status == "failed" and stored.run_id == caught.value.run_id
    assert stored.error and "could not complete" in stored.error


def test_previous_chains_from_a_stored_result_or_a_run_id(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], emulator: EmulatorHandle
) -> None:
    cell(ip, "lite first", GDP)
    first = ip.user_ns["first"]
    cell(ip, "lite second --previous first", "And in 2022?")
    cell(ip, f"lite third --previous {first.run_id}", "And in 2021?")
    with Client(emulator.api_key, emulator.base_url) as api:
        for name in ("second", "third"):
            sent = api.retrieve_input(ip.user_ns[name].run_id)
            assert sent["previous_interaction_id"] == first.run.interaction_id


def test_line_options_reach_the_request(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    line = (
        "lite --dry-run --metadata team=research --metadata note='two words' --location fr "
        "--include-domains insee.fr,imf.org --exclude-domains reddit.com --events"
    )
    cell(ip, line, GDP)
    out = capsys.readouterr().out
    assert '"team": "research"' in out and '"note": "two words"' in out
    assert '"location": "FR"' in out
    assert '"include_domains": [\n      "insee.fr",\n      "imf.org"\n    ]' in out
    assert '"exclude_domains": [\n      "reddit.com"\n    ]' in out
    assert '"enable_events": true' in out and "events-sse-2025-07-24" in out


def test_interpolation_fills_names_unless_turned_off(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["country"] = "France"
    cell(ip, "lite --dry-run", "GDP of {{country}}?")
    assert '"input": "GDP of France?"' in capsys.readouterr().out
    cell(ip, "lite --dry-run --no-interpolate", "GDP of {{country}}?")
    assert '"input": "GDP of {{country}}?"' in capsys.readouterr().out


# -- nothing is sent -------------------------------------------------------------------------------


def test_dry_run_shows_the_request_and_cost_and_sends_nothing(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], emulator: EmulatorHandle
) -> None:
    before = runs_created(emulator)
    assert cell(ip, "core --dry-run", STRIPE) is None
    out = capsys.readouterr().out
    assert "nothing was sent" in out
    assert '"processor": "core"' in out and '"company": "Stripe"' in out
    assert "$0.025 per run" in out and "1 min – 5 min" in out
    assert runs_created(emulator) == before


def test_dry_run_of_a_processor_the_table_does_not_know(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(ip, "ultra16x --dry-run", GDP)
    assert "ultra16x: not in the processor table" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "line_no"),
    [
        ("What about {{missing}}?", 2),
        ('{"company": "Stripe"}\n---\nfounded (integr): year\n', 4),
        ("question\n---\na: b\n---\nc", 5),
        ('{"a": 1, }', 2),
    ],
)
def test_a_bad_cell_is_a_one_line_usage_error_and_sends_nothing(
    ip: InteractiveShell, emulator: EmulatorHandle, body: str, line_no: int
) -> None:
    before = runs_created(emulator)
    with pytest.raises(UsageError) as caught:
        cell(ip, "lite", body)
    message = str(caught.value)
    assert message.startswith(f"line {line_no}: ") and "\n" not in message
    assert runs_created(emulator) == before


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("--bogus", "unrecognized arguments"),
        ("lite --timeout soon", "expected a number of seconds"),
        ("lite --timeout -5", "expected a number of seconds"),
        ("--metadata novalue", "KEY=VALUE"),
        ("--location France", "two-letter"),
        ("--include-domains ,", "needs domains"),
        ("nonsense var", "is not a processor"),
        ("lite 1var", "cannot be a variable name"),
        ("lite a --out b", "two different VARs"),
        ("--previous nowhere", "no variable of that name"),
        ("--metadata 'unbalanced", "cannot split"),
    ],
)
def test_bad_options_are_usage_errors_and_send_nothing(
    ip: InteractiveShell, emulator: EmulatorHandle, line: str, complaint: str
) -> None:
    before = runs_created(emulator)
    with pytest.raises(UsageError, match=complaint):
        cell(ip, line, GDP)
    assert runs_created(emulator) == before


def test_previous_must_hold_a_result(ip: InteractiveShell) -> None:
    ip.user_ns["number"] = 42
    with pytest.raises(UsageError, match="--previous number: expected a TaskResult"):
        cell(ip, "lite --dry-run --previous number", GDP)


# -- configuration ---------------------------------------------------------------------------------


def test_config_sets_defaults_and_a_cell_option_wins(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("config", "ParallelMagics.processor = 'lite'")
    cell(ip, "--dry-run", GDP)
    assert '"processor": "lite"' in capsys.readouterr().out
    cell(ip, "base --dry-run", GDP)
    assert '"processor": "base"' in capsys.readouterr().out
    cell(ip, "--processor pro --dry-run", GDP)
    assert '"processor": "pro"' in capsys.readouterr().out


def test_a_cell_timeout_wins_over_the_configured_one(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "ParallelMagics.timeout = 0.0")
    with pytest.raises(Exception, match="after 0 s"):
        cell(ip, "lite", GDP)
    assert cell(ip, "lite --timeout 60", GDP).status == "completed"


def test_shell_config_is_read_when_the_extension_loads() -> None:
    shell = InteractiveShell.instance()
    shell.config.ParallelMagics.processor = "base"
    try:
        magics = ParallelMagics(shell=shell)
        assert magics.processor == "base"
    finally:
        del shell.config.ParallelMagics.processor
        shell.configurables.remove(magics)


def test_config_rejects_refresh_rates_above_four(ip: InteractiveShell) -> None:
    magics = ip.magics_manager.registry["ParallelMagics"]
    with pytest.raises(TraitError, match="at most 4"):
        magics.refresh_hz = 10.0


# -- %parallel -------------------------------------------------------------------------------------


def test_processors_lists_the_table(ip: InteractiveShell) -> None:
    frame = ip.run_line_magic("parallel", "processors")
    assert len(frame) == 18 and list(frame.columns) == ["latency", "usd_per_run", "max_fields"]
    assert frame.loc["core", "latency"] == "1 min – 5 min"
    assert frame.loc["ultra4x", "latency"] == "5 min – 90 min"
    assert frame.loc["pro", "usd_per_run"] == pytest.approx(0.1)


def test_result_fetches_an_earlier_run(ip: InteractiveShell, emulator: EmulatorHandle) -> None:
    with Client(emulator.api_key, emulator.base_url) as api:
        run = api.create_run(TaskRequest(processor="lite", input=GDP))
    fetched = ip.run_line_magic("parallel", f"result {run.run_id}")
    assert isinstance(fetched, TaskResult) and fetched.run_id == run.run_id
    assert ip.run_line_magic("parallel", f"result {run.run_id} again") is None
    assert ip.user_ns["again"].output == fetched.output


def test_status_names_the_endpoint_but_never_the_key(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], emulator: EmulatorHandle
) -> None:
    ip.run_line_magic("parallel", "status")
    out = capsys.readouterr().out
    assert emulator.base_url in out and "demo mode: no" in out
    assert emulator.api_key not in out


def test_help_and_unknown_subcommands(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("parallel", "help")
    out = capsys.readouterr().out
    assert "%parallel" in out and "%%parallel" in out and "--dry-run" in out
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("parallel", "cancel trun_1")


def test_cell_help_shows_runnable_examples(ip: InteractiveShell) -> None:
    doc = ip.find_cell_magic("parallel").__doc__
    assert "%%parallel [--processor PROCESSOR]" in doc
    assert "%%parallel core stripe" in doc and "--dry-run" in doc


def test_unload_removes_the_magics(ip: InteractiveShell) -> None:
    ip.extension_manager.unload_extension("parallel_nb")
    try:
        assert ip.find_cell_magic("parallel") is None and ip.find_line_magic("parallel") is None
        assert not any(isinstance(c, ParallelMagics) for c in ip.configurables)
    finally:
        ip.extension_manager.load_extension("parallel_nb")
    assert ip.find_cell_magic("parallel") is not None


# -- interrupt -------------------------------------------------------------------------------------


def test_interrupt_says_how_to_fetch_the_run_and_reraises(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_emulator(time_scale=0.05, api_key="slow-key") as slow:
        point_at(monkeypatch, slow)

        def interrupt_once_streaming() -> None:
            deadline = time.monotonic() + 20
            # Once the event stream is open the run exists and the cell is waiting on it.
            while slow.stats()["open_streams"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_streaming, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            cell(ip, "lite", GDP)
        err = capsys.readouterr().err
        run_id = RUN_ID.search(err).group()
        assert f"%parallel result {run_id}" in err and "continues on the server" in err
        with Client("slow-key", slow.base_url) as api:
            assert api.result(run_id, timeout=60).run.status == "completed"


# -- the Python API --------------------------------------------------------------------------------


def test_run_returns_a_task_result() -> None:
    result = parallel_nb.run(GDP, processor="lite", metadata={"source": "test"})
    assert result.status == "completed" and result.request.metadata == {"source": "test"}
    chained = parallel_nb.run("And in 2022?", processor="lite", previous=result)
    assert chained.request.previous_interaction_id == result.run.interaction_id
    assert parallel_nb.fetch(chained.run_id).output == chained.output


def test_run_rejects_unknown_options() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        parallel_nb.run(GDP, processor="lite", locale="fr")


async def test_arun_awaits_inside_a_running_loop() -> None:
    result = await parallel_nb.arun(
        {"company": "Stripe"},
        processor="core",
        output="founded (integer): year founded\nceo: current CEO",
    )
    assert result.output == {"founded": 2010, "ceo": "Patrick Collison"}


# -- in a real kernel --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_kernel_run_leaves_static_outputs_in_the_saved_notebook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("PARALLEL_NB_DEMO", "1")
    monkeypatch.setenv("PARALLEL_NB_TIME_SCALE", "0")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%load_ext parallel_nb"),
        nbformat.v4.new_code_cell(f"%%parallel lite\n{GDP}"),
        # --refresh: the same request again would be answered from the cache, without a panel.
        nbformat.v4.new_code_cell(f"%%parallel lite --no-widget --refresh\n{GDP}"),
    ]
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()

    for run_cell, view in ((notebook.cells[1], "RunPanel"), (notebook.cells[2], "HtmlRunView")):
        panel, result = (o for o in run_cell.outputs if o.output_type != "stream")
        # The live view was replaced by its final state as plain HTML: no widget to restore.
        assert panel.output_type == "display_data"
        assert set(panel.data) == {"text/html", "text/plain"}
        assert panel.data["text/plain"] == f"{view}(processor='lite', status='completed')"
        assert result.output_type == "execute_result"
        assert "text/html" in result.data and result.data["text/plain"].startswith("TaskResult(")
