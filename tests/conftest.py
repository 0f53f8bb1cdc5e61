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
- ``ip``: an IPython shell with the extension loaded (one per test module).
- ``on_emulator``: the magics' runs go to ``emulator``; their ``%config`` settings are back to
  the defaults after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from scripted_api import point_at

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


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("parallel_nb")
    yield shell
    shell.extension_manager.unload_extension("parallel_nb")


@pytest.fixture
def on_emulator(
    monkeypatch: pytest.MonkeyPatch, emulator: EmulatorHandle, ip: InteractiveShell
) -> Iterator[InteractiveShell]:
    point_at(monkeypatch, emulator)
    yield ip
    # %config writes to the shell's config as well, which a later module's magics would read.
    ip.config.pop("ParallelMagics", None)
    magics = ip.magics_manager.registry["ParallelMagics"]
    for name in magics.trait_names(config=True):
        magics.set_trait(name, magics.trait_defaults(name))
