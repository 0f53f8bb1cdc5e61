"""Client and AsyncClient over real HTTP against the emulator; stubs only where a server cannot
be made to misbehave on cue (v1beta-only deployments, 408 sequences, odd SSE frames)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from parallel_nb.api.client import AsyncClient, Client
from parallel_nb.api.errors import (
    APIError,
    AuthenticationError,
    ConnectionFailed,
    NotFoundError,
    ParallelError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    RunFailed,
    ServerError,
    ValidationError,
    api_error,
)
from parallel_nb.api.models import (
    MessageEvent,
    StateEvent,
    StatsEvent,
    TaskRequest,
    UnknownEvent,
)
from parallel_nb.emulator import EmulatorHandle, start_emulator

KEY = "test-key"
SENTINEL = "sk-SENTINEL-6f1d2c9a-never-print-me"
QUESTION = "What was the GDP of France in 2023?"
FAILING = "emulator: fail"
SPEC = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {"gdp": {"type": "string", "description": "GDP in USD"}},
            "required": ["gdp"],
            "additionalProperties": False,
        },
    }
}


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[Client]:
    with Client(KEY, emulator.base_url) as client:
        yield client


@pytest.fixture
async def aapi(emulator: EmulatorHandle) -> Any:
    async with AsyncClient(KEY, emulator.base_url) as client:
        yield client


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[EmulatorHandle]:
    """Documented latencies (a core run takes minutes), for runs that must stay active."""
    with start_emulator(time_scale=1, api_key=KEY) as handle:
        yield handle


@pytest.fixture(scope="module")
def sentinel_emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(time_scale=0, api_key=SENTINEL) as handle:
        yield handle


def stub_client(handler: Callable[[httpx.Request], httpx.Response], key: str = KEY) -> Client:
    """A client whose requests are answered by ``handler`` instead of a server; it never
    retries (tests/api/test_retry.py covers retries)."""
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Client(key, "http://127.0.0.1:9", http_client=http, retry=None)


def sse(*frames: str) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content="".join(frames).encode()
    )


def frame(data: dict[str, Any], event: str | None = None) -> str:
    name = event or data["type"]
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def state(status: str) -> dict[str, Any]:
    run = {"run_id": "trun_1", "status": status, "is_active": status == "running"}
    return {"type": "task_run.state", "event_id": None, "run": {**run, "processor": "core"}}


# -- runs over HTTP ------------------------------------------------------------------------


def test_create_stream_and_result(api: Client) -> None:
    run = api.create_run(TaskRequest("core", QUESTION, task_spec=SPEC, metadata={"k": "v"}))
    assert run.run_id.startswith("trun_") and run.status == "queued" and run.is_active
    assert run.metadata == {"k": "v"}

    with api.events(run.run_id) as stream:
        events = list(stream)
    assert isinstance(events[0], StateEvent)
    assert any(isinstance(e, StatsEvent) for e in events)
    final = events[-1]
    assert isinstance(final, StateEvent) and final.run.status == "completed"
    assert final.output is not None and "gdp" in final.output.content

    result = api.result(run.run_id)
    assert result.run.run_id == run.run_id and result.run.status == "completed"
    assert result.output.type == "json"
    assert result.output.content == final.output.content
    assert result.output.basis and result.output.basis[0].field == "gdp"

    assert api.retrieve_run(run.run_id).status == "completed"
    assert api.retrieve_input(run.run_id) == {
        "processor": "core",
        "input": QUESTION,
        "task_spec": SPEC,
        "metadata": {"k": "v"},
    }


def test_requests_carry_key_beta_and_user_agent(emulator: EmulatorHandle) -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [seen.append]})
    client = Client(KEY, emulator.base_url, http_client=http)
    run = client.create_run(TaskRequest("lite", QUESTION, enable_events=True))
    client.close()  # the caller's http client stays open
    list(client.events(run.run_id))
    http.close()

    create, stream = seen
    assert create.headers["x-api-key"] == KEY
    assert create.headers["parallel-beta"] == "events-sse-2025-07-24,field-basis-2025-11-25"
    assert create.headers["user-agent"].startswith("parallel-nb/")
    assert stream.headers["accept"] == "text/event-stream"
    assert stream.url.path == f"/v1/tasks/runs/{run.run_id}/events"


def test_failed_run_raises_run_failed_with_the_runs_message(api: Client) -> None:
    run = api.create_run(TaskRequest("lite", FAILING))
    with pytest.raises(RunFailed) as caught:
        api.result(run.run_id)
    assert caught.value.run_id == run.run_id
    assert caught.value.status == "failed"
    assert "could not complete the research" in caught.value.message
    assert str(caught.value).startswith(f"run {run.run_id} failed: The task run failed")
    # IPython prints these lines instead of a traceback.
    assert caught.value._render_traceback_() == [
        f"RunFailed: run {run.run_id} failed",
        f"  {caught.value.message}",
        f"  the run's details: Client().retrieve_run({run.run_id!r})",
    ]


def test_result_of_an_unknown_run_is_not_found(api: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        api.result("trun_" + "0" * 32)
    assert caught.value.run_id == "trun_" + "0" * 32
    assert "Run id not found" in str(caught.value)


def test_result_gives_up_after_the_overall_timeout(slow_emulator: EmulatorHandle) -> None:
    with Client(KEY, slow_emulator.base_url) as client:
        run = client.create_run(TaskRequest("core", QUESTION))
        with pytest.raises(RequestTimeoutError) as caught:
            client.result(run.run_id, timeout=1)
        assert client.retrieve_run(run.run_id).is_active
    error = caught.value
    assert error.run_id == run.run_id and error.status == 408
    assert f"run {run.run_id} is still active" in str(error)
    assert f"client.result({run.run_id!r})" in str(error)


@pytest.mark.parametrize("answers", [[408, 408, 200], [200]])
def test_result_asks_again_after_408(answers: list[int]) -> None:
    asked: list[httpx.Request] = []
    result = {"run": {**state("completed")["run"]}, "output": {"type": "text", "content": "hi"}}

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        status = answers[len(asked) - 1]
        if status == 408:
            body = {"type": "error", "error": {"message": "Request timed out; run still active"}}
            return httpx.Response(408, json=body)
        return httpx.Response(200, json=result)

    with stub_client(handler) as client:
        assert client.result("trun_1", timeout=900).output.content == "hi"
    assert len(asked) == len(answers)
    waits = [int(r.url.params["timeout"]) for r in asked]
    assert all(1 <= w <= 600 for w in waits)
    assert asked[0].headers["parallel-beta"] == "field-basis-2025-11-25"


async def test_async_result_asks_again_after_408() -> None:
    answers = iter([408, 200])
    result = {"run": {**state("completed")["run"]}, "output": {"type": "json", "content": {}}}

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json=result if status == 200 else {"detail": "timeout"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncClient(KEY, "http://127.0.0.1:9", http_client=http) as client:
        assert (await client.result("trun_1")).output.content == {}
    await http.aclose()


# -- event streams -------------------------------------------------------------------------


def test_stream_skips_empty_frames_and_dispatches_on_the_json_type() -> None:
    body = sse(
        frame(state("running")),
        ": comment\n\n",
        "event: ping\n\n",
        "retry: 1000\n\n",
        "id: 7\ndata: \n\n",
        frame({"type": "task_run.progress_msg.tool", "message": "calling"}),
        # The SSE event name is ignored: the JSON type decides.
        frame({"type": "task_run.progress_msg.plan", "message": "plan"}, event="task_run.state"),
        frame({"type": "task_run.something_new", "x": 1}),
        "data: not json\n\n",
        frame(state("completed")),
    )
    client = stub_client(lambda request: body)

    events = list(client.events("trun_1"))

    assert [type(e) for e in events] == [
        StateEvent,
        MessageEvent,
        MessageEvent,
        UnknownEvent,
        UnknownEvent,
        StateEvent,
    ]
    assert events[1] == MessageEvent(kind="tool", message="calling")
    assert events[2] == MessageEvent(kind="plan", message="plan")
    assert events[3].type == "task_run.something_new"  # type: ignore[union-attr]
    assert events[4].raw == {"data": "not json"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "missing_route",
    [
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(404, text="404 page not found"),
        httpx.Response(
            404, json={"type": "error", "error": {"message": "Not found: no such path"}}
        ),
    ],
)
def test_events_fall_back_to_v1beta_when_the_v1_route_does_not_exist(
    missing_route: httpx.Response,
) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.startswith("/v1beta/"):
            return sse(frame(state("completed")))
        return missing_route

    events = list(stub_client(handler).events("trun_1"))

    assert paths == ["/v1/tasks/runs/trun_1/events", "/v1beta/tasks/runs/trun_1/events"]
    assert isinstance(events[0], StateEvent) and events[0].run.status == "completed"


def test_events_do_not_fall_back_when_the_run_is_not_found() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(404, json={"type": "error", "error": {"message": "Run id not found"}})

    with pytest.raises(NotFoundError) as caught:
        list(stub_client(handler).events("trun_1"))
    assert paths == ["/v1/tasks/runs/trun_1/events"]
    assert caught.value.run_id == "trun_1"


def test_events_of_an_unknown_run_over_http(api: Client) -> None:
    with pytest.raises(NotFoundError, match="Run id not found"):
        list(api.events("trun_" + "0" * 32))


def test_close_from_another_thread_ends_a_blocked_iteration(
    slow_emulator: EmulatorHandle,
) -> None:
    with Client(KEY, slow_emulator.base_url) as client:
        run = client.create_run(TaskRequest("core", QUESTION))
        stream = client.events(run.run_id)
        received: list[Any] = []
        first = threading.Event()
        failures: list[BaseException] = []

        def read() -> None:
            try:
                for event in stream:
                    received.append(event)
                    first.set()
            except BaseException as exc:  # reported to the main thread below
                failures.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert first.wait(10), "the stream sent no first event"
        assert slow_emulator.stats()["open_streams"] == 1
        assert client.retrieve_run(run.run_id).is_active  # so the reader is blocked, not done

        stream.close()
        reader.join(5)

        assert not reader.is_alive(), "close() did not end the blocked iteration"
        assert failures == []
        assert stream.closed
        assert isinstance(received[0], StateEvent)
        assert wait_until(lambda: slow_emulator.stats()["open_streams"] == 0)


def test_close_before_iterating_sends_nothing() -> None:
    requests: list[httpx.Request] = []
    client = stub_client(lambda request: requests.append(request) or sse())
    stream = client.events("trun_1")
    stream.close()
    assert list(stream) == []
    assert requests == []


async def test_async_close_before_iterating_sends_nothing() -> None:
    requests: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: requests.append(r) or sse()))
    stream = AsyncClient(KEY, "http://127.0.0.1:9", http_client=http).events("trun_1")
    await stream.aclose()
    assert [event async for event in stream] == []
    assert requests == []
    await http.aclose()


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- errors --------------------------------------------------------------------------------


def test_unknown_processor_is_a_403_that_lists_the_known_ones(api: Client) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        api.create_run(TaskRequest("foo", QUESTION))
    text = str(caught.value)
    assert caught.value.status == 403
    assert text.startswith("403 Forbidden: invalid processor in request (processor 'foo'; ")
    assert "known processors: lite, base, core, core2x, pro, ultra," in text


def test_validation_error_names_the_fields(api: Client) -> None:
    request = TaskRequest("core", QUESTION, metadata={"a_key_longer_than_16": "v", "ok": "x" * 600})
    with pytest.raises(ValidationError) as caught:
        api.create_run(request)
    text = str(caught.value)
    assert caught.value.status == 422
    assert "metadata.a_key_longer_than_16" in text
    assert "metadata.ok" in text


def test_rejected_key_never_appears_in_the_error(emulator: EmulatorHandle) -> None:
    with Client(SENTINEL, emulator.base_url) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.create_run(TaskRequest("core", QUESTION))
        assert SENTINEL not in repr(client) and SENTINEL not in str(client)
    error = caught.value
    assert "the API key was rejected; check PARALLEL_API_KEY" in str(error)
    assert SENTINEL not in str(error) and SENTINEL not in repr(error)
    assert error._render_traceback_() == [f"AuthenticationError: {error}"]


def test_a_server_echoing_the_key_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["x-api-key"]
        body = {"type": "error", "error": {"message": f"bad key {key}", "detail": {"key": key}}}
        return httpx.Response(401, json=body)

    with pytest.raises(AuthenticationError) as caught:
        stub_client(handler, SENTINEL).retrieve_run("trun_1")
    assert SENTINEL not in str(caught.value)
    assert SENTINEL not in json.dumps(caught.value.detail)
    assert "bad key [redacted]" in str(caught.value)


def test_the_key_never_reaches_the_logs(
    sentinel_emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with Client(SENTINEL, sentinel_emulator.base_url) as client:
        run = client.create_run(TaskRequest("lite", QUESTION))
        list(client.events(run.run_id))
        client.result(run.run_id)
    assert caplog.records, "httpx logged nothing, so this test would prove nothing"
    assert SENTINEL not in caplog.text


def test_unreachable_server_is_connection_failed_naming_the_url() -> None:
    base_url = refused_url()
    with Client(SENTINEL, base_url, retry=None) as client:
        with pytest.raises(ConnectionFailed) as caught:
            client.retrieve_run("trun_1")
        with pytest.raises(ConnectionFailed):
            list(client.events("trun_1"))
    text = str(caught.value)
    assert base_url in text and "PARALLEL_BASE_URL" in text
    assert SENTINEL not in text


def refused_url() -> str:
    """A loopback URL on which nothing listens: a port bound for a moment, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, APIError), (401, AuthenticationError), (403, PermissionDeniedError),
     (404, NotFoundError), (408, RequestTimeoutError), (409, APIError), (422, ValidationError),
     (429, RateLimitError), (500, ServerError), (503, ServerError)],
)  # fmt: skip
def test_api_error_class_by_status(status: int, cls: type[APIError]) -> None:
    error = api_error(status, {"type": "error", "error": {"ref_id": "r1", "message": "m"}}, "t")
    assert type(error) is cls
    assert (error.status, error.message, error.ref_id, error.run_id) == (status, "m", "r1", "t")
    assert isinstance(error, ParallelError)


def test_api_error_reads_fastapi_and_non_json_bodies() -> None:
    fastapi = api_error(
        422, {"detail": [{"loc": ["body", "inputs", 0, "processor"], "msg": "Field required"}]}
    )
    assert "inputs.0.processor: Field required" in str(fastapi)

    plain = api_error(502, b"<html>Bad gateway from the proxy</html>")
    assert plain.message == "<html>Bad gateway from the proxy</html>"
    assert str(plain).startswith("502 Bad Gateway: <html>Bad gateway")
    assert "try again" in str(plain)

    detail_text = api_error(404, '{"detail": "Not Found"}')
    assert detail_text.message == "Not Found" and type(detail_text) is NotFoundError

    assert "PARALLEL_BASE_URL" in str(detail_text)  # a missing endpoint means a wrong base URL

    unknown_run = api_error(404, {"type": "error", "error": {"message": "Run id not found"}})
    assert "check the id" in str(unknown_run) and "PARALLEL_BASE_URL" not in str(unknown_run)

    empty = api_error(500, b"")
    assert str(empty).startswith("500 Internal Server Error —")


@pytest.mark.parametrize("header", [{"retry-after": "2"}, {"retry-after-ms": "2000"}])
def test_rate_limit_reads_retry_after(header: dict[str, str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"type": "error", "error": {"message": "Rate limit exceeded"}}
        return httpx.Response(429, json=body, headers=header)

    with pytest.raises(RateLimitError) as caught:
        stub_client(handler).create_run(TaskRequest("core", QUESTION))
    assert caught.value.retry_after == 2.0
    assert "wait 2 s and try again" in str(caught.value)


def test_a_malformed_success_answer_is_a_clear_error() -> None:
    with pytest.raises(ParallelError, match=r"unexpected answer from GET .*trun_1.*Task API\?"):
        stub_client(lambda request: httpx.Response(200, text="<html>")).retrieve_run("trun_1")


# -- construction --------------------------------------------------------------------------


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARALLEL_API_KEY", SENTINEL)
    monkeypatch.setenv("PARALLEL_BASE_URL", "http://127.0.0.1:5/")
    client = Client()
    assert client.base_url == "http://127.0.0.1:5"
    assert repr(client) == "Client(base_url='http://127.0.0.1:5')"
    monkeypatch.delenv("PARALLEL_BASE_URL")
    assert Client().base_url == "https://api.parallel.ai"


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARALLEL_API_KEY", raising=False)
    with pytest.raises(ParallelError, match="PARALLEL_API_KEY"):
        Client()


def test_empty_ids_are_refused_before_any_request(api: Client) -> None:
    with pytest.raises(ValueError, match="empty id"):
        api.retrieve_run("")


# -- task groups ---------------------------------------------------------------------------


def test_groups(api: Client) -> None:
    group = api.create_group({"batch": "one"})
    assert group.taskgroup_id.startswith("tgrp_") and group.metadata == {"batch": "one"}

    added = api.add_runs(
        group.taskgroup_id,
        [TaskRequest("lite", QUESTION), {"processor": "lite", "input": "Describe JWST"}],
        default_task_spec=SPEC,
    )
    assert len(added.run_ids) == 2

    with api.group_events(group.taskgroup_id) as stream:
        finished = {e.run.run_id for e in stream if isinstance(e, StateEvent)}
    assert finished == set(added.run_ids)

    runs = list(api.group_runs(group.taskgroup_id, include_input=True, include_output=True))
    assert {e.run.run_id for e in runs if isinstance(e, StateEvent)} == set(added.run_ids)
    assert all(isinstance(e, StateEvent) and e.output is not None for e in runs)
    assert all(e.input is not None for e in runs if isinstance(e, StateEvent))

    again = list(api.group_runs(group.taskgroup_id, last_event_id=runs[0].event_id))  # type: ignore[union-attr]
    assert len(again) == len(runs) - 1

    one = api.retrieve_group_run(group.taskgroup_id, added.run_ids[0])
    assert one.taskgroup_id == group.taskgroup_id and one.status == "completed"
    assert api.retrieve_group(group.taskgroup_id).status.num_task_runs == 2


# -- async ---------------------------------------------------------------------------------


async def test_async_create_stream_and_result(aapi: AsyncClient) -> None:
    run = await aapi.create_run(TaskRequest("core", QUESTION, task_spec=SPEC))
    async with aapi.events(run.run_id) as stream:
        events = [event async for event in stream]
    assert isinstance(events[0], StateEvent)
    final = events[-1]
    assert isinstance(final, StateEvent) and final.run.status == "completed"

    result = await aapi.result(run.run_id)
    assert final.output is not None and result.output.content == final.output.content
    assert (await aapi.retrieve_run(run.run_id)).status == "completed"
    assert (await aapi.retrieve_input(run.run_id))["input"] == QUESTION


async def test_async_errors(aapi: AsyncClient) -> None:
    failing = await aapi.create_run(TaskRequest("lite", FAILING))
    with pytest.raises(RunFailed, match="could not complete the research"):
        await aapi.result(failing.run_id)
    with pytest.raises(PermissionDeniedError, match="processor 'foo'"):
        await aapi.create_run(TaskRequest("foo", QUESTION))
    with pytest.raises(NotFoundError):
        async for _ in aapi.events("trun_" + "0" * 32):
            pass
    assert repr(aapi).startswith("AsyncClient(base_url='http://127.0.0.1:")


async def test_async_events_fall_back_to_v1beta() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/"):
            return httpx.Response(404, json={"detail": "Not Found"})
        return sse(frame(state("completed")))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = AsyncClient(KEY, "http://127.0.0.1:9", http_client=http)
    events = [event async for event in client.events("trun_1")]
    await http.aclose()
    assert isinstance(events[0], StateEvent) and events[0].run.status == "completed"


async def test_async_groups(aapi: AsyncClient) -> None:
    group = await aapi.create_group()
    added = await aapi.add_runs(group.taskgroup_id, [TaskRequest("lite", QUESTION)])
    events = [e async for e in aapi.group_events(group.taskgroup_id)]
    assert added.run_ids[0] in {e.run.run_id for e in events if isinstance(e, StateEvent)}
    runs = [e async for e in aapi.group_runs(group.taskgroup_id, status="completed")]
    assert [e.run.run_id for e in runs if isinstance(e, StateEvent)] == list(added.run_ids)
    one = await aapi.retrieve_group_run(group.taskgroup_id, added.run_ids[0])
    assert one.run_id == added.run_ids[0]
    assert (await aapi.retrieve_group(group.taskgroup_id)).taskgroup_id == group.taskgroup_id


async def test_async_stream_aclose_stops_iteration(slow_emulator: EmulatorHandle) -> None:
    async with AsyncClient(KEY, slow_emulator.base_url) as client:
        run = await client.create_run(TaskRequest("core", QUESTION))
        stream = client.events(run.run_id)
        first = await stream.__anext__()
        assert isinstance(first, StateEvent)
        await stream.aclose()
        assert stream.closed
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
    assert wait_until(lambda: slow_emulator.stats()["open_streams"] == 0)


def test_a_service_message_cannot_rewrite_the_terminal_in_a_traceback() -> None:
    message = "bad\x1b[2J\x1b]52;c;cGF5bG9hZA==\x07 news\r\u202eevil\nline two " + "x" * 1000
    failed = RunFailed("trun_" + "ab" * 16, message)
    lines = failed._render_traceback_()
    assert lines[1].startswith("  bad [2J ]52;c;cGF5bG9hZA== news evil line two xxx")
    assert lines[1].endswith("…") and len(lines[1]) == 2 + 300
    assert not any(ch in "".join(lines) for ch in "\x1b\x07\r\u202e")
    assert failed.message == message  # the data itself is kept as the service sent it
