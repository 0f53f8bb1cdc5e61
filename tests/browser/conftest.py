"""Fixtures for the real-browser tests: a JupyterLab server and a headless Chromium.

- ``lab_server`` (module): a throwaway JupyterLab serving ``notebooks/`` without their stored
  outputs, in demo mode (see ``labserver.py``).
- ``flows_server`` (module): a JupyterLab serving an empty directory (tests write their
  notebooks into it) whose kernels use ``flows_api``, an emulator in its own process: runs outlive
  kernel restarts there, as they do on the real service.
- ``notebook_server`` (module): Notebook 7 serving ``notebooks/`` like ``lab_server``.
- ``browser`` (module): Debian's Chromium at ``/usr/bin/chromium`` driven by Playwright.
  Playwright's own browser download needs general internet access, so it is never used;
  ``scripts/ensure-chromium`` installs Chromium.
- ``page`` (function): a fresh 1280x900 page; if the test fails, the page is saved as
  ``artifacts/screenshots/FAILED-<test>.png`` with the logs of the servers it used beside it.
- ``screenshot_dir``: ``artifacts/screenshots/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from emulator_process import emulator_process
from labserver import Api, LabServer, running_lab
from playwright.sync_api import Browser, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


FLOWS_KEY = "browser-flows-key"
# Slow enough to watch a run move (a core run takes seconds), fast enough for a short suite.
FLOWS_TIME_SCALE = 0.05
SERVERS = ("lab_server", "flows_server", "notebook_server")


def _repo_notebooks() -> list[Path]:
    return sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with running_lab(tmp_path_factory.mktemp("lab"), _repo_notebooks()) as server:
        yield server


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    home = tmp_path_factory.mktemp("notebook")
    with running_lab(home, _repo_notebooks(), app="notebook") as server:
        yield server


@pytest.fixture(scope="module")
def flows_api() -> Iterator[Api]:
    with emulator_process(FLOWS_KEY, time_scale=FLOWS_TIME_SCALE) as base_url:
        yield Api(FLOWS_KEY, base_url)


@pytest.fixture(scope="module")
def flows_server(tmp_path_factory: pytest.TempPathFactory, flows_api: Api) -> Iterator[LabServer]:
    with running_lab(tmp_path_factory.mktemp("flows"), [], api=flows_api) as server:
        yield server


# Module scope, not session: while Playwright's sync API is active it marks an asyncio loop as
# running in this thread, which would break every async test collected after this folder.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/ensure-chromium (it installs Debian's chromium), "
            "or deselect these tests with -m 'not browser'."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    directory = REPO / "artifacts" / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember whether the test body failed, for the page fixture's teardown.
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, screenshot_dir: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        yield page
        if request.node.stash.get(_CALL_FAILED, False):
            name = request.node.name
            page.screenshot(path=screenshot_dir / f"FAILED-{name}.png", full_page=True)
            for server in (
                request.getfixturevalue(s) for s in SERVERS if s in request.fixturenames
            ):
                shutil.copy(server.log_file, screenshot_dir / f"FAILED-{name}-{server.app}.log")
    finally:
        context.close()
