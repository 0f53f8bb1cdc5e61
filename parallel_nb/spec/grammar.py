"""Split a ``%%parallel`` cell body into its input and spec sections, and read the input.

The body is the input section, optionally a line that is exactly ``---``, then the spec section.
Every position is a cell line number (the ``%%parallel`` line is line 1), so each error can say
where it is. :class:`SpecError` is the one error type of the spec layer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SEPARATOR",
    "Section",
    "SpecError",
    "input_from_value",
    "json_data",
    "load_json",
    "parse_input",
    "split_body",
]

SEPARATOR = "---"


class SpecError(ValueError):
    """A cell (or ``output=``/``input=`` value) that cannot become a request; ``line`` is the
    cell line it concerns, or None when there is no cell."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(line, message)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Section:
    """Raw text and the cell line of its first line (None for values that are not cells)."""

    text: str
    start: int | None = None

    @property
    def is_blank(self) -> bool:
        return not self.text.strip()

    def line(self, index: int) -> int | None:
        """The cell line of the text's line ``index`` (0-based)."""
        return None if self.start is None else self.start + index

    def line_at(self, offset: int) -> int | None:
        """The cell line of character ``offset`` in the text."""
        return self.line(self.text.count("\n", 0, offset))

    @property
    def content_line(self) -> int | None:
        """The cell line of the first non-blank line (the start when all are blank)."""
        lines = self.text.splitlines()
        index = next((i for i, text in enumerate(lines) if text.strip()), 0)
        return self.line(index)

    def line_of(self, fragment: str) -> int | None:
        """The first line holding ``fragment`` as written or as it is spelt inside a JSON
        string; the content line when neither is found."""
        escaped = json.dumps(fragment, ensure_ascii=False)[1:-1]
        for index, text in enumerate(self.text.splitlines()):
            if fragment in text or escaped in text:
                return self.line(index)
        return self.content_line


def split_body(body: str, first_line: int = 2) -> tuple[Section, Section | None]:
    """The input section and the spec section (None without a ``---`` line)."""
    lines = body.splitlines()
    separators = [i for i, text in enumerate(lines) if text.strip() == SEPARATOR]
    if len(separators) > 1:
        raise SpecError(
            first_line + separators[1],
            f"a second '{SEPARATOR}' line; a cell has at most one, between the input and the "
            f"spec — remove it, or write it differently (e.g. '- - -') if it is part of the text",
        )
    if not separators:
        return Section(body, first_line), None
    cut = separators[0]
    return (
        Section("\n".join(lines[:cut]), first_line),
        Section("\n".join(lines[cut + 1 :]), first_line + cut + 1),
    )


def parse_input(section: Section) -> str | dict[str, Any]:
    """The input as written: a JSON object when the section starts with ``{`` (but not with a
    ``{{`` placeholder), otherwise the stripped text. Placeholders are not substituted here."""
    text = section.text.strip()
    if not text:
        raise SpecError(
            section.content_line,
            f"the input is empty — write the research question (or a JSON object) "
            f"above the '{SEPARATOR}' line",
        )
    if text.startswith("{") and not text.startswith("{{"):
        value: dict[str, Any] = load_json(section, "input")  # "{" can only open an object
        return value
    if text.startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError:
            return text  # text that happens to start with "[", like "[draft] ..."
        raise SpecError(
            section.content_line,
            "the input is a JSON array, but it must be text or a JSON object — wrap the list "
            'in an object, e.g. {"items": [...]}, or write the question as text',
        )
    return text


def input_from_value(value: str | Mapping[str, Any]) -> str | dict[str, Any]:
    """The input of a Python API call: stripped text, or a dict of plain JSON data."""
    if isinstance(value, str):
        if not value.strip():
            raise SpecError(None, "the input is empty — pass the research question as text")
        return value.strip()
    if isinstance(value, Mapping):
        if not value:
            raise SpecError(None, "the input dict is empty — give it at least one key")
        try:
            data: dict[str, Any] = json_data(value)
        except (TypeError, ValueError) as exc:
            raise SpecError(
                None,
                f"the input dict must hold JSON data (str, int, float, bool, None, list, dict): "
                f"{exc} — convert the other values first, e.g. with str()",
            ) from None
        return data
    raise SpecError(
        None,
        f"the input must be non-empty text or a non-empty dict, not {value!r:.60} — "
        "wrap a list in a dict, e.g. {'items': [...]}",
    )


def json_data(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists); TypeError or ValueError when it is
    not JSON-serialisable (NaN included, which JSON cannot carry)."""
    return json.loads(json.dumps(value, allow_nan=False))


def load_json(section: Section, what: str) -> Any:
    """Decode a section that must be JSON; decoder errors point at their cell line."""
    try:
        return json.loads(section.text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            section.line(exc.lineno - 1),
            f"the {what} starts with '{{' so it is read as JSON, but it is not valid JSON: "
            f"{exc.msg} (column {exc.colno}) — fix the JSON, or start the {what} with other text",
        ) from None
