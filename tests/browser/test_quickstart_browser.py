"""The quickstart in a real Chromium, in JupyterLab and in Notebook 7: the live panel runs,
completes, and the answer's table renders.

The notebook is served without its stored outputs (see ``labserver.py``), so everything asserted
here was drawn by this run. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from labserver import LabServer
from pages import LIVE_PANEL_RUNNING, RUN_SECONDS, code_cell, open_notebook, run_all, show
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

FIELDS = ("gdp", "gdp_growth", "currency", "year")
APP_NAMES = {"lab": "JupyterLab", "notebook": "Jupyter Notebook"}


@pytest.mark.parametrize("front_end", ["lab_server", "notebook_server"])
def test_quickstart_runs_live_and_renders_the_answer(
    page: Page, front_end: str, request: pytest.FixtureRequest, screenshot_dir: Path
) -> None:
    server: LabServer = request.getfixturevalue(front_end)
    open_notebook(page, server, "quickstart.ipynb")
    # The same DOM and widgets in both: Notebook 7 is built from JupyterLab's components.
    assert page.evaluate("() => window.jupyterapp.name") == APP_NAMES[server.app]
    run_all(page)

    cell = code_cell(page, "%%parallel core gdp")
    panel = cell.locator(".jp-OutputArea")
    # The emulator's time scale stretches a core run over seconds, long enough to see it live.
    page.wait_for_function(
        LIVE_PANEL_RUNNING, arg=cell.element_handle(), timeout=RUN_SECONDS * 1000
    )
    show(cell, page, screenshot_dir / f"quickstart-{server.app}-running.png")

    expect(panel).to_contain_text("completed", timeout=RUN_SECONDS * 1000)
    expect(panel).not_to_contain_text("failed")
    table = code_cell(page, "gdp.output_df").locator(".jp-OutputArea table")
    expect(table).to_be_visible(timeout=RUN_SECONDS * 1000)
    for field in FIELDS:
        expect(table.locator("td").filter(has_text=re.compile(f"^{field}$"))).to_have_count(1)
    show(cell, page, screenshot_dir / f"quickstart-{server.app}-completed.png")

    # The rest of the notebook (the basis table, the Python API) ran without an error too.
    api_output = code_cell(page, "stripe.output").locator(".jp-OutputArea")
    expect(api_output).to_contain_text("headquarters", timeout=RUN_SECONDS * 1000)
    expect(page.locator(".jp-Notebook")).not_to_contain_text("Traceback")
