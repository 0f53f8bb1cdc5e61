"""What browser tests do to a notebook page, for JupyterLab and Notebook 7 alike.

Commands go through the application object the servers expose (``window.jupyterapp``), not
through menus, so the same test steps work in both front ends and no dialog gets in the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from labserver import LabServer
from playwright.sync_api import Locator, Page

LOAD_SECONDS = 60
RUN_SECONDS = 90

# The notebook in view, and its kernel once it is connected.
_PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
_KERNEL = f"(() => {{ const w = {_PANEL}; return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel; }})()"  # noqa: E501

KERNEL_IDLE = f"""() => {{
  const kernel = {_KERNEL};
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}}"""

# True once the cell's output shows the live ipywidgets panel (its progress bar rendered by the
# widget manager, not a "Loading widget..." placeholder) with the run in progress. Checked in
# one step in the page, because the panel turns into static HTML when the run ends.
LIVE_PANEL_RUNNING = """cell => {
  const output = cell.querySelector('.jp-OutputArea');
  return output !== null && output.querySelector('.jupyter-widgets.widget-hprogress') !== null
    && /\\brunning\\b/.test(output.textContent);
}"""


def write_notebook(server: LabServer, name: str, sources: list[str]) -> str:
    """Write a notebook of code cells (no outputs) into the server's directory; returns name."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(notebook, server.root_dir / name)
    return name


def open_notebook(page: Page, server: LabServer, name: str) -> None:
    """Open ``name`` alone and wait until its kernel is connected and idle. The workspace is
    reset: otherwise JupyterLab brings back the notebooks earlier tests opened on this server
    as tabs, and "Run All" may go to one of them."""
    page.goto(server.notebook_url(name) + "&reset")
    page.wait_for_function(KERNEL_IDLE, timeout=LOAD_SECONDS * 1000)


def command(page: Page, name: str, args: dict[str, Any] | None = None) -> None:
    """Start an application command (``notebook:run-all-cells``, ``docmanager:save``, ...)
    without waiting for it: running cells resolves only once the last cell has finished."""
    page.evaluate(
        "([name, args]) => { window.jupyterapp.commands.execute(name, args); }",
        [name, args or {}],
    )


def run_all(page: Page) -> None:
    command(page, "notebook:run-all-cells")


def wait_idle(page: Page, seconds: float = RUN_SECONDS) -> None:
    page.wait_for_function(KERNEL_IDLE, timeout=seconds * 1000)


def restart_kernel(page: Page) -> None:
    """Restart the notebook's kernel (no confirmation dialog) and wait until it is idle."""
    page.evaluate(f"() => {_KERNEL}.restart()")
    wait_idle(page, LOAD_SECONDS)


def shut_down_kernel(page: Page) -> None:
    page.evaluate(f"() => {_PANEL}.sessionContext.shutdown()")


def use_theme(page: Page, theme: str) -> None:
    """Switch to ``theme`` ("JupyterLab Light", "JupyterLab Dark") and wait until it applies."""
    command(page, "apputils:change-theme", {"theme": theme})
    light = "true" if "Light" in theme else "false"
    # JupyterLab covers the page with an animated splash while the theme loads.
    page.wait_for_function(
        f"() => document.body.dataset.jpThemeLight === '{light}'"
        " && document.querySelector('#jupyterlab-splash') === null"
    )


def code_cell(page: Page, first_line: str) -> Locator:
    """The code cell whose source (not its output: outputs mention other cells) contains
    ``first_line``."""
    source = page.locator(".jp-InputArea-editor", has_text=first_line)
    return page.locator(".jp-CodeCell").filter(has=source)


def show(cell: Locator, page: Page, path: Path) -> None:
    """Scroll ``cell`` to the top of the notebook and save a picture of the notebook panel."""
    cell.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.locator(".jp-NotebookPanel:visible").first.screenshot(path=path)
