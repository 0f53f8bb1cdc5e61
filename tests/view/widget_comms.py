"""A stand-in for the kernel's comms, so widget tests can count what a view sends (as
ipywidgets' own tests do) without a kernel."""

from __future__ import annotations

import uuid
from typing import Any


class RecordingComm:
    """Stands in for a kernel comm and keeps every message a widget sends."""

    kernel = "recording"  # widgets only send when their comm has a kernel

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = kwargs.get("comm_id") or uuid.uuid4().hex
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        pass

    def send(self, data: Any = None, **kwargs: Any) -> None:
        self.sent.append(data)

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.closed = True


def updates(comms: list[RecordingComm]) -> int:
    return sum(1 for c in comms for data in c.sent if data.get("method") == "update")
