"""TaskResult: field access, cached DataFrames, deterministic text, escaped HTML, plain data."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from parallel_nb.api.models import TaskOutput, TaskRequest, TaskRun, TaskRunResult
from parallel_nb.result import TaskResult

RUN = {
    "run_id": "trun_0123",
    "interaction_id": "trun_0123",
    "status": "completed",
    "is_active": False,
    "processor": "core",
    "created_at": "2025-08-06T00:52:58.619503Z",
    "modified_at": "2025-08-06T00:53:40.000000Z",
    "warnings": [{"type": "spec_validation_warning", "message": "prefer required fields"}],
    "error": None,
    "metadata": {"row": "7"},
    "taskgroup_id": None,
}
OUTPUT = {
    "type": "json",
    "content": {
        "company": "Stripe, Inc.",
        "founded": 2010,
        "founders": ["Patrick Collison", "John Collison"],
        "hq": {"city": "South San Francisco", "country": None},
    },
    "basis": [
        {
            "field": "company",
            "reasoning": "Legal name on its site.",
            "confidence": "high",
            "citations": [
                {"url": "https://stripe.com", "title": "Stripe", "excerpts": None},
                {"url": "https://en.wikipedia.org/wiki/Stripe,_Inc.", "excerpts": ["Stripe, Inc."]},
            ],
        },
        {"field": "founded", "reasoning": "Founded 2010.", "confidence": "medium", "citations": []},
    ],
    "output_schema": None,
}
REQUEST = TaskRequest(processor="core", input="Stripe: legal name, founding year, founders, HQ")


def make_result(**changes: Any) -> TaskResult:
    run = TaskRun.from_dict({**RUN, **changes.pop("run", {})})
    output = TaskOutput.from_dict(changes.pop("output", OUTPUT))
    return TaskResult(run=run, output=output, request=REQUEST, **changes)


def test_repr_is_a_summary_and_an_aligned_table() -> None:
    assert repr(make_result()) == (
        "TaskResult(run_id='trun_0123', status='completed', processor='core', fields=4, "
        "citations=2)\n"
        "  company     Stripe, Inc.\n"
        "  founded     2010\n"
        "  founders.0  Patrick Collison\n"
        "  founders.1  John Collison\n"
        "  hq.city     South San Francisco\n"
        "  hq.country  null"
    )


def test_text_plain_is_the_repr_and_html_is_escaped() -> None:
    result = make_result(output={**OUTPUT, "content": {"note": "<script>alert(1)</script>"}})
    data, metadata = result._repr_mimebundle_()
    assert data["text/plain"] == repr(result)
    assert "<script" not in data["text/html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in data["text/html"]
    assert metadata["parallel_nb"]["run_id"] == "trun_0123"


def test_display_metadata_names_the_run_but_not_the_request_text() -> None:
    _, metadata = make_result(cached=True)._repr_mimebundle_()
    provenance = metadata["parallel_nb"]
    assert provenance["processor"] == "core"
    assert provenance["cached"] is True
    assert len(provenance["request_sha256"]) == 64
    assert "Stripe" not in json.dumps(metadata)


def test_the_cached_flag_shows_in_the_html_summary_only() -> None:
    cached, fresh = make_result(cached=True), make_result()
    assert ">cached</span>" in cached._repr_mimebundle_()[0]["text/html"]
    assert ">cached</span>" not in fresh._repr_mimebundle_()[0]["text/html"]
    # The text stays the same, so a notebook test passes whether or not the cache answered.
    assert repr(cached) == repr(fresh)


def test_accessors() -> None:
    result = make_result()
    assert (result.run_id, result.status, result.processor) == ("trun_0123", "completed", "core")
    assert result.output == OUTPUT["content"]
    assert [b.field for b in result.basis] == ["company", "founded"]
    assert [w.message for w in result.warnings] == ["prefer required fields"]
    assert result.error is None
    assert result.cached is False


def test_getitem_reads_top_level_fields() -> None:
    result = make_result()
    assert result["founded"] == 2010
    assert result["hq"] == {"city": "South San Francisco", "country": None}
    assert "founders" in result
    assert "ceo" not in result
    with pytest.raises(KeyError) as info:
        result["ceo"]
    assert "no output field 'ceo'" in str(info.value)
    assert "'company', 'founded', 'founders', 'hq'" in str(info.value)


def test_getitem_on_text_or_missing_output_says_why() -> None:
    text = make_result(output={"type": "text", "content": "A report."})
    with pytest.raises(KeyError, match="text output, not fields"):
        text["company"]
    failed_run = TaskRun.from_dict({**RUN, "status": "failed", "error": {"message": "no sources"}})
    failed = TaskResult(run=failed_run, output=None)
    assert failed.error == "no sources"
    assert failed.output is None
    with pytest.raises(KeyError, match="no output"):
        failed["company"]
    assert failed.output_df.empty
    assert failed.basis_df.empty
    assert repr(failed) == (
        "TaskResult(run_id='trun_0123', status='failed', processor='core', fields=0, "
        "citations=0)\nerror: no sources"
    )


def test_dataframes_are_built_once() -> None:
    result = make_result()
    assert result.output_df is result.output_df
    assert result.basis_df is result.basis_df
    assert list(result.output_df["field"]) == [
        "company",
        "founded",
        "founders.0",
        "founders.1",
        "hq.city",
        "hq.country",
    ]
    assert len(result.basis_df) == 3


def test_to_dict_is_json_in_the_api_shape() -> None:
    result = make_result(cached=True)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["cached"] is True
    assert data["request"] == REQUEST.to_body()
    assert data["output"]["content"] == OUTPUT["content"]
    assert data["run"]["warnings"] == [
        {"type": "spec_validation_warning", "message": "prefer required fields", "detail": None}
    ]
    assert "raw" not in data["run"]
    again = TaskRunResult.from_dict(data)
    assert again.run == result.run
    assert again.output == result.task_output


def test_importing_the_result_module_does_not_import_pandas() -> None:
    code = "import sys, parallel_nb.result; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_result_from_the_emulator(client: httpx.Client) -> None:
    body = {"processor": "core", "input": "What was the GDP of France in 2023?"}
    run = client.post("/v1/tasks/runs", json=body).json()
    answer = TaskRunResult.from_dict(client.get(f"/v1/tasks/runs/{run['run_id']}/result").json())
    result = TaskResult(run=answer.run, output=answer.output)

    citations = sum(max(1, len(b.citations)) for b in answer.output.basis)
    assert len(result.basis_df) == citations
    assert repr(result).startswith(f"TaskResult(run_id={answer.run.run_id!r}, status='completed'")
    html = result._repr_mimebundle_()[0]["text/html"]
    assert html.count("<table") == 2
