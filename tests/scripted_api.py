"""Test doubles for following runs: a Client whose event streams follow a script, a view that
records what it was shown, and ``point_at`` (send the magics' runs to a given emulator).

``ScriptedClient(streams)`` answers ``create_run`` with a queued run and serves one scripted
stream per ``events()`` call. A script item is an event (sent), a float (a pause, cut short
when the stream is closed) or an exception (raised by the stream). Use it where the emulator
cannot produce the traffic a test needs (a burst of 1,000 events, a stream that breaks).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from parallel_nb.api.models import (
    Event,
    MessageEvent,
    StateEvent,
    StatsEvent,
    TaskOutput,
    TaskRequest,
    TaskRun,
    TaskRunResult,
)
from parallel_nb.emulator.knowledge import FIXTURE_COMPANIES
from parallel_nb.runs.state import RunState

if TYPE_CHECKING:
    import pytest

    from parallel_nb.emulator import EmulatorHandle

RUN_ID = "trun_" + "ab" * 16
# The companies the built-in emulator fixtures know.
COMPANIES = list(FIXTURE_COMPANIES)
OUTPUT = {"type": "json", "content": {"gdp": "$3.1 trillion"}, "basis": []}


def run(status: str, processor: str = "core", error: str | None = None) -> TaskRun:
    return TaskRun.from_dict(
        {
            "run_id": RUN_ID,
            "interaction_id": RUN_ID,
            "status": status,
            "is_active": status in ("queued", "running"),
            "processor": processor,
            "error": {"message": error} if error else None,
        }
    )


def state(status: str, *, output: bool = False, error: str | None = None) -> StateEvent:
    task_output = TaskOutput.from_dict(OUTPUT) if output else None
    return StateEvent(run=run(status, error=error), output=task_output)


def stats(progress: float, read: int = 1) -> StatsEvent:
    return StatsEvent(progress_meter=progress, sources_considered=read * 2, sources_read=read)


def message(n: int, kind: str = "search") -> MessageEvent:
    return MessageEvent(kind=kind, message=f"query {n}", timestamp=f"2026-01-01T00:00:{n:06d}Z")


def burst(count: int, batches: int, pause: float) -> list[Event | float]:
    """``count`` events in ``batches`` equal batches with ``pause`` seconds after each batch,
    framed by a running state and a completed state with output."""
    script: list[Event | float] = [state("running")]
    per_batch = count // batches
    for b in range(batches):
        for i in range(per_batch):
            n = b * per_batch + i
            script.append(message(n) if n % 2 else stats(min(99.0, n / count * 100), n))
        script.append(pause)
    script.append(state("completed", output=True))
    return script


class ScriptedStream:
    """An EventStream stand-in: iterable once, ``close()`` from any thread ends it."""

    def __init__(self, script: Sequence[Event | float | BaseException]) -> None:
        self._script = script
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        for item in self._script:
            if self._closed.is_set():
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, float):
                self._closed.wait(item)
                continue
            yield item

    def close(self) -> None:
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


class ScriptedClient:
    """A Client stand-in: one scripted stream per ``events()`` call, in order."""

    def __init__(
        self,
        streams: Sequence[Sequence[Event | float | BaseException]],
        *,
        final: TaskRun | None = None,
    ) -> None:
        self._scripts = list(streams)
        self.final = final or run("completed")
        self.streams: list[ScriptedStream] = []
        self.result_calls = 0

    def create_run(self, request: TaskRequest) -> TaskRun:
        return run("queued", processor=request.processor)

    def retrieve_run(self, run_id: str) -> TaskRun:
        return self.final

    def events(self, run_id: str) -> ScriptedStream:
        stream = ScriptedStream(self._scripts.pop(0) if self._scripts else ())
        self.streams.append(stream)
        return stream

    def result(self, run_id: str, *, timeout: float | None = None) -> TaskRunResult:
        self.result_calls += 1
        return TaskRunResult(run=self.final, output=TaskOutput.from_dict(OUTPUT))


class RecordingView:
    """A RunView that keeps every state it is shown and the thread that showed it."""

    def __init__(self) -> None:
        self.states: list[RunState] = []
        self.threads: set[int] = set()
        self.thread_names: set[str] = set()
        self.closed = 0

    def update(self, state: RunState) -> None:
        self.states.append(state)
        self.threads.add(threading.get_ident())
        self.thread_names.add(threading.current_thread().name)

    def close(self) -> None:
        self.closed += 1

    @property
    def last(self) -> RunState:
        return self.states[-1]


def request(
    processor: str = "core", text: Any = "What was the GDP of France in 2023?"
) -> TaskRequest:
    return TaskRequest(processor=processor, input=text)


def point_at(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorHandle) -> None:
    monkeypatch.setenv("PARALLEL_API_KEY", emulator.api_key or "")
    monkeypatch.setenv("PARALLEL_BASE_URL", emulator.base_url)
    monkeypatch.delenv("PARALLEL_NB_DEMO", raising=False)
