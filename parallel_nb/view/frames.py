"""A run's output and basis as rows, and as pandas DataFrames built from those rows.

The row functions are plain Python so the HTML view can share them; pandas is imported only
when a DataFrame is asked for, which keeps ``import parallel_nb`` (and the HTML view) cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from parallel_nb.api.models import TaskOutput

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BASIS_COLUMNS",
    "CONFIDENCE_LEVELS",
    "OUTPUT_COLUMNS",
    "BasisRow",
    "OutputRow",
    "basis_frame",
    "basis_rows",
    "json_type",
    "output_frame",
    "output_rows",
]

OUTPUT_COLUMNS = ("field", "value", "type")
BASIS_COLUMNS = ("field", "confidence", "reasoning", "url", "title", "excerpt")
CONFIDENCE_LEVELS = ("low", "medium", "high")
EXCERPT_SEPARATOR = " … "


class OutputRow(NamedTuple):
    """One leaf of the output: its dot path (``founders.0``), value and JSON type name."""

    field: str
    value: Any
    type: str


class BasisRow(NamedTuple):
    """One citation of one field's basis (url, title and excerpt are None without citations)."""

    field: str
    confidence: str | None
    reasoning: str
    url: str | None
    title: str | None
    excerpt: str | None


def json_type(value: Any) -> str:
    """The JSON type name of a decoded JSON value (``integer`` for whole numbers sent as ints)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def output_rows(output: TaskOutput) -> list[OutputRow]:
    """One row per leaf, in the order the service sent them; text output is one ``output`` row."""
    if isinstance(output.content, str):
        return [OutputRow("output", output.content, "string")]
    return [row for key, value in output.content.items() for row in _leaves(value, str(key))]


def _leaves(value: Any, path: str) -> Iterator[OutputRow]:
    # Empty containers are leaves too: a field answered with [] is an answer, not a gap.
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}.{index}")
    else:
        yield OutputRow(path, value, json_type(value))


def basis_rows(output: TaskOutput) -> list[BasisRow]:
    """One row per citation; a basis entry without citations still gets one row."""
    rows = []
    for basis in output.basis:
        confidence = _confidence(basis.confidence)
        if not basis.citations:
            rows.append(BasisRow(basis.field, confidence, basis.reasoning, None, None, None))
        for citation in basis.citations:
            excerpt = EXCERPT_SEPARATOR.join(e for e in citation.excerpts if e) or None
            url = citation.url or None
            rows.append(
                BasisRow(basis.field, confidence, basis.reasoning, url, citation.title, excerpt)
            )
    return rows


def _confidence(level: str | None) -> str | None:
    return (level.strip().lower() or None) if level else None


def output_frame(output: TaskOutput) -> pd.DataFrame:
    """The output as a ``field, value, type`` DataFrame (values keep their Python types)."""
    import pandas as pd

    rows = output_rows(output)
    return pd.DataFrame(
        {
            "field": pd.Series([row.field for row in rows], dtype=str),
            # object dtype keeps None as None and ints as ints instead of NaN-filled floats.
            "value": pd.Series([row.value for row in rows], dtype=object),
            "type": pd.Series([row.type for row in rows], dtype=str),
        }
    )


def basis_frame(output: TaskOutput) -> pd.DataFrame:
    """The basis, one row per citation, with ``confidence`` an ordered low < medium < high.

    Levels outside low/medium/high are kept (ordered after ``high``, in order of appearance)
    rather than silently turned into missing values. URLs are plain text in this frame; the
    result's HTML view is where they become (checked) links.
    """
    import pandas as pd

    rows = basis_rows(output)
    levels = list(CONFIDENCE_LEVELS)
    levels += [c for c in dict.fromkeys(row.confidence for row in rows) if c and c not in levels]
    frame = pd.DataFrame(
        {
            name: pd.Series([getattr(row, name) for row in rows], dtype=str)
            for name in ("field", "reasoning")
        }
    )
    for name in ("url", "title", "excerpt"):
        # object dtype: a missing citation stays None rather than becoming NaN.
        frame[name] = pd.Series([getattr(row, name) for row in rows], dtype=object)
    frame["confidence"] = pd.Categorical(
        [row.confidence for row in rows], categories=levels, ordered=True
    )
    return frame[list(BASIS_COLUMNS)]
