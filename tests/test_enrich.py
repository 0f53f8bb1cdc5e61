"""DataFrame enrichment from Python (``parallel_nb.enrich``) and from ``%%parallel --over``,
over real HTTP against the emulator."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from scripted_api import COMPANIES

import parallel_nb
from parallel_nb.emulator import EmulatorHandle

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
