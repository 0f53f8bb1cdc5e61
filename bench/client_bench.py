"""Benchmark parallel_nb's Client against the official SDK: per-run overhead and import time.

One "run" is what a notebook cell does: create a run, read its event stream to the end, fetch
the result. Both clients make the same three calls (same processor, input and beta header)
against the in-process emulator at time scale 0, alternating run by run, next to a bare-httpx
baseline making the same requests without parsing. The emulator runs on its own thread, so the
main thread's CPU time (``time.thread_time``) is the client's own work; wall time includes the
server's share. Import times are measured in fresh interpreters (``python -c "import X"``
minus ``python -c pass``), alternating the modules, median of ``--imports`` rounds.

    .venv/bin/python bench/client_bench.py [--runs 200] [--imports 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import parallel

from parallel_nb.api.client import Client
from parallel_nb.api.models import BETA_FIELD_BASIS, TaskRequest
from parallel_nb.emulator import start_emulator

API_KEY = "bench-key"
PROCESSOR = "lite"
QUESTION = "What was the GDP of France in 2023?"
WARMUP = 10

Run = Callable[[], int]  # one run; returns the number of events read


def ours(client: Client) -> Run:
    def run() -> int:
        created = client.create_run(TaskRequest(PROCESSOR, QUESTION))
        with client.events(created.run_id) as stream:
            events = sum(1 for _ in stream)
        client.result(created.run_id)
        return events

    return run


def sdk(client: parallel.Parallel) -> Run:
    def run() -> int:
        created = client.task_run.create(
            input=QUESTION, processor=PROCESSOR, betas=[BETA_FIELD_BASIS]
        )
        with client.task_run.events(created.run_id) as stream:
            events = sum(1 for _ in stream)
        client.task_run.result(created.run_id, betas=[BETA_FIELD_BASIS])
        return events

    return run


def bare(http: httpx.Client, base_url: str) -> Run:
    """The same requests with no models and no SSE parsing: the floor both clients sit on."""
    headers = {"x-api-key": API_KEY, "parallel-beta": BETA_FIELD_BASIS}

    def run() -> int:
        body = {"processor": PROCESSOR, "input": QUESTION}
        run_id = http.post(f"{base_url}/v1/tasks/runs", json=body, headers=headers).json()["run_id"]
        url = f"{base_url}/v1/tasks/runs/{run_id}/events"
        with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as resp:
            events = sum(1 for line in resp.iter_lines() if line.startswith("data:"))
        http.get(f"{base_url}/v1/tasks/runs/{run_id}/result", headers=headers).json()
        return events

    return run


def measure(runs: dict[str, Run], count: int) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and main-thread CPU seconds per run for each client, rotating the order."""
    for run in runs.values():
        for _ in range(WARMUP):
            run()
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runs}
    names = list(runs)
    for i in range(count):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            wall, cpu = time.perf_counter(), time.thread_time()
            events = runs[name]()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.thread_time() - cpu)
            if events < 2:
                raise RuntimeError(f"{name}: only {events} events in a run; the stream broke")
    return times


def import_seconds(modules: list[str], rounds: int) -> dict[str, float]:
    """Median import time per module in fresh interpreters, less the interpreter's start-up."""
    samples: dict[str, list[float]] = {name: [] for name in ["", *modules]}
    for _ in range(rounds):
        for name in samples:
            code = f"import {name}" if name else "pass"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            samples[name].append(time.perf_counter() - start)
    baseline = statistics.median(samples.pop(""))
    return {name: statistics.median(s) - baseline for name, s in samples.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="measured runs per client")
    parser.add_argument("--imports", type=int, default=7, help="fresh interpreters per module")
    args = parser.parse_args(argv)

    with (
        start_emulator(time_scale=0, api_key=API_KEY, rate_limit=0) as emulator,
        Client(API_KEY, emulator.base_url) as client,
        parallel.Parallel(api_key=API_KEY, base_url=emulator.base_url) as official,
        httpx.Client(timeout=60) as http,
    ):
        runs = {
            "parallel_nb": ours(client),
            "parallel SDK": sdk(official),
            "bare httpx": bare(http, emulator.base_url),
        }
        times = measure(runs, args.runs)

    wall = {name: statistics.median(w) for name, (w, _) in times.items()}
    cpu = {name: statistics.median(c) for name, (_, c) in times.items()}
    print(f"per run (create + events to the end + result), median of {args.runs}, {PROCESSOR}:")
    for name in runs:
        extra = wall[name] - wall["bare httpx"]
        print(
            f"  {name:<13} wall {ms(wall[name])}  client CPU {ms(cpu[name])}"
            f"  (wall over bare httpx: {ms(extra)})"
        )
    ours_cpu, sdk_cpu, bare_cpu = cpu["parallel_nb"], cpu["parallel SDK"], cpu["bare httpx"]
    wall_ratio = wall["parallel_nb"] / wall["parallel SDK"]
    above_bare = (ours_cpu - bare_cpu) / (sdk_cpu - bare_cpu)
    print(
        f"  ratio parallel_nb / SDK: wall {wall_ratio:.2f}x, client CPU {ours_cpu / sdk_cpu:.2f}x, "
        f"client CPU above bare httpx {above_bare:.2f}x"
    )

    modules = ["parallel_nb", "parallel_nb.api.client", "parallel"]
    imports = import_seconds(modules, args.imports)
    print(f"import time, fresh interpreter minus bare start-up, median of {args.imports}:")
    for name in modules:
        print(f"  {name:<23} {ms(imports[name])}")
    for name in modules[:2]:
        print(f"  ratio {name} / parallel: {imports[name] / imports['parallel']:.2f}x")


if __name__ == "__main__":
    main()
