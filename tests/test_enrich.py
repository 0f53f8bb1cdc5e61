"""DataFrame enrichment from Python (``parallel_nb.enrich``) and from ``%%parallel --over``,
over real HTTP against the emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from scripted_api import COMPANIES, point_at

import parallel_nb
from parallel_nb.api.models import Event
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.view.batch_panel import BatchFeed

OUTPUT = "founded (integer): year founded\nceo: the current CEO"
NAMES = ["Stripe", "Figma", "NVIDIA"]

pytestmark = pytest.mark.usefixtures("on_emulator")


@pytest.fixture
def companies() -> pd.DataFrame:
    assert set(NAMES) <= set(COMPANIES)
    return pd.DataFrame(
        {"name": NAMES, "website": ["stripe.com", "figma.com", "nvidia.com"]},
        index=pd.Index(["STRIPE", "FIG", "NVDA"], name="ticker"),
    )


def runs_created(emulator: EmulatorHandle) -> int:
    return emulator.stats()["runs_created"]


def test_enrich_returns_the_frame_with_answers_and_its_index(companies: pd.DataFrame) -> None:
    enriched, basis = parallel_nb.enrich(
        companies, output=OUTPUT, input="Research {{name}} ({{website}})", with_basis=True
    )
    assert list(enriched.index) == ["STRIPE", "FIG", "NVDA"]
    assert enriched.index.name == "ticker"
    assert list(enriched["name"]) == NAMES
    assert enriched.loc["STRIPE", "founded"] == 2010
    assert enriched.loc["STRIPE", "ceo"] == "Patrick Collison"
    assert enriched.loc["NVDA", "founded"] == 1993
    assert enriched["_error"].isna().all()
    assert set(basis["row"]) == {"STRIPE", "FIG", "NVDA"}
    assert list(companies.columns) == ["name", "website"]  # the input is left alone


def test_enrich_sends_each_row_as_json_without_a_template(companies: pd.DataFrame) -> None:
    enriched = parallel_nb.enrich(companies[["name"]], output=OUTPUT, processor="lite")
    assert list(enriched["founded"]) == [2010, 2012, 1993]


def test_the_magic_over_a_dataframe_stores_the_frame_in_var(
    ip: InteractiveShell, companies: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.push({"companies": companies})
    body = f"Research {{{{name}}}} ({{{{website}}}})\n---\n{OUTPUT}\n"
    assert ip.run_cell_magic("parallel", "core enriched --over companies", body) is None
    enriched = ip.user_ns["enriched"]
    assert isinstance(enriched, pd.DataFrame)
    assert list(enriched.index) == ["STRIPE", "FIG", "NVDA"]
    assert enriched.loc["STRIPE", "ceo"] == "Patrick Collison"
    assert "3 rows enriched into enriched" in capsys.readouterr().out


def test_the_magic_without_var_returns_the_frame(
    ip: InteractiveShell, companies: pd.DataFrame
) -> None:
    ip.push({"companies": companies[["name"]]})
    enriched = ip.run_cell_magic("parallel", "lite --over companies", f"---\n{OUTPUT}\n")
    assert list(enriched["founded"]) == [2010, 2012, 1993]


def test_dry_run_over_a_dataframe_prints_the_cost_and_sends_nothing(
    ip: InteractiveShell,
    emulator: EmulatorHandle,
    companies: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    doubled = pd.concat([companies, companies.iloc[:1]])  # a duplicate is researched once
    ip.push({"companies": doubled})
    before = runs_created(emulator)
    body = f"Research {{{{name}}}}\n---\n{OUTPUT}\n"
    assert ip.run_cell_magic("parallel", "core --over companies --dry-run", body) is None
    out = capsys.readouterr().out
    assert runs_created(emulator) == before
    assert "4 rows, 3 unique inputs" in out
    assert "Research Stripe\n  Research Figma\n  Research NVIDIA" in out
    # core: $25 per 1,000 runs (the processor table), three unique inputs.
    assert "3 runs × $25 per 1,000 runs (core, documented price) = $0.075" in out


def test_a_missing_or_wrong_dataframe_is_a_usage_error_and_sends_nothing(
    ip: InteractiveShell, emulator: EmulatorHandle
) -> None:
    before = runs_created(emulator)
    ip.user_ns.pop("nowhere", None)
    with pytest.raises(UsageError, match="--over nowhere: there is no variable"):
        ip.run_cell_magic("parallel", "core --over nowhere", f"---\n{OUTPUT}\n")
    ip.push({"not_a_frame": [1, 2]})
    with pytest.raises(UsageError, match="not_a_frame is a list, not a pandas DataFrame"):
        ip.run_cell_magic("parallel", "core --over not_a_frame", f"---\n{OUTPUT}\n")
    assert runs_created(emulator) == before


def test_a_bad_row_is_a_one_line_usage_error_and_sends_nothing(
    ip: InteractiveShell, emulator: EmulatorHandle, companies: pd.DataFrame
) -> None:
    ip.push({"companies": companies})
    before = runs_created(emulator)
    with pytest.raises(UsageError, match=r"row 'STRIPE': unknown name 'nmae'") as raised:
        ip.run_cell_magic("parallel", "core --over companies", "Research {{nmae}}\n")
    assert "\n" not in str(raised.value)
    with pytest.raises(UsageError, match="--bg cannot be used with --over"):
        ip.run_cell_magic("parallel", "core --over companies --bg", "Research {{name}}\n")
    assert runs_created(emulator) == before


ADD_RUNS = "POST /v1/tasks/groups/{group_id}/runs"
GROUP_EVENTS = "GET /v1/tasks/groups/{group_id}/events"


def add_requests(emulator: EmulatorHandle) -> int:
    return sum(emulator.stats()["requests"].get(ADD_RUNS, {}).values())


def event_streams(emulator: EmulatorHandle) -> int:
    return sum(emulator.stats()["requests"].get(GROUP_EVENTS, {}).values())


def many(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"company": [COMPANIES[i % 10] for i in range(rows)], "n": range(rows)})


def test_chunk_size_sets_the_runs_per_add_request(
    ip: InteractiveShell, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.push({"rows": many(20)})
    adds = add_requests(emulator)
    ip.run_cell_magic("parallel", "lite out --over rows --chunk-size 7", f"---\n{OUTPUT}\n")
    assert add_requests(emulator) == adds + 3  # 7 + 7 + 6
    assert ip.user_ns["out"]["founded"].notna().all()
    basis = ip.user_ns["out_basis"]
    assert set(basis["row"]) == set(range(20))
    assert {"field", "confidence", "url"} <= set(basis.columns)
    assert "their citations into out_basis" in capsys.readouterr().out


def test_a_bad_chunk_size_is_a_usage_error_and_sends_nothing(
    ip: InteractiveShell, emulator: EmulatorHandle
) -> None:
    ip.push({"rows": many(3)})
    before = emulator.stats()["requests"]
    with pytest.raises(UsageError, match=r"--chunk-size 1001: the API accepts at most 1,000"):
        ip.run_cell_magic("parallel", "lite --over rows --chunk-size 1001", f"---\n{OUTPUT}\n")
    with pytest.raises(UsageError, match="expected a number of runs, 1 or more"):
        ip.run_cell_magic("parallel", "lite --over rows --chunk-size 0", f"---\n{OUTPUT}\n")
    with pytest.raises(UsageError, match="--chunk-size applies to batches only"):
        ip.run_cell_magic("parallel", "lite --chunk-size 5", "What was the GDP of France?\n")
    assert emulator.stats()["requests"] == before


def test_running_the_same_batch_again_reads_its_group_instead_of_paying_twice(
    ip: InteractiveShell, emulator: EmulatorHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.push({"rows": many(12)})
    body = f"Research {{{{company}}}} #{{{{n}}}}\n---\n{OUTPUT}\n"
    first = ip.run_cell_magic("parallel", "lite --over rows", body)
    created = runs_created(emulator)
    follows = event_streams(emulator)
    assert follows > 0
    capsys.readouterr()

    again = ip.run_cell_magic("parallel", "lite --over rows", body)
    assert runs_created(emulator) == created
    assert event_streams(emulator) == follows  # an idle group's history is not replayed
    pd.testing.assert_frame_equal(again, first)
    assert "reading its results again, no run is created (--refresh" in capsys.readouterr().out

    ip.run_cell_magic("parallel", "lite --over rows --refresh", body)
    assert runs_created(emulator) == created + 12


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while the batch panel is being fed."""


@pytest.fixture(scope="module")
def slow() -> Iterator[EmulatorHandle]:
    # lite takes 10-60 s of API time, so 0.2-1.2 s here: the batch outlives the interrupt.
    with start_emulator(time_scale=0.02, api_key="slow-key") as handle:
        yield handle


def interrupt_after_events(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Make the batch feed raise Ctrl-C on its ``count``-th event, once."""
    feed = BatchFeed.__call__
    seen = [0]

    def call(self: BatchFeed, event: Event) -> None:
        seen[0] += 1
        if seen[0] == count:
            raise Interrupted
        feed(self, event)

    monkeypatch.setattr(BatchFeed, "__call__", call)


def interrupted_batch(
    ip: InteractiveShell,
    slow: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    line: str,
    rows: int,
) -> None:
    """Start ``%%parallel LINE`` over ``rows`` rows on the slow emulator and press Ctrl-C as
    the panel gets its second event (the runs exist; the batch is still going)."""
    point_at(monkeypatch, slow)
    ip.push({"rows": many(rows)})
    interrupt_after_events(monkeypatch, 2)
    with pytest.raises(Interrupted):
        ip.run_cell_magic("parallel", line, f"---\n{OUTPUT}\n")


def test_an_interrupted_batch_resumes_when_its_cell_runs_again(
    ip: InteractiveShell,
    slow: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = runs_created(slow)
    interrupted_batch(ip, slow, monkeypatch, "lite out --over rows --chunk-size 10", 30)
    assert runs_created(slow) == before + 30
    capsys.readouterr()

    ip.run_cell_magic("parallel", "lite out --over rows --chunk-size 10", f"---\n{OUTPUT}\n")
    out = capsys.readouterr().out
    assert "resuming task group tgrp_" in out and "30 of 30 runs exist" in out
    assert runs_created(slow) == before + 30
    enriched = ip.user_ns["out"]
    assert enriched["_error"].isna().all() and enriched["founded"].notna().all()
    assert list(enriched.index) == list(range(30))


def test_attach_to_a_batch_by_group_id_after_a_restart(
    ip: InteractiveShell,
    slow: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = runs_created(slow)
    interrupted_batch(ip, slow, monkeypatch, "lite --over rows --chunk-size 10", 25)
    [group] = [r for r in parallel_nb._store().history() if r.kind == "group"][:1]
    # A restarted kernel: the variables are gone until the notebook defines them again.
    ip.user_ns.pop("rows")
    with pytest.raises(UsageError, match="--over rows: there is no variable of that name"):
        ip.run_line_magic("parallel", f"attach {group.run_id} again")
    ip.push({"rows": many(25)})
    capsys.readouterr()

    ip.run_line_magic("parallel", f"attach {group.run_id} again")
    assert runs_created(slow) == before + 25
    enriched = ip.user_ns["again"]
    assert enriched["founded"].notna().all() and len(ip.user_ns["again_basis"]) > 0
    assert f"task group {group.run_id}" in capsys.readouterr().out

    ip.push({"other": many(24)})
    with pytest.raises(UsageError, match="started from other rows or another cell"):
        ip.run_line_magic("parallel", f"attach {group.run_id} --over other")
    with pytest.raises(UsageError, match="tgrp_nothere0000 is not a task group recorded"):
        ip.run_line_magic("parallel", "attach tgrp_nothere0000")
    with pytest.raises(UsageError, match="--bg and --timeout follow single runs"):
        ip.run_line_magic("parallel", f"attach {group.run_id} --bg")
    assert runs_created(slow) == before + 25


def test_no_widget_over_a_dataframe_asks_for_the_html_view(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []

    def batch_view(widget: bool) -> None:
        asked.append(widget)

    monkeypatch.setattr(parallel_nb, "_batch_view", batch_view)
    ip.push({"rows": many(2)})
    ip.run_cell_magic("parallel", "lite --over rows --no-widget", f"---\n{OUTPUT}\n")
    ip.run_cell_magic("parallel", "lite --over rows --refresh", f"---\n{OUTPUT}\n")
    assert asked == [False, True]
