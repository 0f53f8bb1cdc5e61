"""Golden cells: a ``%%parallel`` body and the exact request (or the exact error line) it gives."""

from __future__ import annotations

import re
import textwrap
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from parallel_nb.api.models import TaskRequest
from parallel_nb.spec import SpecError, build_request, request_warnings, validate_request

Row = namedtuple("Row", "name ticker")
NAMESPACE: dict[str, Any] = {
    "company": "Acme Corp",
    "year": 2021,
    "row": Row("Acme", "ACME"),
    "items": ["alpha", "beta"],
    "d": {"k": "v", "n": 3},
    "tags": ("a", "b"),
    "nested": {"a": {"b": [10, 20]}},
}


@dataclass(frozen=True)
class Err:
    """An expected SpecError: its line and a fragment of its message."""

    line: int | None
    fragment: str


def obj(properties: dict[str, Any]) -> dict[str, Any]:
    """A closed JSON-schema object, as the shorthand writes it."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def json_spec(properties: dict[str, Any]) -> dict[str, Any]:
    return {"output_schema": {"type": "json", "json_schema": obj(properties)}}


def text_spec(description: str) -> dict[str, Any]:
    return {"output_schema": {"type": "text", "description": description}}


HUNDRED_AND_ONE = "\n".join(f"f{i}: field {i}" for i in range(101))

GOLDEN: list[Any] = [
    # -- input section ---------------------------------------------------------------------
    pytest.param("Research {{company}}", "Research Acme Corp", None, id="text"),
    pytest.param("\n  What is X?\n  Be brief.\n\n", "What is X?\n  Be brief.", None, id="stripped"),
    pytest.param(
        '{"company": "Acme", "year": 2021}', {"company": "Acme", "year": 2021}, None, id="json"
    ),
    pytest.param(
        '{"company": "{{company}}", "year": "{{ year }}",\n'
        ' "about": "{{company}} in {{year}}", "tags": "{{tags}}", "{{d.k}}": 1}',
        {
            "company": "Acme Corp",
            "year": 2021,
            "about": "Acme Corp in 2021",
            "tags": ["a", "b"],
            "v": 1,
        },
        None,
        id="json-interpolation",
    ),
    pytest.param(
        '{"v": "{{d[\\"k\\"]}}", "w": "{{d[\'n\']}}"}', {"v": "v", "w": 3}, None, id="json-keys"
    ),
    pytest.param(
        "[1, 2]", Err(2, "must be text or a JSON object — wrap the list"), None, id="json-array"
    ),
    pytest.param(
        '{"a": 1,\n "b": }',
        Err(3, "not valid JSON: Expecting value (column 7)"),
        None,
        id="json-invalid",
    ),
    pytest.param(
        "[draft] Summarise {{company}}",
        "[draft] Summarise Acme Corp",
        None,
        id="text-starting-with-bracket",
    ),
    pytest.param(
        "{{company}}: when was it founded?",
        "Acme Corp: when was it founded?",
        None,
        id="placeholder-first",
    ),
    pytest.param(
        'Ticker {{row.ticker}}, first {{items[0]}}, last {{items[-1]}}, k={{d["k"]}}, '
        "deep={{nested.a.b[1]}}, name={{row.name}}",
        "Ticker ACME, first alpha, last beta, k=v, deep=20, name=Acme",
        None,
        id="access",
    ),
    pytest.param("{{  company  }} / {{ items [ 0 ] }}", "Acme Corp / alpha", None, id="spaces"),
    pytest.param(
        'Fill {name} in {"a": {"b": 1}} for {{company}} }}',
        'Fill {name} in {"a": {"b": 1}} for Acme Corp }}',
        None,
        id="single-braces",
    ),
    pytest.param(
        r"Literal \{{company}} and {{company}}",
        "Literal {{company}} and Acme Corp",
        None,
        id="escape",
    ),
    pytest.param("Data: {{d}} {{tags}}", 'Data: {"k": "v", "n": 3} ["a", "b"]', None, id="as-json"),
    pytest.param(
        "{{compny}} in {{yaer}}\n{{unknown_thing}}",
        Err(
            2,
            "unknown names 'compny' (did you mean 'company'?), 'yaer' (did you mean 'year'?), "
            "'unknown_thing' — define them in a cell above",
        ),
        None,
        id="unknown-names",
    ),
    pytest.param(
        '{\n "a": "x",\n "b": "{{compny}}"\n}',
        Err(4, "unknown name 'compny'"),
        None,
        id="unknown-in-json",
    ),
    pytest.param(
        "Run {{__import__('os').system('echo hi')}}",
        Err(2, "is not a placeholder"),
        None,
        id="no-eval",
    ),
    pytest.param("Q\n{{company.__class__}}", Err(3, "'__class__'"), None, id="no-dunder"),
    pytest.param("Q\n\n{{company", Err(4, "is not closed"), None, id="unclosed"),
    pytest.param("", Err(2, "the input is empty"), None, id="empty"),
    pytest.param("\n\n---\na: x", Err(2, "the input is empty"), None, id="empty-before-spec"),
    # -- separator -------------------------------------------------------------------------
    pytest.param("Q\n  ---  \nauto", "Q", None, id="separator-spaces"),
    pytest.param("Q\n----\nmore", "Q\n----\nmore", None, id="not-a-separator"),
    pytest.param(
        "Q\n---\na: x\n---\nb: y", Err(5, "a second '---' line"), None, id="two-separators"
    ),
    pytest.param("Q\n---\n", "Q", None, id="empty-spec"),
    # -- spec section ----------------------------------------------------------------------
    pytest.param("Q\n---\n  AUTO ", "Q", None, id="auto"),
    pytest.param(
        "Q\n---\n"
        "name: Company name\n"
        "employees (integer): Head count\n"
        "revenue (number): Revenue in USD\n"
        "public (boolean): Listed?\n"
        "founded (date): Founding date\n"
        "site (url):\n"
        "products (list): Main products\n"
        "prices (list[number]): Prices\n"
        "years (list[integer]): Years\n"
        "risk (enum(low | medium|high)): Risk level",
        "Q",
        json_spec(
            {
                "name": {"type": "string", "description": "Company name"},
                "employees": {"type": "integer", "description": "Head count"},
                "revenue": {"type": "number", "description": "Revenue in USD"},
                "public": {"type": "boolean", "description": "Listed?"},
                "founded": {
                    "type": "string",
                    "description": "Founding date — ISO 8601 date (YYYY-MM-DD)",
                },
                "site": {"type": "string", "description": "URL"},
                "products": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Main products",
                },
                "prices": {"type": "array", "items": {"type": "number"}, "description": "Prices"},
                "years": {"type": "array", "items": {"type": "integer"}, "description": "Years"},
                "risk": {
                    "type": "string",
                    "enum": ["low", "medium", "high"],
                    "description": "Risk level",
                },
            }
        ),
        id="shorthand-types",
    ),
    pytest.param(
        "Q\n---\nceo.name: Full name\nceo.since (integer): Year\nceo (object): The CEO\nhq: City",
        "Q",
        json_spec(
            {
                "ceo": {
                    "type": "object",
                    "description": "The CEO",
                    **obj(
                        {
                            "name": {"type": "string", "description": "Full name"},
                            "since": {"type": "integer", "description": "Year"},
                        }
                    ),
                },
                "hq": {"type": "string", "description": "City"},
            }
        ),
        id="shorthand-nesting",
    ),
    pytest.param(
        "Q\n---\na: x\nb: y\na: z",
        Err(6, "duplicate field 'a' (first on line 4)"),
        None,
        id="duplicate",
    ),
    pytest.param(
        "Q\n---\nname: x\nrevenue (nuber): Annual revenue",
        Err(
            5,
            "unknown type 'nuber' for field 'revenue' — use one of string, number, integer, "
            "boolean, date, url, list, list[number], list[integer], object, enum(a|b) "
            "(did you mean 'number'?)",
        ),
        None,
        id="unknown-type",
    ),
    pytest.param(
        "Q\n---\na: x\nplease be precise",
        Err(5, "is not a field line"),
        None,
        id="not-a-field-line",
    ),
    pytest.param(
        "Q\n---\na: x\na.b: y",
        Err(5, "field 'a' has type string (line 4)"),
        None,
        id="subfield-of-string",
    ),
    pytest.param("Q\n---\na (object): x", Err(4, "no subfields"), None, id="empty-object"),
    pytest.param(
        "Q\n---\nk (enum(a||b)): x", Err(4, "distinct, non-empty values"), None, id="bad-enum"
    ),
    pytest.param(
        'Q\n---\n{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],\n'
        ' "additionalProperties": false}',
        "Q",
        json_spec({"a": {"type": "string"}}),
        id="json-schema",
    ),
    pytest.param(
        'Q\n---\n{"type": "text", "description": "A memo"}',
        "Q",
        text_spec("A memo"),
        id="output-schema",
    ),
    pytest.param(
        'Q\n---\n{"output_schema": "A memo", "input_schema": "A question"}',
        "Q",
        {"output_schema": "A memo", "input_schema": "A question"},
        id="task-spec",
    ),
    pytest.param(
        'Q\n---\n{\n  "type": "object",\n  "properties": {\n    "a": {"type": "string"},\n  }\n}',
        Err(8, "not valid JSON: Expecting property name enclosed in double quotes"),
        None,
        id="spec-invalid-json",
    ),
    pytest.param(
        'Q\n---\n{"foo": 1}', Err(4, "a JSON spec must be a TaskSpec"), None, id="spec-unknown-json"
    ),
    pytest.param(
        'Q\n---\n["a", "b"]', Err(4, "the spec is a JSON array"), None, id="spec-json-array"
    ),
    pytest.param(
        "Q\n---\nA two-paragraph summary.\nMention risks.",
        "Q",
        text_spec("A two-paragraph summary.\nMention risks."),
        id="free-text",
    ),
    # -- local validation, mapped to lines --------------------------------------------------
    pytest.param(
        f"Q\n---\n{HUNDRED_AND_ONE}",
        Err(4, "101 properties; at most 100"),
        None,
        id="too-many-fields",
    ),
    pytest.param(
        'Q\n---\n{\n  "type": "object",\n  "properties": {\n    "id": {"type": "string"},\n'
        '    "code": {\n      "type": "string",\n      "pattern": "^[A-Z]+$"\n    }\n  }\n}',
        Err(10, "field 'code': the keyword 'pattern' is not supported — remove it"),
        None,
        id="pattern",
    ),
    pytest.param(
        'Q\n---\n{"type": "object", "properties": {}}',
        Err(4, "must declare its properties"),
        None,
        id="no-properties",
    ),
]


@pytest.mark.parametrize(("body", "expected_input", "expected_spec"), GOLDEN)
def test_golden(body: str, expected_input: Any, expected_spec: dict[str, Any] | None) -> None:
    if isinstance(expected_input, Err):
        with pytest.raises(SpecError) as caught:
            build_request(body, processor="core", namespace=NAMESPACE)
        assert caught.value.line == expected_input.line, str(caught.value)
        assert expected_input.fragment in str(caught.value)
        assert str(caught.value).startswith(f"line {expected_input.line}: ")
        assert "\n" not in str(caught.value)
        return
    request = build_request(body, processor="core", namespace=NAMESPACE)
    assert request == TaskRequest(processor="core", input=expected_input, task_spec=expected_spec)


def test_options_reach_the_request_and_the_body() -> None:
    request = build_request(
        "Q",
        processor="pro",
        namespace={},
        metadata={"notebook": "demo"},
        source_policy={"include_domains": ["sec.gov"]},
        previous_interaction_id="trun_1",
        location="us",
        enable_events=True,
    )
    assert request.to_body() == {
        "processor": "pro",
        "input": "Q",
        "metadata": {"notebook": "demo"},
        "source_policy": {"include_domains": ["sec.gov"]},
        "previous_interaction_id": "trun_1",
        "enable_events": True,
        "advanced_settings": {"location": "us"},
    }


def test_problems_with_magic_line_options_point_at_line_1() -> None:
    with pytest.raises(SpecError, match=r"^line 1: metadata keys are at most 16"):
        build_request("Q", processor="core", namespace={}, metadata={"a" * 17: "x"})
    domains = [f"d{i}.com" for i in range(201)]
    with pytest.raises(SpecError, match=r"^line 1: source_policy lists 201 domains"):
        build_request(
            "Q", processor="core", namespace={}, source_policy={"exclude_domains": domains}
        )


def test_first_line_shifts_every_line_number() -> None:
    with pytest.raises(SpecError) as caught:
        build_request("Q\n---\nx (nuber): y", processor="core", namespace={}, first_line=10)
    assert caught.value.line == 12


def test_oversized_input_is_reported_on_the_input_line() -> None:
    with pytest.raises(SpecError, match=r"^line 3: task spec plus input is"):
        build_request("\n" + "x" * 25_000 + "\n---\na: b", processor="core", namespace={})


def test_the_first_problem_by_line_is_raised_and_the_rest_are_counted() -> None:
    body = 'Q\n---\n{"type": "object", "properties": {\n"a": {"type": "string", "pattern": "x"},\n"b": {"type": "string", "minLength": 1}}}'  # noqa: E501
    with pytest.raises(SpecError) as caught:
        build_request(body, processor="core", namespace={})
    assert caught.value.line == 5
    assert "'pattern'" in str(caught.value) and str(caught.value).endswith("(and 1 more problem)")


def test_interpolation_can_be_turned_off() -> None:
    request = build_request(r"{{x}} \{{y}}", processor="core", namespace={}, interpolate=False)
    assert request.input == r"{{x}} \{{y}}"


def test_no_namespace_means_every_name_is_unknown() -> None:
    with pytest.raises(SpecError, match="unknown name 'company'"):
        build_request("{{company}}", processor="core", namespace=None)


def test_the_spec_section_is_never_interpolated() -> None:
    request = build_request("Q\n---\nAnswer in {{lang}}", processor="core", namespace={})
    assert request.task_spec == text_spec("Answer in {{lang}}")


def test_warnings_name_their_cell_lines_when_given_the_body() -> None:
    body = (
        "Q\n---\n"
        '{"type": "object", "properties": {\n'
        '  "citations": {"type": "string"},\n'
        '  "ceo": {"type": "object", "properties": {"name": {"type": "string"}}}\n'
        "}}"
    )
    request = build_request(body, processor="core", namespace={})
    assert request_warnings(request, body) == [
        "line 4: all properties should be required (missing: citations, ceo); "
        'use ["string", "null"] for optional ones',
        "line 4: objects should set additionalProperties to false",
        "line 5: field name 'citations' duplicates the research basis (citations, reasoning and "
        "confidence come with every field)",
        "line 6: field 'ceo': all properties should be required (missing: name); "
        'use ["string", "null"] for optional ones',
        "line 6: field 'ceo': objects should set additionalProperties to false",
    ]
    assert request_warnings(request)[4] == (
        "field 'ceo': objects should set additionalProperties to false"
    )


def test_too_many_fields_for_the_processor_is_a_warning_on_the_spec_line() -> None:
    body = "Q\n---\na: x\nb: y\nc: z"
    request = build_request(body, processor="lite", namespace={})
    assert request_warnings(request, body) == [
        "line 4: 3 output fields is more than the ~2 that lite handles well; "
        "consider a larger processor"
    ]
    assert request_warnings(build_request(body, processor="core", namespace={}), body) == []


def test_input_schema_warning_points_at_the_input() -> None:
    body = '\n{"company": "Acme"}\n---\n{"output_schema": "memo", "input_schema": ' + (
        '{"type": "object", "properties": {"year": {"type": "integer"}}, "required": ["year"]}}'
    )
    request = build_request(body, processor="core", namespace={})
    assert request_warnings(request, body) == [
        "line 3: input is missing required field(s) of the input schema: year"
    ]


def test_validate_request_checks_any_request() -> None:
    validate_request(TaskRequest(processor="core", input="Q"))
    bad = TaskRequest(processor="core", input="Q", metadata={"k": ["not", "scalar"]})
    with pytest.raises(SpecError) as caught:
        validate_request(bad)
    assert caught.value.line is None
    assert str(caught.value) == "metadata values must be strings, numbers or booleans"


def test_every_example_cell_in_the_grammar_docs_builds() -> None:
    docs = Path(__file__).parents[2] / "docs" / "cell-grammar.md"
    blocks = re.findall(
        r"^( *)```\n\1(%%parallel[^\n]*)\n(.*?)^\1```", docs.read_text(), re.M | re.S
    )
    cells = [(magic_line, textwrap.dedent(body)) for _, magic_line, body in blocks]
    namespace = {"company": "Acme", "name": "Acme", "year": 2021, "peers": ("Globex", "Initech")}
    assert len(cells) >= 6
    for magic_line, body in cells:
        processor = (magic_line.split()[1:] or ["core"])[0]
        request = build_request(body, processor=processor, namespace=namespace)
        assert request_warnings(request, body) == [], magic_line
    json_example = next(body for _, body in cells if '"peers"' in body)
    assert build_request(json_example, processor="core", namespace=namespace).input == {
        "company": "Acme",
        "year": 2021,
        "peers": ["Globex", "Initech"],
        "note": "as of 2021",
    }
