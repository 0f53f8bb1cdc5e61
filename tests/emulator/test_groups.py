"""Task groups over real HTTP: create, add runs, status, run and event streams, resuming."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sse_frames import read_events

from parallel_nb.emulator import EmulatorHandle, start_emulator

KEY = "test-key"
GROUP_ID = re.compile(r"^tgrp_[0-9a-f]{48}$")
UNKNOWN_GROUP = "tgrp_" + "0" * 48
SPEC = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {"ceo": {"type": "string"}},
            "required": ["ceo"],
            "additionalProperties": False,
        },
    }
}


@pytest.fixture(scope="module")
def slow() -> Iterator[EmulatorHandle]:
    with start_emulator(time_scale=0.05, api_key=KEY) as handle:
        yield handle


def new_group(client: httpx.Client, prefix: str = "/v1", **body: Any) -> str:
    response = client.post(f"{prefix}/tasks/groups", json=body)
    assert response.status_code == 200, response.text
    return response.json()["taskgroup_id"]


def add_runs(client: httpx.Client, group_id: str, inputs: list[Any], **extra: Any) -> Any:
    return client.post(f"/v1/tasks/groups/{group_id}/runs", json={"inputs": inputs, **extra})


def lite(text: str, **extra: Any) -> dict[str, Any]:
    return {"processor": "lite", "input": text, **extra}


def wait_idle(client: httpx.Client, group_id: str) -> list[dict[str, Any]]:
    """Read the group's event stream to its end, which comes when no run is active."""
    return read_events(client, f"/v1/tasks/groups/{group_id}/events")


@pytest.mark.parametrize("prefix", ["/v1", "/v1beta"])
def test_create_and_retrieve_group(client: httpx.Client, prefix: str) -> None:
    group_id = new_group(client, prefix, metadata={"batch": "a"})
    assert GROUP_ID.match(group_id)
    group = client.get(f"{prefix}/tasks/groups/{group_id}").json()
    assert group["taskgroup_id"] == group_id and group["metadata"] == {"batch": "a"}
    assert group["status"]["num_task_runs"] == 0
    assert group["status"]["is_active"] is False
    assert set(group["status"]) == {
        "num_task_runs",
        "task_run_status_counts",
        "is_active",
        "status_message",
        "modified_at",
    }


def test_unknown_group_is_404(client: httpx.Client) -> None:
    for path in ("", "/runs", "/events", "/runs/trun_" + "0" * 32):
        response = client.get(f"/v1/tasks/groups/{UNKNOWN_GROUP}{path}")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "TaskGroup not found"


def test_add_runs_returns_ids_and_cursors(client: httpx.Client) -> None:
    group_id = new_group(client)
    first = add_runs(client, group_id, [lite("Stripe CEO"), lite("Acme CEO")])
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"status", "run_ids", "run_cursor", "event_cursor"}
    assert len(body["run_ids"]) == 2 and body["run_cursor"] is None and body["event_cursor"] is None
    assert body["status"]["num_task_runs"] == 2
    second = add_runs(client, group_id, [lite("Globex CEO")], refresh_status=False).json()
    assert second["run_cursor"] is not None and second["event_cursor"] is not None
    for run_id in body["run_ids"] + second["run_ids"]:
        run = client.get(f"/v1/tasks/groups/{group_id}/runs/{run_id}").json()
        assert run["taskgroup_id"] == group_id
        assert client.get(f"/v1/tasks/runs/{run_id}").json()["taskgroup_id"] == group_id
    wait_idle(client, group_id)
    status = client.get(f"/v1/tasks/groups/{group_id}").json()["status"]
    assert status == {
        **status,
        "num_task_runs": 3,
        "is_active": False,
        "task_run_status_counts": {"completed": 3},
    }


def test_run_of_another_group_is_404(client: httpx.Client) -> None:
    group_a, group_b = new_group(client), new_group(client)
    [run_id] = add_runs(client, group_a, [lite("Initech CEO")]).json()["run_ids"]
    response = client.get(f"/v1/tasks/groups/{group_b}/runs/{run_id}")
    assert response.status_code == 404


def test_default_task_spec_applies_where_an_input_has_none(client: httpx.Client) -> None:
    text_spec = {"output_schema": {"type": "text", "description": "a paragraph"}}
    group_id = new_group(client)
    plain, own = add_runs(
        client,
        group_id,
        [lite("Stripe CEO"), lite("Stripe summary", task_spec=text_spec)],
        default_task_spec=SPEC,
    ).json()["run_ids"]
    assert client.get(f"/v1/tasks/runs/{plain}/input").json()["task_spec"] == SPEC
    assert client.get(f"/v1/tasks/runs/{own}/input").json()["task_spec"] == text_spec
    wait_idle(client, group_id)
    result = client.get(f"/v1/tasks/runs/{plain}/result").json()
    assert result["output"]["type"] == "json" and set(result["output"]["content"]) == {"ceo"}
    assert client.get(f"/v1/tasks/runs/{own}/result").json()["output"]["type"] == "text"


def test_add_runs_validates_every_input(client: httpx.Client) -> None:
    group_id = new_group(client)
    response = add_runs(client, group_id, [lite("fine"), {"processor": "lite"}, lite("")])
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["error"]["detail"]["errors"]}
    assert fields == {"inputs.1.input", "inputs.2.input"}
    forbidden = add_runs(client, group_id, [lite("fine"), {"processor": "vision", "input": "x"}])
    assert forbidden.status_code == 403
    bad_default = add_runs(client, group_id, [lite("x")], default_task_spec={"output": 1})
    assert bad_default.status_code == 422
    assert bad_default.json()["error"]["detail"]["errors"][0]["field"].startswith(
        "default_task_spec"
    )
    # Nothing was added by the rejected requests.
    assert client.get(f"/v1/tasks/groups/{group_id}").json()["status"]["num_task_runs"] == 0


def test_add_runs_accepts_1000_inputs_and_rejects_more(client: httpx.Client) -> None:
    group_id = new_group(client)
    too_many = add_runs(client, group_id, [lite(f"q{i}") for i in range(1001)])
    assert too_many.status_code == 422
    [error] = too_many.json()["error"]["detail"]["errors"]
    assert error["field"] == "inputs" and "1,000" in error["message"]
    assert add_runs(client, group_id, []).status_code == 422
    full = add_runs(client, group_id, [lite(f"q{i}") for i in range(1000)])
    assert full.status_code == 200 and len(full.json()["run_ids"]) == 1000


def test_group_events_report_each_run_and_close_when_idle(client: httpx.Client) -> None:
    group_id = new_group(client)
    run_ids = add_runs(client, group_id, [lite(f"Company {i} CEO") for i in range(3)]).json()[
        "run_ids"
    ]
    events = wait_idle(client, group_id)
    ids = [int(e["event_id"]) for e in events]
    assert all(isinstance(e["event_id"], str) for e in events)
    assert ids == sorted(set(ids))
    states = [e for e in events if e["type"] == "task_run.state"]
    assert sorted(e["run"]["run_id"] for e in states) == sorted(run_ids)
    assert all(e["run"]["status"] == "completed" and e["output"] is None for e in states)
    assert events[-1]["type"] == "task_group_status"
    assert events[-1]["status"]["is_active"] is False


def test_group_events_resume_after_last_event_id(client: httpx.Client) -> None:
    group_id = new_group(client)
    add_runs(client, group_id, [lite(f"Resume {i}") for i in range(3)])
    events = wait_idle(client, group_id)
    middle = events[2]["event_id"]
    url = f"/v1/tasks/groups/{group_id}/events"
    assert read_events(client, url, {"last_event_id": middle}) == events[3:]
    bad = client.get(url, params={"last_event_id": "not-an-id"})
    assert bad.status_code == 422


def test_event_cursor_resumes_at_the_added_runs(client: httpx.Client) -> None:
    group_id = new_group(client)
    add_runs(client, group_id, [lite("batch one")])
    wait_idle(client, group_id)
    second = add_runs(client, group_id, [lite("batch two")]).json()
    events = read_events(
        client, f"/v1/tasks/groups/{group_id}/events", {"last_event_id": second["event_cursor"]}
    )
    states = [e["run"]["run_id"] for e in events if e["type"] == "task_run.state"]
    assert states == second["run_ids"]


def test_group_events_close_after_timeout_while_active(slow: EmulatorHandle) -> None:
    with httpx.Client(base_url=slow.base_url, headers={"x-api-key": KEY}, timeout=30) as client:
        group_id = new_group(client)
        add_runs(client, group_id, [{"processor": "ultra", "input": "long research"}])
        events = read_events(client, f"/v1/tasks/groups/{group_id}/events", {"timeout": "0.5"})
        assert events and events[-1]["type"] == "task_group_status"
        assert events[-1]["status"]["is_active"] is True


def test_group_runs_stream_lists_runs_and_closes(client: httpx.Client) -> None:
    group_id = new_group(client)
    first = add_runs(client, group_id, [lite("Alpha CEO"), lite("emulator: fail")]).json()
    second = add_runs(client, group_id, [lite("Gamma CEO")]).json()
    wait_idle(client, group_id)
    url = f"/v1/tasks/groups/{group_id}/runs"
    events = read_events(client, url)
    assert [e["run"]["run_id"] for e in events] == first["run_ids"] + second["run_ids"]
    assert all(
        e["type"] == "task_run.state" and e["input"] is None and e["output"] is None for e in events
    )
    ids = [int(e["event_id"]) for e in events]
    assert ids == sorted(set(ids))

    completed = read_events(
        client, url, {"status": "completed", "include_output": "true", "include_input": "true"}
    )
    assert [e["run"]["run_id"] for e in completed] == [first["run_ids"][0], *second["run_ids"]]
    assert completed[0]["input"] == lite("Alpha CEO")
    assert completed[0]["output"]["type"] == "text"

    failed = read_events(client, url, {"status": "failed", "include_output": "true"})
    assert [e["run"]["run_id"] for e in failed] == [first["run_ids"][1]]
    assert failed[0]["output"] is None and failed[0]["run"]["error"]["message"]

    resumed = read_events(client, url, {"last_event_id": second["run_cursor"]})
    assert [e["run"]["run_id"] for e in resumed] == second["run_ids"]
    assert client.get(url, params={"status": "done"}).status_code == 422


def test_group_stats(client: httpx.Client, emulator: EmulatorHandle) -> None:
    before = emulator.stats()["groups_created"]
    new_group(client)
    assert emulator.stats()["groups_created"] == before + 1
