"""Strict SSE reading for emulator tests: every frame must be exactly ``event:`` + ``data:``.

The official SDK's decoder crashes on ``id:``/``retry:`` fields, comments and data-less frames,
so these helpers fail a test on any of them instead of skipping them like a lenient reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


def parse_frame(frame: bytes) -> dict[str, Any]:
    """One frame (without its blank line) -> the event, asserting the exact framing."""
    lines = frame.split(b"\n")
    assert len(lines) == 2, f"a frame must be exactly event + data lines, got {frame!r}"
    event_line, data_line = lines
    assert event_line.startswith(b"event: "), f"first line must be event:, got {event_line!r}"
    assert data_line.startswith(b"data: "), f"second line must be data:, got {data_line!r}"
    event = json.loads(data_line[len(b"data: ") :])
    assert isinstance(event, dict)
    assert event["type"] == event_line[len(b"event: ") :].decode()
    return event


def parse_stream(raw: bytes) -> list[dict[str, Any]]:
    """A complete stream body -> its events (the body must end at a frame boundary)."""
    assert raw.endswith(b"\n\n"), "the stream must end with a complete frame"
    assert b"\r" not in raw
    return [parse_frame(frame) for frame in raw[:-2].split(b"\n\n")]


def iter_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Events of a live streaming response as they arrive, each strictly checked."""
    assert response.headers["content-type"].startswith("text/event-stream")
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            yield parse_frame(frame)
    assert buffer == b"", f"the stream ended inside a frame: {buffer!r}"


def read_events(
    client: httpx.Client, url: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """GET an event stream to its end and return its events."""
    with client.stream("GET", url, params=params) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_stream(response.read())
