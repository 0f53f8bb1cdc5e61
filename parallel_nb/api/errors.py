"""The exceptions the client raises, and the mapping from an HTTP error answer to one of them.

Every message says what went wrong and what to do about it. An API key is never part of a
message: the client passes its key as ``secret`` so that even a server that echoes it back
cannot leak it into a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from ..text import plain

__all__ = [
    "APIError",
    "AmbiguousCreateError",
    "AuthenticationError",
    "ConnectionFailed",
    "NotFoundError",
    "ParallelError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "RunFailed",
    "ServerError",
    "StreamInterrupted",
    "ValidationError",
    "api_error",
    "connection_failed",
    "field_problems",
]

_REDACTED = "[redacted]"
_MAX_TEXT_BODY = 300
# Traceback lines: ours are a few hundred characters; a service's reason is cut sooner.
_MAX_LINE = 2000
_MAX_REASON = 300


class ParallelError(Exception):
    """Base class of every error this package raises about the Task API."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: these errors are about the service or
        the request, never a bug in the cell's code, so the stack frames would only hide them.
        Each line is cleaned (the service's words may carry terminal escapes) and cut."""
        return [plain(line, _MAX_LINE) for line in f"{type(self).__name__}: {self}".splitlines()]


class ConnectionFailed(ParallelError):
    """The service could not be reached (DNS, refused connection, network timeout, TLS...)."""


class StreamInterrupted(ConnectionFailed):
    """An event stream broke off after it had opened (the connection dropped mid-way).

    Nothing is lost: run streams replay from the start, so opening the stream again carries on.
    """


def connection_failed(
    base_url: str,
    exc: Exception,
    doing: str = "reach",
    cls: type[ConnectionFailed] = ConnectionFailed,
) -> ConnectionFailed:
    """A :class:`ConnectionFailed` (or ``cls``) naming the base URL, the transport error and
    the fix.

    ``doing`` completes "could not ..." (``reach``, ``keep reading the event stream from``).
    """
    return cls(
        f"could not {doing} the Task API at {base_url} ({_describe(exc)}); check the network "
        "connection and PARALLEL_BASE_URL"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class AmbiguousCreateError(ParallelError):
    """A request that creates runs failed after it was sent, so whether the service acted on it
    is unknown. It was deliberately not sent again: the Task API takes no idempotency key, and
    a second request could create, and charge for, a second run.

    ``subject`` is what may exist ("the run", "the task group", "the 3 runs added to task
    group tgrp_..."), ``cause`` the failure, ``check`` how to find out; ``status`` is the HTTP
    status when the service answered with an error, else None.
    """

    def __init__(self, subject: str, cause: str, check: str, *, status: int | None = None):
        self.subject = subject
        self.cause = cause
        self.check = check
        self.status = status
        super().__init__(subject, cause, check, status)

    def __str__(self) -> str:
        return (
            f"{self.cause}; {self.subject} may or may not have been created. The request was "
            f"not sent again, so that you are not charged twice. {self.check}"
        )


def ambiguous_create(
    subject: str, check: str, base_url: str, failure: BaseException
) -> AmbiguousCreateError:
    """The :class:`AmbiguousCreateError` for a create that ended with ``failure``: an
    :class:`APIError` built from the answer, or the transport exception raised instead."""
    if isinstance(failure, APIError):
        cause = f"the Task API answered {failure.status} {_reason(failure.status)}".rstrip()
        if failure.message:
            cause += f" ({failure.message})"
        return AmbiguousCreateError(subject, cause, check, status=failure.status)
    cause = f"the connection to the Task API at {base_url} failed after the request was sent"
    return AmbiguousCreateError(subject, f"{cause} ({_describe(failure)})", check)


class RunFailed(ParallelError):
    """A run ended ``failed`` or ``cancelled`` instead of ``completed``."""

    def __init__(self, run_id: str, message: str, status: str = "failed") -> None:
        self.run_id = run_id
        self.message = message
        self.status = status
        super().__init__(run_id, message, status)

    def __str__(self) -> str:
        reason = self.message or "the service gave no reason"
        return f"run {self.run_id} {self.status}: {reason}"

    def _render_traceback_(self) -> list[str]:
        reason = plain(self.message, _MAX_REASON) or "the service gave no reason"
        return [
            f"RunFailed: run {plain(self.run_id, _MAX_LINE)} {plain(self.status, _MAX_LINE)}",
            f"  {reason}",
            f"  the run's details: Client().retrieve_run({self.run_id!r})",
        ]


class APIError(ParallelError):
    """The service answered with an HTTP error status.

    ``message`` is the service's own message; ``detail`` its structured detail (for a 422, the
    fields that failed and why); ``ref_id`` the id to quote to Parallel's support.
    """

    hint: str = ""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        run_id: str | None = None,
        ref_id: str | None = None,
        detail: Any = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.run_id = run_id
        self.ref_id = ref_id
        self.detail = detail
        if hint is not None:
            self.hint = hint
        super().__init__(status, message)

    def __str__(self) -> str:
        reason = _reason(self.status)
        message = self.message
        # Messages such as "Forbidden: invalid processor" already start with the reason phrase.
        if reason and message.lower().startswith(reason.lower()):
            message = message[len(reason) :].lstrip(" :")
        text = f"{self.status} {reason}: {message}" if reason else f"{self.status}: {message}"
        if not message:
            text = text.rstrip(": ")
        context = [part for part in self._context() if part not in text]
        if context:
            text += " (" + "; ".join(context) + ")"
        if self.run_id and self.run_id not in text:
            text += f" [run {self.run_id}]"
        if self.hint:
            text += f" — {self.hint}"
        if self.ref_id:
            text += f" (ref_id {self.ref_id})"
        return text

    def _context(self) -> list[str]:
        """What goes in parentheses after the message: by default the fields that failed."""
        return field_problems(self.detail)


class AuthenticationError(APIError):
    hint = "the API key was rejected; check PARALLEL_API_KEY"


class PaymentRequiredError(APIError):
    hint = (
        "not enough credit (active runs reserve part of the balance); add credit or wait "
        "for running tasks to finish"
    )


class PermissionDeniedError(APIError):
    """403: the service documents this for an invalid processor; ``processor`` is the one sent."""

    hint = "check the processor name, and that your key may use that processor"

    def __init__(self, status: int, message: str, *, processor: str | None = None, **kw: Any):
        self.processor = processor
        super().__init__(status, message, **kw)

    def _context(self) -> list[str]:
        if self.processor is None:
            return super()._context()
        # Says what the service's field list says, plus the names to choose from.
        from .processors import PROCESSORS

        if self.processor in PROCESSORS:
            return [f"processor {self.processor!r}"]
        names = ", ".join(name for name, p in PROCESSORS.items() if not p.is_fast)
        return [f"processor {self.processor!r}; known processors: {names}, and each as <name>-fast"]


class NotFoundError(APIError):
    hint = "check the id (run ids look like trun_…, task group ids like tgrp_…)"


class RequestTimeoutError(APIError):
    hint = "the run is still active on the server; ask for its result again later"


class ValidationError(APIError):
    hint = "fix the fields listed and send the request again"


class RateLimitError(APIError):
    """429: too many task-creating requests; ``retry_after`` is the wait the server asked for."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None, **kw: Any):
        self.retry_after = retry_after
        wait = f"wait {retry_after:g} s" if retry_after is not None else "wait a little"
        kw.setdefault("hint", f"too many task-creating requests; {wait} and try again")
        super().__init__(status, message, **kw)


class ServerError(APIError):
    hint = "the service had a problem; try again shortly"


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    422: ValidationError,
    429: RateLimitError,
}


def api_error(
    status: int,
    body: Any,
    run_id: str | None = None,
    *,
    processor: str | None = None,
    retry_after: float | None = None,
    secret: str | None = None,
) -> APIError:
    """The exception for an error answer.

    ``body`` is the raw response body (bytes or text) or its parsed JSON: the Task API envelope
    ``{"type": "error", "error": {ref_id, message, detail}}``, a FastAPI ``{"detail": ...}``,
    or anything else (then its text, shortened, is the message). ``processor`` is the
    processor of the request, for the 403 hint; every occurrence of ``secret`` is redacted.
    """
    message, ref_id, detail = _parse_body(body)
    if secret:
        message, detail = _scrub(message, secret), _scrub(detail, secret)
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, APIError)
    kw: dict[str, Any] = {"run_id": run_id, "ref_id": ref_id, "detail": detail}
    if cls is RateLimitError:
        kw["retry_after"] = retry_after
    if cls is PermissionDeniedError:
        kw["processor"] = processor
    if cls is NotFoundError and _names_a_path(message):
        kw["hint"] = "check PARALLEL_BASE_URL: the server there has no such endpoint"
    return cls(status, message or _reason(status) or "error", **kw)


def _names_a_path(message: str) -> bool:
    """Whether a 404 says the endpoint is missing (a wrong base URL), not the id."""
    text = message.lower()
    return "path" in text or text in ("not found", "404 not found")


def field_problems(detail: Any) -> list[str]:
    """``field: message`` strings from an error detail.

    Understands the Task API's ``{"errors": [{"field", "message"}]}`` and FastAPI's
    ``[{"loc": [...], "msg": ...}]``; anything else gives an empty list.
    """
    if isinstance(detail, Mapping):
        detail = detail.get("errors")
    if not isinstance(detail, list):
        return []
    problems = []
    for item in detail:
        if not isinstance(item, Mapping):
            continue
        name = item.get("field")
        if name is None and isinstance(item.get("loc"), list):
            name = ".".join(str(part) for part in item["loc"] if part != "body")
        message = item.get("message", item.get("msg"))
        if message:
            problems.append(f"{name}: {message}" if name else str(message))
    return problems


def _parse_body(body: Any) -> tuple[str, str | None, Any]:
    """(message, ref_id, detail) from an error body of any shape."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return _shorten(body), None, None
    if not isinstance(body, Mapping):
        return ("" if body is None else _shorten(json.dumps(body))), None, None
    error = body.get("error")
    if isinstance(error, Mapping):
        return str(error.get("message") or ""), error.get("ref_id"), error.get("detail")
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail, None, None
    if detail is not None:
        return "invalid request", None, detail
    message = body.get("message") or body.get("error")
    return (str(message) if message else _shorten(json.dumps(body))), None, None


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= _MAX_TEXT_BODY:
        return text
    return text[:_MAX_TEXT_BODY] + "…"


def _scrub(value: Any, secret: str) -> Any:
    if isinstance(value, str):
        return value.replace(secret, _REDACTED)
    if isinstance(value, Mapping):
        return {k: _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret) for v in value]
    return value


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
