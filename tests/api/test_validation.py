"""The documented request limits, checked locally (the emulator's 422s, the client's pre-checks)."""

from __future__ import annotations

from typing import Any

import pytest

from parallel_nb.api.processors import PROCESSORS, get_processor
from parallel_nb.api.validation import (
    LIMITS,
    normalize_output_schema,
    validate_run_input,
    validate_task_spec,
)

SCHEMA_PATH = "task_spec.output_schema.json_schema"


def json_spec(properties: dict[str, Any], **root: Any) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **root,
    }
    return {"output_schema": {"type": "json", "json_schema": schema}}


def fields(report_items: list) -> list[str]:
    return [p.field for p in report_items]


def test_processor_table_has_all_documented_processors_and_fast_variants() -> None:
    tiers = ["lite", "base", "core", "core2x", "pro", "ultra", "ultra2x", "ultra4x", "ultra8x"]
    assert sorted(PROCESSORS) == sorted([*tiers, *(f"{t}-fast" for t in tiers)])
    core_fast = get_processor("core-fast")
    assert core_fast is not None
    assert (core_fast.tier, core_fast.is_fast, core_fast.usd_per_run) == ("core", True, 0.025)
    assert core_fast.max_seconds < get_processor("core").max_seconds  # type: ignore[union-attr]
    assert [t for t in tiers if get_processor(t).is_premium] == tiers[4:]  # type: ignore[union-attr]
    assert get_processor("vision") is None


def test_a_well_formed_spec_has_no_findings() -> None:
    report = validate_run_input(
        {"processor": "core", "input": "x", "task_spec": json_spec({"a": {"type": "string"}})}
    )
    assert report.ok and report.warnings == []


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": "array", "properties": {"a": {}}}, f"{SCHEMA_PATH}.type"),
        ({"type": "object"}, f"{SCHEMA_PATH}.properties"),
        ({"type": "object", "properties": {}}, f"{SCHEMA_PATH}.properties"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "anyOf": []},
            f"{SCHEMA_PATH}.anyOf",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "null"}}},
            f"{SCHEMA_PATH}.properties.a.type",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "x+"}}},
            f"{SCHEMA_PATH}.properties.a.pattern",
        ),
    ],
)
def test_schema_errors_name_the_offending_field(schema: dict[str, Any], field: str) -> None:
    spec = {"output_schema": {"type": "json", "json_schema": schema}}
    assert field in fields(validate_task_spec(spec).errors)


def test_nesting_deeper_than_five_levels_is_rejected() -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(5):
        node = {"type": "object", "properties": {"x": node}}
    assert validate_task_spec(json_spec({"x": node})).errors
    assert not validate_task_spec(json_spec({"x": node["properties"]["x"]})).errors


def test_property_enum_and_size_limits() -> None:
    many = {f"f{i}": {"type": "string"} for i in range(LIMITS.properties + 1)}
    assert "101 properties" in validate_task_spec(json_spec(many)).errors[0].message

    enum = {"type": "string", "enum": [f"v{i}" for i in range(LIMITS.enum_values + 1)]}
    messages = [p.message for p in validate_task_spec(json_spec({"e": enum})).errors]
    assert any("enum values" in m for m in messages)

    long_enum = {"type": "string", "enum": [f"{i:030d}" for i in range(260)]}
    big = validate_task_spec(json_spec({"e": long_enum})).errors
    assert f"{SCHEMA_PATH}.properties.e.enum" in fields(big)

    huge = {"output_schema": {"type": "text", "description": "x" * (LIMITS.spec_chars + 1)}}
    assert fields(validate_task_spec(huge).errors) == ["task_spec"]


def test_spec_plus_input_limit() -> None:
    spec = {"output_schema": "a short text answer"}
    body = {"processor": "base", "input": "y" * LIMITS.spec_plus_input_chars, "task_spec": spec}
    assert fields(validate_run_input(body).errors) == ["input"]


def test_warnings_for_optional_fields_open_objects_reserved_names_and_too_many_fields() -> None:
    schema = {
        "type": "object",
        "properties": {f"f{i}": {"type": "string"} for i in range(3)}
        | {"citations": {"type": "string"}},
        "required": ["f0"],
    }
    spec = {"output_schema": {"json_schema": schema}}  # "type" defaults to json
    report = validate_task_spec(spec, processor="lite")
    assert report.ok
    assert set(fields(report.warnings)) == {
        f"{SCHEMA_PATH}.required",
        f"{SCHEMA_PATH}.additionalProperties",
        f"{SCHEMA_PATH}.properties.citations",
        f"{SCHEMA_PATH}.properties",  # four fields is more than lite's ~2
    }
    wire = report.warnings[0].as_warning()
    assert wire["type"] == "spec_validation_warning" and wire["detail"]["field"]


def test_metadata_source_policy_and_required_fields() -> None:
    body = {
        "processor": "",
        "input": "",
        "metadata": {"k" * 17: "v", "ok": "v" * 513, "bad": ["list"]},
        "source_policy": {"include_domains": [f"d{i}.com" for i in range(201)]},
        "previous_interaction_id": 7,
    }
    assert set(fields(validate_run_input(body).errors)) == {
        "processor",
        "input",
        f"metadata.{'k' * 17}",
        "metadata.ok",
        "metadata.bad",
        "source_policy",
        "previous_interaction_id",
    }


def test_input_not_matching_input_schema_is_a_warning() -> None:
    spec = json_spec({"a": {"type": "string"}})
    spec["input_schema"] = {"type": "json", "json_schema": {"required": ["company"]}}
    report = validate_run_input({"processor": "core", "input": {"name": "x"}, "task_spec": spec})
    assert report.ok
    assert [p.type for p in report.warnings] == ["input_validation_warning"]


def test_output_schema_forms() -> None:
    assert normalize_output_schema("a memo") == {"type": "text", "description": "a memo"}
    assert normalize_output_schema({"type": "auto"}) == {"type": "auto"}
    assert normalize_output_schema({"json_schema": {"type": "object"}})["type"] == "json"
    with pytest.raises(ValueError, match="json_schema"):
        normalize_output_schema({"type": "json"})
    with pytest.raises(ValueError, match="not 'yaml'"):
        normalize_output_schema({"type": "yaml"})
    assert "task_spec.output_schema" in fields(validate_task_spec({"output_schema": 3}).errors)
    assert validate_task_spec(None).ok
