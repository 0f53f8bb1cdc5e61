"""Start a throwaway Jupyter server (JupyterLab or Notebook 7) for browser tests and stop it.

``running_lab(home, notebooks)`` serves copies of ``notebooks`` (outputs removed) from
``home/notebooks`` on 127.0.0.1 with a free port and a random token, in demo mode (no
``PARALLEL_API_KEY`` in its environment, as a newcomer has it) with a small emulator time
scale; ``app="notebook"`` serves Notebook 7 instead, and ``api`` points the kernels at an
emulator of the test's own (so runs outlive a kernel restart, as on the real service). Config,
runtime, settings, workspace and IPython directories all live under ``home``, so the user's own
set-up never leaks in and no workspace is restored. The application object is exposed to the
page (``window.jupyterapp``), so tests run commands (restart, theme, save) without menus.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import nbformat

# Small but not zero: a run takes seconds, long enough to watch the panel update live.
TIME_SCALE = "0.03"
STARTUP_SECONDS = 90.0
# The news prompt is a toast that would cover part of the notebook in screenshots.
PAGE_CONFIG = {
    "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
    "exposeAppInBrowser": True,
}
App = Literal["lab", "notebook"]
_MODULES: dict[App, str] = {"lab": "jupyterlab", "notebook": "notebook"}


@dataclass(frozen=True)
class Api:
    """Where the kernels send runs instead of the demo emulator."""

    api_key: str
    base_url: str


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: where it listens, its token and the directory it serves."""

    base_url: str
    token: str
    root_dir: Path
    log_file: Path
    app: App = "lab"

    def url(self, path: str) -> str:
        """``path`` (e.g. ``lab/tree/quickstart.ipynb``) on this server, with the token."""
        return f"{self.base_url}{path}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        """The page that opens notebook ``name`` in this server's front end."""
        page = f"lab/tree/{name}" if self.app == "lab" else f"notebooks/{name}"
        return self.url(page)


def copy_without_outputs(source: Path, target: Path) -> None:
    """Write ``source`` to ``target`` with every output, execution count and widget removed."""
    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, target)


@contextmanager
def running_lab(
    home: Path, notebooks: Iterable[Path], *, app: App = "lab", api: Api | None = None
) -> Iterator[LabServer]:
    root = home / "notebooks"
    root.mkdir()
    for notebook in notebooks:
        copy_without_outputs(notebook, root / notebook.name)
    env = _lab_env(home, api)
    token = secrets.token_hex(16)
    log_file = home / f"jupyter-{app}.log"
    command = [
        sys.executable,
        "-m",
        _MODULES[app],
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
    ]
    if app == "lab":
        command += [
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base_url = _wait_until_ready(process, Path(env["JUPYTER_RUNTIME_DIR"]), log_file)
        yield LabServer(base_url, token, root, log_file, app)
    finally:
        # SIGTERM makes the server shut its kernels down before it exits.
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _lab_env(home: Path, api: Api | None) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PARALLEL_API_KEY", "PARALLEL_BASE_URL", "PARALLEL_NB_DEMO"}
    }
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": home / "settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "workspaces",
        "IPYTHONDIR": home / "ipython",
        # A fresh run store: a stored answer would make the panel's live phase a cache hit.
        "PARALLEL_NB_DATA_DIR": home / "data",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    env["PARALLEL_NB_TIME_SCALE"] = TIME_SCALE
    if api is not None:
        env["PARALLEL_API_KEY"] = api.api_key
        env["PARALLEL_BASE_URL"] = api.base_url
    return env


def _wait_until_ready(process: subprocess.Popen[bytes], runtime_dir: Path, log_file: Path) -> str:
    """The server's base URL, once its info file exists and ``/api/status`` answers."""
    info_file = runtime_dir / f"jpserver-{process.pid}.json"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with code {process.returncode} before it was ready; "
                f"its log ({log_file}) ends with:\n{log_file.read_text(errors='replace')[-3000:]}"
            )
        if info_file.exists() and _answers(json.loads(info_file.read_text())):
            return json.loads(info_file.read_text())["url"]
        time.sleep(0.2)
    raise RuntimeError(
        f"jupyter lab was not ready after {STARTUP_SECONDS:.0f} s; see its log at {log_file}"
    )


def _answers(info: dict[str, str]) -> bool:
    try:
        response = httpx.get(
            f"{info['url']}api/status",
            headers={"Authorization": f"token {info['token']}"},
            timeout=5,
        )
    except httpx.TransportError:
        return False
    return response.status_code == 200
