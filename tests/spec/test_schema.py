"""Spec sections and ``output=`` values -> TaskSpec, and where each field was written."""

from __future__ import annotations

from typing import Any

import pytest

from parallel_nb.api.validation import Problem
from parallel_nb.spec import SpecError, output_to_task_spec
from parallel_nb.spec.grammar import Section
from parallel_nb.spec.schema import SCHEMA_PATH, describe, parse_spec


def schema_of(task_spec: dict[str, Any] | None) -> dict[str, Any]:
    assert task_spec is not None
    json_schema: dict[str, Any] = task_spec["output_schema"]["json_schema"]
    return json_schema


def test_shorthand_remembers_the_line_of_every_field() -> None:
    spec = parse_spec(Section("\nceo.name: Name\n\nceo.age (integer): Age\nhq: City", 10))
    assert spec.lines == {
        f"{SCHEMA_PATH}.properties.ceo": 11,
        f"{SCHEMA_PATH}.properties.ceo.properties.name": 11,
        f"{SCHEMA_PATH}.properties.ceo.properties.age": 13,
        f"{SCHEMA_PATH}.properties.hq": 14,
    }
    assert spec.line_of(f"{SCHEMA_PATH}.properties.ceo.properties.age.enum") == 13
    assert spec.line_of(f"{SCHEMA_PATH}.required") == 11


def test_json_keys_are_located_in_document_order() -> None:
    text = (
        '{"type": "object", "properties": {\n "a": {"type": "string"},\n "b": {"type": "number"}}}'
    )
    spec = parse_spec(Section(text, 4))
    assert spec.line_of(f"{SCHEMA_PATH}.properties.a.type") == 5
    assert spec.line_of(f"{SCHEMA_PATH}.properties.b.type") == 6


def test_only_name_colon_space_starts_a_field_list() -> None:
    assert parse_spec(Section("https://example.com/format")).task_spec == {
        "output_schema": {"type": "text", "description": "https://example.com/format"}
    }
    summary = schema_of(parse_spec(Section("Summary: two sentences")).task_spec)
    assert summary["properties"] == {"Summary": {"type": "string", "description": "two sentences"}}


def test_type_names_ignore_case() -> None:
    schema = schema_of(parse_spec(Section("n (Number): x\nd (DATE):")).task_spec)
    assert schema["properties"] == {
        "n": {"type": "number", "description": "x"},
        "d": {"type": "string", "description": "ISO 8601 date (YYYY-MM-DD)"},
    }


def test_shorthand_types_do_not_share_state() -> None:
    first = schema_of(parse_spec(Section("tags (list): x")).task_spec)
    first["properties"]["tags"]["items"]["type"] = "changed"
    second = schema_of(parse_spec(Section("tags (list): x")).task_spec)
    assert second["properties"]["tags"]["items"] == {"type": "string"}


def test_a_declared_object_cannot_be_declared_again() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(Section("a (object): x\na.b: y\na (object): z", 4))
    assert caught.value.line == 6 and "duplicate field 'a' (first on line 4)" in str(caught.value)


def test_a_parent_with_subfields_must_be_an_object() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(Section("a.b: y\na (integer): x", 4))
    assert caught.value.line == 5 and "its type must be object" in str(caught.value)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (None, None),
        ("auto", None),
        ("A memo", {"output_schema": {"type": "text", "description": "A memo"}}),
        ({"type": "auto"}, {"output_schema": {"type": "auto"}}),
        ({"output_schema": "A memo"}, {"output_schema": "A memo"}),
        (
            {"json_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
            {
                "output_schema": {
                    "type": "json",
                    "json_schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            },
        ),
    ],
)
def test_output_to_task_spec(output: Any, expected: dict[str, Any] | None) -> None:
    assert output_to_task_spec(output, "core") == expected


def test_output_shorthand_matches_the_cell_shorthand() -> None:
    cell = parse_spec(Section("a (integer): x\nb.c: y", 4)).task_spec
    assert output_to_task_spec("a (integer): x\nb.c: y", "core") == cell


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        ("a (nuber): x", "unknown type 'nuber' for field 'a'"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}},
            "field 'a': the keyword 'maxLength' is not supported",
        ),
        ({"foo": 1}, "an output dict must be a TaskSpec"),
        ({"type": "json"}, 'needs a "json_schema" object'),
        (
            {"type": "object", "properties": {"a": {"type": "string", "x": object()}}},
            "output must hold JSON data only",
        ),
        (["a", "b"], "not list"),
    ],
)
def test_output_errors_have_no_line(output: Any, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        output_to_task_spec(output, "core")
    assert caught.value.line is None and fragment in str(caught.value)


def test_describe_names_the_field_and_hints_only_for_keywords() -> None:
    keyword = Problem(f"{SCHEMA_PATH}.properties.p.properties.q.pattern", "'pattern' unsupported")
    assert describe(keyword) == (
        "field 'p.q': 'pattern' unsupported — remove it and state the constraint in the "
        "field's description instead"
    )
    named_pattern = Problem(f"{SCHEMA_PATH}.properties.pattern", "a field called 'pattern'")
    assert describe(named_pattern) == "a field called 'pattern'"
    nested = Problem(f"{SCHEMA_PATH}.properties.properties.properties.x", "odd")
    assert describe(nested) == "field 'properties.x': odd"
    assert describe(Problem("metadata.k", "too long")) == "too long"
