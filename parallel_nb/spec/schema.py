"""Turn a spec section or an ``output=`` value into a TaskSpec (None means the auto schema).

Forms, in the order they are recognised: nothing or ``auto``; JSON (a full TaskSpec, an
``output_schema``, or a bare JSON schema); a shorthand field list, one ``name (type):
description`` per line; any other text, which becomes a text schema. The parsed spec remembers
the cell line of every field so that validation problems can point at the line to fix.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.validation import (
    UNSUPPORTED_KEYWORDS,
    Problem,
    normalize_output_schema,
    validate_task_spec,
)
from .grammar import Section, SpecError, json_data, load_json

__all__ = [
    "SCHEMA_PATH",
    "ParsedSpec",
    "describe",
    "output_to_task_spec",
    "parse_spec",
    "raise_first",
]

SCHEMA_PATH = "task_spec.output_schema.json_schema"

_FIELD_LINE = re.compile(
    r"\s*(?P<name>[^\W\d]\w*(?:\.[^\W\d]\w*)*)\s*"
    r"(?:\((?P<type>[^()]*(?:\([^()]*\))?\s*)\))?"
    r"\s*:(?:\s+(?P<description>.*?))?\s*"
)
_ENUM = re.compile(r"enum\s*\((?P<values>.*)\)", re.IGNORECASE)
# type name: (JSON schema, hint appended to the description)
_TYPES: dict[str, tuple[dict[str, Any], str | None]] = {
    "string": ({"type": "string"}, None),
    "number": ({"type": "number"}, None),
    "integer": ({"type": "integer"}, None),
    "boolean": ({"type": "boolean"}, None),
    "date": ({"type": "string"}, "ISO 8601 date (YYYY-MM-DD)"),
    "url": ({"type": "string"}, "URL"),
    "list": ({"type": "array", "items": {"type": "string"}}, None),
    "list[number]": ({"type": "array", "items": {"type": "number"}}, None),
    "list[integer]": ({"type": "array", "items": {"type": "integer"}}, None),
}
_TYPE_NAMES = [*_TYPES, "object", "enum(a|b)"]
_JSON_FORMS = (
    'a TaskSpec (with "output_schema"), an output schema ("type": "json", "text" or "auto") '
    'or a JSON schema ("type": "object" with "properties")'
)


@dataclass(frozen=True, slots=True)
class ParsedSpec:
    """A task spec and where its parts were written: ``lines`` maps validation paths
    (``task_spec.output_schema.json_schema.properties.ceo``) to cell lines."""

    task_spec: dict[str, Any] | None
    section: Section | None = None
    lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` or of its nearest ancestor; else the section's first line."""
        parts = path.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return line
            parts.pop()
        return self.section.content_line if self.section else None


def parse_spec(section: Section | None) -> ParsedSpec:
    """The task spec a spec section describes (see the module docstring for the forms)."""
    if section is None or section.is_blank:
        return ParsedSpec(None, section)
    text = section.text.strip()
    if text.lower() == "auto":
        return ParsedSpec(None, section)
    if text.startswith("{"):
        return _json_spec(section)
    if text.startswith("["):
        _reject_json_array(section, text)
    first = next(line for line in section.text.splitlines() if line.strip())
    if _FIELD_LINE.fullmatch(first):
        return _shorthand(section)
    return ParsedSpec({"output_schema": {"type": "text", "description": text}}, section)


def output_to_task_spec(
    output: str | Mapping[str, Any] | None, processor: str | None
) -> dict[str, Any] | None:
    """The task spec for a Python API ``output=`` value: None is auto, a string follows the
    spec-section rules, a mapping is a TaskSpec, output schema or JSON schema. The result is
    checked against the documented limits (errors raise SpecError without a line)."""
    if output is None:
        return None
    if isinstance(output, str):
        spec = parse_spec(Section(output))
    elif isinstance(output, Mapping):
        try:
            data = json_data(output)
        except (TypeError, ValueError) as exc:
            raise SpecError(None, f"output must hold JSON data only: {exc}") from None
        spec = ParsedSpec(_from_mapping(data, None, "an output dict")[0])
    else:
        raise SpecError(
            None,
            f"output must be None (auto), a string (field list, description or 'auto') or a "
            f"dict ({_JSON_FORMS}), not {type(output).__name__}",
        )
    raise_first(validate_task_spec(spec.task_spec, processor).errors, spec.line_of)
    return spec.task_spec


def describe(problem: Problem) -> str:
    """A validation problem as a sentence that names the field it concerns."""
    message = problem.message
    *parents, last = problem.field.split(".")
    if last in UNSUPPORTED_KEYWORDS and parents[-1:] != ["properties"]:
        message += " — remove it and state the constraint in the field's description instead"
    name = _field_name(problem.field)
    if name is None or f"'{name}'" in message:
        return message
    return f"field '{name}': {message}"


def raise_first(problems: list[Problem], locate: Callable[[str], int | None]) -> None:
    """Raise a SpecError for the problem on the earliest line, counting the others."""
    if not problems:
        return
    located = sorted(
        ((locate(p.field), i, p) for i, p in enumerate(problems)),
        key=lambda item: (item[0] is None, item[0] or 0, item[1]),
    )
    line, _, problem = located[0]
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    raise SpecError(line, describe(problem) + suffix)


def _field_name(path: str) -> str | None:
    """``ceo.name`` for ``task_spec.output_schema.json_schema.properties.ceo.properties.name``."""
    if not path.startswith(SCHEMA_PATH):
        return None
    parts = path[len(SCHEMA_PATH) :].split(".")
    names = []
    i = 0
    while i < len(parts) - 1:
        if parts[i] == "properties":
            names.append(parts[i + 1])
            i += 2
        else:
            i += 1
    return ".".join(names) or None


# -- JSON forms ----------------------------------------------------------------------------


def _json_spec(section: Section) -> ParsedSpec:
    value = load_json(section, "spec")
    task_spec, root = _from_mapping(value, section.content_line, "a JSON spec")
    return ParsedSpec(task_spec, section, _key_lines(section, value, root))


def _reject_json_array(section: Section, text: str) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return  # text that happens to start with "["
    raise SpecError(
        section.content_line,
        f"the spec is a JSON array; a JSON spec must be {_JSON_FORMS} — or list the fields "
        "one per line as 'name (type): description'",
    )


def _from_mapping(
    value: Mapping[str, Any], line: int | None, what: str
) -> tuple[dict[str, Any], str]:
    """The task spec for a JSON spec, and the validation path its top level corresponds to."""
    if "output_schema" in value:
        return dict(value), "task_spec"
    if value.get("type") in ("json", "text", "auto") or "json_schema" in value:
        try:
            return {"output_schema": normalize_output_schema(value)}, "task_spec.output_schema"
        except ValueError as exc:
            raise SpecError(
                line,
                f'{exc} — put the JSON schema under "json_schema", or write the bare schema '
                '("type": "object" with "properties")',
            ) from None
    if value.get("type") == "object" or "properties" in value:
        return {"output_schema": {"type": "json", "json_schema": dict(value)}}, SCHEMA_PATH
    raise SpecError(line, f"{what} must be {_JSON_FORMS}; this one is none of them")


def _key_lines(section: Section, value: Any, root: str) -> dict[str, int]:
    """The line of every key of a decoded JSON value, found by scanning the source in
    document order (json does not report positions)."""
    lines: dict[str, int] = {}
    cursor = 0

    def visit(node: Any, path: str) -> None:
        nonlocal cursor
        if isinstance(node, list):
            for index, item in enumerate(node):
                visit(item, f"{path}.{index}")
        elif isinstance(node, Mapping):
            for key, item in node.items():
                pattern = re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:"
                found = re.compile(pattern).search(section.text, cursor)
                if found:
                    cursor = found.end()
                    line = section.line_at(found.start())
                    if line is not None:
                        lines[f"{path}.{key}"] = line
                visit(item, f"{path}.{key}")

    visit(value, root)
    return lines


# -- shorthand field lists -----------------------------------------------------------------


@dataclass(slots=True)
class _Field:
    """A field while the list is read; ``schema`` is None for an object with subfields."""

    line: int | None
    schema: dict[str, Any] | None
    description: str = ""
    declared: bool = True  # False for a parent that only exists through a dotted child
    children: dict[str, _Field] = field(default_factory=dict)


def _shorthand(section: Section) -> ParsedSpec:
    fields: dict[str, _Field] = {}
    for index, text in enumerate(section.text.splitlines()):
        if not text.strip():
            continue
        line = section.line(index)
        match = _FIELD_LINE.fullmatch(text)
        if match is None:
            raise SpecError(
                line,
                f"{text.strip()!r} is not a field line — the spec is read as a field list "
                "because its first line is one, so write 'name (type): description' here too "
                "(a colon followed by a space after the name)",
            )
        _add_field(fields, match, line)
    lines: dict[str, int] = {}
    schema = {"type": "object", **_object_schema(fields, "", SCHEMA_PATH, lines)}
    task_spec = {"output_schema": {"type": "json", "json_schema": schema}}
    return ParsedSpec(task_spec, section, lines)


def _add_field(fields: dict[str, _Field], match: re.Match[str], line: int | None) -> None:
    name = match["name"]
    parts = name.split(".")
    siblings = fields
    for depth, part in enumerate(parts[:-1], start=1):
        parent = siblings.get(part)
        if parent is None:
            parent = siblings[part] = _Field(line, None, declared=False)
        elif parent.schema is not None:
            prefix = ".".join(parts[:depth])
            raise SpecError(
                line,
                f"field {prefix!r} has type {parent.schema['type']} (line {parent.line}), so it "
                f"cannot have the subfield {name!r} — declare it as '{prefix} (object)'",
            )
        siblings = parent.children
    type_text = (match["type"] or "string").strip()
    description = match["description"] or ""
    is_object = type_text.lower() == "object"
    existing = siblings.get(parts[-1])
    if existing is not None and existing.declared:
        raise SpecError(
            line,
            f"duplicate field {name!r} (first on line {existing.line}) — remove one of the "
            "lines or rename the field",
        )
    if existing is not None and not is_object:
        raise SpecError(
            line,
            f"field {name!r} has subfields (line {existing.line}), so its type must be "
            f"object — write '{name} (object): {description}'",
        )
    if existing is not None:
        existing.declared, existing.description, existing.line = True, description, line
        return
    schema = None if is_object else _field_schema(type_text, description, name, line)
    siblings[parts[-1]] = _Field(line, schema, description)


def _field_schema(type_text: str, description: str, name: str, line: int | None) -> dict[str, Any]:
    enum = _ENUM.fullmatch(type_text)
    if enum:
        values = [value.strip() for value in enum["values"].split("|")]
        if not all(values) or len(set(values)) != len(values):
            raise SpecError(
                line,
                f"enum for field {name!r} needs distinct, non-empty values separated by '|', "
                "e.g. enum(low|medium|high)",
            )
        schema: dict[str, Any] = {"type": "string", "enum": values}
        hint = None
    elif type_text.lower() in _TYPES:
        template, hint = _TYPES[type_text.lower()]
        schema = copy.deepcopy(template)
    else:
        close = difflib.get_close_matches(type_text.lower(), _TYPE_NAMES, n=1)
        raise SpecError(
            line,
            f"unknown type {type_text!r} for field {name!r} — use one of "
            f"{', '.join(_TYPE_NAMES)}" + (f" (did you mean {close[0]!r}?)" if close else ""),
        )
    text = " — ".join(part for part in (description, hint) if part)
    if text:
        schema["description"] = text
    return schema


def _object_schema(
    fields: dict[str, _Field], prefix: str, path: str, lines: dict[str, int]
) -> dict[str, Any]:
    """``properties``/``required``/``additionalProperties`` for a level of the field tree:
    every field required and nothing else allowed, as the service recommends."""
    properties: dict[str, Any] = {}
    for name, node in fields.items():
        dotted, node_path = f"{prefix}{name}", f"{path}.properties.{name}"
        if node.line is not None:
            lines[node_path] = node.line
        if node.schema is not None:
            properties[name] = node.schema
            continue
        if not node.children:
            raise SpecError(
                node.line,
                f"field {dotted!r} is an object with no subfields — add lines such as "
                f"'{dotted}.name: ...' or give it another type",
            )
        described = {"description": node.description} if node.description else {}
        children = _object_schema(node.children, f"{dotted}.", node_path, lines)
        properties[name] = {"type": "object", **described, **children}
    return {"properties": properties, "required": list(properties), "additionalProperties": False}
