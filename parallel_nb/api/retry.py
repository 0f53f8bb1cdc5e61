"""When to send a request again, and how long to wait first, without ever paying twice.

A GET can be repeated freely. A POST that creates runs cannot: the Task API takes no
idempotency key, so if the server may have created the run before the answer was lost,
sending it again may create (and charge for) a second run. The official SDK retries such POSTs;
this module retries a create only when the server cannot have acted on it — the connection was
never made (nothing was sent), or the answer is 429 or 503, which the service gives before it
does anything. Every other transient failure of a create is *ambiguous* and is reported, not
retried (:class:`~.errors.AmbiguousCreateError`).

:class:`RetryPolicy` says how long to wait (jittered exponential backoff, ``Retry-After``
honoured, a bounded number of attempts and seconds); :class:`Backoff` applies it to one
operation. Neither ever holds a request, so retry state cannot leak an API key.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx

__all__ = [
    "NO_RETRIES",
    "Backoff",
    "Outcome",
    "RetryPolicy",
    "is_ambiguous_create",
    "is_safe_to_retry_create",
    "is_safe_to_retry_get",
    "retry_after",
    "start_backoff",
]

Outcome = BaseException | httpx.Response
"""What one attempt ended with: an error answer, or the exception raised instead of one."""

# Raised before a single byte of the request left: the server cannot have acted on it.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures worth another try: timeouts, dropped connections, a server hanging up.
# Not LocalProtocolError, UnsupportedProtocol or ProxyError: trying again fails the same way.
_TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Answers the service gives before it acts on a request (rate limit; overloaded).
_REFUSED_STATUSES = frozenset({429, 503})


async def _asyncio_sleep(seconds: float) -> None:
    # asyncio is imported on first use: it adds ~60 ms to importing the client, which
    # synchronous users never need.
    import asyncio

    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try a request again.

    ``max_attempts`` counts the first try. Waits grow as ``base_delay * 2**n`` up to
    ``max_delay``, each drawn at random from the upper half of that (so clients that failed
    together do not return together). A ``Retry-After`` (or ``retry-after-ms``) answer is waited
    for as asked, up to ``4 * max_delay``. Retrying stops ``total_seconds`` after the first
    failure. ``poll_interval`` / ``max_poll_interval`` pace polling a run when its event stream
    is unavailable.

    ``random``, ``sleep``, ``async_sleep`` and ``clock`` exist so tests can make every wait
    deterministic and instant.
    """

    max_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0
    total_seconds: float = 60.0
    poll_interval: float = 1.0
    max_poll_interval: float = 5.0
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(
        default=_asyncio_sleep, repr=False, compare=False
    )
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise ValueError(
                f"max_attempts counts the first try, so it must be an integer of 1 or more, "
                f"not {self.max_attempts!r} (use retry=None to turn retries off)"
            )
        for name in ("base_delay", "max_delay", "total_seconds", "poll_interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        if not self.max_poll_interval >= self.poll_interval:
            raise ValueError(
                f"max_poll_interval ({self.max_poll_interval!r}) must be at least "
                f"poll_interval ({self.poll_interval!r})"
            )

    def backoff_delay(self, retries: int) -> float:
        """The wait before retry number ``retries + 1``: jittered, never above ``max_delay``."""
        # min() first: 2**retries overflows a float long before any caller gets there.
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(retries, 64))
        return ceiling * (0.5 + 0.5 * self.random())

    def poll_delay(self, unchanged: int) -> float:
        """The wait before the next poll of a run that has not changed ``unchanged`` times."""
        return min(self.max_poll_interval, self.poll_interval * 1.5 ** min(unchanged, 64))

    def backoff(self) -> Backoff:
        """A fresh budget of retries for one operation."""
        return Backoff(self)


class Backoff:
    """One operation's retries under a policy.

    After each failure, :meth:`next_delay` gives the seconds to wait before trying again, or
    None once the attempts or the time are used up. :meth:`reset` starts afresh (a stream that
    made progress has a whole new budget for its next break).
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0
        self._first_failure: float | None = None

    def __repr__(self) -> str:
        return f"<Backoff {self.retries} of {self.policy.max_attempts - 1} retries used>"

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt (``retry_after`` if the server asked for a
        wait), or None to give up."""
        policy = self.policy
        now = policy.clock()
        if self._first_failure is None:
            self._first_failure = now
        remaining = policy.total_seconds - (now - self._first_failure)
        if self.retries >= policy.max_attempts - 1 or remaining <= 0:
            return None
        if retry_after is not None:
            delay = min(max(0.0, retry_after), 4 * policy.max_delay)
        else:
            delay = policy.backoff_delay(self.retries)
        self.retries += 1
        return min(delay, remaining)

    def reset(self) -> None:
        self.retries = 0
        self._first_failure = None


NO_RETRIES = RetryPolicy(max_attempts=1)
"""What ``retry=None`` means: every request is tried once."""


def start_backoff(policy: RetryPolicy | None) -> Backoff:
    """A fresh budget of retries under ``policy``; none at all for None."""
    return (policy or NO_RETRIES).backoff()


def is_safe_to_retry_get(outcome: Outcome) -> bool:
    """Whether a request that changes nothing (a GET, opening a stream) is worth another try:
    a connection error or timeout, 408, 429 or any 5xx."""
    if isinstance(outcome, httpx.Response):
        status = outcome.status_code
        return status in (408, 429) or status >= 500
    return isinstance(outcome, _TRANSIENT_ERRORS)


def is_safe_to_retry_create(outcome: Outcome) -> bool:
    """Whether a request that creates runs may be sent again without risking a second run:
    only if the connection was never made, or the answer was 429 or 503."""
    if isinstance(outcome, httpx.Response):
        return outcome.status_code in _REFUSED_STATUSES
    return isinstance(outcome, _NOTHING_SENT)


def is_ambiguous_create(outcome: Outcome) -> bool:
    """Whether a create that ended so may or may not have created something: a transient
    failure (read timeout, dropped connection, 408, 500, 502, 504...) after the request was
    sent."""
    return is_safe_to_retry_get(outcome) and not is_safe_to_retry_create(outcome)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, else ``Retry-After`` in seconds or
    as an HTTP date; None when absent or unreadable."""
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
    except (ValueError, TypeError, OverflowError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
