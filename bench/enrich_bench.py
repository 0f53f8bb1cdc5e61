"""Benchmark DataFrame enrichment: ``parallel_nb.enrich`` against the official SDK used the way
Parallel's own recipes use it, on the same rows, in the same run.

Every approach enriches the same ``--rows``-row DataFrame (the emulator's fixture companies
cycled, ``{"company": ..., "batch": i}`` so every input is distinct) with ``lite`` and a
two-field output (``founded`` integer, ``ceo``), and ends with the enriched DataFrame:

- ``parallel_nb.enrich``: the public call, recording in a run store (temporary
  ``PARALLEL_NB_DATA_DIR``), as users get it (``refresh=True``, so no round is answered from
  the store); ``parallel_nb engine``: ``plan_batch`` + ``run_batch`` + ``frame`` with a bare
  ``Client``, no store.
- ``SDK sequential``: ``task_run.create`` then ``task_run.result`` per row.
- ``SDK group + result per run`` (the Large_Scale_Tasks recipe): ``task_group.create``,
  ``add_runs`` in chunks of 1,000 with ``default_task_spec``, poll ``retrieve`` until the group
  is idle, then ``task_run.result`` per run; ``SDK group + get_runs`` (the Polars helper): the
  same, then one ``get_runs(include_output=True)`` stream mapped by run id.

The recipes poll every 5 s; at time scale 0 that would only time the sleep, so the groups are
polled every ``--poll`` seconds. All SDK calls send the same task spec (the JSON schema
``parallel_nb.spec.output_to_task_spec`` builds) and ``parallel-beta`` header as ours. The
emulator runs in-process on 127.0.0.1 at time scale 0 with no rate limit; each approach gets a
small warm-up, then ``--rounds`` rounds with the order rotated; medians are printed. Every
approach must create exactly one run per row and return the same values, or the bench stops.

    .venv/bin/python bench/enrich_bench.py [--rows 1000] [--rounds 3] [--poll 0.25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import parallel

import parallel_nb
from parallel_nb.api.client import Client
from parallel_nb.api.models import BETA_FIELD_BASIS
from parallel_nb.config import reset_settings
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.emulator.knowledge import FIXTURE_COMPANIES
from parallel_nb.runs.batch import MAX_RUNS_PER_REQUEST, plan_batch, run_batch
from parallel_nb.spec import output_to_task_spec

API_KEY = "bench-key"
PROCESSOR = "lite"
OUTPUT = "founded (integer): the year the company was founded\nceo: the current CEO"
FIELDS = ["founded", "ceo"]
BETAS = [BETA_FIELD_BASIS]
REQUEST_TIMEOUT = 60.0
# Each approach must stay bounded; a wedged emulator aborts the bench instead of hanging it.
PHASE_DEADLINE = 90.0
WARMUP_ROWS = 20

Enrich = Callable[[pd.DataFrame], pd.DataFrame]
Fetch = Callable[[parallel.Parallel, str, list[str]], list[dict[str, Any]]]


def companies(rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "company": [FIXTURE_COMPANIES[i % len(FIXTURE_COMPANIES)] for i in range(rows)],
            "batch": range(rows),
        }
    )


def merge_back(df: pd.DataFrame, contents: list[dict[str, Any]]) -> pd.DataFrame:
    """What the recipes do once the answers are in: one column per field, joined onto the rows."""
    return df.join(pd.DataFrame(contents, index=df.index, columns=FIELDS))


def ours() -> Enrich:
    # refresh=True: every round researches the rows again, as the baselines do, rather than
    # re-reading the batch the run store already holds from the previous round.
    return lambda df: parallel_nb.enrich(
        df, output=OUTPUT, processor=PROCESSOR, widget=False, refresh=True
    )


def engine(client: Client) -> Enrich:
    def enrich(df: pd.DataFrame) -> pd.DataFrame:
        plan = plan_batch(df, input_template=None, output=OUTPUT, processor=PROCESSOR)
        return run_batch(client, plan).frame(df)

    return enrich


def sdk_sequential(sdk: parallel.Parallel, spec: dict[str, Any]) -> Enrich:
    def enrich(df: pd.DataFrame) -> pd.DataFrame:
        deadline = time.monotonic() + PHASE_DEADLINE
        contents = []
        for row in df.to_dict("records"):
            created = sdk.task_run.create(
                input=row, processor=PROCESSOR, task_spec=spec, betas=BETAS
            )
            contents.append(content_of(sdk.task_run.result(created.run_id, betas=BETAS)))
            if time.monotonic() > deadline:
                raise TimeoutError(f"SDK sequential: not done after {PHASE_DEADLINE:g} s")
        return merge_back(df, contents)

    return enrich


def sdk_group(
    sdk: parallel.Parallel, spec: dict[str, Any], poll: float, fetch: Fetch, polls: list[int]
) -> Enrich:
    """The recipes' task-group flow; ``polls`` collects how many ``retrieve`` calls each took."""

    def enrich(df: pd.DataFrame) -> pd.DataFrame:
        group_id = sdk.task_group.create().taskgroup_id
        inputs = [{"input": row, "processor": PROCESSOR} for row in df.to_dict("records")]
        run_ids: list[str] = []
        for start in range(0, len(inputs), MAX_RUNS_PER_REQUEST):
            added = sdk.task_group.add_runs(
                group_id,
                inputs=inputs[start : start + MAX_RUNS_PER_REQUEST],
                default_task_spec=spec,
                betas=BETAS,
            )
            run_ids.extend(added.run_ids)
        polls.append(wait_idle(sdk, group_id, poll))
        return merge_back(df, fetch(sdk, group_id, run_ids))

    return enrich


def wait_idle(sdk: parallel.Parallel, group_id: str, poll: float) -> int:
    """Poll ``retrieve`` until the group is idle; returns the number of calls."""
    deadline = time.monotonic() + PHASE_DEADLINE
    calls = 0
    while True:
        calls += 1
        status = sdk.task_group.retrieve(group_id).status
        if not status.is_active:
            return calls
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"task group still active after {PHASE_DEADLINE:g} s: "
                f"{status.task_run_status_counts}"
            )
        time.sleep(poll)


def result_per_run(sdk: parallel.Parallel, group_id: str, run_ids: list[str]) -> list[Any]:
    return [content_of(sdk.task_run.result(run_id, betas=BETAS)) for run_id in run_ids]


def streamed_runs(sdk: parallel.Parallel, group_id: str, run_ids: list[str]) -> list[Any]:
    by_id = {}
    with sdk.task_group.get_runs(group_id, include_output=True) as stream:
        for event in stream:
            if event.type == "task_run.state" and event.output is not None:
                by_id[event.run.run_id] = event.output.content
    missing = len(set(run_ids) - set(by_id))
    if missing:
        raise RuntimeError(f"get_runs streamed no output for {missing} of {len(run_ids)} runs")
    return [by_id[run_id] for run_id in run_ids]


GROUP_FETCHES: dict[str, Fetch] = {
    "SDK group + result per run": result_per_run,  # the Large_Scale_Tasks recipe
    "SDK group + get_runs": streamed_runs,  # the official Polars helper
}


def content_of(result: Any) -> Any:
    if result.run.status != "completed":
        raise RuntimeError(f"run {result.run.run_id} ended {result.run.status}: {result.run.error}")
    return result.output.content


def poll_note(counts: list[int]) -> str:
    """The spread of ``retrieve`` calls over the timed rounds (the first count is the warm-up's)."""
    timed = counts[1:]
    if not timed:
        return ""
    low, high = min(timed), max(timed)
    return f"  (retrieve calls per round: {low}{f'-{high}' if high > low else ''})"


def rotations(names: list[str], rounds: int) -> Iterator[list[str]]:
    for i in range(rounds):
        shift = i % len(names)
        yield names[shift:] + names[:shift]


def measure(
    approaches: dict[str, Enrich], df: pd.DataFrame, rounds: int, emulator: EmulatorHandle
) -> tuple[dict[str, list[float]], dict[str, pd.DataFrame]]:
    """Wall seconds per round for each approach, and the frame each returned last."""
    for enrich in approaches.values():
        enrich(df.head(WARMUP_ROWS))
    times: dict[str, list[float]] = {name: [] for name in approaches}
    frames: dict[str, pd.DataFrame] = {}
    for order in rotations(list(approaches), rounds):
        for name in order:
            before = emulator.stats()["runs_created"]
            start = time.perf_counter()
            frames[name] = approaches[name](df)
            times[name].append(time.perf_counter() - start)
            created = emulator.stats()["runs_created"] - before
            if created != len(df):
                raise RuntimeError(
                    f"{name} created {created} runs for {len(df)} rows: the approaches are not "
                    f"doing the same work, so their times cannot be compared"
                )
    return times, frames


def same_values(frames: dict[str, pd.DataFrame], df: pd.DataFrame) -> int:
    """Check every approach answered every row with the same values; returns the distinct
    answers seen. Raises naming the first approach and row that differ."""
    reference_name, reference = next(iter(frames.items()))
    expected = list(zip(*(reference[f] for f in FIELDS), strict=True))
    if any(value is None or pd.isna(value) for row in expected for value in row):
        raise RuntimeError(f"{reference_name} left some rows without an answer")
    for name, frame in frames.items():
        if not frame.index.equals(df.index) or not frame["company"].equals(df["company"]):
            raise RuntimeError(f"{name} changed the rows of the input DataFrame")
        got = list(zip(*(frame[f] for f in FIELDS), strict=True))
        for position, (mine, theirs) in enumerate(zip(expected, got, strict=True)):
            if mine != theirs:
                raise RuntimeError(
                    f"row {position}: {reference_name} answered {mine}, {name} answered {theirs}"
                )
    return len(set(expected))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows in the DataFrame")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per approach")
    parser.add_argument(
        "--poll", type=float, default=0.25, help="seconds between task_group.retrieve polls"
    )
    args = parser.parse_args(argv)

    df = companies(args.rows)
    spec = output_to_task_spec(OUTPUT, PROCESSOR)
    polls: dict[str, list[int]] = {name: [] for name in GROUP_FETCHES}
    with (
        tempfile.TemporaryDirectory(prefix="parallel-nb-enrich-bench-") as tmp,
        start_emulator(time_scale=0, api_key=API_KEY, rate_limit=0) as emulator,
        Client(API_KEY, emulator.base_url, timeout=REQUEST_TIMEOUT) as client,
        parallel.Parallel(
            api_key=API_KEY, base_url=emulator.base_url, timeout=REQUEST_TIMEOUT
        ) as sdk,
    ):
        os.environ.update(
            PARALLEL_NB_DATA_DIR=str(Path(tmp) / "data"),
            PARALLEL_API_KEY=API_KEY,
            PARALLEL_BASE_URL=emulator.base_url,
        )
        os.environ.pop("PARALLEL_NB_DEMO", None)
        approaches = {
            "parallel_nb.enrich": ours(),
            "parallel_nb engine": engine(client),
            "SDK sequential": sdk_sequential(sdk, spec),
            **{
                name: sdk_group(sdk, spec, args.poll, fetch, polls[name])
                for name, fetch in GROUP_FETCHES.items()
            },
        }
        try:
            times, frames = measure(approaches, df, args.rounds, emulator)
        finally:
            # Closes the run store before its directory goes.
            reset_settings()

    distinct = same_values(frames, df)
    wall = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"enrichment of {args.rows:,} rows ({PROCESSOR}, {len(FIELDS)} fields, emulator time "
        f"scale 0), median of {args.rounds} rounds, order rotated; groups polled every "
        f"{args.poll:g} s (the recipes: 5 s):"
    )
    for name, seconds in wall.items():
        note = poll_note(polls.get(name, []))
        print(f"  {name:<27} wall {seconds:6.2f} s  {args.rows / seconds:7,.0f} runs/s{note}")
    for name in [n for n in wall if n.startswith("SDK")]:
        print(
            f"  ratio parallel_nb.enrich / {name}: {wall['parallel_nb.enrich'] / wall[name]:.2f}x"
        )
    print(
        f"same values: all {len(frames)} approaches returned identical {'/'.join(FIELDS)} for "
        f"the {args.rows:,} rows ({distinct} distinct answers, one per company), one run per row"
    )


if __name__ == "__main__":
    main()
