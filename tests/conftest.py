"""Shared fixtures: one instant emulator per test session, and an HTTP client for it.

- ``emulator``: an :class:`~parallel_nb.emulator.EmulatorHandle` started with ``time_scale=0``
  (runs finish as fast as the loop allows) and ``api_key="test-key"``; use ``emulator.base_url``
  and ``emulator.api_key``. It is shared, so never assert exact totals from ``emulator.stats()``;
  compare before/after values, or start your own emulator with ``start_emulator(...)`` as a
  context manager when a test needs other settings (time scale, faults, rate limit).
- ``client``: an ``httpx.Client`` with that base URL and the ``x-api-key`` header, closed after
  the test.
- ``data_dir`` (automatic): every test gets an empty directory as ``PARALLEL_NB_DATA_DIR``, so
  runs are recorded in a run store of its own, never in the user's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from parallel_nb.emulator import EmulatorHandle, start_emulator

TEST_KEY = "test-key"


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorHandle]:
    with start_emulator(time_scale=0, api_key=TEST_KEY) as handle:
        yield handle


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("PARALLEL_NB_DATA_DIR", str(path))
    return path


@pytest.fixture
def client(emulator: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emulator.base_url, headers={"x-api-key": TEST_KEY}, timeout=30.0
    ) as http:
        yield http
