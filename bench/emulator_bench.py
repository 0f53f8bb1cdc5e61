"""Benchmark the embedded emulator: run throughput under concurrency and memory per stored run.

Starts the emulator in this process on 127.0.0.1 at time scale 0 (no simulated latency), so the
figures measure the emulator's own overhead. Clients and server share the process and its GIL;
on a 2-core machine treat the throughput as a lower bound for a separate-process server.

    .venv/bin/python bench/emulator_bench.py [--runs 2000] [--concurrency 100] [--stored 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from parallel_nb.emulator import start_emulator

API_KEY = "bench-key"
REQUEST_TIMEOUT = 60.0
# The whole benchmark must stay bounded; a wedged emulator aborts instead of hanging.
PHASE_DEADLINE = 90.0

COMPANY_SPEC: dict[str, Any] = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {
                "founded": {"type": "string", "description": "Year founded"},
                "ceo": {"type": "string", "description": "Current CEO"},
                "headquarters": {"type": "string", "description": "Headquarters city"},
            },
            "required": ["founded", "ceo", "headquarters"],
            "additionalProperties": False,
        },
    }
}


COMPANIES = ("Stripe", "Databricks", "Figma", "Shopify", "Airbnb", "Canva", "Snowflake", "Nvidia")


def run_body(index: int) -> dict[str, Any]:
    """A realistic mix: three structured enrichments on standard processors, one auto on pro.

    Inputs name companies the built-in fixtures know, so answers carry real basis and citations;
    the row number keeps every input distinct.
    """
    company = COMPANIES[index % len(COMPANIES)]
    if index % 4 == 3:
        return {"input": f"Research {company}'s market position (row {index})", "processor": "pro"}
    return {
        "input": {"company": company, "row": index},
        "processor": ("lite", "base", "core")[index % 4],
        "task_spec": COMPANY_SPEC,
    }


T = TypeVar("T")
Step = Callable[[httpx.AsyncClient, T], Awaitable[Any]]


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), after a full garbage collection."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status; this benchmark needs Linux")


class Load:
    """Drives the emulator from ``concurrency`` clients and tallies every response status."""

    def __init__(self, base_url: str, concurrency: int) -> None:
        self.base_url = base_url
        self.concurrency = concurrency
        self.statuses: Counter[int] = Counter()
        self.run_ids: list[str] = []

    async def create(self, client: httpx.AsyncClient, index: int) -> str | None:
        response = await client.post("/v1/tasks/runs", json=run_body(index))
        self.statuses[response.status_code] += 1
        if response.status_code != 202:
            return None
        run_id: str = response.json()["run_id"]
        self.run_ids.append(run_id)
        return run_id

    async def read_result(self, client: httpx.AsyncClient, run_id: str) -> None:
        response = await client.get(f"/v1/tasks/runs/{run_id}/result", params={"timeout": 60})
        self.statuses[response.status_code] += 1

    async def create_and_wait(self, client: httpx.AsyncClient, index: int) -> None:
        run_id = await self.create(client, index)
        if run_id is not None:
            await self.read_result(client, run_id)

    def fan_out(self, jobs: Iterable[T], step: Step[T]) -> float:
        """Run ``step`` for every job over ``concurrency`` clients; returns elapsed seconds."""
        return asyncio.run(asyncio.wait_for(self._fan_out(iter(jobs), step), PHASE_DEADLINE))

    async def _fan_out(self, jobs: Iterator[T], step: Step[T]) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(self._client_loop(jobs, step) for _ in range(self.concurrency)))
        return time.perf_counter() - started

    async def _client_loop(self, jobs: Iterator[T], step: Step[T]) -> None:
        headers = {"x-api-key": API_KEY}
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=REQUEST_TIMEOUT
        ) as client:
            # The iterator is shared: each client takes the next job until all are handed out.
            for job in jobs:
                await step(client, job)

    def failures(self) -> str:
        failed = {code: n for code, n in sorted(self.statuses.items()) if code >= 300}
        return f" (non-2xx responses: {failed})" if failed else ""


def wait_until_finished(handle: Any, runs: int) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE
    while True:
        by_status = handle.stats()["runs_by_status"]
        active = sum(by_status.get(status, 0) for status in ("queued", "running", "cancelling"))
        if active == 0 and sum(by_status.values()) >= runs:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still active after {PHASE_DEADLINE}s: {by_status}")
        time.sleep(0.2)


def bench_throughput(runs: int, concurrency: int) -> None:
    with start_emulator(time_scale=0, api_key=API_KEY, rate_limit=0) as handle:
        load = Load(handle.base_url, concurrency)
        seconds = load.fan_out(range(runs), load.create_and_wait)
    completed = load.statuses[200]
    print(
        f"throughput: {completed / seconds:,.0f} completed runs/s "
        f"({completed:,} runs, create + blocking /result each, {concurrency} concurrent "
        f"clients, {seconds:.1f} s){load.failures()}"
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def bench_memory(stored: int, concurrency: int) -> None:
    with start_emulator(time_scale=0, api_key=API_KEY, rate_limit=0) as handle:
        # Warm up so imports, the knowledge base and connection pools are not counted per run.
        warmup = Load(handle.base_url, concurrency)
        warmup.fan_out(range(stored, stored + concurrency), warmup.create_and_wait)
        before = rss_bytes()
        load = Load(handle.base_url, concurrency)
        load.fan_out(range(stored), load.create)
        wait_until_finished(handle, stored + concurrency)
        stored_rss = rss_bytes()
        # Reading every result once shows whether outputs are cached per run after first use.
        load.fan_out(load.run_ids, load.read_result)
        read_rss = rss_bytes()
    growth = stored_rss - before
    print(
        f"memory: +{_mib(growth)} RSS for {len(load.run_ids):,} stored completed runs "
        f"({growth / stored / 1024:,.2f} KiB per run; process RSS {_mib(before)} -> "
        f"{_mib(stored_rss)}, /proc VmRSS after gc, emulator and clients in one process)"
        f"{load.failures()}"
    )
    print(
        f"memory: +{_mib(read_rss - before)} RSS after reading each of those results once "
        f"(process RSS {_mib(read_rss)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs for the throughput figure")
    parser.add_argument("--concurrency", type=int, default=100, help="concurrent clients")
    parser.add_argument("--stored", type=int, default=10_000, help="runs for the memory figure")
    args = parser.parse_args()
    bench_throughput(args.runs, args.concurrency)
    bench_memory(args.stored, args.concurrency)


if __name__ == "__main__":
    main()
