"""Running the emulator: uvicorn on a background thread, and the handle that controls it.

``start_emulator()`` binds the socket before it returns (port 0 picks a free one), so
``handle.base_url`` is usable at once; ``handle.stop()`` shuts the server down and joins its
thread. Nothing starts at import time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import math
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from .app import Emulator, create_app
from .faults import FaultSpec
from .knowledge import Knowledge

__all__ = ["DEFAULT_TIME_SCALE", "EmulatorConfig", "EmulatorHandle", "start_emulator"]

DEFAULT_TIME_SCALE = 0.05
_STARTUP_SECONDS = 15.0


@dataclass
class EmulatorConfig:
    """How an emulator behaves; every field is also a ``start_emulator`` keyword.

    ``api_key=None`` accepts any non-empty ``x-api-key``. ``time_scale`` multiplies the
    documented processor latencies (0 = as fast as possible). ``faults`` takes the grammar of
    :mod:`parallel_nb.emulator.faults`. ``rate_limit`` counts task-creating POSTs per minute per
    key (0 = unlimited). Event streams close after ``stream_max_seconds`` and re-send their
    current state after ``keepalive_seconds`` without events. ``webhook_secret=None`` signs
    webhooks with a random ``whsec_`` secret, readable as ``handle.webhook_secret``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = field(default=None, repr=False)
    time_scale: float = DEFAULT_TIME_SCALE
    seed: int = 0
    faults: str | FaultSpec | None = None
    fixtures: str | Path | Sequence[str | Path] | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    rate_limit: int = 2000
    stream_max_seconds: float = 570.0
    keepalive_seconds: float = 10.0
    fault_spec: FaultSpec = field(init=False)
    effective_webhook_secret: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.time_scale >= 0 and math.isfinite(self.time_scale)):
            raise ValueError(f"time_scale must be a finite number >= 0, not {self.time_scale}")
        if not 0 <= self.port <= 65535:
            raise ValueError(
                f"port must be between 0 and 65535 (0 = any free port), not {self.port}"
            )
        if self.rate_limit < 0:
            raise ValueError(f"rate_limit must be >= 0 (0 = unlimited), not {self.rate_limit}")
        for name in ("stream_max_seconds", "keepalive_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, not {getattr(self, name)}")
        if self.api_key == "":
            raise ValueError("api_key must be a non-empty string, or None to accept any key")
        self.fault_spec = (
            self.faults if isinstance(self.faults, FaultSpec) else FaultSpec.parse(self.faults)
        )
        self.effective_webhook_secret = self.webhook_secret or (
            "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        )


class EmulatorHandle:
    """A running emulator: ``base_url``, ``stats()``, ``stop()``; also a context manager."""

    def __init__(
        self,
        config: EmulatorConfig,
        base_url: str,
        server: uvicorn.Server,
        thread: threading.Thread,
        loop: asyncio.AbstractEventLoop,
        emulator: Emulator,
    ) -> None:
        self.config = config
        self.base_url = base_url
        self._server = server
        self._thread = thread
        self._loop = loop
        self._emulator = emulator

    @property
    def api_key(self) -> str | None:
        """The key the emulator requires, or None when it accepts any non-empty key."""
        return self.config.api_key

    @property
    def webhook_secret(self) -> str:
        """The secret webhook signatures are made with."""
        return self.config.effective_webhook_secret

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """The same JSON as ``GET /_emulator/stats``, read on the server's own loop."""
        if not self.running:
            raise RuntimeError("the emulator is stopped; stats are only available while it runs")

        async def snapshot() -> dict[str, Any]:
            return self._emulator.stats()

        return asyncio.run_coroutine_threadsafe(snapshot(), self._loop).result(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Close open streams, shut the server down and join its thread. Safe to call twice."""
        if not self.running:
            return
        # The loop may close between the check above and this call.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._emulator.engine.close)
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the emulator at {self.base_url} did not stop within {timeout} s")

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmulatorHandle {self.base_url} {state}>"


def start_emulator(config: EmulatorConfig | None = None, /, **options: Any) -> EmulatorHandle:
    """Start an emulator on a background thread and return once it accepts requests.

    ``options`` are EmulatorConfig fields and override ``config``:
    ``start_emulator(time_scale=0, api_key="test-key")``.
    """
    config = dataclasses.replace(config or EmulatorConfig(), **options)
    knowledge = Knowledge.load(config.fixtures)
    app = create_app(config, knowledge)
    sock = _bind(config.host, config.port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http="h11",
            loop="asyncio",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            # Outlive clients' idle connections (httpx drops them after 5 s) so a reused
            # connection is never closed under a request by the server's own timer.
            timeout_keep_alive=65,
        )
    )
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:
            failure.append(exc)
        finally:
            sock.close()
            loop.close()

    host, port = sock.getsockname()[:2]
    thread = threading.Thread(target=serve, name=f"parallel-nb-emulator:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + _STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            reason = f": {failure[0]!r}" if failure else ""
            raise RuntimeError(f"the emulator failed to start on {host}:{port}{reason}")
        time.sleep(0.01)
    return EmulatorHandle(config, _base_url(host, port), server, thread, loop, app.state.emulator)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
    # Nagle's algorithm and delayed ACKs add ~40 ms to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or 0"
        ) from None
    return sock


def _base_url(host: str, port: int) -> str:
    # A wildcard bind is reached through the loopback address of its family.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
