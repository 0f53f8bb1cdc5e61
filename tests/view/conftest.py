"""Fixtures of the view tests: recording comms for widgets, and an IPython shell."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import comm
import ipywidgets as widgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from widget_comms import RecordingComm


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordingComm]]:
    """Every comm a widget opens during the test, recording what it sends."""
    opened: list[RecordingComm] = []

    def create_comm(**kwargs: Any) -> RecordingComm:
        opened.append(RecordingComm(**kwargs))
        return opened[-1]

    monkeypatch.setattr(comm, "create_comm", create_comm)
    yield opened
    widgets.Widget.close_all()  # open widgets left for interpreter exit complain there


@pytest.fixture
def shell() -> InteractiveShell:
    return InteractiveShell.instance()
