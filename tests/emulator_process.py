"""The emulator in a process of its own, for tests that must not share one with it: memory
measured by tracemalloc, or kernels that restart while their runs go on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

READY = "emulator ready at "


@contextmanager
def emulator_process(api_key: str, time_scale: float = 0.0) -> Iterator[str]:
    """Serve ``python -m parallel_nb.emulator`` on a free loopback port; yields its base URL
    and stops the process on exit."""
    command = [sys.executable, "-m", "parallel_nb.emulator", "--host", "127.0.0.1", "--port", "0"]
    command += ["--time-scale", str(time_scale), "--api-key", api_key]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if READY not in line:
            server.kill()
            _, errors = server.communicate(timeout=10)
            raise RuntimeError(f"the emulator subprocess did not start: {line!r} {errors!r}")
        yield line.split(READY, 1)[1].strip()
    finally:
        server.terminate()
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
