"""Memory stays bounded on a 10,000-row batch: run_batch streams the group's results instead of
buffering them, and the live view keeps only the newest rows and failures however many events
arrive.

The emulator runs in a subprocess so tracemalloc (which counts this process's Python
allocations only) sees the client side alone. A run's memory is split into what the result
legitimately keeps (measured after the run, with the result still referenced) and the
transient overhead on top of it (the peak during the run minus that); buffering a results
stream whole would make the transient overhead at least the stream's size.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pandas as pd
import pytest
from emulator_process import emulator_process

from parallel_nb.api.client import Client
from parallel_nb.runs.batch import BatchResult, plan_batch, run_batch
from parallel_nb.runs.batch_state import MAX_FAILURES, MAX_PREVIEW, BatchState
from parallel_nb.view.batch_panel import BatchFeed
from parallel_nb.view.html import batch_html

pytestmark = pytest.mark.slow

KEY = "memory-test-key"
ROWS = 10_000
FEWER_ROWS = 2_000
MiB = 1 << 20
# Far below the ~11 MiB a 10,000-row batch's results streams take (asserted, not assumed).
TRANSIENT_BOUND = 4 * MiB
# _collect's index from run id to request number is the one per-row structure a run may hold
# only while it runs (a dict entry and its share of a resize); a buffered stream is ~1.2 KiB
# per row.
PER_ROW_TRANSIENT = 128
FAIL_EVERY = 10  # every tenth row scripts a failed run (the emulator's failure fixture)


@dataclass(frozen=True, slots=True)
class Measured:
    """One batch run under tracemalloc: bytes kept after it and bytes above that at the peak,
    the result (kept referenced while measuring), the view's final state, and the byte size
    of the group's results streams (measured afterwards, untraced)."""

    rows: int
    retained: int
    transient: int
    result: BatchResult = field(repr=False)
    state: BatchState = field(repr=False)
    drawn: LatestHtml = field(repr=False)
    results_bytes: int


class LatestHtml:
    """A batch view without a kernel: renders each state it is given like the HTML view does,
    and keeps only the newest markup."""

    def __init__(self) -> None:
        self.html = ""
        self.draws = 0

    def update(self, state: BatchState) -> None:
        self.html = batch_html(state)
        self.draws += 1

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with emulator_process(KEY) as url:
        yield url


@pytest.fixture(scope="module")
def measured(base_url: str) -> dict[int, Measured]:
    with Client(KEY, base_url) as client:
        # Untraced warm-up: first-use allocations (connection pool, lazy imports, caches)
        # would otherwise count against the first measured run.
        _measure(client, 10)
        return {rows: _measure(client, rows) for rows in (FEWER_ROWS, ROWS)}


def _measure(client: Client, rows: int) -> Measured:
    df = pd.DataFrame({"company": [_company(n) for n in range(rows)]})
    output = "founded (integer): the year the company was founded\nceo: the current CEO"
    plan = plan_batch(df, input_template="Research {{company}}", output=output, processor="lite")
    view = LatestHtml()
    feed = BatchFeed(view)
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        result = run_batch(client, plan, on_event=feed)
        feed.close()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = _results_bytes(client.base_url, result.taskgroup_id)
    return Measured(rows, current - start, peak - current, result, feed.state, view, size)


def _company(n: int) -> str:
    return f"Company {n} (emulator: fail)" if n % FAIL_EVERY == 0 else f"Company {n}"


def _results_bytes(base_url: str, taskgroup_id: str) -> int:
    """The bytes of the streams run_batch reads its results from (completed, then failed)."""
    size = 0
    with httpx.Client(base_url=base_url, headers={"x-api-key": KEY}, timeout=60.0) as http:
        for status in ("completed", "failed"):
            params = {"status": status, "include_output": "true"}
            path = f"/v1/tasks/groups/{taskgroup_id}/runs"
            with http.stream("GET", path, params=params) as response:
                response.raise_for_status()
                size += sum(len(chunk) for chunk in response.iter_bytes())
    return size


def test_a_10000_row_batch_streams_its_results_instead_of_buffering(
    measured: dict[int, Measured],
) -> None:
    big = measured[ROWS]
    assert big.result.failed == ROWS // FAIL_EVERY
    assert big.state.completed + big.state.failed == ROWS
    # The bound means something: buffering either results stream whole would exceed it.
    assert big.results_bytes > 2 * TRANSIENT_BOUND
    assert big.transient < TRANSIENT_BOUND, (
        f"run_batch peaked {big.transient / MiB:.1f} MiB above what its result keeps "
        f"({big.retained / MiB:.1f} MiB) for {ROWS} rows; the results streams are "
        f"{big.results_bytes / MiB:.1f} MiB — is a stream read whole before it is parsed?"
    )


def test_transient_memory_does_not_grow_with_the_rows(measured: dict[int, Measured]) -> None:
    few, many = measured[FEWER_ROWS], measured[ROWS]
    extra_rows = many.rows - few.rows
    extra_stream = many.results_bytes - few.results_bytes
    assert extra_stream > 8 * PER_ROW_TRANSIENT * extra_rows
    growth = many.transient - few.transient
    assert growth < PER_ROW_TRANSIENT * extra_rows, (
        f"the transient peak grew by {growth} bytes from {few.rows} to {many.rows} rows "
        f"({growth / extra_rows:.0f} bytes a row); the results stream grew by "
        f"{extra_stream / extra_rows:.0f} bytes a row"
    )


def test_the_live_view_keeps_only_the_newest_rows_and_failures(
    measured: dict[int, Measured],
) -> None:
    for run in measured.values():
        state = run.state
        assert state.events >= run.rows
        assert 0 < len(state.preview) <= MAX_PREVIEW, f"{len(state.preview)} rows previewed"
        # A tenth of the rows failed, so the list is full: exactly the newest MAX_FAILURES.
        assert len(state.failures) == MAX_FAILURES, f"{len(state.failures)} failures kept"
    few, many = measured[FEWER_ROWS], measured[ROWS]
    # The same markup for five times the rows, give or take the digits of the counts.
    assert many.drawn.draws > 0
    assert len(many.drawn.html) < len(few.drawn.html) + 200
