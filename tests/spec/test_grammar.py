"""Splitting a cell body, reading the input section, and the SpecError format."""

from __future__ import annotations

import pytest

from parallel_nb.spec.grammar import (
    Section,
    SpecError,
    input_from_value,
    parse_input,
    split_body,
)


def test_spec_error_is_a_value_error_that_names_its_line() -> None:
    err = SpecError(3, "the input is empty")
    assert isinstance(err, ValueError)
    assert (err.line, err.message, str(err)) == (
        3,
        "the input is empty",
        "line 3: the input is empty",
    )
    assert str(SpecError(None, "no cell")) == "no cell"


def test_split_body_gives_each_section_its_cell_line() -> None:
    source, spec = split_body("a\nb\n ---\t\nc\n\nd", first_line=2)
    assert source == Section("a\nb", 2)
    assert spec == Section("c\n\nd", 5)
    assert spec.line(2) == 7


def test_without_separator_there_is_no_spec_section() -> None:
    assert split_body("a\n-- -\n", first_line=2) == (Section("a\n-- -\n", 2), None)


def test_separator_on_the_last_line_gives_an_empty_spec() -> None:
    source, spec = split_body("a\n---", first_line=2)
    assert source == Section("a", 2)
    assert spec is not None and spec.is_blank


def test_second_separator_is_an_error_at_its_line() -> None:
    with pytest.raises(SpecError) as caught:
        split_body("a\n---\nb\n\n   ---", first_line=2)
    assert caught.value.line == 6


def test_section_lines() -> None:
    section = Section('\n\n{"a": "say \\"hi\\""}', 4)
    assert section.content_line == 6
    assert section.line_at(section.text.index("{")) == 6
    assert section.line_of('say "hi"') == 6  # found in its JSON spelling
    assert section.line_of("absent") == 6
    assert Section("x").line_of("x") is None


def test_parse_input_reads_json_objects_and_keeps_other_text() -> None:
    assert parse_input(Section(' \n{"a": [1, {"b": null}]}\n', 2)) == {"a": [1, {"b": None}]}
    assert parse_input(Section('  "quoted"  ', 2)) == '"quoted"'
    assert parse_input(Section("{{x}} and {y}", 2)) == "{{x}} and {y}"


def test_text_starting_with_a_brace_must_be_json() -> None:
    with pytest.raises(SpecError) as caught:
        parse_input(Section("\n{Acme} founded when?", 2))
    assert caught.value.line == 3
    assert "start the input with other text" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("  Q \n", "Q"), ({"a": (1, 2)}, {"a": [1, 2]}), ({"n": None}, {"n": None})],
)
def test_input_from_value(value: object, expected: object) -> None:
    assert input_from_value(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("  ", "the input is empty"),
        ({}, "the input dict is empty"),
        ([1, 2], "wrap a list in a dict"),
        ({"a": object()}, "must hold JSON data"),
        ({"a": float("nan")}, "must hold JSON data"),
    ],
)
def test_input_from_value_rejects(value: object, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        input_from_value(value)  # type: ignore[arg-type]
    assert caught.value.line is None
    assert fragment in str(caught.value)
