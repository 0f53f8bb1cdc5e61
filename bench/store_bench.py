"""Benchmark the run store: what recording a run costs, and how fast a cached cell answers.

(a) Store overhead per run: ``record_created`` + ``record_result`` of a real result (a ``core``
run with a three-field JSON spec, taken from the in-process emulator), ``--records`` times on a
fresh file, next to the client's own time for one run (create + event stream to the end +
result with ``parallel_nb.api.client.Client``, time scale 0) measured in the same process.

(b) Cached re-execution: a ``%%parallel lite`` cell runs once in an IPython InteractiveShell,
then is re-executed ``--cached`` times. If the magic answers it from the cache (no new run
reaches the emulator), the cell's median latency is reported; the store-level path the cache
takes (``request_key`` + ``find`` + rebuilding the ``TaskResult`` + ``mark_cache_hit``) is
always reported. Both are compared with fresh cells (a new input each time, so never cached).

Everything is on 127.0.0.1 with a temporary ``PARALLEL_NB_DATA_DIR``. Median wall times.

    .venv/bin/python bench/store_bench.py [--records 1000] [--runs 100] [--cached 50] [--fresh 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from parallel_nb.api.client import Client
from parallel_nb.api.models import TaskRequest, TaskRunResult
from parallel_nb.api.processors import get_processor
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.result import TaskResult
from parallel_nb.runs.store import RunStore, request_key

API_KEY = "bench-key"
GDP = "What was the GDP of France in 2023?"
SPEC = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {
                "gdp": {"type": "string", "description": "nominal GDP in current US dollars"},
                "gdp_growth": {"type": "string", "description": "real GDP growth, in percent"},
                "year": {"type": "integer", "description": "the year the figures are for"},
            },
        },
    }
}
WARMUP = 5


def median_seconds(action: Callable[[], Any], count: int, warmup: int = WARMUP) -> float:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


# -- (a) store overhead per run ------------------------------------------------------------


def sample_result(client: Client) -> tuple[TaskRequest, TaskRunResult]:
    request = TaskRequest("core", GDP, task_spec=SPEC)
    return request, client.result(client.create_run(request).run_id)


def copies(result: TaskRunResult, count: int) -> list[TaskRunResult]:
    """``count`` copies of ``result`` under distinct run ids, built before any timing."""
    wire = dict(result.raw)
    return [
        TaskRunResult.from_dict({**wire, "run": {**wire["run"], "run_id": f"trun_bench_{i:06d}"}})
        for i in range(count)
    ]


def store_overhead(client: Client, path: Path, count: int, endpoint: str) -> tuple[float, int]:
    """Median seconds for recording one run (created, then its result), and bytes on disk."""
    request, result = sample_result(client)
    results = copies(result, count + WARMUP)
    queued = dataclasses.replace(result.run, status="queued", is_active=True)
    key = request_key(request, endpoint)
    samples = []
    with RunStore(path) as store:
        store.history(1)  # the first use creates the file: not part of a run's cost
        for i, done in enumerate(results):
            created = dataclasses.replace(queued, run_id=done.run.run_id)
            start = time.perf_counter()
            store.record_created(created, request, key=key, endpoint=endpoint)
            store.record_result(done)
            if i >= WARMUP:
                samples.append(time.perf_counter() - start)
    # After close: the last connection checkpoints the WAL into the database file.
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return statistics.median(samples), size // len(results)


def client_run(client: Client) -> None:
    created = client.create_run(TaskRequest("lite", GDP))
    with client.events(created.run_id) as stream:
        for _ in stream:
            pass
    client.result(created.run_id)


# -- (b) cached re-execution ---------------------------------------------------------------


class Cells:
    """``%%parallel`` cells run in an InteractiveShell, their output swallowed."""

    def __init__(self, emulator: EmulatorHandle) -> None:
        self.emulator = emulator
        self.shell = InteractiveShell.instance()
        self.shell.extension_manager.load_extension("parallel_nb")
        self.fresh_inputs = 0

    def run(self, body: str) -> TaskResult:
        with capture_output():
            executed = self.shell.run_cell(f"%%parallel lite --no-widget\n{body}\n")
        if not executed.success or not isinstance(executed.result, TaskResult):
            raise RuntimeError(f"the cell failed: {executed.error_in_exec!r}")
        return executed.result

    def fresh(self) -> TaskResult:
        self.fresh_inputs += 1
        return self.run(f"{GDP} (fresh cell {self.fresh_inputs})")

    def runs_created(self) -> int:
        return int(self.emulator.stats()["runs_created"])


def cache_lookup(store: RunStore, request: TaskRequest, endpoint: str) -> Callable[[], Any]:
    """What the cache does for a hit, at the store's level: key, find, rebuild, count."""

    def lookup() -> TaskResult:
        stored = store.find(request_key(request, endpoint))
        assert stored is not None, "the cached run is missing from the store"
        result = stored.task_run_result()
        assert result is not None
        store.mark_cache_hit(stored.run_id)
        return TaskResult(result.run, result.output, request, cached=True)

    return lookup


def record_if_missing(store: RunStore, result: TaskResult, endpoint: str) -> None:
    """Record the first cell's run when the magic did not (store not wired in yet), so the
    store-level lookup has its entry."""
    assert result.request is not None and result.task_output is not None
    if store.get(result.run_id) is None:
        key = request_key(result.request, endpoint)
        store.record_created(result.run, result.request, key=key, endpoint=endpoint)
        store.record_result(TaskRunResult(run=result.run, output=result.task_output))


def report_overhead(client: Client, data_dir: Path, args: argparse.Namespace) -> None:
    path = data_dir / "overhead" / "runs.sqlite3"
    per_record, disk = store_overhead(client, path, args.records, client.base_url)
    per_run = median_seconds(lambda: client_run(client), args.runs)
    print(
        f"store overhead per run (record_created + record_result, median of {args.records}): "
        f"{us(per_record)}; client per run (create + events + result, time scale 0, median "
        f"of {args.runs}): {ms(per_run)}; ratio {per_record / per_run:.3f}x"
    )
    print(f"store size on disk: {disk / 1024:.1f} KiB per run (core, 3-field JSON spec)")


def report_cache(emulator: EmulatorHandle, args: argparse.Namespace) -> None:
    endpoint = emulator.base_url
    cells = Cells(emulator)
    first = cells.run(GDP)
    before = cells.runs_created()
    wired = cells.run(GDP).cached and cells.runs_created() == before
    fresh = median_seconds(cells.fresh, args.fresh, warmup=2)

    with RunStore() as store:
        record_if_missing(store, first, endpoint)
        assert first.request is not None
        lookup = median_seconds(cache_lookup(store, first.request, endpoint), args.cached)
    print(
        f"store-level cache hit (request_key + find + TaskResult + mark_cache_hit, median of "
        f"{args.cached}): {ms(lookup)}; fresh lite cell (time scale 0, median of "
        f"{args.fresh}): {ms(fresh)}; ratio {lookup / fresh:.3f}x"
    )
    if wired:
        before = cells.runs_created()
        cached = median_seconds(lambda: cells.run(GDP), args.cached)
        created = cells.runs_created() - before
        print(
            f"cached cell re-execution (%%parallel lite, median of {args.cached}): "
            f"{ms(cached)}; fresh lite cell: {ms(fresh)}; ratio {cached / fresh:.3f}x; "
            f"runs created by the re-executions: {created}"
        )
    else:
        cached = lookup
        print(
            "cached cell re-execution: NOT MEASURED — the magic does not answer from the "
            "cache yet (re-executing the cell created a new run); the store-level line "
            "above is the cache's cost"
        )
    documented = get_processor("lite").min_seconds
    print(
        f"cache hit vs lite's documented minimum latency ({documented:g} s, what a fresh run "
        f"costs against the real service): {cached / documented:.6f}x"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="runs recorded in the store")
    parser.add_argument("--runs", type=int, default=100, help="client runs timed")
    parser.add_argument("--cached", type=int, default=50, help="cached re-executions timed")
    parser.add_argument("--fresh", type=int, default=20, help="fresh cells timed")
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="parallel-nb-store-bench-") as tmp,
        start_emulator(time_scale=0, api_key=API_KEY, rate_limit=0) as emulator,
        Client(API_KEY, emulator.base_url) as client,
    ):
        os.environ.update(
            PARALLEL_NB_DATA_DIR=str(Path(tmp) / "data"),
            PARALLEL_API_KEY=API_KEY,
            PARALLEL_BASE_URL=emulator.base_url,
        )
        os.environ.pop("PARALLEL_NB_DEMO", None)
        report_overhead(client, Path(tmp), args)
        report_cache(emulator, args)


if __name__ == "__main__":
    main()
