"""Output and basis DataFrames: shapes, JSON types, ordered confidence, and escaped HTML."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pandas as pd
import pytest

from parallel_nb.api.models import TaskOutput
from parallel_nb.view.frames import BASIS_COLUMNS, basis_frame, json_type, output_frame

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)',
    "javascript:alert(1)",
]


def json_output(content: Any, basis: list[dict[str, Any]] | None = None) -> TaskOutput:
    return TaskOutput.from_dict({"type": "json", "content": content, "basis": basis or []})


def test_output_frame_flattens_leaves_to_dot_paths_in_order() -> None:
    content = {
        "name": "Stripe, Inc.",
        "founded": 2010,
        "valuation_usd_bn": 91.5,
        "public": False,
        "ceo": {"name": "Patrick Collison", "since": None},
        "founders": ["Patrick Collison", "John Collison"],
        "offices": [{"city": "Dublin"}],
        "subsidiaries": [],
        "extra": {},
    }
    frame = output_frame(json_output(content))
    assert list(frame.columns) == ["field", "value", "type"]
    assert frame.to_dict("records") == [
        {"field": "name", "value": "Stripe, Inc.", "type": "string"},
        {"field": "founded", "value": 2010, "type": "integer"},
        {"field": "valuation_usd_bn", "value": 91.5, "type": "number"},
        {"field": "public", "value": False, "type": "boolean"},
        {"field": "ceo.name", "value": "Patrick Collison", "type": "string"},
        {"field": "ceo.since", "value": None, "type": "null"},
        {"field": "founders.0", "value": "Patrick Collison", "type": "string"},
        {"field": "founders.1", "value": "John Collison", "type": "string"},
        {"field": "offices.0.city", "value": "Dublin", "type": "string"},
        {"field": "subsidiaries", "value": [], "type": "array"},
        {"field": "extra", "value": {}, "type": "object"},
    ]
    # Values keep their Python types: no NaN for None, no float for ints.
    assert frame["value"].dtype == object
    assert frame.loc[5, "value"] is None
    assert type(frame.loc[1, "value"]) is int


def test_text_output_is_one_row() -> None:
    frame = output_frame(TaskOutput.from_dict({"type": "text", "content": "# Report\nbody"}))
    assert frame.to_dict("records") == [
        {"field": "output", "value": "# Report\nbody", "type": "string"}
    ]


def test_an_empty_output_keeps_its_columns() -> None:
    frame = output_frame(json_output({}))
    assert frame.empty
    assert list(frame.columns) == ["field", "value", "type"]
    assert list(basis_frame(json_output({})).columns) == list(BASIS_COLUMNS)


@pytest.mark.parametrize(
    ("value", "name"),
    [(None, "null"), (True, "boolean"), (3, "integer"), (3.0, "number"), ("x", "string")],
)
def test_json_type_names(value: Any, name: str) -> None:
    assert json_type(value) == name


def test_basis_frame_has_one_row_per_citation() -> None:
    basis = [
        {
            "field": "gdp",
            "reasoning": "INSEE and the World Bank agree.",
            "confidence": "high",
            "citations": [
                {"url": "https://insee.fr/a", "title": "INSEE", "excerpts": ["one", "two"]},
                {"url": "https://worldbank.org/b", "title": None, "excerpts": None},
            ],
        },
        {
            "field": "top_sectors",
            "reasoning": "No single source.",
            "confidence": "",
            "citations": [],
        },
    ]
    frame = basis_frame(json_output({"gdp": "x", "top_sectors": []}, basis))
    assert list(frame.columns) == list(BASIS_COLUMNS)
    records = frame.astype({"confidence": object}).to_dict("records")
    assert records[0] == {
        "field": "gdp",
        "confidence": "high",
        "reasoning": "INSEE and the World Bank agree.",
        "url": "https://insee.fr/a",
        "title": "INSEE",
        "excerpt": "one … two",
    }
    assert records[1]["url"] == "https://worldbank.org/b"
    assert records[1]["title"] is None
    assert records[1]["excerpt"] is None
    assert records[2]["field"] == "top_sectors"
    assert (records[2]["url"], records[2]["title"], records[2]["excerpt"]) == (None, None, None)
    assert pd.isna(frame.loc[2, "confidence"])


def test_confidence_is_an_ordered_nullable_category() -> None:
    basis = [
        {"field": "a", "reasoning": "r", "confidence": "low"},
        {"field": "b", "reasoning": "r", "confidence": "High"},
        {"field": "c", "reasoning": "r", "confidence": None},
        {"field": "d", "reasoning": "r", "confidence": "medium"},
    ]
    confidence = basis_frame(json_output({}, basis))["confidence"]
    assert isinstance(confidence.dtype, pd.CategoricalDtype)
    assert confidence.cat.ordered
    assert list(confidence.cat.categories) == ["low", "medium", "high"]
    assert list(confidence.isna()) == [False, False, True, False]
    assert list(confidence[confidence >= "medium"].index) == [1, 3]
    assert confidence.max() == "high"


def test_an_unknown_confidence_level_is_kept_not_dropped() -> None:
    basis = [{"field": "a", "reasoning": "r", "confidence": "very high"}]
    confidence = basis_frame(json_output({}, basis))["confidence"]
    assert list(confidence) == ["very high"]
    assert list(confidence.cat.categories) == ["low", "medium", "high", "very high"]


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[str]]] = []
        self.cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [name for name, _ in attrs]))

    def handle_data(self, data: str) -> None:
        self.cells.append(data)


@pytest.mark.parametrize("text", HOSTILE)
def test_dataframe_html_escapes_web_text_and_does_not_link_urls(text: str) -> None:
    output = json_output(
        {text: text, "site": "https://example.org"},
        [
            {
                "field": text,
                "reasoning": text,
                "confidence": "low",
                "citations": [{"url": text, "title": text, "excerpts": [text]}],
            }
        ],
    )
    for frame in (output_frame(output), basis_frame(output)):
        for markup in (frame.to_html(), frame._repr_html_()):
            collector = TagCollector()
            collector.feed(markup)
            tags = {tag for tag, _ in collector.tags}
            assert tags <= {"div", "style", "table", "thead", "tbody", "tr", "th", "td"}
            assert not [a for _, attrs in collector.tags for a in attrs if a.startswith("on")]
            # The hostile string comes back as text (quotes are harmless outside attributes),
            # and URLs are plain text in DataFrame HTML: no <a> above.
            assert text in collector.cells
