"""Where runs go: the Task API with the user's key, or (demo mode) the embedded emulator.

Environment variables: ``PARALLEL_API_KEY`` (the key; without it, demo mode),
``PARALLEL_BASE_URL`` (default ``https://api.parallel.ai``), ``PARALLEL_NB_DEMO=1`` (demo
mode even with a key), ``PARALLEL_NB_TIME_SCALE`` (the demo emulator's speed; 0 = instant) and
``PARALLEL_NB_DATA_DIR`` (where the run store lives). The demo emulator starts on first use, not
at import, once per process, and stops at exit.
"""

from __future__ import annotations

import atexit
import math
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api.client import AsyncClient, Client
    from .emulator import EmulatorHandle
    from .runs.store import RunStore

__all__ = [
    "DEMO_NOTICE",
    "FORCED_DEMO_NOTICE",
    "Settings",
    "get_async_client",
    "get_client",
    "get_settings",
    "get_store",
    "reset_settings",
]

DEMO_NOTICE = (
    "parallel-nb: demo mode — no PARALLEL_API_KEY is set, so runs go to the embedded emulator "
    "(answers come from its fixtures, not the web). Set PARALLEL_API_KEY to use Parallel."
)
FORCED_DEMO_NOTICE = (
    "parallel-nb: demo mode — PARALLEL_NB_DEMO=1, so runs go to the embedded emulator "
    "(answers come from its fixtures, not the web). Unset PARALLEL_NB_DEMO to use Parallel."
)

_lock = threading.Lock()
_emulator: EmulatorHandle | None = None
_clients: dict[Settings, Client] = {}
_store: RunStore | None = None
_notice_shown = False


@dataclass(frozen=True, slots=True)
class Settings:
    """Where to send requests; ``repr()`` never shows the key."""

    base_url: str
    api_key: str = field(repr=False)
    demo: bool = False

    @property
    def endpoint(self) -> str:
        """Where runs go, as the run store keys them: the base URL, or ``"demo"`` for the demo
        emulator (its port changes with every process; its answers do not)."""
        return "demo" if self.demo else self.base_url


def get_settings() -> Settings:
    """The settings for the current environment, starting the demo emulator if needed."""
    key = os.environ.get("PARALLEL_API_KEY", "")
    forced = os.environ.get("PARALLEL_NB_DEMO") == "1"
    if forced or not key:
        emulator = _demo_emulator()
        _notice(FORCED_DEMO_NOTICE if forced else DEMO_NOTICE)
        return Settings(base_url=emulator.base_url, api_key=emulator.api_key or "", demo=True)
    from .api.client import DEFAULT_BASE_URL

    base_url = os.environ.get("PARALLEL_BASE_URL") or DEFAULT_BASE_URL
    return Settings(base_url=base_url, api_key=key, demo=False)


def get_client() -> Client:
    """A :class:`~parallel_nb.api.client.Client` for :func:`get_settings`, one per settings."""
    settings = get_settings()
    with _lock:
        client = _clients.get(settings)
        if client is None:
            from .api.client import Client

            client = _clients[settings] = Client(settings.api_key, settings.base_url)
        return client


def get_async_client() -> AsyncClient:
    """A new :class:`~parallel_nb.api.client.AsyncClient` for :func:`get_settings`.

    Not cached: an httpx async client belongs to the event loop it was first used on, and
    notebooks and ``asyncio.run`` create new loops. Close it (``async with``) when done.
    """
    from .api.client import AsyncClient

    settings = get_settings()
    return AsyncClient(settings.api_key, settings.base_url)


def get_store(path: str | Path | None = None, keep_input: str = "preview") -> RunStore:
    """The run store at ``path`` (None: :func:`~parallel_nb.runs.store.default_store_path`,
    looked up on every call so that ``PARALLEL_NB_DATA_DIR`` always applies).

    One store is open at a time: asking for another path or ``keep_input`` closes the previous
    one, so a notebook that switches stores does not keep files open.
    """
    from .runs.store import RunStore, default_store_path

    global _store
    target = Path(path).expanduser() if path else default_store_path()
    with _lock:
        current = _store
        if current is not None and current.path == target and current.keep_input == keep_input:
            return current
        store = _store = RunStore(target, keep_input=keep_input)
    if current is not None:
        current.close()
    return store


def reset_settings() -> None:
    """Stop the demo emulator, close the run store and forget cached clients (for tests that
    need a fresh process state, e.g. to see the demo notice again)."""
    global _emulator, _notice_shown, _store
    with _lock:
        _notice_shown = False
        for client in _clients.values():
            client.close()
        _clients.clear()
        emulator, _emulator = _emulator, None
        store, _store = _store, None
    if store is not None:
        store.close()
    if emulator is not None:
        atexit.unregister(emulator.stop)
        emulator.stop()


def _demo_emulator() -> EmulatorHandle:
    global _emulator
    with _lock:
        if _emulator is None or not _emulator.running:
            from .emulator import start_emulator

            _emulator = start_emulator(time_scale=_time_scale(), api_key=secrets.token_urlsafe(24))
            atexit.register(_emulator.stop)
        return _emulator


def _notice(text: str) -> None:
    """Print the demo notice the first time only. It goes to stdout: it is information, and
    notebooks paint stderr like an error."""
    global _notice_shown
    with _lock:
        if _notice_shown:
            return
        _notice_shown = True
    print(text)


def _time_scale() -> float:
    from .emulator import DEFAULT_TIME_SCALE

    raw = os.environ.get("PARALLEL_NB_TIME_SCALE", "").strip()
    if not raw:
        return DEFAULT_TIME_SCALE
    try:
        scale = float(raw)
    except ValueError:
        scale = -1.0
    if not (scale >= 0 and math.isfinite(scale)):
        raise ValueError(
            f"PARALLEL_NB_TIME_SCALE must be a number >= 0 (0 = instant, 1 = documented "
            f"latencies), not {raw!r}"
        )
    return scale
