"""The batch engine over real HTTP against the emulator: plan rows, run one task group, join."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from scripted_api import COMPANIES

from parallel_nb.api.client import Client
from parallel_nb.api.models import Event, GroupStatusEvent, TaskRequest
from parallel_nb.emulator import EmulatorHandle, start_emulator
from parallel_nb.runs.batch import plan_batch, run_batch
from parallel_nb.spec import SpecError

OUTPUT = "founded (integer): the year the company was founded\nceo: the current CEO"
ADD_RUNS = "POST /v1/tasks/groups/{group_id}/runs"


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[Client]:
    with Client(emulator.api_key, emulator.base_url) as client:
        yield client


def companies(names: list[str], index: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"company": names}, index=pd.Index(index, name="ticker"))


def test_plan_renders_a_template_per_row_and_shares_duplicates() -> None:
    df = pd.DataFrame({"name": ["Stripe", "Figma", "Stripe"], "n": [1, 2, 1]})
    plan = plan_batch(
        df, input_template="Research {{name}} ({{n}})", output=OUTPUT, processor="core"
    )
    assert [r.input for r in plan.requests] == ["Research Stripe (1)", "Research Figma (2)"]
    assert plan.row_requests == (0, 1, 0)
    assert plan.rows_of() == [[0, 2], [1]]
    assert plan.default_task_spec is not None
    properties = plan.default_task_spec["output_schema"]["json_schema"]["properties"]
    assert list(properties) == ["founded", "ceo"]


def test_plan_sends_the_row_itself_as_plain_json_without_a_template() -> None:
    df = pd.DataFrame({"company": ["Stripe"], "size": [np.int64(7)], "score": [np.nan]})
    plan = plan_batch(df, input_template=None, output=None, processor="core")
    [request] = plan.requests
    assert request.input == {"company": "Stripe", "size": 7, "score": None}
    assert type(request.input["size"]) is int
    assert plan.default_task_spec is None


def test_plan_names_the_row_of_an_unknown_column() -> None:
    df = pd.DataFrame({"name": ["Stripe"]}, index=["r1"])
    with pytest.raises(SpecError, match=r"row 'r1': unknown name 'nmae'.*did you mean 'name'"):
        plan_batch(df, input_template="Research {{nmae}}", output=None, processor="core")


def test_enriches_a_dataframe_keeping_index_and_order(api: Client) -> None:
    df = companies(["Figma", "Stripe", "NVIDIA"], ["FIG", "STRIPE", "NVDA"])
    plan = plan_batch(df, input_template=None, output=OUTPUT, processor="core")
    seen: list[Event] = []
    result = run_batch(api, plan, on_event=seen.append)

    enriched = result.frame(df)
    assert list(enriched.index) == ["FIG", "STRIPE", "NVDA"]
    assert enriched.index.name == "ticker"
    assert list(enriched["company"]) == ["Figma", "Stripe", "NVIDIA"]
    assert list(enriched["founded"]) == [2012, 2010, 1993]
    assert enriched.loc["STRIPE", "ceo"] == "Patrick Collison"
    assert enriched.loc["NVDA", "ceo"] == "Jensen Huang"
    assert enriched.loc["STRIPE", "founded_confidence"] == "high"
    assert "https://en.wikipedia.org/wiki/Stripe,_Inc." in enriched.loc["STRIPE", "ceo_citations"]
    assert enriched["_error"].isna().all()
    assert any(isinstance(e, GroupStatusEvent) and not e.status.is_active for e in seen)

    basis = result.basis_df
    assert list(basis.columns) == [
        "row",
        "field",
        "confidence",
        "reasoning",
        "url",
        "title",
        "excerpt",
    ]
    assert set(basis["row"]) == {"FIG", "STRIPE", "NVDA"}
    stripe_ceo = basis[(basis["row"] == "STRIPE") & (basis["field"] == "ceo")]
    assert "https://stripe.com/about" in set(stripe_ceo["url"])
    assert (basis["confidence"] >= "medium").any()


def test_duplicate_rows_are_researched_once(api: Client, emulator: EmulatorHandle) -> None:
    df = companies(["Stripe", "Canva", "Stripe", "Canva", "Stripe"], list("abcde"))
    plan = plan_batch(df, input_template="Research {{company}}", output=OUTPUT, processor="lite")
    before = emulator.stats()["runs_created"]
    recorded: list[tuple[str, str, TaskRequest]] = []
    result = run_batch(api, plan, recorder=lambda *args: recorded.append(args))

    assert emulator.stats()["runs_created"] == before + 2
    assert [run_id for _, run_id, _ in recorded] == result.run_ids
    assert {group for group, _, _ in recorded} == {result.taskgroup_id}
    enriched = result.frame(df)
    assert list(enriched["founded"]) == [2010, 2013, 2010, 2013, 2010]
    assert list(enriched.index) == list("abcde")


def test_a_failed_row_is_marked_not_dropped(api: Client) -> None:
    df = companies(["Stripe", "emulator: fail", "Airbnb"], ["x", "y", "z"])
    plan = plan_batch(df, input_template=None, output=OUTPUT, processor="lite")
    result = run_batch(api, plan)

    enriched = result.frame(df)
    assert list(enriched.index) == ["x", "y", "z"]
    assert result.failed == 1
    assert enriched.loc["y", "_error"]
    assert enriched.loc["y", "founded"] is None and enriched.loc["y", "ceo_citations"] is None
    assert enriched.loc["x", "_error"] is None and enriched.loc["z", "founded"] == 2008
    assert "y" not in set(result.basis_df["row"])


def test_an_output_field_named_like_an_input_column_does_not_overwrite_it(api: Client) -> None:
    df = pd.DataFrame({"company": ["Stripe"], "ceo": ["unknown"]})
    plan = plan_batch(df, input_template="{{company}}", output=OUTPUT, processor="lite")
    enriched = run_batch(api, plan).frame(df)
    assert enriched.loc[0, "ceo"] == "unknown"
    assert enriched.loc[0, "ceo_result"] == "Patrick Collison"


def test_a_thousand_rows_end_to_end(api: Client) -> None:
    size = 1000
    df = pd.DataFrame(
        {"company": [COMPANIES[i % 10] for i in range(size)], "batch": range(size)},
        index=pd.RangeIndex(size * 2, 0, -2),
    )
    plan = plan_batch(df, input_template=None, output=OUTPUT, processor="lite")
    assert len(plan.requests) == size
    result = run_batch(api, plan)

    assert result.failed == 0
    enriched = result.frame(df)
    assert enriched.index.equals(df.index)
    assert enriched["_error"].isna().all()
    assert enriched["founded"].notna().all() and enriched["ceo"].notna().all()
    assert enriched.iloc[0]["ceo"] == "Patrick Collison"  # row 0 is Stripe
    assert enriched.iloc[7]["founded"] == 1993  # row 7 is NVIDIA


def test_runs_are_added_in_chunks(api: Client, emulator: EmulatorHandle) -> None:
    df = pd.DataFrame({"company": "Shopify", "n": range(1000)})
    plan = plan_batch(df, input_template="{{company}} #{{n}}", output=OUTPUT, processor="lite")

    def add_requests() -> int:
        return sum(emulator.stats()["requests"].get(ADD_RUNS, {}).values())

    before = add_requests()
    result = run_batch(api, plan, chunk_size=300)
    assert add_requests() - before == 4
    assert len(set(result.run_ids)) == 1000 and result.failed == 0


def test_chunk_size_above_the_api_limit_is_refused(api: Client) -> None:
    plan = plan_batch(pd.DataFrame({"a": [1]}), input_template=None, output=None, processor="lite")
    with pytest.raises(ValueError, match="chunk_size must be between 1 and 1000"):
        run_batch(api, plan, chunk_size=1001)


def test_dropped_streams_are_resumed_without_replaying_or_recreating() -> None:
    with (
        start_emulator(time_scale=0, api_key="drop-key", faults="drop=0.8", seed=3) as flaky,
        Client("drop-key", flaky.base_url) as client,
    ):
        df = pd.DataFrame({"company": [COMPANIES[i % 10] for i in range(40)], "n": range(40)})
        plan = plan_batch(df, input_template=None, output=OUTPUT, processor="lite")
        seen: list[Event] = []
        result = run_batch(client, plan, on_event=seen.append)
        stats = flaky.stats()

    # Seed 3 drops both streams several times (the faults are deterministic per seed).
    assert stats["faults_injected"].get("drop", 0) > 2
    for stream in ("events", "runs"):
        assert sum(stats["requests"][f"GET /v1/tasks/groups/{{group_id}}/{stream}"].values()) > 1
    assert stats["runs_created"] == 40
    # The group's events end with it going idle; the last answers follow from the runs stream.
    idle = max(
        i for i, e in enumerate(seen) if isinstance(e, GroupStatusEvent) and not e.status.is_active
    )
    event_ids = [int(e.event_id) for e in seen[: idle + 1] if getattr(e, "event_id", None)]
    assert event_ids == sorted(set(event_ids))
    assert result.failed == 0
    assert result.frame(df)["founded"].notna().all()
