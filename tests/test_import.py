"""Importing the package and loading the extension stay cheap: checked in fresh interpreters,
where nothing else has imported the heavy modules yet."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "ipywidgets", "httpx", "starlette", "uvicorn")


def fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_loads_no_heavy_module() -> None:
    found = fresh_python(
        "import json, sys, parallel_nb\n"
        f"print(json.dumps({{'loaded': [m for m in {(*HEAVY, 'IPython')!r} if m in sys.modules],"
        " 'run_is_function': callable(parallel_nb.run)}))"
    )
    assert found == {"loaded": [], "run_is_function": True}


def test_run_stays_the_function_after_the_runs_subpackage_is_used() -> None:
    found = fresh_python(
        "import json, parallel_nb, parallel_nb.runs.runner\n"
        "from parallel_nb.runs.state import RunState\n"
        "print(json.dumps({'run_is_function': callable(parallel_nb.run)}))"
    )
    assert found == {"run_is_function": True}


def test_loading_the_extension_registers_magics_and_starts_nothing() -> None:
    found = fresh_python(
        "import json, sys, threading\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "threads = threading.active_count()\n"
        "ip.extension_manager.load_extension('parallel_nb')\n"
        "print(json.dumps({\n"
        "    'cell': ip.find_cell_magic('parallel') is not None,\n"
        "    'line': ip.find_line_magic('parallel') is not None,\n"
        f"    'loaded': [m for m in {HEAVY!r} if m in sys.modules],\n"
        "    'new_threads': threading.active_count() - threads,\n"
        "}))"
    )
    # No thread means no emulator and no network client were started.
    assert found == {"cell": True, "line": True, "loaded": [], "new_threads": 0}
