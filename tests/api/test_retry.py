"""Retries: the policy's waits, which failures are retried (never an ambiguous create), and the
clients and streams applying it, with a fake clock so no test waits for real."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from parallel_nb.api.client import AsyncClient, Client
from parallel_nb.api.errors import (
    AmbiguousCreateError,
    ConnectionFailed,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
    ValidationError,
)
from parallel_nb.api.models import TaskRequest
from parallel_nb.api.retry import (
    RetryPolicy,
    is_ambiguous_create,
    is_safe_to_retry_create,
    is_safe_to_retry_get,
    retry_after,
)

KEY = "sk-retry-sentinel-0123456789"
RUN = {
    "run_id": "trun_1",
    "interaction_id": "trun_1",
    "status": "queued",
    "is_active": True,
    "processor": "lite",
    "created_at": "2026-01-01T00:00:00Z",
    "modified_at": "2026-01-01T00:00:00Z",
}
REQUEST = TaskRequest("lite", "What was the GDP of France in 2023?")


class FakeClock:
    """A clock that only moves when something sleeps on it; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def policy(self, jitter: float = 1.0, **options: Any) -> RetryPolicy:
        return RetryPolicy(
            random=lambda: jitter,
            sleep=self.sleep,
            async_sleep=self.async_sleep,
            clock=self.time,
            **options,
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def error(status: int, message: str = "m", headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"type": "error", "error": {"ref_id": "r1", "message": message}}
    return httpx.Response(status, json=body, headers=headers)


Answer = httpx.Response | Exception


class Script:
    """A MockTransport handler answering with ``answers`` in turn (an exception is raised, as
    the transport would); the last answer repeats. ``requests`` are the requests it saw."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(
    script: Callable[[httpx.Request], httpx.Response], policy: RetryPolicy | None
) -> Client:
    http = httpx.Client(transport=httpx.MockTransport(script))
    return Client(KEY, "http://127.0.0.1:9", http_client=http, retry=policy)


def async_client_for(
    script: Callable[[httpx.Request], httpx.Response], policy: RetryPolicy | None
) -> AsyncClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    return AsyncClient(KEY, "http://127.0.0.1:9", http_client=http, retry=policy)


# -- the policy's waits --------------------------------------------------------------------


def test_backoff_doubles_with_jitter_in_the_upper_half_and_is_capped() -> None:
    high = RetryPolicy(base_delay=0.25, max_delay=2.0, random=lambda: 1.0)
    low = RetryPolicy(base_delay=0.25, max_delay=2.0, random=lambda: 0.0)
    assert [high.backoff_delay(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [low.backoff_delay(n) for n in range(4)] == [0.125, 0.25, 0.5, 1.0]
    assert high.backoff_delay(10_000) == 2.0  # no overflow however many retries


def test_backoff_stops_after_max_attempts_and_starts_afresh_on_reset(clock: FakeClock) -> None:
    backoff = clock.policy(max_attempts=3, base_delay=1.0).backoff()
    assert [backoff.next_delay(), backoff.next_delay(), backoff.next_delay()] == [1.0, 2.0, None]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_backoff_stops_total_seconds_after_the_first_failure(clock: FakeClock) -> None:
    backoff = clock.policy(max_attempts=100, base_delay=4.0, max_delay=4.0, total_seconds=10.0)
    waits = backoff.backoff()
    clock.now = 500.0  # time before the first failure (a long poll) does not count
    delays = []
    while (delay := waits.next_delay()) is not None:
        delays.append(delay)
        clock.sleep(delay)
    assert delays == [4.0, 4.0, 2.0]  # the last wait is cut to what is left of the budget
    assert clock.now == 510.0


def test_retry_after_is_honoured_up_to_four_max_delays_and_the_budget(clock: FakeClock) -> None:
    policy = clock.policy(max_delay=2.0, total_seconds=60.0)
    assert policy.backoff().next_delay(retry_after=1.0) == 1.0
    assert policy.backoff().next_delay(retry_after=0.0) == 0.0
    assert policy.backoff().next_delay(retry_after=3600.0) == 8.0
    tight = clock.policy(max_delay=30.0, total_seconds=5.0).backoff()
    assert tight.next_delay(retry_after=20.0) == 5.0


def test_poll_delay_grows_to_its_cap() -> None:
    policy = RetryPolicy(poll_interval=1.0, max_poll_interval=2.0)
    assert [policy.poll_delay(n) for n in range(4)] == [1.0, 1.5, 2.0, 2.0]


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"max_attempts": 0}, "max_attempts counts the first try"),
        ({"base_delay": -1}, "base_delay must be a finite number"),
        ({"total_seconds": float("inf")}, "total_seconds must be a finite number"),
        ({"poll_interval": 3.0, "max_poll_interval": 1.0}, "must be at least poll_interval"),
    ],
)
def test_a_bad_policy_says_what_is_wrong(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        RetryPolicy(**options)


def test_retry_state_shows_no_request_and_no_key(clock: FakeClock) -> None:
    policy = clock.policy()
    backoff = policy.backoff()
    backoff.next_delay()
    assert repr(policy) == (
        "RetryPolicy(max_attempts=6, base_delay=0.25, max_delay=8.0, total_seconds=60.0, "
        "poll_interval=1.0, max_poll_interval=5.0)"
    )
    assert repr(backoff) == "<Backoff 1 of 5 retries used>"
    assert set(vars(backoff)) == {"policy", "retries", "_first_failure"}


# -- which failures are retried ------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "get", "create"),
    [
        (httpx.ConnectError("refused"), True, True),
        (httpx.ConnectTimeout("connect"), True, True),
        (httpx.PoolTimeout("pool"), True, True),
        (httpx.ReadTimeout("read"), True, False),
        (httpx.ReadError("reset"), True, False),
        (httpx.WriteError("broken pipe"), True, False),
        (httpx.RemoteProtocolError("server disconnected"), True, False),
        (httpx.LocalProtocolError("bad header"), False, False),
        (httpx.UnsupportedProtocol("ftp://"), False, False),
        (httpx.Response(408), True, False),
        (httpx.Response(429), True, True),
        (httpx.Response(500), True, False),
        (httpx.Response(502), True, False),
        (httpx.Response(503), True, True),
        (httpx.Response(504), True, False),
        (httpx.Response(400), False, False),
        (httpx.Response(401), False, False),
        (httpx.Response(404), False, False),
        (httpx.Response(422), False, False),
    ],
    ids=lambda value: value if isinstance(value, bool) else repr(value),
)
def test_what_is_retried(outcome: Any, get: bool, create: bool) -> None:
    assert is_safe_to_retry_get(outcome) is get
    assert is_safe_to_retry_create(outcome) is create
    # Ambiguous: transient, yet the create may have happened.
    assert is_ambiguous_create(outcome) is (get and not create)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(httpx.Response(429, headers=headers)) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = retry_after(httpx.Response(503, headers={"retry-after": format_datetime(when)}))
    assert seconds is not None and 25 <= seconds <= 30


# -- reads ---------------------------------------------------------------------------------


def test_a_read_is_retried_through_errors_until_it_succeeds(clock: FakeClock) -> None:
    script = Script(
        httpx.ConnectError("refused"),
        error(500),
        httpx.ReadTimeout("slow"),
        error(429, headers={"retry-after": "3"}),
        httpx.Response(200, json=RUN),
    )
    run = client_for(script, clock.policy(jitter=0.0)).retrieve_run("trun_1")
    assert run.run_id == "trun_1"
    assert len(script.requests) == 5
    assert clock.sleeps == [0.125, 0.25, 0.5, 3.0]  # backoff, and the wait the 429 asked for


def test_a_read_gives_up_when_its_attempts_are_used_up(clock: FakeClock) -> None:
    script = Script(error(503, "overloaded"))
    with pytest.raises(ServerError, match="overloaded"):
        client_for(script, clock.policy(max_attempts=3)).retrieve_run("trun_1")
    assert len(script.requests) == 3 and len(clock.sleeps) == 2


def test_errors_that_would_fail_again_are_not_retried(clock: FakeClock) -> None:
    script = Script(error(404, "Run id not found"))
    with pytest.raises(NotFoundError, match="Run id not found"):
        client_for(script, clock.policy()).retrieve_run("trun_1")
    assert len(script.requests) == 1 and clock.sleeps == []


def test_retry_none_tries_each_request_once() -> None:
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1:9"):
        client_for(script, None).retrieve_run("trun_1")
    assert len(script.requests) == 1


def test_retry_must_be_a_policy() -> None:
    with pytest.raises(TypeError, match="retry must be a RetryPolicy, or None"):
        Client(KEY, "http://127.0.0.1:9", retry=3)  # type: ignore[arg-type]


def test_result_asks_again_after_408_without_a_retry_wait(clock: FakeClock) -> None:
    output = {"type": "text", "content": "3.05 trillion USD", "basis": []}
    done = {"run": {**RUN, "status": "completed", "is_active": False}, "output": output}
    script = Script(error(408), error(408), error(502), httpx.Response(200, json=done))
    result = client_for(script, clock.policy()).result("trun_1", timeout=None)
    assert result.run.status == "completed"
    assert len(script.requests) == 4
    assert len(clock.sleeps) == 1  # only the 502 waited: a 408 is "not yet", asked at once


# -- creates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        error(429, "Rate limit exceeded", {"retry-after": "1"}),
        error(503, "Service unavailable"),
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("timed out connecting"),
    ],
    ids=["429", "503", "connect-error", "connect-timeout"],
)
def test_a_create_is_retried_only_when_nothing_can_exist(first: Answer, clock: FakeClock) -> None:
    script = Script(first, httpx.Response(202, json=RUN))
    run = client_for(script, clock.policy()).create_run(REQUEST)
    assert run.run_id == "trun_1"
    assert len(script.requests) == 2
    assert len(clock.sleeps) == 1


def test_a_429_on_create_waits_as_long_as_retry_after_says(clock: FakeClock) -> None:
    script = Script(
        error(429, headers={"retry-after": "1"}),
        error(429, headers={"retry-after-ms": "1500"}),
        httpx.Response(202, json=RUN),
    )
    client_for(script, clock.policy(jitter=0.0)).create_run(REQUEST)
    assert clock.sleeps == [1.0, 1.5]


@pytest.mark.parametrize(
    ("first", "status", "cause"),
    [
        (error(500, "boom"), 500, "the Task API answered 500 Internal Server Error (boom)"),
        (error(502, "bad gateway"), 502, "answered 502 Bad Gateway"),
        (error(504, "gateway timeout"), 504, "answered 504 Gateway Timeout"),
        (error(408, "timed out"), 408, "answered 408 Request Timeout"),
        (httpx.ReadTimeout("timed out"), None, "failed after the request was sent (ReadTimeout"),
        (httpx.ReadError("connection reset"), None, "(ReadError: connection reset)"),
        (httpx.RemoteProtocolError("Server disconnected"), None, "(RemoteProtocolError"),
    ],
    ids=["500", "502", "504", "408", "read-timeout", "read-error", "disconnected"],
)
def test_an_ambiguous_create_is_reported_not_retried(
    first: Answer, status: int | None, cause: str, clock: FakeClock
) -> None:
    script = Script(first, httpx.Response(202, json=RUN))
    with pytest.raises(AmbiguousCreateError) as caught:
        client_for(script, clock.policy()).create_run(REQUEST)
    assert len(script.requests) == 1 and clock.sleeps == []
    error = caught.value
    assert error.status == status
    text = str(error)
    assert cause in text
    assert "the run may or may not have been created" in text
    assert "not sent again, so that you are not charged twice" in text
    assert "%parallel history" in text and "creates a new run" in text
    assert error._render_traceback_() == [f"AmbiguousCreateError: {text}"]


def test_an_ambiguous_create_is_reported_even_without_retries() -> None:
    script = Script(error(500))
    with pytest.raises(AmbiguousCreateError):
        client_for(script, None).create_run(REQUEST)


def test_other_create_errors_are_raised_at_once(clock: FakeClock) -> None:
    body = {"type": "error", "error": {"message": "Invalid request", "detail": None}}
    script = Script(httpx.Response(422, json=body))
    with pytest.raises(ValidationError):
        client_for(script, clock.policy()).create_run(REQUEST)
    assert len(script.requests) == 1


def test_a_create_still_refused_after_every_retry_is_the_rate_limit_error(
    clock: FakeClock,
) -> None:
    script = Script(error(429, headers={"retry-after": "2"}))
    with pytest.raises(RateLimitError) as caught:
        client_for(script, clock.policy(max_attempts=4)).create_run(REQUEST)
    assert caught.value.retry_after == 2.0
    assert len(script.requests) == 4 and clock.sleeps == [2.0, 2.0, 2.0]


def test_an_ambiguous_create_never_shows_the_key(clock: FakeClock) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return error(500, f"internal error for key {request.headers['x-api-key']}")

    with pytest.raises(AmbiguousCreateError) as caught:
        client_for(echo, clock.policy()).create_run(REQUEST)
    chain = [caught.value, caught.value.__cause__]
    assert all(KEY not in str(e) and KEY not in repr(e) for e in chain)
    assert "[redacted]" in str(caught.value)


def test_group_creates_follow_the_same_rule(clock: FakeClock) -> None:
    script = Script(error(500))
    client = client_for(script, clock.policy())
    with pytest.raises(AmbiguousCreateError, match=r"the 2 runs added to task group tgrp_1 may"):
        client.add_runs("tgrp_1", [REQUEST, REQUEST])
    with pytest.raises(AmbiguousCreateError, match="retrieve_group\\('tgrp_1'\\)"):
        client.add_runs("tgrp_1", [REQUEST])
    with pytest.raises(AmbiguousCreateError, match="the task group may or may not"):
        client.create_group()
    assert len(script.requests) == 3 and clock.sleeps == []

    group = {"taskgroup_id": "tgrp_1", "status": {"is_active": False}, "created_at": None}
    refused = Script(error(503), httpx.Response(200, json=group))
    assert client_for(refused, clock.policy()).create_group().taskgroup_id == "tgrp_1"
    assert len(refused.requests) == 2


# -- async ---------------------------------------------------------------------------------


async def test_async_client_retries_by_the_same_rules(clock: FakeClock) -> None:
    script = Script(error(429, headers={"retry-after": "1"}), httpx.Response(202, json=RUN))
    async with async_client_for(script, clock.policy()) as client:
        assert (await client.create_run(REQUEST)).run_id == "trun_1"
        assert clock.sleeps == [1.0]
    ambiguous = Script(httpx.ReadTimeout("timed out"))
    async with async_client_for(ambiguous, clock.policy()) as client:
        with pytest.raises(AmbiguousCreateError):
            await client.create_run(REQUEST)
    assert len(ambiguous.requests) == 1
    reads = Script(error(502), httpx.Response(200, json=RUN))
    async with async_client_for(reads, clock.policy()) as client:
        assert (await client.retrieve_run("trun_1")).run_id == "trun_1"
    assert len(reads.requests) == 2


# -- event streams -------------------------------------------------------------------------

STATE = {"type": "task_run.state", "event_id": None, "run": RUN}


def frames(*events: dict[str, Any]) -> Iterator[bytes]:
    for event in events:
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def sse(body: Any) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def test_a_stream_connect_is_retried(clock: FakeClock) -> None:
    script = Script(error(503), httpx.ConnectError("refused"), sse(b"".join(frames(STATE))))
    events = list(client_for(script, clock.policy()).events("trun_1"))
    assert [type(e).__name__ for e in events] == ["StateEvent"]
    assert len(script.requests) == 3 and len(clock.sleeps) == 2


async def test_an_async_stream_connect_is_retried(clock: FakeClock) -> None:
    script = Script(error(500), sse(b"".join(frames(STATE))))
    async with async_client_for(script, clock.policy()) as client:
        events = [event async for event in client.events("trun_1")]
    assert len(events) == 1 and len(clock.sleeps) == 1


def test_a_stream_that_breaks_after_opening_is_stream_interrupted(clock: FakeClock) -> None:
    def broken() -> Iterator[bytes]:
        yield from frames(STATE)
        raise httpx.RemoteProtocolError("peer closed connection (incomplete chunked read)")

    script = Script(sse(broken()))
    seen = []
    with pytest.raises(StreamInterrupted, match="keep reading the event stream") as caught:
        for event in client_for(script, clock.policy()).events("trun_1"):
            seen.append(event)
    assert len(seen) == 1  # what came before the break was delivered
    assert isinstance(caught.value, ConnectionFailed)
    assert len(script.requests) == 1  # reopening is the caller's choice (the runner's)


def test_a_stream_whose_connects_keep_failing_raises_the_last_error(clock: FakeClock) -> None:
    script = Script(error(502, "bad gateway"))
    with pytest.raises(ServerError, match="502 Bad Gateway"):
        list(client_for(script, clock.policy(max_attempts=2)).events("trun_1"))
    assert len(script.requests) == 2


def test_a_stream_never_returns_its_connection_to_the_pool(clock: FakeClock) -> None:
    # close() shuts the socket down to wake a blocked read; were the connection pooled again
    # when the body ends, that could cut another thread's request (a create, say).
    script = Script(sse(b"".join(frames(STATE))))
    list(client_for(script, clock.policy()).events("trun_1"))
    assert script.requests[0].headers["connection"] == "close"
