"""Request checks over real HTTP: auth, processors, 422 details, warnings, lenient extras."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from parallel_nb.emulator import EmulatorHandle

GOOD = {"processor": "lite", "input": "What does Stripe do?"}
SCHEMA = {
    "type": "object",
    "properties": {"ceo": {"type": "string"}},
    "required": ["ceo"],
    "additionalProperties": False,
}


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    """The documented error envelope; returns its ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"ref_id", "message", "detail"}
    uuid.UUID(body["error"]["ref_id"])
    assert body["error"]["message"]
    return body["error"]


def fields(error: dict[str, Any]) -> set[str]:
    return {e["field"] for e in error["detail"]["errors"]}


def post_run(client: httpx.Client, body: Any, **kwargs: Any) -> httpx.Response:
    return client.post("/v1/tasks/runs", json=body, **kwargs)


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"x-api-key": "wrong-key"}])
def test_missing_or_wrong_key_is_401(emulator: EmulatorHandle, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=emulator.base_url, headers=headers) as anonymous:
        for response in (
            anonymous.post("/v1/tasks/runs", json=GOOD),
            anonymous.get("/v1beta/tasks/runs/trun_x"),
            anonymous.get("/_emulator/stats"),
        ):
            error = assert_envelope(response, 401)
            assert "x-api-key" in error["message"]
            assert "wrong-key" not in response.text and "test-key" not in response.text


def test_unknown_processor_is_403(client: httpx.Client) -> None:
    error = assert_envelope(post_run(client, {**GOOD, "processor": "vision"}), 403)
    assert error["message"] == "Forbidden: invalid processor in request"
    [problem] = error["detail"]["errors"]
    assert problem["field"] == "processor" and "core-fast" in problem["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"processor": "lite"}, "input"),
        ({"input": "x"}, "processor"),
        (
            {
                **GOOD,
                "task_spec": {
                    "output_schema": {
                        "type": "json",
                        "json_schema": {"type": "array", "items": {"type": "string"}},
                    }
                },
            },
            "task_spec.output_schema.json_schema.type",
        ),
        ({**GOOD, "metadata": {"a_much_too_long_key": "v"}}, "metadata.a_much_too_long_key"),
        (
            {**GOOD, "source_policy": {"include_domains": [f"d{i}.com" for i in range(201)]}},
            "source_policy",
        ),
        ({**GOOD, "enable_events": "yes"}, "enable_events"),
        ({**GOOD, "webhook": {"url": "ftp://example.com"}}, "webhook.url"),
        (
            {**GOOD, "webhook": {"url": "https://example.com", "event_types": ["run.done"]}},
            "webhook.event_types",
        ),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    error = assert_envelope(post_run(client, body), 422)
    assert field in fields(error)
    assert field in error["message"]


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b'{"processor": "lite", "input": ', "not valid JSON"),
        (b"", "empty"),
        (b'["lite", "x"]', "must be a JSON object"),
    ],
)
def test_unusable_json_bodies_are_422(client: httpx.Client, content: bytes, complaint: str) -> None:
    response = client.post(
        "/v1/tasks/runs", content=content, headers={"content-type": "application/json"}
    )
    error = assert_envelope(response, 422)
    assert complaint in error["message"]
    assert fields(error) == {"body"}


def test_previous_interaction_id_must_name_a_known_run(client: httpx.Client) -> None:
    unknown = "trun_" + "f" * 32
    error = assert_envelope(post_run(client, {**GOOD, "previous_interaction_id": unknown}), 422)
    assert error["message"] == f"Invalid interaction id: {unknown}"
    assert fields(error) == {"previous_interaction_id"}
    first = post_run(client, GOOD).json()
    follow_up = post_run(client, {**GOOD, "previous_interaction_id": first["interaction_id"]})
    assert follow_up.status_code == 202


def test_spec_warnings_are_carried_on_the_run(client: httpx.Client) -> None:
    loose = {"type": "object", "properties": {"ceo": {"type": "string"}}}
    run = post_run(
        client, {**GOOD, "task_spec": {"output_schema": {"type": "json", "json_schema": loose}}}
    ).json()
    warnings = run["warnings"]
    assert {w["type"] for w in warnings} >= {"spec_validation_warning"}
    by_field = {w["detail"]["field"] for w in warnings if w["type"] == "spec_validation_warning"}
    assert by_field >= {
        "task_spec.output_schema.json_schema.required",
        "task_spec.output_schema.json_schema.additionalProperties",
    }
    assert client.get(f"/v1/tasks/runs/{run['run_id']}").json()["warnings"] == warnings


def test_unknown_query_params_and_beta_values_are_ignored(client: httpx.Client) -> None:
    response = client.post(
        "/v1/tasks/runs",
        params={"beta": "true"},
        json={**GOOD, "enable_events": True},
        headers={"parallel-beta": "search-extract-2025-10-10 ,  events-sse-2025-07-24 ,nonsense"},
    )
    assert response.status_code == 202
    run = response.json()
    # The header named the events beta (with spaces around it), so no beta warning.
    assert not [w for w in run["warnings"] or [] if w["detail"]["field"] == "enable_events"]
    result = client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"beta": "true"})
    assert result.status_code == 200


def test_beta_field_without_its_header_gets_a_warning(client: httpx.Client) -> None:
    run = post_run(client, {**GOOD, "enable_events": True}).json()
    [warning] = [w for w in run["warnings"] if w["detail"]["field"] == "enable_events"]
    assert warning["type"] == "warning" and "events-sse-2025-07-24" in warning["message"]


@pytest.mark.parametrize("value", ["soon", "-1", "1.5"])
def test_result_timeout_must_be_whole_seconds(client: httpx.Client, value: str) -> None:
    run = post_run(client, GOOD).json()
    response = client.get(f"/v1/tasks/runs/{run['run_id']}/result", params={"timeout": value})
    assert fields(assert_envelope(response, 422)) == {"timeout"}


def test_group_query_parameters_are_checked(client: httpx.Client) -> None:
    group_id = client.post("/v1/tasks/groups", json={}).json()["taskgroup_id"]
    base = f"/v1/tasks/groups/{group_id}"
    checks = {
        (f"{base}/events", "timeout", "-3"),
        (f"{base}/events", "last_event_id", "99"),
        (f"{base}/runs", "include_input", "maybe"),
        (f"{base}/runs", "last_event_id", "1"),
    }
    for path, name, value in checks:
        assert fields(assert_envelope(client.get(path, params={name: value}), 422)) == {name}
    refresh = client.post(
        f"{base}/runs", params={"refresh_status": "sometimes"}, json={"inputs": [GOOD]}
    )
    assert fields(assert_envelope(refresh, 422)) == {"refresh_status"}


def test_group_metadata_is_checked(client: httpx.Client) -> None:
    response = client.post("/v1/tasks/groups", json={"metadata": {"k": "v" * 600}})
    assert fields(assert_envelope(response, 422)) == {"metadata.k"}
    assert client.post("/v1/tasks/groups").status_code == 200  # no body at all is fine


def test_unknown_paths_and_methods_use_the_envelope(client: httpx.Client) -> None:
    assert "/v2/tasks" in assert_envelope(client.get("/v2/tasks"), 404)["message"]
    assert_envelope(client.delete("/v1/tasks/runs/trun_x"), 405)
