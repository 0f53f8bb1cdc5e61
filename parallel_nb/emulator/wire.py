"""The Task API's wire formats: ids, timestamps, JSON shapes, the error envelope and SSE frames.

Everything the emulator sends goes through these helpers, so the shapes live in one place and
match the public OpenAPI document (reference §4, §5): compact JSON, RFC 3339 timestamps with
microseconds and ``Z``, and SSE frames made of exactly one ``event:`` and one ``data:`` line.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "ACTIVE_STATUSES",
    "dumps",
    "error_body",
    "group_status",
    "is_active",
    "new_group_id",
    "new_ref_id",
    "new_run_id",
    "new_webhook_id",
    "sse_frame",
    "task_run",
    "timestamp",
]

ACTIVE_STATUSES = frozenset({"queued", "running", "cancelling"})


def new_run_id() -> str:
    """``trun_`` + 32 hex digits, the form the service uses."""
    return f"trun_{secrets.token_hex(16)}"


def new_group_id() -> str:
    """``tgrp_`` + 48 hex digits, the form the service uses."""
    return f"tgrp_{secrets.token_hex(24)}"


def new_webhook_id() -> str:
    return f"whevent_{secrets.token_hex(12)}"


def new_ref_id() -> str:
    return str(uuid.uuid4())


def timestamp(seconds: float) -> str:
    """RFC 3339 UTC with microseconds and ``Z`` (``2025-04-23T20:21:48.037943Z``)."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(value: Any) -> str:
    """Compact JSON on one line.

    Non-ASCII stays escaped: SSE readers that split decoded text with ``str.splitlines`` would
    otherwise break a frame at U+2028 and similar separators inside a string.
    """
    return json.dumps(value, separators=(",", ":"))


def is_active(status: str) -> bool:
    return status in ACTIVE_STATUSES


def error_body(message: str, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``ErrorResponse`` envelope every non-2xx answer carries."""
    return {
        "type": "error",
        "error": {
            "ref_id": new_ref_id(),
            "message": message,
            "detail": dict(detail) if detail is not None else None,
        },
    }


def task_run(
    *,
    run_id: str,
    status: str,
    processor: str,
    created_at: float,
    modified_at: float,
    metadata: Mapping[str, Any] | None,
    warnings: list[dict[str, Any]] | None,
    error: dict[str, Any] | None,
    taskgroup_id: str | None,
) -> dict[str, Any]:
    """A ``TaskRun`` object; ``interaction_id`` equals the run id as in every documented run."""
    return {
        "run_id": run_id,
        "interaction_id": run_id,
        "status": status,
        "is_active": is_active(status),
        "warnings": warnings or None,
        "error": error,
        "processor": processor,
        "metadata": dict(metadata) if metadata is not None else None,
        "taskgroup_id": taskgroup_id,
        "created_at": timestamp(created_at),
        "modified_at": timestamp(modified_at),
    }


def group_status(
    counts: Mapping[str, int], modified_at: float, message: str | None = None
) -> dict[str, Any]:
    """A ``TaskGroupStatus``: run counts by status; active while any run is active."""
    live = {status: n for status, n in counts.items() if n}
    return {
        "num_task_runs": sum(live.values()),
        "task_run_status_counts": live,
        "is_active": any(is_active(status) for status in live),
        "status_message": message,
        "modified_at": timestamp(modified_at),
    }


def sse_frame(event: Mapping[str, Any]) -> bytes:
    """One SSE frame: ``event: <type>`` then the JSON on a single ``data:`` line.

    Never ``id:``, ``retry:`` or comment lines: the official Python SDK's decoder turns those
    into empty events and crashes on them (reference §5.4).
    """
    return f"event: {event['type']}\ndata: {dumps(event)}\n\n".encode()
