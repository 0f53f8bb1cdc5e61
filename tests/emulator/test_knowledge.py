"""The emulator's knowledge base: fixture matching, projection onto schemas, placeholders."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from parallel.types import TaskRunJsonOutput, TaskRunTextOutput

from parallel_nb.api.processors import PROCESSORS, get_processor
from parallel_nb.api.validation import normalize_output_schema
from parallel_nb.emulator.knowledge import (
    FIXTURE_COMPANIES,
    MISSING_TEXT,
    NO_MATCH_MESSAGE,
    PLACEHOLDER_TEXT,
    Answer,
    FixtureError,
    Knowledge,
    infer_schema,
)

CORE = get_processor("core")
PRO = get_processor("pro")
FRANCE = "What was the GDP of France in 2023?"
JWST = "Write a research report on the James Webb Space Telescope"

# Inputs the notebooks and docs use; each must reach its fixture.
TRIGGERS: dict[str, str | dict[str, Any]] = {
    "france-gdp-2023": FRANCE,
    "james-webb-space-telescope": JWST,
    "scripted-failure": "Research Acme Corp (emulator: fail)",
    # Hostile web content for the render-path security tests (tests/view/test_hostile.py).
    "hostile-content": {"company": "emulator: hostile"},
    "hostile-failure": "Research Acme Corp (emulator: hostile-fail)",
    # FIXTURE_COMPANIES is what demos, tests and benches rely on: each must reach its profile.
    **{f"company-{name.lower()}": {"company": name} for name in FIXTURE_COMPANIES},
}


@pytest.fixture(scope="module")
def kb() -> Knowledge:
    return Knowledge.load()


def json_schema(properties: dict[str, Any], **root: Any) -> dict[str, Any]:
    return normalize_output_schema(
        {"type": "json", "json_schema": {"type": "object", "properties": properties, **root}}
    )


def answer(
    kb: Knowledge,
    input: str | dict[str, Any],
    schema: dict[str, Any],
    processor: Any = CORE,
    seed: int = 0,
) -> Answer:
    return kb.answer(
        input=input, output_schema=schema, processor=processor, rng=random.Random(seed)
    )


def basis(ans: Answer) -> dict[str, dict[str, Any]]:
    assert ans.output is not None
    return {entry["field"]: entry for entry in ans.output["basis"]}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- matching ---------------------------------------------------------------------------------


def test_every_documented_trigger_reaches_its_fixture(kb: Knowledge) -> None:
    assert {f.id for f in kb.fixtures} == set(TRIGGERS)
    for fixture_id, input in TRIGGERS.items():
        matched = kb.match(input, CORE)
        assert matched is not None and matched.id == fixture_id, input


def test_keywords_match_whole_words_only(tmp_path: Path) -> None:
    write(tmp_path / "apple.json", {"id": "apple", "match": {"keywords": ["apple"]}})
    kb = Knowledge.load(tmp_path)
    assert kb.match("Is pineapple a fruit?") is None
    assert kb.match("APPLE's revenue in 2024").id == "apple"
    assert kb.match({"fruit": "apple"}).id == "apple"
    assert kb.match({"apple_count": 3}) is None  # "apple_count" is one word


def test_object_input_matches_on_keys_and_values(tmp_path: Path) -> None:
    write(tmp_path / "f.json", {"id": "f", "match": {"keywords": ["ticker", "acme corp"]}})
    kb = Knowledge.load(tmp_path)
    assert kb.match({"ticker": "ACME", "name": "Acme   Corp"}).id == "f"
    assert kb.match({"name": "Acme Corp"}) is None


def test_more_keywords_win_and_user_fixtures_win_ties(tmp_path: Path) -> None:
    write(
        tmp_path / "mine.json",
        [
            {"id": "stripe-ceo", "match": {"keywords": ["stripe", "ceo"]}},
            {"id": "my-stripe", "match": {"keywords": ["stripe"]}},
        ],
    )
    kb = Knowledge.load([tmp_path / "mine.json"])
    assert kb.match("Who is the CEO of Stripe?").id == "stripe-ceo"
    assert kb.match("Stripe headquarters").id == "my-stripe"  # ties with company-stripe
    assert Knowledge.load().match("Stripe headquarters").id == "company-stripe"


def test_processor_filter_uses_name_or_tier(tmp_path: Path) -> None:
    fixture = {"id": "deep", "match": {"keywords": ["stripe"], "processors": ["ultra"]}}
    kb = Knowledge.load(write(tmp_path / "deep.json", fixture))
    assert kb.match("Stripe", get_processor("ultra-fast")).id == "deep"
    assert kb.match("Stripe", get_processor("pro")).id == "company-stripe"


def test_user_fixture_with_builtin_id_replaces_it(tmp_path: Path) -> None:
    fixture = {"id": "company-stripe", "match": {"keywords": ["stripe"]}, "facts": {"ceo": "X"}}
    kb = Knowledge.load(write(tmp_path / "s.json", fixture))
    assert [f.id for f in kb.fixtures].count("company-stripe") == 1
    ans = answer(kb, "Stripe", json_schema({"ceo": {"type": "string"}}))
    assert ans.output["content"] == {"ceo": "X"}


# --- projection onto JSON schemas --------------------------------------------------------------


def test_aliases_and_name_normalization_find_facts(kb: Knowledge) -> None:
    schema = json_schema(
        {
            "hq": {"type": "string"},
            "Headquarters City": {"type": "string"},
            "CEO-name": {"type": "string"},
            "year_founded": {"type": "integer"},
        }
    )
    ans = answer(kb, {"company": "Airbnb"}, schema)
    assert ans.output["content"] == {
        "hq": "San Francisco, California, US",
        "Headquarters City": "San Francisco, California, US",
        "CEO-name": "Brian Chesky",
        "year_founded": 2008,
    }
    entry = basis(ans)["hq"]
    assert entry["confidence"] == "high"
    assert entry["citations"][0]["url"] == "https://en.wikipedia.org/wiki/Airbnb"
    assert ans.warnings == []


def test_values_conform_to_requested_types(kb: Knowledge) -> None:
    schema = json_schema(
        {
            "employees": {"type": "integer"},
            "employee_count": {"type": "string"},
            "founders": {"type": "string"},
            "founded_by": {"type": "array", "items": {"type": "string"}},
            "founded": {"type": "number"},
        }
    )
    content = answer(kb, {"company": "Nvidia"}, schema).output["content"]
    assert content["employees"] == 36000
    assert content["employee_count"] == "about 36,000 (January 2025)"
    assert content["founders"] == "Jensen Huang, Chris Malachowsky, Curtis Priem"
    assert content["founded_by"] == ["Jensen Huang", "Chris Malachowsky", "Curtis Priem"]
    assert content["founded"] == 1993
    gdp = answer(kb, FRANCE, json_schema({"gdp": {"type": "number"}})).output["content"]
    assert gdp == {"gdp": 3_030_000_000_000}


def test_list_fields_get_per_element_basis(kb: Knowledge) -> None:
    schema = json_schema({"founders": {"type": "array", "items": {"type": "string"}}})
    ans = answer(kb, {"company": "Stripe"}, schema)
    assert ans.output["content"]["founders"] == ["Patrick Collison", "John Collison"]
    assert list(basis(ans)) == ["founders", "founders.0", "founders.1"]
    assert basis(ans)["founders.1"]["citations"] == basis(ans)["founders"]["citations"] != []


def test_nested_objects_and_lists_of_objects_use_dot_paths(kb: Knowledge) -> None:
    schema = json_schema(
        {
            "mirror": {
                "type": "object",
                "properties": {"diameter": {"type": "number"}, "segments": {"type": "integer"}},
            },
            "instruments": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        }
    )
    ans = answer(kb, JWST, schema)
    content = ans.output["content"]
    assert content["mirror"] == {"diameter": 6.5, "segments": 18}
    assert [i["name"] for i in content["instruments"]][:3] == ["NIRCam", "NIRSpec", "MIRI"]
    fields = list(basis(ans))
    assert fields[:3] == ["mirror", "mirror.diameter", "mirror.segments"]
    assert {"instruments", "instruments.0", "instruments.0.name", "instruments.3.name"} <= set(
        fields
    )
    jsonschema.validate(content, schema["json_schema"])


def test_missing_nested_member_is_a_placeholder_with_a_warning(kb: Knowledge) -> None:
    schema = json_schema(
        {"mirror": {"type": "object", "properties": {"focal_length": {"type": "string"}}}}
    )
    ans = answer(kb, JWST, schema)
    assert ans.output["content"] == {"mirror": {"focal_length": MISSING_TEXT}}
    assert basis(ans)["mirror.focal_length"]["confidence"] == "low"
    assert basis(ans)["mirror.focal_length"]["citations"] == []
    assert ans.warnings[0]["detail"]["fields"] == ["mirror.focal_length"]


def test_enum_nullable_and_pydantic_refs(kb: Knowledge) -> None:
    schema = json_schema(
        {
            "industry": {"type": "string", "enum": ["Retail", "Semiconductors"]},
            "ceo": {"type": ["string", "null"]},
            "stock_ticker": {"type": ["string", "null"]},
            "hq": {"$ref": "#/$defs/Place"},
            "cfo": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        **{"$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    )
    ans = answer(kb, {"company": "Nvidia"}, schema)
    content = ans.output["content"]
    # The industry fact is not one of the enum values: placeholder = first listed value.
    assert content["industry"] == "Retail"
    assert content["ceo"] == "Jensen Huang"
    assert content["stock_ticker"] is None and content["cfo"] is None
    assert content["hq"] == {"city": MISSING_TEXT}  # a string fact cannot fill an object
    assert set(ans.warnings[0]["detail"]["fields"]) == {"industry", "stock_ticker", "hq", "cfo"}
    jsonschema.validate(content, schema["json_schema"])


def test_enum_matches_case_insensitively(tmp_path: Path) -> None:
    fixture = {"id": "t", "match": {"keywords": ["acme"]}, "facts": {"size": "LARGE"}}
    kb = Knowledge.load(write(tmp_path / "t.json", fixture))
    schema = json_schema({"size": {"type": "string", "enum": ["small", "large"]}})
    assert answer(kb, "acme", schema).output["content"] == {"size": "large"}


def test_json_output_validates_with_the_sdk_model(kb: Knowledge) -> None:
    schema = json_schema({"ceo": {"type": "string"}, "founders": {"type": "array"}})
    output = answer(kb, {"company": "Canva"}, schema).output
    parsed = TaskRunJsonOutput.model_validate(output)
    assert parsed.basis[0].field == "ceo" and parsed.output_schema is None


# --- text and auto modes -----------------------------------------------------------------------


def test_text_schema_returns_the_report_with_one_output_basis(kb: Knowledge) -> None:
    ans = answer(kb, FRANCE, normalize_output_schema("A short report"))
    output = ans.output
    assert output["type"] == "text" and "0.9%" in output["content"]
    assert [b["field"] for b in output["basis"]] == ["output"]
    urls = [c["url"] for c in output["basis"][0]["citations"]]
    assert "https://www.insee.fr/en/statistiques/7760690" in urls
    assert len(urls) == len(set(urls))
    TaskRunTextOutput.model_validate(output)


def test_text_report_is_built_from_facts_when_the_fixture_has_none(kb: Knowledge) -> None:
    content = answer(kb, {"company": "Figma"}, {"type": "text"}).output["content"]
    assert "**Ceo:** Dylan Field" in content
    assert "(https://en.wikipedia.org/wiki/Figma)" in content


def test_auto_schema_on_premium_is_json_with_inferred_schema(kb: Knowledge) -> None:
    output = answer(kb, JWST, {"type": "auto"}, processor=get_processor("ultra")).output
    assert output["type"] == "json"
    assert output["content"]["launch"]["date"] == "2021-12-25"
    schema = output["output_schema"]
    assert schema["type"] == "json"
    assert schema["json_schema"]["additionalProperties"] is False
    jsonschema.validate(output["content"], schema["json_schema"])
    fields = {b["field"] for b in output["basis"]}
    assert {"launch.date", "instruments.0.name", "key_discoveries.3.title"} <= fields
    TaskRunJsonOutput.model_validate(output)


def test_auto_schema_below_pro_is_text(kb: Knowledge) -> None:
    output = answer(kb, JWST, {"type": "auto"}, processor=get_processor("core-fast")).output
    assert output["type"] == "text"
    assert output["content"].startswith("# The James Webb Space Telescope")


def test_auto_without_auto_content_uses_the_facts(kb: Knowledge) -> None:
    output = answer(kb, {"company": "Shopify"}, {"type": "auto"}, processor=PRO).output
    assert output["content"]["ceo"] == "Tobias Lütke"
    assert "founders.2" in {b["field"] for b in output["basis"]}
    jsonschema.validate(output["content"], output["output_schema"]["json_schema"])


# --- placeholders ------------------------------------------------------------------------------


def test_unmatched_input_gets_an_honest_schema_conformant_placeholder(kb: Knowledge) -> None:
    schema = json_schema(
        {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "active": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"type": "string", "enum": ["x", "y"]},
            "note": {"type": ["string", "null"]},
            "owner": {"type": "object", "properties": {"email": {"type": "string"}}},
        }
    )
    ans = answer(kb, "Tell me about the Zorblax Widget Company", schema)
    assert ans.fixture_id is None and ans.error is None
    assert ans.output["content"] == {
        "name": PLACEHOLDER_TEXT,
        "count": 0,
        "ratio": 0,
        "active": False,
        "tags": [],
        "kind": "x",
        "note": None,
        "owner": {"email": PLACEHOLDER_TEXT},
    }
    assert set(basis(ans)) == {*schema["json_schema"]["properties"], "owner.email"}
    for entry in ans.output["basis"]:
        assert entry["confidence"] == "low" and entry["citations"] == []
        assert "placeholder" in entry["reasoning"].lower()
        assert "not research" in entry["reasoning"]
    assert ans.warnings == [
        {
            "type": "warning",
            "message": NO_MATCH_MESSAGE,
            "detail": {
                "input": "Tell me about the Zorblax Widget Company",
                "hint": ans.warnings[0]["detail"]["hint"],
            },
        }
    ]
    assert ans.trace.sources == []
    assert any("Zorblax" in search for search in ans.trace.searches)
    assert "Zorblax" in ans.trace.plan[0]
    jsonschema.validate(ans.output["content"], schema["json_schema"])


def test_unmatched_text_and_auto_placeholders_cite_nothing(kb: Knowledge) -> None:
    text = answer(kb, "Zorblax", {"type": "text"}).output
    assert text["type"] == "text" and "placeholder" in text["content"]
    assert text["basis"][0]["citations"] == [] and text["basis"][0]["confidence"] == "low"
    auto = answer(kb, "Zorblax", {"type": "auto"}, processor=PRO).output
    assert auto["content"] == {"summary": PLACEHOLDER_TEXT}
    assert auto["basis"][0]["citations"] == []
    jsonschema.validate(auto["content"], auto["output_schema"]["json_schema"])


def test_fact_missing_from_a_matched_fixture_is_named_in_a_warning(kb: Knowledge) -> None:
    schema = json_schema({"ceo": {"type": "string"}, "employees": {"type": "integer"}})
    ans = answer(kb, {"company": "OpenAI"}, schema)
    assert ans.output["content"] == {"ceo": "Sam Altman", "employees": 0}
    assert basis(ans)["employees"]["confidence"] == "low"
    assert basis(ans)["employees"]["citations"] == []
    assert len(ans.warnings) == 1
    assert "employees" in ans.warnings[0]["message"]
    assert ans.warnings[0]["detail"] == {"fixture_id": "company-openai", "fields": ["employees"]}


# --- failure, determinism, loading ---------------------------------------------------------------


def test_scripted_failure(kb: Knowledge) -> None:
    for schema in (json_schema({"ceo": {"type": "string"}}), {"type": "text"}):
        ans = answer(kb, {"company": "Stripe", "note": "emulator: fail"}, schema)
        assert ans.output is None and ans.fixture_id == "scripted-failure"
        assert "failed" in ans.error
    assert kb.match("the emulator will not fail here") is None


def test_answers_are_deterministic_for_a_seed(kb: Knowledge) -> None:
    for input in (FRANCE, "Zorblax quarterly revenue"):
        first = answer(kb, input, {"type": "auto"}, processor=PRO, seed=7)
        again = answer(Knowledge.load(), input, {"type": "auto"}, processor=PRO, seed=7)
        assert first == again
    counts = {
        (a.trace.sources_read, a.trace.sources_considered, tuple(a.trace.searches))
        for a in (answer(kb, "Zorblax quarterly revenue", {"type": "text"}, seed=s)
                  for s in range(20))
    }  # fmt: skip
    assert len(counts) > 1  # the rng does drive the trace


def test_answers_do_not_share_state_with_the_fixtures(kb: Knowledge) -> None:
    schema = json_schema({"founders": {"type": "array", "items": {"type": "string"}}})
    first = answer(kb, {"company": "Stripe"}, schema)
    first.output["content"]["founders"].append("Mallory")
    first.output["basis"][0]["citations"][0]["excerpts"].append("tampered")
    again = answer(kb, {"company": "Stripe"}, schema)
    assert again.output["content"]["founders"] == ["Patrick Collison", "John Collison"]
    assert "tampered" not in again.output["basis"][0]["citations"][0]["excerpts"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"match": {"keywords": ["x"]}}), 'needs an "id"'),
        (json.dumps({"id": "a"}), 'needs a "match" object'),
        (json.dumps({"id": "a", "match": {}}), "at least one keyword or a regex"),
        (json.dumps({"id": "a", "match": {"regex": "("}}), "not a valid regular expression"),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"]}, "fact": {}}),
            "unknown key(s) 'fact'",
        ),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"], "processors": ["turbo"]}}),
            "unknown processor(s): turbo",
        ),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"]},
                        "facts": {"ceo": {"value": "X", "confidence": "certain"}}}),
            'fact "ceo": "confidence" must be one of high, medium, low',
        ),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"]},
                        "facts": {"ceo": {"confidence": "high"}}}),
            'fact "ceo" looks like a full fact but has no "value"',
        ),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"]},
                        "facts": {"ceo": {"value": "X", "citations": [{"url": " "}]}}}),
            "citation url must be a non-empty string",
        ),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"]},
                        "facts": {"hq": "X", "city": {"value": "Y", "aliases": ["HQ"]}}}),
            '"HQ" names both fact "hq" and fact "city"',
        ),
        (
            json.dumps({"id": "a", "match": {"keywords": ["x"]},
                        "auto": {"items": [{"a": 1}, {"b": 2}]}}),
            "the objects in a list must have the same keys",
        ),
        (json.dumps({"id": "a", "match": {"keywords": ["x"]}, "fail": "boom"}), '"fail" must be'),
    ],
)  # fmt: skip
def test_bad_user_fixture_names_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FixtureError) as info:
        Knowledge.load([path])
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_fixture_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match="no such fixture file or directory"):
        Knowledge.load(tmp_path / "nope.json")


def test_shorthand_facts_and_directories_load(tmp_path: Path) -> None:
    write(tmp_path / "a.json", {"id": "a", "match": {"keywords": ["acme"]},
                                "facts": {"stats": {"revenue": "US$5 million"}}})  # fmt: skip
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    kb = Knowledge.load(tmp_path)
    schema = json_schema(
        {"stats": {"type": "object", "properties": {"revenue": {"type": "integer"}}}}
    )
    ans = answer(kb, "acme", schema)
    assert ans.output["content"] == {"stats": {"revenue": 5_000_000}}
    assert basis(ans)["stats"]["confidence"] == "medium"


# --- the built-in fixtures themselves ----------------------------------------------------------


def _walk_schema_fields(kb: Knowledge, fixture_id: str) -> dict[str, Any]:
    """A JSON schema asking for every fact of a fixture, typed after its value."""
    fixture = next(f for f in kb.fixtures if f.id == fixture_id)
    return json_schema({fact.name: infer_schema(fact.value) for fact in fixture.facts})


@pytest.mark.parametrize("fixture_id", sorted(TRIGGERS))
@pytest.mark.parametrize("processor", ["lite", "core", "pro", "ultra8x-fast"])
def test_builtin_fixture_outputs_are_valid(kb: Knowledge, fixture_id: str, processor: str) -> None:
    proc = PROCESSORS[processor]
    input = TRIGGERS[fixture_id]
    schemas = [_walk_schema_fields(kb, fixture_id), {"type": "text"}, {"type": "auto"}]
    # The hostile fixtures script unsafe URLs on purpose; the others cite real web pages.
    web = not fixture_id.startswith("hostile-")
    for schema in schemas:
        ans = answer(kb, input, schema, processor=proc)
        assert ans.fixture_id == fixture_id
        assert all(url.startswith(("http://", "https://")) or not web for url in ans.trace.sources)
        assert ans.trace.plan and ans.trace.searches and ans.trace.results
        assert 0 < ans.trace.sources_read <= ans.trace.sources_considered
        if ans.output is None:
            assert ans.error
            continue
        assert ans.warnings == []
        for entry in ans.output["basis"]:
            assert entry["confidence"] in {"high", "medium", "low"}
            assert entry["reasoning"]
            for citation in entry["citations"]:
                assert citation["url"].startswith(("http://", "https://")) or not web
        if ans.output["type"] == "json":
            declared = ans.output["output_schema"]
            target = declared["json_schema"] if declared else schema["json_schema"]
            jsonschema.validate(ans.output["content"], target)
            TaskRunJsonOutput.model_validate(ans.output)
        else:
            assert ans.output["content"].startswith("#")
            assert ans.output["basis"][0]["citations"]
            TaskRunTextOutput.model_validate(ans.output)


def test_the_documented_example_fixture_works(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "fixtures.md").read_text(encoding="utf-8")
    example = doc.split("## A complete example", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    kb = Knowledge.load(write(tmp_path / "acme.json", json.loads(example)))
    schema = json_schema(
        {
            "hq": {"type": "string"},
            "headcount": {"type": "integer"},
            "products": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
            "ceo": {"type": "string"},
        }
    )
    ans = answer(kb, {"company": "Acme Robotics"}, schema)
    assert ans.output["content"] == {
        "hq": "Pittsburgh, Pennsylvania, US",
        "headcount": 250,
        "products": [{"name": "Picker One"}, {"name": "Sorter X"}],
        "ceo": MISSING_TEXT,
    }
    assert ans.warnings[0]["detail"]["fields"] == ["ceo"]
    assert answer(kb, "Acme Robotics outage report", schema).error is not None
    auto = answer(kb, "Acme Robotics", {"type": "auto"}, processor=PRO).output
    assert auto["content"]["products"][1]["launched"] == 2024
