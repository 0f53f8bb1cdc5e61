"""The emulator speaks the real protocol: the official SDK (strict mode) drives every endpoint.

Every client here is built with ``_strict_response_validation=True``, so a response whose shape
drifts from the SDK's models fails as ``APIResponseValidationError`` instead of being constructed
leniently. The SSE tests also read the raw bytes, because the SDK's decoder crashes on frames the
real server never sends (``id:``/``retry:`` fields, comments after an id, data-less frames).
"""

from __future__ import annotations

import json
import re
import time
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import parallel
import pytest
from parallel.types import (
    ErrorEvent,
    FieldBasis,
    RunInput,
    TaskGroup,
    TaskGroupRunResponse,
    TaskGroupStatusEvent,
    TaskRun,
    TaskRunEvent,
    TaskRunEventsResponse,
    TaskRunJsonOutput,
    TaskRunProgressMessageEvent,
    TaskRunProgressStatsEvent,
    TaskRunResult,
    TaskRunTextOutput,
)

from parallel_nb.emulator import EmulatorHandle, start_emulator

KEY = "test-key"
# Read timeout for every call that may block: a hang becomes an error instead of a stuck test.
CALL_TIMEOUT = 30.0
CONFIDENCES = {"high", "medium", "low"}
UNKNOWN_RUN = "trun_" + "0" * 32
UNKNOWN_GROUP = "tgrp_" + "0" * 48
# Inputs the built-in fixtures answer (parallel_nb/emulator/fixtures/); others get a placeholder
# with no citations, which would make the basis checks meaningless.
FAILING_INPUT = "emulator: fail (scripted failure, see fixtures/failure.json)"
AUTO_INPUT = "Tell me about the James Webb Space Telescope"

COMPANY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "founded": {"type": "string", "description": "Year the company was founded"},
        "ceo": {"type": "string", "description": "Name of the current CEO"},
        "headquarters": {"type": "string", "description": "City of the headquarters"},
    },
    "required": ["founded", "ceo", "headquarters"],
    "additionalProperties": False,
}
JSON_SPEC: dict[str, Any] = {"output_schema": {"type": "json", "json_schema": COMPANY_SCHEMA}}
TEXT_SPEC: dict[str, Any] = {
    "output_schema": {"type": "text", "description": "A short research brief with citations"}
}


def _type_literals(*models: type[Any]) -> frozenset[str]:
    """The ``type`` discriminator values the SDK's event models accept."""
    annotations = (model.model_fields["type"].annotation for model in models)
    return frozenset(value for annotation in annotations for value in typing.get_args(annotation))


RUN_EVENT_TYPES = _type_literals(
    TaskRunEvent, TaskRunProgressMessageEvent, TaskRunProgressStatsEvent, ErrorEvent
)
GROUP_EVENT_TYPES = _type_literals(TaskGroupStatusEvent, TaskRunEvent, ErrorEvent)
GROUP_RUNS_TYPES = _type_literals(TaskRunEvent, ErrorEvent)


# --------------------------------------------------------------------------- fixtures


def _sdk(base_url: str, api_key: str = KEY, **options: Any) -> parallel.Parallel:
    # No SDK retries: a 5xx or 408 from the emulator must surface, not be papered over.
    options.setdefault("max_retries", 0)
    return parallel.Parallel(
        api_key=api_key, base_url=base_url, _strict_response_validation=True, **options
    )


@pytest.fixture
def sdk(emulator: EmulatorHandle) -> Iterator[parallel.Parallel]:
    client = _sdk(emulator.base_url, emulator.api_key)
    yield client
    client.close()


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[EmulatorHandle]:
    """Runs take seconds here (``pro`` >= 6 s) and streams are cut after one real second."""
    with start_emulator(time_scale=0.05, api_key=KEY, stream_max_seconds=1.0) as handle:
        yield handle


@pytest.fixture
def slow_sdk(slow_emulator: EmulatorHandle) -> Iterator[parallel.Parallel]:
    client = _sdk(slow_emulator.base_url)
    yield client
    client.close()


def _wait_finished(client: parallel.Parallel, run_id: str) -> TaskRun:
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        run = client.task_run.retrieve(run_id)
        if not run.is_active:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {CALL_TIMEOUT}s"
        time.sleep(0.05)


def _wait_group_finished(client: parallel.Parallel, group_id: str) -> TaskGroup:
    deadline = time.monotonic() + CALL_TIMEOUT
    while True:
        group = client.task_group.retrieve(group_id)
        if not group.status.is_active:
            return group
        assert time.monotonic() < deadline, f"group {group_id} still active: {group.status}"
        time.sleep(0.05)


def _assert_basis_entry(entry: FieldBasis) -> None:
    assert entry.reasoning, f"basis for {entry.field!r} has no reasoning"
    assert entry.citations, f"basis for {entry.field!r} has no citations"
    for citation in entry.citations:
        assert citation.url.startswith(("http://", "https://")), citation.url
    assert entry.confidence in CONFIDENCES, entry.confidence


def _run_events(client: parallel.Parallel, run_id: str) -> list[TaskRunEventsResponse]:
    return list(client.task_run.events(run_id, timeout=CALL_TIMEOUT))


def _assert_stream_ends_with_result(events: Sequence[object], result: TaskRunResult) -> None:
    first, last = events[0], events[-1]
    assert isinstance(first, TaskRunEvent), f"stream must start with task_run.state, got {first}"
    assert isinstance(last, TaskRunEvent), f"stream must end with task_run.state, got {last}"
    assert last.run.status == "completed"
    assert last.output is not None
    assert last.output.to_dict() == result.output.to_dict()


# --------------------------------------------------------------------------- single runs


def test_json_spec_run_round_trip(sdk: parallel.Parallel) -> None:
    run = sdk.task_run.create(
        input={"company": "Stripe"},
        processor="core",
        task_spec=JSON_SPEC,
        metadata={"row": "7", "batch": 3},
    )
    assert isinstance(run, TaskRun)
    assert run.run_id.startswith("trun_")
    assert run.interaction_id == run.run_id
    assert (run.status, run.is_active, run.processor) == ("queued", True, "core")
    assert run.created_at == run.modified_at
    assert run.metadata == {"row": "7", "batch": 3}
    assert run.task_group_id is None

    fetched = sdk.task_run.retrieve(run.run_id)
    assert fetched.run_id == run.run_id and fetched.processor == "core"

    submitted = sdk.task_run.retrieve_input(run.run_id)
    assert isinstance(submitted, RunInput)
    assert submitted.input == {"company": "Stripe"}
    assert submitted.processor == "core"
    assert submitted.metadata == {"row": "7", "batch": 3}
    assert submitted.task_spec is not None
    assert submitted.task_spec.to_dict()["output_schema"]["json_schema"] == COMPANY_SCHEMA

    result = sdk.task_run.result(run.run_id, api_timeout=30, timeout=CALL_TIMEOUT)
    assert isinstance(result, TaskRunResult)
    assert (result.run.status, result.run.is_active) == ("completed", False)
    assert isinstance(result.output, TaskRunJsonOutput)
    assert set(result.output.content) == set(COMPANY_SCHEMA["properties"])
    assert result.output.output_schema is None, "output_schema is only filled for auto runs"
    basis = {entry.field: entry for entry in result.output.basis}
    assert set(COMPANY_SCHEMA["properties"]) <= set(basis)
    for entry in result.output.basis:
        _assert_basis_entry(entry)

    _assert_stream_ends_with_result(_run_events(sdk, run.run_id), result)


@pytest.mark.parametrize(
    "task_spec",
    [TEXT_SPEC, {"output_schema": "A short research brief with citations"}],
    ids=["text-schema", "bare-string"],
)
def test_text_spec_run_returns_markdown_with_one_basis_entry(
    sdk: parallel.Parallel, task_spec: dict[str, Any]
) -> None:
    run = sdk.task_run.create(input="What does Stripe sell?", processor="base", task_spec=task_spec)
    result = sdk.task_run.result(run.run_id, api_timeout=30, timeout=CALL_TIMEOUT)

    assert isinstance(result.output, TaskRunTextOutput)
    assert result.output.content.strip()
    assert [entry.field for entry in result.output.basis] == ["output"]
    _assert_basis_entry(result.output.basis[0])
    _assert_stream_ends_with_result(_run_events(sdk, run.run_id), result)


def test_auto_run_on_premium_processor_returns_json_with_its_schema(
    sdk: parallel.Parallel,
) -> None:
    run = sdk.task_run.create(input=AUTO_INPUT, processor="pro")
    assert sdk.task_run.retrieve_input(run.run_id).task_spec is None
    result = sdk.task_run.result(run.run_id, api_timeout=30, timeout=CALL_TIMEOUT)

    output = result.output
    assert isinstance(output, TaskRunJsonOutput)
    assert output.output_schema is not None, "auto runs report the schema they invented"
    assert output.output_schema["type"] == "json"
    properties = output.output_schema["json_schema"]["properties"]
    assert output.content and set(output.content) <= set(properties)
    assert output.basis
    for entry in output.basis:
        # Nested basis uses dot paths whose first segment is a top-level content key.
        assert entry.field.split(".")[0] in output.content, entry.field
        _assert_basis_entry(entry)
    _assert_stream_ends_with_result(_run_events(sdk, run.run_id), result)


def test_auto_run_below_pro_returns_text(sdk: parallel.Parallel) -> None:
    run = sdk.task_run.create(input="Who founded Stripe?", processor="lite")
    result = sdk.task_run.result(run.run_id, api_timeout=30, timeout=CALL_TIMEOUT)
    assert isinstance(result.output, TaskRunTextOutput)
    assert result.output.content.strip()


async def test_async_client_create_result_and_events(emulator: EmulatorHandle) -> None:
    async with parallel.AsyncParallel(
        api_key=emulator.api_key,
        base_url=emulator.base_url,
        _strict_response_validation=True,
        max_retries=0,
    ) as client:
        run = await client.task_run.create(
            input={"company": "Stripe"}, processor="core", task_spec=JSON_SPEC
        )
        result = await client.task_run.result(run.run_id, api_timeout=30, timeout=CALL_TIMEOUT)
        stream = await client.task_run.events(run.run_id, timeout=CALL_TIMEOUT)
        events = [event async for event in stream]

    assert isinstance(result.output, TaskRunJsonOutput)
    assert set(result.output.content) == set(COMPANY_SCHEMA["properties"])
    _assert_stream_ends_with_result(events, result)


# --------------------------------------------------------------------------- task groups


def test_task_group_end_to_end(sdk: parallel.Parallel) -> None:
    group = sdk.task_group.create(metadata={"job": "enrich"})
    assert isinstance(group, TaskGroup)
    assert group.task_group_id.startswith("tgrp_")
    assert group.metadata == {"job": "enrich"}
    assert group.status.num_task_runs == 0

    added = sdk.task_group.add_runs(
        group.task_group_id,
        inputs=[
            {"input": {"company": "Stripe"}, "processor": "lite"},
            {"input": {"company": "Anthropic"}, "processor": "lite"},
            # A run's own spec overrides the group default.
            {"input": "Summarise what Figma does", "processor": "base", "task_spec": TEXT_SPEC},
        ],
        default_task_spec=JSON_SPEC,
    )
    assert isinstance(added, TaskGroupRunResponse)
    assert len(added.run_ids) == 3 and len(set(added.run_ids)) == 3
    assert added.status.num_task_runs == 3

    finished = _wait_group_finished(sdk, group.task_group_id)
    assert finished.status.num_task_runs == 3
    assert finished.status.task_run_status_counts == {"completed": 3}

    with_payloads = list(
        sdk.task_group.get_runs(
            group.task_group_id, include_input=True, include_output=True, timeout=CALL_TIMEOUT
        )
    )
    assert all(isinstance(event, TaskRunEvent) for event in with_payloads)
    assert sorted(event.run.run_id for event in with_payloads) == sorted(added.run_ids)
    by_id = {event.run.run_id: event for event in with_payloads}
    for run_id in added.run_ids[:2]:
        event = by_id[run_id]
        assert event.event_id, "group run events carry a resumable event_id"
        assert event.run.task_group_id == group.task_group_id
        assert event.input is not None and event.input.processor == "lite"
        assert isinstance(event.output, TaskRunJsonOutput)
        assert set(event.output.content) == set(COMPANY_SCHEMA["properties"])
    assert isinstance(by_id[added.run_ids[2]].output, TaskRunTextOutput)

    bare = list(sdk.task_group.get_runs(group.task_group_id, timeout=CALL_TIMEOUT))
    assert len(bare) == 3
    assert all(event.input is None and event.output is None for event in bare)

    resumed = list(
        sdk.task_group.get_runs(
            group.task_group_id, last_event_id=bare[0].event_id, timeout=CALL_TIMEOUT
        )
    )
    assert [event.run.run_id for event in resumed] == [event.run.run_id for event in bare[1:]]

    events = list(sdk.task_group.events(group.task_group_id, timeout=CALL_TIMEOUT))
    statuses = [event for event in events if isinstance(event, TaskGroupStatusEvent)]
    assert statuses, "the group events stream reports the group status"
    assert statuses[-1].status.is_active is False
    finished_runs = {event.run.run_id for event in events if isinstance(event, TaskRunEvent)}
    assert finished_runs == set(added.run_ids)

    run = sdk.task_group.retrieve_run(added.run_ids[0], task_group_id=group.task_group_id)
    assert isinstance(run, TaskRun)
    assert (run.run_id, run.status, run.task_group_id) == (
        added.run_ids[0],
        "completed",
        group.task_group_id,
    )


# --------------------------------------------------------------------------- errors


def _assert_error_envelope(error: parallel.APIStatusError) -> None:
    body = error.body
    assert isinstance(body, dict) and body.get("type") == "error", body
    assert body["error"]["message"] and body["error"]["ref_id"], body


def test_wrong_api_key_raises_authentication_error(emulator: EmulatorHandle) -> None:
    with (
        _sdk(emulator.base_url, api_key="wrong-key") as client,
        pytest.raises(parallel.AuthenticationError) as caught,
    ):
        client.task_run.create(input="x", processor="lite")
    assert caught.value.status_code == 401
    _assert_error_envelope(caught.value)
    assert "wrong-key" not in str(caught.value), "errors must never echo the API key"


def test_unknown_processor_raises_permission_denied(sdk: parallel.Parallel) -> None:
    with pytest.raises(parallel.PermissionDeniedError) as caught:
        sdk.task_run.create(input="x", processor="vision_pro")
    assert caught.value.status_code == 403
    _assert_error_envelope(caught.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.task_run.retrieve(UNKNOWN_RUN),
        lambda client: client.task_run.retrieve_input(UNKNOWN_RUN),
        lambda client: client.task_run.result(UNKNOWN_RUN, api_timeout=1),
        lambda client: client.task_run.events(UNKNOWN_RUN),
        lambda client: client.task_group.retrieve(UNKNOWN_GROUP),
        lambda client: client.task_group.get_runs(UNKNOWN_GROUP),
    ],
    ids=["retrieve", "retrieve_input", "result", "events", "group-retrieve", "group-runs"],
)
def test_unknown_ids_raise_not_found(
    sdk: parallel.Parallel, call: Callable[[parallel.Parallel], object]
) -> None:
    with pytest.raises(parallel.NotFoundError) as caught:
        call(sdk)
    assert caught.value.status_code == 404


def test_spec_whose_root_is_not_an_object_raises_unprocessable(sdk: parallel.Parallel) -> None:
    array_root = {"type": "array", "items": {"type": "string"}}
    with pytest.raises(parallel.UnprocessableEntityError) as caught:
        sdk.task_run.create(
            input="x",
            processor="core",
            task_spec={"output_schema": {"type": "json", "json_schema": array_root}},
        )
    assert caught.value.status_code == 422
    _assert_error_envelope(caught.value)
    assert "object" in json.dumps(caught.value.body), "the error should say the root must be one"


def test_result_of_slow_run_times_out_with_408(slow_sdk: parallel.Parallel) -> None:
    run = slow_sdk.task_run.create(input="A long research question", processor="pro")
    with pytest.raises(parallel.APIStatusError) as caught:
        slow_sdk.task_run.result(run.run_id, api_timeout=1, timeout=CALL_TIMEOUT)
    # The SDK has no dedicated class for 408: it must arrive as the plain base class.
    assert type(caught.value) is parallel.APIStatusError
    assert caught.value.status_code == 408
    _assert_error_envelope(caught.value)
    assert slow_sdk.task_run.retrieve(run.run_id).is_active


# --------------------------------------------------------------------------- SSE framing


_FRAME_LINE = re.compile(r"\r\n|\r|\n")


def _strict_frames(raw: bytes) -> list[dict[str, Any]]:
    """Parse an SSE body, failing on anything but ``event: <type>`` + one ``data: <json>``."""
    text = raw.decode("utf-8")
    assert text.endswith(("\n\n", "\r\r", "\r\n\r\n")), f"stream ends mid-frame: {text[-200:]!r}"
    frames: list[list[str]] = [[]]
    for line in _FRAME_LINE.split(text):
        assert not line.startswith((":", "id:", "retry:")), f"forbidden SSE line {line!r}"
        if line:
            frames[-1].append(line)
        elif frames[-1]:
            frames.append([])
    payloads = []
    for frame in frames[:-1]:
        assert len(frame) == 2, f"frame must be one event: and one data: line, got {frame!r}"
        event_line, data_line = frame
        assert event_line.startswith("event: ") and data_line.startswith("data: "), frame
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == event_line.removeprefix("event: "), frame
        payloads.append(payload)
    return payloads


@dataclass(frozen=True)
class StreamCase:
    """One SSE endpoint: where to fetch it raw and how to open it with the SDK."""

    path: str
    params: dict[str, str]
    open_with_sdk: Callable[[parallel.Parallel], Iterable[Any]]
    known_types: frozenset[str]
    # A stream cut by the server's time limit ends at an unpredictable frame.
    deterministic: bool = True


def _run_case(run_id: str, prefix: str = "/v1") -> StreamCase:
    return StreamCase(
        path=f"{prefix}/tasks/runs/{run_id}/events",
        params={},
        open_with_sdk=lambda client: client.task_run.events(run_id, timeout=CALL_TIMEOUT),
        known_types=RUN_EVENT_TYPES,
    )


def _finished_run(client: parallel.Parallel, **create: Any) -> str:
    run = client.task_run.create(**create)
    _wait_finished(client, run.run_id)
    return run.run_id


def _finished_group(client: parallel.Parallel) -> tuple[str, TaskGroupRunResponse]:
    group = client.task_group.create()
    added = client.task_group.add_runs(
        group.task_group_id,
        inputs=[{"input": {"company": name}, "processor": "lite"} for name in ("Shopify", "Canva")],
        default_task_spec=JSON_SPEC,
    )
    _wait_group_finished(client, group.task_group_id)
    return group.task_group_id, added


def _json_run(client: parallel.Parallel, enable_events: bool) -> StreamCase:
    run_id = _finished_run(
        client,
        input={"company": "Stripe"},
        processor="core",
        task_spec=JSON_SPEC,
        enable_events=enable_events,
    )
    return _run_case(run_id)


def _text_run(client: parallel.Parallel, enable_events: bool) -> StreamCase:
    run_id = _finished_run(
        client,
        input="What does Figma do?",
        processor="base",
        task_spec=TEXT_SPEC,
        enable_events=enable_events,
    )
    return _run_case(run_id)


def _auto_run(client: parallel.Parallel, enable_events: bool) -> StreamCase:
    run_id = _finished_run(client, input=AUTO_INPUT, processor="pro", enable_events=enable_events)
    return _run_case(run_id)


def _failed_run(client: parallel.Parallel) -> StreamCase:
    run_id = _finished_run(client, input=FAILING_INPUT, processor="core", enable_events=True)
    return _run_case(run_id)


def _legacy_prefix_run(client: parallel.Parallel) -> StreamCase:
    run_id = _finished_run(client, input=AUTO_INPUT, processor="pro")
    return _run_case(run_id, prefix="/v1beta")


def _group_events(client: parallel.Parallel) -> StreamCase:
    group_id, _ = _finished_group(client)
    return StreamCase(
        path=f"/v1/tasks/groups/{group_id}/events",
        params={},
        open_with_sdk=lambda c: c.task_group.events(group_id, timeout=CALL_TIMEOUT),
        known_types=GROUP_EVENT_TYPES,
    )


def _group_runs(client: parallel.Parallel) -> StreamCase:
    group_id, _ = _finished_group(client)
    params = {"include_input": "true", "include_output": "true"}
    return StreamCase(
        path=f"/v1/tasks/groups/{group_id}/runs",
        params=params,
        open_with_sdk=lambda c: c.task_group.get_runs(
            group_id, include_input=True, include_output=True, timeout=CALL_TIMEOUT
        ),
        known_types=GROUP_RUNS_TYPES,
    )


STREAM_CASES: dict[str, Callable[[parallel.Parallel], StreamCase]] = {
    "json-events": lambda c: _json_run(c, enable_events=True),
    "json-no-events": lambda c: _json_run(c, enable_events=False),
    "text-events": lambda c: _text_run(c, enable_events=True),
    "text-no-events": lambda c: _text_run(c, enable_events=False),
    "auto-events": lambda c: _auto_run(c, enable_events=True),
    "auto-no-events": lambda c: _auto_run(c, enable_events=False),
    "failed-run": _failed_run,
    "v1beta-prefix": _legacy_prefix_run,
    "group-events": _group_events,
    "group-runs": _group_runs,
}


def _fetch_raw(handle: EmulatorHandle, case: StreamCase) -> bytes:
    headers = {"x-api-key": handle.api_key, "accept": "text/event-stream"}
    with (
        httpx.Client(base_url=handle.base_url, headers=headers, timeout=CALL_TIMEOUT) as http,
        http.stream("GET", case.path, params=case.params) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.read()


def _assert_stream_is_sdk_safe(
    handle: EmulatorHandle, client: parallel.Parallel, case: StreamCase
) -> None:
    raw_types = [payload["type"] for payload in _strict_frames(_fetch_raw(handle, case))]
    assert raw_types, "every stream sends at least one event"
    assert set(raw_types) <= case.known_types, set(raw_types) - case.known_types

    sdk_types = [event.type for event in case.open_with_sdk(client)]
    assert set(sdk_types) <= case.known_types
    if case.deterministic:
        assert sdk_types == raw_types, "the SDK must see exactly the frames on the wire"


@pytest.mark.parametrize("kind", list(STREAM_CASES))
def test_stream_frames_parse_with_sdk(
    emulator: EmulatorHandle, sdk: parallel.Parallel, kind: str
) -> None:
    case = STREAM_CASES[kind](sdk)
    _assert_stream_is_sdk_safe(emulator, sdk, case)


@pytest.mark.parametrize(
    "frames",
    [
        b"id: 1\nevent: task_run.state\ndata: STATE\n\n: keepalive\n\n",
        b"event: task_run.state\ndata: STATE\n\nevent: ping\n\n",
        b"retry: 1000\n\nevent: task_run.state\ndata: STATE\n\n",
    ],
    ids=["comment-after-id", "data-less-event", "retry-field"],
)
def test_frame_check_rejects_what_crashes_the_sdk(frames: bytes) -> None:
    """The raw check above must fail on exactly the framing that breaks the SDK's decoder."""
    state = {
        "type": "task_run.state",
        "event_id": None,
        "run": {
            "run_id": "trun_1",
            "interaction_id": "trun_1",
            "status": "running",
            "is_active": True,
            "processor": "pro",
        },
    }
    body = frames.replace(b"STATE", json.dumps(state).encode())

    with pytest.raises(AssertionError):
        _strict_frames(body)

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    transport = httpx.MockTransport(serve)
    with (
        httpx.Client(transport=transport) as http,
        parallel.Parallel(api_key=KEY, base_url="http://sdk.invalid", http_client=http) as client,
        pytest.raises(json.JSONDecodeError),
    ):
        list(client.task_run.events("trun_1"))


@pytest.mark.parametrize("processor", ["core", "pro"])
def test_enable_events_controls_progress_messages(sdk: parallel.Parallel, processor: str) -> None:
    def stream_types(enable_events: bool) -> list[str]:
        run_id = _finished_run(
            sdk, input={"company": "Stripe"}, processor=processor, enable_events=enable_events
        )
        return [event.type for event in _run_events(sdk, run_id)]

    tracked = stream_types(True)
    assert {"task_run.progress_msg.plan", "task_run.progress_msg.search"} <= set(tracked)
    assert "task_run.progress_stats" in tracked
    # SDK docstring: "When false, no progress events are tracked."
    untracked = stream_types(False)
    assert not [kind for kind in untracked if kind.startswith("task_run.progress_msg.")]
    assert untracked[0] == untracked[-1] == "task_run.state"


def test_progress_stats_rise_to_completion(sdk: parallel.Parallel) -> None:
    run_id = _finished_run(sdk, input=AUTO_INPUT, processor="pro")
    stats = [e for e in _run_events(sdk, run_id) if isinstance(e, TaskRunProgressStatsEvent)]
    assert stats, "a premium run reports progress_stats"
    meters = [event.progress_meter for event in stats]
    assert meters == sorted(meters) and meters[0] >= 0 and meters[-1] == 100
    read = stats[-1].source_stats
    assert read.num_sources_read and read.num_sources_considered
    assert read.num_sources_read <= read.num_sources_considered
    assert read.sources_read_sample
    assert all(url.startswith(("http://", "https://")) for url in read.sources_read_sample)


def test_failed_run_reports_error_in_final_state(sdk: parallel.Parallel) -> None:
    run_id = _finished_run(sdk, input=FAILING_INPUT, processor="core")
    run = sdk.task_run.retrieve(run_id)
    assert run.status == "failed" and run.error is not None and run.error.message

    last = _run_events(sdk, run_id)[-1]
    assert isinstance(last, TaskRunEvent)
    assert (last.run.status, last.output) == ("failed", None)
    with pytest.raises(parallel.NotFoundError):
        sdk.task_run.result(run_id, api_timeout=1)


def test_run_stream_cut_by_time_limit_stays_parseable(
    slow_emulator: EmulatorHandle, slow_sdk: parallel.Parallel
) -> None:
    run = slow_sdk.task_run.create(input="A long question", processor="pro", enable_events=True)
    case = StreamCase(
        path=f"/v1/tasks/runs/{run.run_id}/events",
        params={},
        open_with_sdk=lambda c: c.task_run.events(run.run_id, timeout=CALL_TIMEOUT),
        known_types=RUN_EVENT_TYPES,
        deterministic=False,
    )
    _assert_stream_is_sdk_safe(slow_emulator, slow_sdk, case)
    assert slow_sdk.task_run.retrieve(run.run_id).is_active, "the stream closed before the run"


def test_group_stream_cut_by_time_limit_stays_parseable(
    slow_emulator: EmulatorHandle, slow_sdk: parallel.Parallel
) -> None:
    group = slow_sdk.task_group.create()
    slow_sdk.task_group.add_runs(
        group.task_group_id, inputs=[{"input": "A long question", "processor": "pro"}]
    )
    case = StreamCase(
        path=f"/v1/tasks/groups/{group.task_group_id}/events",
        params={},
        open_with_sdk=lambda c: c.task_group.events(group.task_group_id, timeout=CALL_TIMEOUT),
        known_types=GROUP_EVENT_TYPES,
        deterministic=False,
    )
    _assert_stream_is_sdk_safe(slow_emulator, slow_sdk, case)
    assert slow_sdk.task_group.retrieve(group.task_group_id).status.is_active
