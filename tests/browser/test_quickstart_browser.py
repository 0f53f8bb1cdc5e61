"""The quickstart in a real JupyterLab and Chromium: the live panel runs, completes, and the
answer's table renders.

The notebook is served without its stored outputs (see ``labserver.py``), so everything asserted
here was drawn by this run. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from labserver import LabServer
from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

FIELDS = ("gdp", "gdp_growth", "currency", "year")
LOAD_SECONDS = 60
RUN_SECONDS = 90


def code_cell(page: Page, first_line: str) -> Locator:
    """The code cell whose source contains ``first_line``."""
    return page.locator(".jp-Notebook .jp-CodeCell").filter(has_text=first_line)


# The toolbar's execution indicator reads "idle" even before a kernel exists; the status bar's
# kernel item says "Python 3 (ipykernel) | Idle" only once a real kernel is connected and idle.
KERNEL_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
  .some(item => /^Python.*\\| Idle$/.test(item.textContent.trim()))"""


# True once the cell's output shows the live ipywidgets panel (its progress bar rendered by the
# widget manager, not a "Loading widget..." placeholder) with the run in progress. Checked in
# one step in the page, because the panel turns into static HTML when the run ends.
LIVE_PANEL_RUNNING = """cell => {
  const output = cell.querySelector('.jp-OutputArea');
  return output !== null && output.querySelector('.jupyter-widgets.widget-hprogress') !== null
    && /\\brunning\\b/.test(output.textContent);
}"""


def open_notebook(page: Page, lab_server: LabServer, name: str) -> None:
    page.goto(lab_server.url(f"lab/tree/{name}"))
    page.wait_for_function(KERNEL_IDLE, timeout=LOAD_SECONDS * 1000)


def run_all(page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()


def test_quickstart_runs_live_and_renders_the_answer(
    page: Page, lab_server: LabServer, screenshot_dir: Path
) -> None:
    open_notebook(page, lab_server, "quickstart.ipynb")
    run_all(page)

    cell = code_cell(page, "%%parallel core gdp")
    panel = cell.locator(".jp-OutputArea")
    # The emulator's time scale stretches a core run over seconds, long enough to see it live.
    page.wait_for_function(
        LIVE_PANEL_RUNNING, arg=cell.element_handle(), timeout=RUN_SECONDS * 1000
    )
    show(cell, page, screenshot_dir / "quickstart-running.png")

    expect(panel).to_contain_text("completed", timeout=RUN_SECONDS * 1000)
    expect(panel).not_to_contain_text("failed")
    table = code_cell(page, "gdp.output_df").locator(".jp-OutputArea table")
    expect(table).to_be_visible(timeout=RUN_SECONDS * 1000)
    for field in FIELDS:
        expect(table.locator("td").filter(has_text=re.compile(f"^{field}$"))).to_have_count(1)
    show(cell, page, screenshot_dir / "quickstart-completed.png")

    # The rest of the notebook (the basis table, the Python API) ran without an error too.
    api_output = code_cell(page, "stripe.output").locator(".jp-OutputArea")
    expect(api_output).to_contain_text("headquarters", timeout=RUN_SECONDS * 1000)
    expect(page.locator(".jp-Notebook")).not_to_contain_text("Traceback")


def show(cell: Locator, page: Page, path: Path) -> None:
    """Scroll ``cell`` to the top of the notebook and save a picture of the notebook panel."""
    cell.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.locator(".jp-NotebookPanel").screenshot(path=path)
