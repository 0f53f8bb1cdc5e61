"""The Task API's documented request limits, checked without a network.

The emulator answers 422 from these checks and puts the warnings into ``run.warnings``; the
client runs the same checks before it sends anything, so a cell that the service would reject
never costs a request. Every problem names the offending field as a dot path
(``task_spec.output_schema.json_schema.properties.revenue``) so callers can point at it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .processors import get_processor

__all__ = [
    "LIMITS",
    "Problem",
    "Report",
    "normalize_output_schema",
    "validate_run_input",
    "validate_task_spec",
]


@dataclass(frozen=True, slots=True)
class Limits:
    spec_chars: int = 15_000
    spec_plus_input_chars: int = 25_000
    nesting_depth: int = 5
    properties: int = 100
    schema_string_chars: int = 25_000
    enum_values: int = 500
    large_enum_values: int = 250
    large_enum_chars: int = 7_500
    metadata_key_chars: int = 16
    metadata_value_chars: int = 512
    source_policy_domains: int = 200
    group_inputs_per_request: int = 1_000


LIMITS = Limits()

UNSUPPORTED_KEYWORDS = frozenset(
    {
        "contains", "format", "maxContains", "maxItems", "maxLength", "maxProperties", "maximum",
        "minContains", "minItems", "minLength", "minimum", "minProperties", "multipleOf",
        "pattern", "patternProperties", "propertyNames", "uniqueItems", "unevaluatedItems",
        "unevaluatedProperties",
    }
)  # fmt: skip
# Field names the service warns about: the basis already carries these.
RESERVED_FIELD_NAMES = frozenset(
    {"citations", "confidence", "evidence", "reasoning", "source", "sources", "source_urls"}
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: the dot path of the field it concerns, what is wrong, and its warning type."""

    field: str
    message: str
    type: str = "spec_validation_warning"

    def as_warning(self) -> dict[str, Any]:
        """The wire shape of a run warning (``TaskRun.warnings[]``)."""
        return {"type": self.type, "message": self.message, "detail": {"field": self.field}}


@dataclass(slots=True)
class Report:
    """Errors reject the request (422); warnings are carried on the run."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, path: str, message: str) -> None:
        self.errors.append(Problem(path, message))

    def warn(self, path: str, message: str, type: str = "spec_validation_warning") -> None:
        self.warnings.append(Problem(path, message, type))


def _chars(value: Any) -> int:
    """Size as the service counts it: characters of the compact JSON (strings count as-is)."""
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def normalize_output_schema(output_schema: Any) -> dict[str, Any]:
    """The explicit form of an output schema: a bare string is a text schema, ``type`` defaults
    to ``json``. Raises ValueError for anything that is not one of the documented forms."""
    if isinstance(output_schema, str):
        return {"type": "text", "description": output_schema}
    if not isinstance(output_schema, Mapping):
        raise ValueError("output_schema must be a string or an object")
    kind = output_schema.get("type", "json")
    if kind == "json":
        if not isinstance(output_schema.get("json_schema"), Mapping):
            raise ValueError('a json output_schema needs a "json_schema" object')
        return {**output_schema, "type": "json"}
    if kind in ("text", "auto"):
        return dict(output_schema)
    raise ValueError(f'output_schema type must be "json", "text" or "auto", not {kind!r}')


def _walk(schema: Mapping[str, Any], path: str, depth: int) -> Iterator[tuple[str, int, Any]]:
    """Yield (path, depth, subschema) for every schema node below an object/array node."""
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for name, sub in props.items():
            yield f"{path}.properties.{name}", depth, sub
            if isinstance(sub, Mapping):
                yield from _walk(sub, f"{path}.properties.{name}", depth + 1)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield f"{path}.items", depth, items
        yield from _walk(items, f"{path}.items", depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key) or []):
            if isinstance(sub, Mapping):
                yield f"{path}.{key}.{i}", depth, sub
                yield from _walk(sub, f"{path}.{key}.{i}", depth)
    for key in ("$defs", "definitions"):
        defs = schema.get(key)
        if isinstance(defs, Mapping):
            for name, sub in defs.items():
                if isinstance(sub, Mapping):
                    yield from _walk(sub, f"{path}.{key}.{name}", depth)


def _is_property(path: str) -> bool:
    return path.split(".")[-2:-1] == ["properties"]


def _check_json_schema(schema: Any, path: str, report: Report, processor: str | None) -> None:
    if not isinstance(schema, Mapping):
        report.error(path, "json_schema must be a JSON object")
        return
    if schema.get("type") != "object":
        report.error(f"{path}.type", 'the root of an output schema must have "type": "object"')
    if "anyOf" in schema:
        report.error(f"{path}.anyOf", "anyOf is not allowed at the root of an output schema")
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        report.error(f"{path}.properties", "the root object must declare its properties")
        return

    nodes = [(path, 0, schema), *_walk(schema, path, 1)]
    properties = sum(1 for p, _, _ in nodes if _is_property(p))
    depth = max(d for _, d, _ in nodes)
    enum_values = 0
    string_chars = 0
    for node_path, _, node in nodes:
        if _is_property(node_path):
            name = node_path.rsplit(".", 1)[-1]
            string_chars += len(name)
            if name in RESERVED_FIELD_NAMES and node_path.count(".properties.") == 1:
                report.warn(
                    node_path,
                    f"field name {name!r} duplicates the research basis "
                    "(citations, reasoning and confidence come with every field)",
                )
        if not isinstance(node, Mapping):
            report.error(node_path, "every schema node must be a JSON object")
            continue
        for key in sorted(UNSUPPORTED_KEYWORDS.intersection(node)):
            report.error(f"{node_path}.{key}", f"the keyword {key!r} is not supported")
        types = node.get("type")
        if types == "null":
            report.error(
                f"{node_path}.type", 'a standalone "null" type is only allowed inside a union'
            )
        enum = node.get("enum")
        if isinstance(enum, list):
            enum_values += len(enum)
            enum_chars = sum(len(str(v)) for v in enum)
            string_chars += enum_chars
            if len(enum) > LIMITS.large_enum_values and enum_chars > LIMITS.large_enum_chars:
                report.error(
                    f"{node_path}.enum",
                    f"an enum with more than {LIMITS.large_enum_values} values may hold "
                    f"at most {LIMITS.large_enum_chars:,} characters, not {enum_chars:,}",
                )
        if "const" in node:
            string_chars += len(str(node["const"]))
        sub_props = node.get("properties")
        if isinstance(sub_props, Mapping) and node.get("type") in ("object", ["object", "null"]):
            missing = [n for n in sub_props if n not in (node.get("required") or [])]
            if missing:
                report.warn(
                    f"{node_path}.required",
                    f"all properties should be required (missing: {', '.join(missing)}); "
                    'use ["string", "null"] for optional ones',
                )
            if node.get("additionalProperties") is not False:
                report.warn(
                    f"{node_path}.additionalProperties",
                    "objects should set additionalProperties to false",
                )

    if depth > LIMITS.nesting_depth:
        report.error(
            path,
            f"the schema nests {depth} levels deep; at most {LIMITS.nesting_depth} are allowed",
        )
    if properties > LIMITS.properties:
        report.error(
            path, f"the schema has {properties} properties; at most {LIMITS.properties} are allowed"
        )
    if enum_values > LIMITS.enum_values:
        report.error(
            path,
            f"the schema has {enum_values} enum values; at most {LIMITS.enum_values} are allowed",
        )
    if string_chars > LIMITS.schema_string_chars:
        report.error(
            path,
            f"property names and enum values add up to {string_chars:,} "
            f"characters; at most {LIMITS.schema_string_chars:,} are allowed",
        )
    proc = get_processor(processor) if processor else None
    if proc is not None and len(props) > proc.max_fields:
        report.warn(
            f"{path}.properties",
            f"{len(props)} output fields is more than the "
            f"~{proc.max_fields} that {proc.name} handles well; consider a larger processor",
        )


def validate_task_spec(
    task_spec: Any,
    processor: str | None = None,
    report: Report | None = None,
    path: str = "task_spec",
) -> Report:
    """Check a TaskSpec (None = auto schema) against the documented output-schema rules."""
    report = report if report is not None else Report()
    if task_spec is None:
        return report
    if not isinstance(task_spec, Mapping):
        report.error(path, "task_spec must be a JSON object with an output_schema")
        return report
    if "output_schema" not in task_spec:
        report.error(f"{path}.output_schema", "task_spec needs an output_schema")
        return report
    try:
        schema = normalize_output_schema(task_spec["output_schema"])
    except ValueError as exc:
        report.error(f"{path}.output_schema", str(exc))
        return report
    if schema["type"] == "json":
        _check_json_schema(
            schema["json_schema"], f"{path}.output_schema.json_schema", report, processor
        )
    spec_chars = _chars(task_spec)
    if spec_chars > LIMITS.spec_chars:
        report.error(
            path,
            f"the task spec is {spec_chars:,} characters; at most "
            f"{LIMITS.spec_chars:,} are allowed",
        )
    return report


def _check_input_schema(task_spec: Mapping[str, Any], value: Any, report: Report) -> None:
    schema = task_spec.get("input_schema")
    if isinstance(schema, Mapping) and schema.get("type", "json") == "json":
        schema = schema.get("json_schema")
    if not isinstance(schema, Mapping) or not isinstance(value, Mapping):
        return
    missing = [n for n in schema.get("required") or [] if n not in value]
    if missing:
        report.warn(
            "input",
            f"input is missing required field(s) of the input schema: {', '.join(missing)}",
            type="input_validation_warning",
        )


def validate_run_input(body: Mapping[str, Any]) -> Report:
    """Check a create-run body (``TaskRunInput``): input, task spec, sizes, metadata, sources."""
    report = Report()
    if not isinstance(body.get("processor"), str) or not body.get("processor"):
        report.error("processor", "processor is required and must be a string")
    value = body.get("input")
    if not isinstance(value, (str, Mapping)) or value in ("", {}):
        report.error("input", "input is required: a non-empty string or JSON object")
    task_spec = body.get("task_spec")
    validate_task_spec(task_spec, body.get("processor"), report)
    if isinstance(task_spec, Mapping) and value is not None:
        total = _chars(task_spec) + _chars(value)
        if total > LIMITS.spec_plus_input_chars:
            report.error(
                "input",
                f"task spec plus input is {total:,} characters; at most "
                f"{LIMITS.spec_plus_input_chars:,} are allowed",
            )
        _check_input_schema(task_spec, value, report)

    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            report.error("metadata", "metadata must be an object of short keys and values")
        else:
            for key, val in metadata.items():
                if len(key) > LIMITS.metadata_key_chars:
                    report.error(
                        f"metadata.{key}",
                        f"metadata keys are at most {LIMITS.metadata_key_chars} characters",
                    )
                if not isinstance(val, (str, int, float, bool)):
                    report.error(
                        f"metadata.{key}", "metadata values must be strings, numbers or booleans"
                    )
                elif len(str(val)) > LIMITS.metadata_value_chars:
                    report.error(
                        f"metadata.{key}",
                        f"metadata values are at most {LIMITS.metadata_value_chars} characters",
                    )

    policy = body.get("source_policy")
    if policy is not None:
        if not isinstance(policy, Mapping):
            report.error("source_policy", "source_policy must be an object")
        else:
            domains = [
                *(policy.get("include_domains") or []),
                *(policy.get("exclude_domains") or []),
            ]
            if len(domains) > LIMITS.source_policy_domains:
                report.error(
                    "source_policy",
                    f"source_policy lists {len(domains)} domains; at "
                    f"most {LIMITS.source_policy_domains} are allowed in all",
                )
    previous = body.get("previous_interaction_id")
    if previous is not None and not isinstance(previous, str):
        report.error("previous_interaction_id", "previous_interaction_id must be a string")
    return report
