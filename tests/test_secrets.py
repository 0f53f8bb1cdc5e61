"""The API key never reaches a saved notebook, its widget state, or the kernel's logs.

A notebook that exercises every user-visible surface (a completed run, a failed run, a dry run,
the configuration, reprs, the Python API, and errors from a wrong base URL, including a verbose
traceback) is executed by nbclient against an emulator that accepts only a sentinel key. The
executed notebook is saved with its widget state, and neither it, nor anything the kernel wrote to
stdout/stderr (with httpx, httpcore and parallel_nb logging at DEBUG), nor the run store the
kernel recorded its runs in, nor the logs of this process (where the emulator runs) may contain
the sentinel.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from parallel_nb.emulator import EmulatorHandle, start_emulator

SENTINEL = f"sk-sentinel-{secrets.token_hex(16)}"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
QUESTION = "What was the GDP of France in 2023?"

CELLS: list[tuple[str, bool]] = [
    # (source, raises on purpose)
    (
        "import logging, sys\n"
        "handler = logging.StreamHandler(sys.__stderr__)\n"
        "handler.setFormatter(logging.Formatter('%(name)s: %(message)s'))\n"
        "for name in ('httpx', 'httpcore', 'parallel_nb'):\n"
        "    logging.getLogger(name).addHandler(handler)\n"
        "    logging.getLogger(name).setLevel(logging.DEBUG)",
        False,
    ),
    ("%load_ext parallel_nb", False),
    (f"%%parallel lite answer\n{QUESTION}\n---\ngdp: GDP in current US dollars", False),
    ("answer", False),
    ("print(repr(answer)); print(answer.to_dict())", False),
    ("answer.output_df", False),
    ("answer.basis_df", False),
    # --refresh / refresh=True: the same request again would be answered from the run store.
    (
        f"%%parallel lite --no-widget --refresh\n{QUESTION}\n---\ngdp: GDP in current US dollars",
        False,
    ),
    (f"%%parallel core --dry-run\n{QUESTION}", False),
    ("%parallel config", False),
    ("%config ParallelMagics", False),
    (
        "import parallel_nb\n"
        f"parallel_nb.run({QUESTION!r}, processor='lite', output='gdp: GDP in current US dollars',"
        " refresh=True)",
        False,
    ),
    (
        "from parallel_nb.config import get_client, get_settings\n"
        "print(repr(get_settings()), repr(get_client()))",
        False,
    ),
    ("%%parallel lite\nPlease research this. emulator: fail", True),
    # Verbose tracebacks print every frame's local variables, where a key would show.
    ("%xmode Verbose", False),
    # Nothing listens on port 9 (discard) on loopback: the connection is refused.
    (
        "from parallel_nb.api.client import Client\n"
        "from parallel_nb.api.models import TaskRequest\n"
        "client = Client(base_url='http://127.0.0.1:9')\n"
        "print(repr(client))\n"
        f"client.create_run(TaskRequest(processor='lite', input={QUESTION!r}))",
        True,
    ),
    # A server that answers, but not the Task API: every route is a 404.
    (
        "import os\n"
        "wrong = Client(base_url=os.environ['PARALLEL_BASE_URL'] + '/not-the-api')\n"
        f"wrong.create_run(TaskRequest(processor='lite', input={QUESTION!r}))",
        True,
    ),
    ("%xmode Context", False),
]


def secret_notebook() -> nbformat.NotebookNode:
    notebook = new_notebook()
    for source, raises in CELLS:
        cell = new_code_cell(source)
        if raises:
            cell.metadata["tags"] = ["raises-exception"]
        notebook.cells.append(cell)
    return notebook


@pytest.fixture(scope="module")
def sentinel_emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(time_scale=0, api_key=SENTINEL) as handle:
        yield handle


def test_api_key_never_saved_or_logged(
    sentinel_emulator: EmulatorHandle,
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the emulator runs in this process: its logs count too
    monkeypatch.setenv("PARALLEL_API_KEY", SENTINEL)
    monkeypatch.setenv("PARALLEL_BASE_URL", sentinel_emulator.base_url)
    monkeypatch.delenv("PARALLEL_NB_DEMO", raising=False)
    runs_before = sentinel_emulator.stats()["runs_created"]

    notebook = secret_notebook()
    kernel_log = tmp_path / "kernel.log"
    with kernel_log.open("wb") as log:
        NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            store_widget_state=True,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute(stdout=log, stderr=log)
    saved = tmp_path / "executed.ipynb"
    nbformat.write(notebook, saved)

    # The kernel really used the sentinel: the emulator accepts no other key.
    assert sentinel_emulator.stats()["runs_created"] == runs_before + 4
    # The surfaces under test were really produced.
    assert WIDGET_STATE in notebook.metadata.get("widgets", {}), "no widget state was saved"
    errors = [o.ename for c in notebook.cells for o in c.outputs if o.output_type == "error"]
    assert errors == ["RunFailed", "ConnectionFailed", "NotFoundError"]
    assert "httpx: HTTP Request: POST" in kernel_log.read_text(errors="replace")

    secret_part = SENTINEL.removeprefix("sk-sentinel-")
    store_files = sorted(data_dir.glob("runs.sqlite3*"))  # the database and its WAL journal
    assert store_files, "the kernel recorded no runs"
    for where, text in {
        "saved notebook": saved.read_text(),
        "kernel stdout/stderr": kernel_log.read_text(errors="replace"),
        "test process logs": caplog.text,
        "run store": b"".join(f.read_bytes() for f in store_files).decode(errors="replace"),
    }.items():
        assert secret_part not in text, f"the API key leaked into the {where}"
