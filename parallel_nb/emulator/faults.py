"""Deliberate misbehaviour: injected error statuses, slow answers, dropped streams, rate limits.

A fault spec is a comma list of ``name=value`` pairs, for example
``"429=0.2,500=0.1,503=0.1,drop=0.3,slow=0.1,slow_seconds=1.5,retry_after=1"``:

- ``<status>=p`` (any 4xx/5xx code, e.g. ``408``, ``429``, ``500``, ``503``): answer that status
  with probability ``p`` instead of serving the request.
- ``<status>@<scope>=p``: the same for one kind of request only: ``post`` (creates), ``get``
  (reads, event streams included) or ``stream`` (event streams). ``500@get=0.2,503@post=0.1``
  fails reads with 500s but creates only with unambiguous 503s. For each kind of request the
  status probabilities that apply add up to at most 1.
- ``drop=p``: cut an event stream abruptly after a few frames (no clean end of the body).
- ``slow=p``: wait ``slow_seconds`` (default 1) before answering.
- ``retry_after=s``: the ``Retry-After`` seconds sent with an injected 429 (default 1).

Decisions come from one random stream seeded by the emulator seed, so a given sequence of
requests meets the same faults on every run.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["FaultDecision", "FaultInjector", "FaultSpec", "RateLimiter"]

_GRAMMAR_HINT = (
    "use comma-separated name=value pairs such as "
    '"429=0.2,500@get=0.1,drop=0.3,slow=0.1,slow_seconds=1.5,retry_after=1"'
)
SCOPES = ("post", "get", "stream")
"""The kinds of request a status fault can be limited to (``500@get=0.2``)."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Per-request fault probabilities; the empty spec injects nothing.

    ``statuses`` apply to every request, ``scoped`` only to its kind of request (a key of
    :data:`SCOPES`).
    """

    statuses: Mapping[int, float] = field(default_factory=dict)
    scoped: Mapping[str, Mapping[int, float]] = field(default_factory=dict)
    drop: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.0
    retry_after: int = 1

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """Read the ``name=value,...`` grammar; raises ValueError saying what is wrong."""
        statuses: dict[int, float] = {}
        scoped: dict[str, dict[int, float]] = {}
        options: dict[str, float] = {}
        for item in (text or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, raw = item.partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"fault {item!r} has no value; {_GRAMMAR_HINT}")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"fault {name!r} needs a number, not {raw.strip()!r}") from None
            code, at, scope = name.partition("@")
            if code.isdigit() and 400 <= int(code) <= 599:
                if at and scope not in SCOPES:
                    raise ValueError(
                        f"unknown scope {scope!r} in fault {name!r}: use "
                        f"{', '.join(SCOPES)} (e.g. 500@get=0.2), or no scope for every request"
                    )
                target = scoped.setdefault(scope, {}) if at else statuses
                target[int(code)] = _probability(name, value)
            elif name in ("drop", "slow"):
                options[name] = _probability(name, value)
            elif name in ("slow_seconds", "retry_after"):
                if value < 0 or not math.isfinite(value):
                    raise ValueError(f"{name} must be a finite number >= 0, not {raw.strip()!r}")
                options[name] = value
            else:
                raise ValueError(
                    f"unknown fault {name!r}: use an HTTP status from 400 to 599, drop, slow, "
                    f"slow_seconds or retry_after; {_GRAMMAR_HINT}"
                )
        spec = cls(
            statuses=statuses,
            scoped=scoped,
            drop=options.get("drop", 0.0),
            slow=options.get("slow", 0.0),
            slow_seconds=options.get("slow_seconds", 1.0),
            retry_after=math.ceil(options.get("retry_after", 1)),
        )
        for method, streaming in (("POST", False), ("GET", False), ("GET", True)):
            if sum(spec.statuses_for(method, streaming=streaming).values()) > 1:
                kind = "event stream" if streaming else method
                raise ValueError(
                    f"the status fault probabilities for a {kind} request add up to more than 1"
                )
        return spec

    def statuses_for(self, method: str, *, streaming: bool) -> dict[int, float]:
        """The status faults that apply to one request, with their probabilities."""
        scopes = [method.lower()] + (["stream"] if streaming else [])
        merged = dict(self.statuses)
        for scope in scopes:
            for status, probability in self.scoped.get(scope, {}).items():
                merged[status] = merged.get(status, 0.0) + probability
        return merged


def _probability(name: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError(f"fault {name!r} is a probability between 0 and 1, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one request: answer ``status`` instead, wait ``delay`` seconds first, and
    (for event streams) cut the stream after ``drop_after`` frames."""

    status: int | None = None
    delay: float = 0.0
    drop_after: int | None = None


class FaultInjector:
    """Draws a FaultDecision per API request and counts what was injected."""

    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self.spec = spec
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(f"faults:{seed}")

    def decide(self, *, method: str, streaming: bool) -> FaultDecision:
        spec = self.spec
        status = self._pick_status(spec.statuses_for(method, streaming=streaming))
        delay = spec.slow_seconds if spec.slow and self._rng.random() < spec.slow else 0.0
        drop_after = None
        if streaming and status is None and spec.drop and self._rng.random() < spec.drop:
            drop_after = self._rng.randint(1, 3)
        if status is not None:
            self.record(str(status))
        if delay:
            self.record("slow")
        return FaultDecision(status, delay, drop_after)

    def record(self, kind: str) -> None:
        self.counts[kind] += 1

    def _pick_status(self, statuses: Mapping[int, float]) -> int | None:
        if not statuses:
            return None
        roll = self._rng.random()
        for status, probability in sorted(statuses.items()):
            if roll < probability:
                return status
            roll -= probability
        return None


class RateLimiter:
    """A sliding one-minute window of task-creating requests per API key.

    Keys are kept as digests so the limiter never holds a key in memory as text.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[bytes, deque[float]] = {}

    def hit(self, api_key: str) -> float | None:
        """Count one request; None if allowed, else the seconds until one is allowed again."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        window = self._hits.setdefault(hashlib.sha256(api_key.encode()).digest(), deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= self.per_minute:
            return window[0] + 60.0 - now
        window.append(now)
        return None
