"""Every interactive flow of a ``%%parallel`` cell in a real JupyterLab and Chromium: a run seen
live and then completed, a failed run, a ``--bg`` run advancing while another cell executes, a
DataFrame enriched with its batch panel, ``%parallel attach`` after a kernel restart, and a
saved notebook reopened without a kernel (and rendered by nbconvert, as static viewers show it).

Each test writes its own small notebook into ``flows_server`` (whose kernels use an emulator in
a process of its own, so runs outlive a kernel restart) and screenshots every step to
``artifacts/screenshots/flows-<test>-<step>.png``. Every notebook asks something no other test
asks, because the server's run store would answer an identical request from its cache.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from labserver import LabServer
from pages import (
    LIVE_PANEL_RUNNING,
    LOAD_SECONDS,
    RUN_SECONDS,
    code_cell,
    command,
    open_notebook,
    restart_kernel,
    run_all,
    show,
    shut_down_kernel,
    wait_idle,
    write_notebook,
)
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

RUN_MS = RUN_SECONDS * 1000
LOAD_MS = LOAD_SECONDS * 1000
LOAD_EXT = "%load_ext parallel_nb"
GDP_QUESTION = "What was the GDP of France in 2023?"
RUN_ID = re.compile(r"trun_[0-9a-f]{32}")
COMPANIES = {
    "STRIPE": "Stripe",
    "FIG": "Figma",
    "NVDA": "NVIDIA",
    "CANVA": "Canva",
    "ABNB": "Airbnb",
    "SNOW": "Snowflake",
}

# The live panel's progress bar: the FloatProgress widget's bar, whose width is the value in %.
_BAR = "'.jupyter-widgets.widget-hprogress .progress-bar'"

# The run's progress (a number strictly between 0 and 100, from the live widget's bar) once the
# panel is running and shows a plan or search message; false otherwise. One check in the page,
# because the live panel turns into static HTML when the run ends.
MID_RUN = f"""cell => {{
  const output = cell.querySelector('.jp-OutputArea');
  const bar = output && output.querySelector({_BAR});
  if (bar === null || !/\\brunning\\b/.test(output.textContent)) return false;
  const progress = parseFloat(bar.style.width);
  const messages = /\\b(plan|search)\\b/.test(output.textContent);
  return progress > 0 && progress < 100 && messages ? progress : false;
}}"""

# Cell ``a``'s panel states (bar widths, or "completed") seen while cell ``b`` executes: after
# ``a`` finished (its prompt has a number; the kernel runs cells in order, so ``b``, whose
# prompt says ``[*]``, is executing, not queued). Resolves once two different states were seen
# or ``b`` has finished (``over``).
WATCH_A_WHILE_B_RUNS = f"""([a, b]) => {{
  const seen = window.__pnbSeen = window.__pnbSeen || new Set();
  const finished = cell => /\\[\\d+\\]/.test(cell.querySelector('.jp-InputPrompt').textContent);
  if (!finished(a)) return false;
  if (finished(b)) return {{seen: Array.from(seen), over: true}};
  const output = a.querySelector('.jp-OutputArea');
  const bar = output.querySelector({_BAR});
  if (bar !== null) seen.add(bar.style.width);
  else if (output.querySelector('.parallel-nb-run') && /\\bcompleted\\b/.test(output.textContent))
    seen.add('completed');
  return seen.size >= 2 ? {{seen: Array.from(seen), over: false}} : false;
}}"""

# How many of the batch's 6 runs have ended, once some but not all have, on the live panel.
MID_BATCH = f"""cell => {{
  const output = cell.querySelector('.jp-OutputArea');
  if (output === null || output.querySelector({_BAR}) === null) return false;
  const ended = /(\\d+) of 6 runs ended/.exec(output.textContent);
  return ended !== null && +ended[1] > 0 && +ended[1] < 6 ? +ended[1] : false;
}}"""

# True once the notebook in view is ``path``.
SHOWING = """path => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  return !!widget && !!widget.context && widget.context.path === path;
}"""

# True once the notebook ``path`` in view has been written to disk.
SAVED = """path => {
  const widget = window.jupyterapp.shell.currentWidget;
  return widget.context.path === path && !widget.context.model.dirty;
}"""

# True once the notebook in view has no kernel (and no session).
NO_KERNEL = """() => {
  const context = window.jupyterapp.shell.currentWidget.sessionContext;
  return !!context && context.hasNoKernel && context.session === null;
}"""

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Opens ``path`` in the notebook editor, once the application is ready, without a kernel.
OPEN_WITHOUT_KERNEL = """async path => {
  await window.jupyterapp.restored;
  await window.jupyterapp.commands.execute('docmanager:open', {
    path, factory: 'Notebook', kernelPreference: {shouldStart: false, canStart: false},
  });
  return true;
}"""


def _spec(*fields: str) -> str:
    return "\n".join(["---", *fields])


def _shot(page: Page, cell: Locator, screenshot_dir: Path, test: str, step: str) -> None:
    show(cell, page, screenshot_dir / f"flows-{test}-{step}.png")


def _output(cell: Locator) -> Locator:
    return cell.locator(".jp-OutputArea")


def _exactly(locator: Locator, text: str) -> Locator:
    """The elements of ``locator`` whose whole text is ``text``."""
    return locator.filter(has_text=re.compile(f"^{re.escape(text)}$"))


def _table(scope: Locator, header: str) -> Locator:
    """The table under ``scope`` that has a column headed ``header``."""
    return scope.locator("table").filter(has=scope.page.locator(f"th:text-is('{header}')"))


def _expect_result_tables(scope: Locator, fields: tuple[str, ...]) -> None:
    """The answer table lists every field and the basis table cites http(s) sources."""
    answer = _table(scope, "value")
    expect(answer).to_be_visible()
    for field in fields:
        expect(_exactly(answer.locator("td code"), field)).to_have_count(1)
    basis = _table(scope, "confidence")
    expect(basis).to_be_visible()
    links = basis.locator("a")
    expect(links.first).to_be_visible()
    for href in links.evaluate_all("links => links.map(link => link.getAttribute('href'))"):
        assert re.match(r"https?://", href), href


def _expect_static_result(scope: Locator, fields: tuple[str, ...]) -> None:
    """A completed run as a saved notebook keeps it: the closed panel and the result tables, and
    nothing that needed a live widget."""
    expect(scope.locator(".parallel-nb-run")).to_contain_text("completed")
    _expect_result_tables(scope.locator(".parallel-nb-result"), fields)
    expect(scope).not_to_contain_text("Loading widget")
    expect(scope).not_to_contain_text("Error displaying widget")


def _append_cell(page: Page, source: str) -> None:
    """Add a code cell with ``source`` at the end of the notebook in view and select it."""
    page.evaluate(
        """source => {
          const notebook = window.jupyterapp.shell.currentWidget.content;
          const cells = notebook.model.sharedModel;
          cells.insertCell(cells.cells.length, {cell_type: 'code', source});
          notebook.activeCellIndex = cells.cells.length - 1;
        }""",
        source,
    )


def test_run_seen_live_then_completed(
    page: Page, flows_server: LabServer, screenshot_dir: Path
) -> None:
    fields = ("gdp", "gdp_growth", "year")
    source = "\n".join(
        [
            "%%parallel core --events",
            GDP_QUESTION,
            _spec(
                "gdp: nominal GDP in current US dollars",
                "gdp_growth: real GDP growth over the year, in percent",
                "year (integer): the year the figures are for",
            ),
        ]
    )
    write_notebook(flows_server, "live.ipynb", [LOAD_EXT, source])
    open_notebook(page, flows_server, "live.ipynb")
    run_all(page)

    cell = code_cell(page, "%%parallel core --events")
    handle = cell.element_handle()
    progress = page.wait_for_function(MID_RUN, arg=handle, timeout=RUN_MS).json_value()
    assert 0 < progress < 100
    _shot(page, cell, screenshot_dir, "live", "running")

    output = _output(cell)
    expect(output.locator(".parallel-nb-run")).to_contain_text("completed", timeout=RUN_MS)
    _expect_result_tables(output.locator(".parallel-nb-result"), fields)
    expect(output).not_to_contain_text("failed")
    # The predicate that saw the run live cannot hold any more: the panel is static HTML now.
    assert page.evaluate(MID_RUN, handle) is False
    _shot(page, cell, screenshot_dir, "live", "completed")


def test_failed_run_shows_its_error(
    page: Page, flows_server: LabServer, screenshot_dir: Path
) -> None:
    write_notebook(
        flows_server,
        "failed.ipynb",
        [LOAD_EXT, "%%parallel lite\nSummarise this company. emulator: fail"],
    )
    open_notebook(page, flows_server, "failed.ipynb")
    run_all(page)

    cell = code_cell(page, "%%parallel lite")
    output = _output(cell)
    error = output.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    expect(error).to_contain_text("RunFailed", timeout=RUN_MS)
    expect(error).to_contain_text("the processor could not complete the research")
    expect(output.locator(".parallel-nb-run")).to_contain_text("failed")
    expect(output.locator(".parallel-nb-run")).not_to_contain_text("completed")
    _shot(page, cell, screenshot_dir, "failed", "error")


@pytest.mark.parametrize(
    ("company", "ceo", "busy"),
    [
        pytest.param("Databricks", "Ali Ghodsi", "await asyncio.sleep(8)", id="awaiting-cell"),
        # time.sleep blocks the kernel's event loop: the panel is drawn from a thread.
        pytest.param("Shopify", "Tobias Lütke", "time.sleep(8)", id="blocking-cell"),
    ],
)
def test_background_run_advances_while_another_cell_runs(
    page: Page, flows_server: LabServer, screenshot_dir: Path, company: str, ceo: str, busy: str
) -> None:
    name = f"background-{company.lower()}.ipynb"
    sources = [
        LOAD_EXT,
        f'%%parallel core h --bg --events\n{{"company": "{company}"}}\n'
        + _spec("ceo: the current chief executive", "founded (integer): the year it was founded"),
        f"import asyncio\nimport time\n\n{busy}  # keeps the kernel busy",
        "h.result().output",
    ]
    write_notebook(flows_server, name, sources)
    open_notebook(page, flows_server, name)
    run_all(page)

    cell_a = code_cell(page, "%%parallel core h --bg")
    cell_b = code_cell(page, busy)
    handles = [cell_a.element_handle(), cell_b.element_handle()]
    watched = page.wait_for_function(WATCH_A_WHILE_B_RUNS, arg=handles, timeout=RUN_MS)
    seen = watched.json_value()["seen"]
    _shot(page, cell_a, screenshot_dir, f"background-{company.lower()}", "while-busy")
    assert len(seen) >= 2, f"the --bg panel stood still at {seen} while the other cell ran"

    answer = _output(code_cell(page, "h.result().output"))
    expect(answer).to_contain_text(ceo, timeout=RUN_MS)
    expect(_output(cell_a).locator(".parallel-nb-run")).to_contain_text("completed")
    _shot(page, cell_a, screenshot_dir, f"background-{company.lower()}", "completed")


def test_enrichment_panel_live_then_table(
    page: Page, flows_server: LabServer, screenshot_dir: Path
) -> None:
    frame = (
        "import pandas as pd\n\n"
        f"companies = pd.DataFrame({{'name': {list(COMPANIES.values())}}}, "
        f"index=pd.Index({list(COMPANIES)}, name='ticker'))"
    )
    batch = "\n".join(
        [
            "%%parallel core enriched --over companies",
            "Research {{name}}",
            _spec("founded (integer): the year it was founded", "ceo: the current chief executive"),
        ]
    )
    write_notebook(flows_server, "enrich.ipynb", [LOAD_EXT, frame, batch, "display(enriched)"])
    open_notebook(page, flows_server, "enrich.ipynb")
    run_all(page)

    cell = code_cell(page, "--over companies")
    handle = cell.element_handle()
    ended = page.wait_for_function(MID_BATCH, arg=handle, timeout=RUN_MS).json_value()
    assert 0 < ended < len(COMPANIES)
    _shot(page, cell, screenshot_dir, "enrich", "running")

    panel = _output(cell).locator(".parallel-nb-batch")
    expect(panel).to_contain_text("6 of 6 runs ended", timeout=RUN_MS)
    preview = _table(panel, "latest answers")
    expect(preview).to_be_visible()
    labels = preview.locator("td code").all_inner_texts()
    assert labels and set(labels) <= set(COMPANIES), labels
    expect(preview).to_contain_text("ceo")
    assert page.evaluate(MID_BATCH, handle) is False
    _shot(page, cell, screenshot_dir, "enrich", "completed")

    shown = code_cell(page, "display(enriched)")
    table = _output(shown).locator("table.dataframe")
    expect(table).to_be_visible(timeout=RUN_MS)
    for column in ("name", "founded", "ceo", "founded_confidence", "ceo_citations"):
        expect(_exactly(table.locator("thead th"), column)).to_have_count(1)
    for ticker in COMPANIES:
        expect(_exactly(table.locator("tbody th"), ticker)).to_have_count(1)
    expect(table).to_contain_text("Jensen Huang")
    _shot(page, shown, screenshot_dir, "enrich", "table")


def test_attach_after_kernel_restart(
    page: Page, flows_server: LabServer, screenshot_dir: Path
) -> None:
    start = '%%parallel core r --bg\n{"company": "OpenAI"}\n' + _spec(
        "ceo: the current chief executive", "headquarters: the city of its head office"
    )
    write_notebook(flows_server, "attach.ipynb", [LOAD_EXT, start, 'print("run id:", r.run_id)'])
    open_notebook(page, flows_server, "attach.ipynb")
    run_all(page)

    cell = code_cell(page, "%%parallel core r --bg")
    printed = _output(code_cell(page, 'print("run id:"'))
    expect(printed).to_contain_text(RUN_ID, timeout=RUN_MS)
    match = RUN_ID.search(printed.inner_text())
    assert match is not None
    run_id = match.group()
    # The kernel goes away while the run is still going.
    page.wait_for_function(LIVE_PANEL_RUNNING, arg=cell.element_handle(), timeout=RUN_MS)
    _shot(page, cell, screenshot_dir, "attach", "before-restart")
    restart_kernel(page)

    _append_cell(page, f"{LOAD_EXT}\n%parallel attach {run_id} again\nagain.output")
    command(page, "notebook:run-cell")
    attached = _output(code_cell(page, f"%parallel attach {run_id}"))
    expect(attached.locator(".parallel-nb-run")).to_contain_text("completed", timeout=RUN_MS)
    expect(attached.locator(".parallel-nb-run")).to_contain_text(run_id)
    expect(attached).to_contain_text("Sam Altman")
    expect(attached).not_to_contain_text("Error")
    _shot(page, code_cell(page, "%parallel attach"), screenshot_dir, "attach", "attached")


def test_saved_notebook_shows_results_without_a_kernel(
    page: Page, flows_server: LabServer, screenshot_dir: Path, tmp_path: Path
) -> None:
    fields = ("gdp", "gdp_eur")
    source = "\n".join(
        [
            "%%parallel lite",
            GDP_QUESTION,
            _spec("gdp: nominal GDP in US dollars", "gdp_eur: nominal GDP in euros"),
        ]
    )
    name = write_notebook(flows_server, "saved.ipynb", [LOAD_EXT, source])
    open_notebook(page, flows_server, name)
    run_all(page)
    output = _output(code_cell(page, "%%parallel lite"))
    expect(output.locator(".parallel-nb-run")).to_contain_text("completed", timeout=RUN_MS)
    expect(output.locator(".parallel-nb-result")).to_be_visible(timeout=RUN_MS)
    wait_idle(page)
    command(page, "docmanager:save")
    page.wait_for_function(SAVED, arg=name, timeout=LOAD_MS)
    shut_down_kernel(page)
    page.wait_for_function(NO_KERNEL, timeout=LOAD_MS)
    page.goto("about:blank")  # closes JupyterLab in this tab
    # The live panel left static HTML, not widget views that would need a kernel to draw.
    saved = (flows_server.root_dir / name).read_text()
    assert "parallel-nb-result" in saved
    assert WIDGET_VIEW not in saved

    page.goto(flows_server.url("lab") + "&reset")
    page.wait_for_function("() => !!window.jupyterapp", timeout=LOAD_MS)
    page.evaluate(OPEN_WITHOUT_KERNEL, name)
    page.wait_for_function(SHOWING, arg=name, timeout=LOAD_MS)
    page.wait_for_function(NO_KERNEL, timeout=LOAD_MS)
    expect(page.locator(".jp-Toolbar-kernelName:visible")).to_have_text("No Kernel")
    cell = code_cell(page, "%%parallel lite")
    _expect_static_result(_output(cell), fields)
    _shot(page, cell, screenshot_dir, "saved", "reopened-without-kernel")
    sessions = page.request.get(flows_server.url("api/sessions")).json()
    assert all(session["path"] != name for session in sessions), sessions

    # What a static viewer (GitHub, nbviewer) shows: nbconvert's HTML, offline.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nbconvert",
            "--to",
            "html",
            "--output-dir",
            str(tmp_path),
            str(flows_server.root_dir / name),
        ],
        check=True,
        capture_output=True,
    )
    page.route(re.compile(r"^https?://"), lambda route: route.abort())
    page.goto((tmp_path / "saved.html").as_uri())
    static = page.locator("body")
    _expect_static_result(static, fields)
    static.locator(".parallel-nb-result").screenshot(
        path=screenshot_dir / "flows-saved-nbconvert.png"
    )
