"""The command line (``python -m parallel_nb.emulator``) run as a real subprocess."""

from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

READY = re.compile(r"http://127\.0\.0\.1:(\d+)")


def read_line(process: subprocess.Popen[str], seconds: float = 20.0) -> str:
    """The next stdout line, failing instead of hanging if none comes in time."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    assert ready, "the emulator printed nothing in time"
    return process.stdout.readline()


@pytest.fixture
def cli() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parallel_nb.emulator",
            "--port",
            "0",
            "--time-scale",
            "0",
            "--api-key",
            "cli-key",
            "--rate-limit",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_url_serves_and_stops_on_signal(
    cli: subprocess.Popen[str], signum: signal.Signals
) -> None:
    line = read_line(cli)
    match = READY.search(line)
    assert match, line
    base_url = match.group(0)
    with httpx.Client(base_url=base_url, headers={"x-api-key": "cli-key"}) as client:
        run = client.post("/v1/tasks/runs", json={"processor": "lite", "input": "cli"})
        assert run.status_code == 202
        result = client.get(f"/v1/tasks/runs/{run.json()['run_id']}/result")
        assert result.json()["run"]["status"] == "completed"
        assert client.get("/_emulator/stats").json()["runs_created"] == 1
        assert client.get("/_emulator/stats", headers={"x-api-key": "other"}).status_code == 401
    cli.send_signal(signum)
    assert cli.wait(15) == 0
    assert cli.stdout is not None and cli.stdout.read() == ""  # exactly one line was printed


def test_cli_rejects_a_bad_fault_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "parallel_nb.emulator", "--port", "0", "--faults", "teapot=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "unknown fault 'teapot'" in done.stderr
    assert done.stdout == ""


def test_cli_reports_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "parallel_nb.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
