"""Models built from wire JSON (reference §4, §5.2), event dispatch, and the create-run body."""

from __future__ import annotations

from typing import Any

import pytest

from parallel_nb.api.models import (
    Citation,
    ErrorEvent,
    FieldBasis,
    GroupRunsResponse,
    GroupStatusEvent,
    MessageEvent,
    StateEvent,
    StatsEvent,
    TaskGroup,
    TaskOutput,
    TaskRequest,
    TaskRun,
    TaskRunResult,
    UnknownEvent,
    parse_event,
)

RUN: dict[str, Any] = {
    "run_id": "trun_9907962f83aa4d9d98fd7f4bf745d654",
    "interaction_id": "trun_9907962f83aa4d9d98fd7f4bf745d654",
    "status": "running",
    "is_active": True,
    "warnings": [
        {"type": "spec_validation_warning", "message": "field 'x' is optional", "detail": None}
    ],
    "error": None,
    "processor": "core",
    "metadata": {"my_key": "my_value"},
    "taskgroup_id": None,
    "created_at": "2025-04-23T20:21:48.037943Z",
    "modified_at": "2025-04-23T20:21:49.000000Z",
    "some_future_field": {"nested": True},
}
OUTPUT: dict[str, Any] = {
    "type": "json",
    "content": {"gdp": "$3.1 trillion (2023)", "top_sectors": ["services", "industry"]},
    "basis": [
        {
            "field": "gdp",
            "citations": [{"url": "https://example.org/a", "title": "A", "excerpts": ["e1", "e2"]}],
            "reasoning": "r1",
            "confidence": "high",
        },
        {"field": "top_sectors", "citations": [], "reasoning": "r2", "confidence": ""},
        {
            "field": "top_sectors.0",
            "citations": [{"url": "https://example.org/b", "title": None, "excerpts": None}],
            "reasoning": "r3",
            "confidence": "low",
        },
    ],
    "mcp_tool_calls": None,
    "beta_fields": None,
    "output_schema": None,
}


def test_task_run_reads_every_documented_field_and_keeps_the_raw_dict() -> None:
    run = TaskRun.from_dict(RUN)

    assert run.run_id == RUN["run_id"]
    assert run.interaction_id == RUN["run_id"]
    assert (run.status, run.is_active, run.processor) == ("running", True, "core")
    assert run.created_at == "2025-04-23T20:21:48.037943Z"
    assert run.metadata == {"my_key": "my_value"}
    assert run.warnings[0].type == "spec_validation_warning"
    assert run.warnings[0].message == "field 'x' is optional"
    assert run.error is None and run.taskgroup_id is None
    assert run.raw["some_future_field"] == {"nested": True}
    assert "some_future_field" not in repr(run)
    assert not run.is_terminal


def test_task_run_tolerates_a_2025_payload_without_optional_keys() -> None:
    run = TaskRun.from_dict(
        {"run_id": "trun_1", "status": "failed", "processor": "base", "error": {"message": "boom"}}
    )

    assert run.interaction_id is None and run.created_at is None
    assert run.warnings == () and run.metadata == {}
    assert run.is_active is False  # derived from the status when the key is missing
    assert run.error is not None and run.error.message == "boom" and run.error.ref_id is None
    assert run.is_terminal


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("queued", False), ("running", False), ("action_required", False), ("cancelling", False),
     ("completed", True), ("failed", True), ("cancelled", True)],
)  # fmt: skip
def test_is_terminal(status: str, terminal: bool) -> None:
    assert TaskRun.from_dict({**RUN, "status": status}).is_terminal is terminal


def test_raw_does_not_take_part_in_equality() -> None:
    assert TaskRun.from_dict(RUN) == TaskRun.from_dict({**RUN, "some_future_field": 2})


def test_json_output_with_basis_citations_and_confidence() -> None:
    output = TaskOutput.from_dict(OUTPUT)

    assert output.type == "json"
    assert output.content == OUTPUT["content"]
    assert [b.field for b in output.basis] == ["gdp", "top_sectors", "top_sectors.0"]
    gdp, sectors, first = output.basis
    assert gdp == FieldBasis(
        field="gdp",
        reasoning="r1",
        citations=(Citation("https://example.org/a", "A", ("e1", "e2")),),
        confidence="high",
    )
    assert sectors.confidence is None  # "" on the wire means no confidence level
    assert first.citations == (Citation("https://example.org/b", None, ()),)


def test_json_content_sent_as_a_json_string_is_decoded() -> None:
    output = TaskOutput.from_dict({"type": "json", "content": '{"gdp": 3.1}', "basis": []})
    assert output.content == {"gdp": 3.1}


def test_text_output_and_auto_schema() -> None:
    schema = {"type": "json", "json_schema": {"type": "object", "properties": {}}}
    output = TaskOutput.from_dict(
        {"type": "text", "content": "# GDP\n", "basis": None, "output_schema": schema}
    )
    assert (output.type, output.content, output.basis) == ("text", "# GDP\n", ())
    assert output.output_schema == schema


def test_task_run_result() -> None:
    result = TaskRunResult.from_dict(
        {"run": {**RUN, "status": "completed", "is_active": False}, "output": OUTPUT}
    )
    assert result.run.status == "completed"
    assert result.output.content["gdp"] == "$3.1 trillion (2023)"  # type: ignore[index]


def test_group_models() -> None:
    status = {
        "num_task_runs": 2,
        "task_run_status_counts": {"queued": 1, "completed": 1},
        "is_active": True,
        "status_message": None,
        "modified_at": "2025-04-23T20:21:48Z",
    }
    group = TaskGroup.from_dict(
        {"taskgroup_id": "tgrp_1", "metadata": None, "created_at": "x", "status": status}
    )
    assert group.taskgroup_id == "tgrp_1" and group.metadata == {}
    assert group.status.num_task_runs == 2
    assert group.status.task_run_status_counts == {"queued": 1, "completed": 1}
    assert group.status.is_active

    runs = GroupRunsResponse.from_dict(
        {"status": status, "run_ids": ["trun_a", "trun_b"], "run_cursor": "7", "event_cursor": None}
    )
    assert runs.run_ids == ("trun_a", "trun_b")
    assert (runs.run_cursor, runs.event_cursor) == ("7", None)


# -- events --------------------------------------------------------------------------------


def test_state_event_with_final_output() -> None:
    event = parse_event(
        {"type": "task_run.state", "event_id": None, "input": None, "run": RUN, "output": OUTPUT}
    )
    assert isinstance(event, StateEvent)
    assert event.run.run_id == RUN["run_id"]
    assert event.output is not None and event.output.basis[0].field == "gdp"
    assert event.input is None and event.event_id is None


def test_stats_event() -> None:
    event = parse_event(
        {
            "type": "task_run.progress_stats",
            "progress_meter": 42.5,
            "source_stats": {
                "num_sources_considered": 223,
                "num_sources_read": 22,
                "sources_read_sample": ["http://a", "http://b"],
            },
        }
    )
    assert event == StatsEvent(42.5, 223, 22, ("http://a", "http://b"))


def test_stats_event_from_the_docs_sample_without_progress_meter() -> None:
    event = parse_event({"type": "task_run.progress_stats", "source_stats": {}})
    assert event == StatsEvent(None, None, None, ())


@pytest.mark.parametrize("kind", ["plan", "search", "exec_status", "tool", "extract", "new_kind"])
def test_every_progress_message_kind_is_a_message_event(kind: str) -> None:
    event = parse_event(
        {"type": f"task_run.progress_msg.{kind}", "message": "hi", "timestamp": "2025-08-06T00Z"}
    )
    assert event == MessageEvent(kind=kind, message="hi", timestamp="2025-08-06T00Z")


def test_group_status_and_error_events() -> None:
    status = {"num_task_runs": 1, "task_run_status_counts": {"completed": 1}, "is_active": False}
    event = parse_event({"type": "task_group_status", "event_id": "123", "status": status})
    assert isinstance(event, GroupStatusEvent)
    assert event.event_id == "123" and event.status.task_run_status_counts == {"completed": 1}

    error = parse_event({"type": "error", "error": {"ref_id": "r", "message": "stream failed"}})
    assert error == ErrorEvent(message="stream failed", ref_id="r")


@pytest.mark.parametrize(
    "data",
    [
        {"type": "task_run.something_new", "x": 1},
        {"no_type": True},
        {"type": "task_run.state"},  # known type without its run
        {"type": "task_run.state", "run": "not an object"},
        {"type": "task_group_status", "event_id": "1"},
    ],
)
def test_unknown_or_malformed_events_never_raise(data: dict[str, Any]) -> None:
    event = parse_event(data)
    assert isinstance(event, UnknownEvent)
    assert event.type == data.get("type", "")
    assert event.raw == data


# -- requests ------------------------------------------------------------------------------


def test_request_body_omits_unset_fields() -> None:
    assert TaskRequest("core", "What is JWST?").to_body() == {
        "processor": "core",
        "input": "What is JWST?",
    }


def test_request_body_with_every_field() -> None:
    spec = {"output_schema": {"type": "text", "description": "a summary"}}
    request = TaskRequest(
        processor="pro",
        input={"country": "France"},
        task_spec=spec,
        metadata={"k": "v"},
        source_policy={"include_domains": ["wikipedia.org"]},
        previous_interaction_id="trun_0",
        location="FR",
        enable_events=False,
        webhook={"url": "https://example.org/hook"},
    )
    assert request.to_body() == {
        "processor": "pro",
        "input": {"country": "France"},
        "task_spec": spec,
        "metadata": {"k": "v"},
        "source_policy": {"include_domains": ["wikipedia.org"]},
        "previous_interaction_id": "trun_0",
        "advanced_settings": {"location": "FR"},
        "enable_events": False,
        "webhook": {"url": "https://example.org/hook"},
    }


@pytest.mark.parametrize(
    ("options", "betas"),
    [
        ({}, ["field-basis-2025-11-25"]),
        ({"enable_events": True}, ["events-sse-2025-07-24", "field-basis-2025-11-25"]),
        ({"enable_events": False}, ["events-sse-2025-07-24", "field-basis-2025-11-25"]),
        (
            {"enable_events": True, "webhook": {"url": "https://x.org"}},
            ["events-sse-2025-07-24", "webhook-2025-08-12", "field-basis-2025-11-25"],
        ),
    ],
)
def test_beta_features(options: dict[str, Any], betas: list[str]) -> None:
    assert TaskRequest("core", "q", **options).beta_features() == betas
