"""A kernel killed while its run goes on loses nothing: the run store has the run id, a new
process re-executing the same cell follows that run instead of paying for another, and any
process can ``%parallel attach`` to it.

The emulator runs in this test process (so its count of created runs spans every "kernel");
each kernel is a fresh Python process running the magic in an IPython shell, sharing only the
run store's directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.runs.store import RunStore, StoredRun

KEY = "restart-key"
GDP = "What was the GDP of France in 2023?"
KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "parallel_nb")
if sys.argv[1] == "cell":
    result = shell.run_cell_magic("parallel", "lite", sys.argv[2])
else:
    result = shell.run_line_magic("parallel", "attach " + sys.argv[2])
print("RESULT " + json.dumps([result.run_id, result.status, result.output]), flush=True)
"""

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    # A lite run takes about six seconds: time enough to kill a kernel and start another.
    with start_emulator(time_scale=0.15, api_key=KEY) as handle:
        yield handle


def kernel(emulator: EmulatorHandle, data_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PARALLEL_API_KEY": KEY,
        "PARALLEL_BASE_URL": emulator.base_url,
        "PARALLEL_NB_DATA_DIR": str(data_dir),
    }
    env.pop("PARALLEL_NB_DEMO", None)
    return subprocess.Popen(
        [sys.executable, "-c", KERNEL, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[list[object], str]:
    """The kernel's result line ``[run_id, status, output]`` and everything it printed."""
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    [line] = [line for line in out.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT ")), out


def recorded_run(data_dir: Path, timeout: float = 30.0) -> StoredRun:
    """The first run the store records, as soon as it does."""
    deadline = time.monotonic() + timeout
    with RunStore(data_dir / "runs.sqlite3") as store:
        while time.monotonic() < deadline:
            if store.path.exists() and (runs := store.history(1)):
                return runs[0]
            time.sleep(0.02)
    raise AssertionError("the first kernel never recorded its run")


def test_a_new_kernel_follows_the_run_of_a_killed_one(
    emulator: EmulatorHandle, data_dir: Path
) -> None:
    first = kernel(emulator, data_dir, "cell", GDP)
    try:
        submitted = recorded_run(data_dir)
    finally:
        first.kill()  # SIGKILL: no clean-up, no atexit, as when a kernel dies
        first.communicate(timeout=30)
    assert submitted.is_active and emulator.stats()["runs_created"] == 1

    (run_id, status, output), printed = finish(kernel(emulator, data_dir, "cell", GDP))

    assert run_id == submitted.run_id and status == "completed" and output
    assert f"run {run_id} for this same request was started" in printed
    assert emulator.stats()["runs_created"] == 1  # followed, not created again
    with RunStore(data_dir / "runs.sqlite3") as store:
        assert store.get(run_id).result is not None

    (attached_id, attached_status, attached_output), _ = finish(
        kernel(emulator, data_dir, "attach", run_id)
    )
    assert (attached_id, attached_status, attached_output) == (run_id, "completed", output)
    assert emulator.stats()["runs_created"] == 1
