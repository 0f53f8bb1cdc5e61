"""Webhook delivery as the service does it: Standard Webhooks signatures and retried POSTs.

A run created with ``{"webhook": {"url": ..., "event_types": ["task_run.status"]}}`` gets one
``task_run.status`` notification when it completes or fails (reference §8). Each attempt carries
``webhook-id`` (the same on every retry), ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from typing import Any

import httpx

from . import wire

__all__ = ["MAX_ATTEMPTS", "WebhookSender", "sign", "signing_key"]

MAX_ATTEMPTS = 8
_FIRST_RETRY_SECONDS = 5.0
_MIN_RETRY_SECONDS = 0.05

log = logging.getLogger(__name__)


def signing_key(secret: str) -> bytes:
    """The HMAC key for ``secret``.

    A ``whsec_`` secret is the Standard Webhooks form (base64 after the prefix); anything else is
    used as its UTF-8 bytes, which is what the service's docs show.
    """
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError(
                "a webhook secret starting with whsec_ must continue with base64 text"
            ) from None
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSender:
    """Delivers notifications from the server's event loop, retrying failures with doubling
    delays (5 s x time_scale, at least 0.05 s) up to MAX_ATTEMPTS tries."""

    def __init__(self, secret: str, time_scale: float) -> None:
        signing_key(secret)  # reject a malformed secret at start-up, not at the first delivery
        self._secret = secret
        self._first_retry = max(_FIRST_RETRY_SECONDS * time_scale, _MIN_RETRY_SECONDS)
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def send(self, url: str, run: dict[str, Any]) -> None:
        """Queue a ``task_run.status`` notification for ``run`` (a TaskRun dict)."""
        if self._closed:  # runs finishing during shutdown notify no one
            return
        payload = {"timestamp": wire.timestamp(time.time()), "type": "task_run.status", "data": run}
        task = asyncio.get_running_loop().create_task(
            self._deliver(url, wire.dumps(payload).encode())
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Abandon pending deliveries and close the HTTP client."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _deliver(self, url: str, body: bytes) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        webhook_id = wire.new_webhook_id()
        delay = self._first_retry
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if await self._attempt(self._client, url, webhook_id, body):
                return
            if attempt < MAX_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("webhook %s to %s failed %d times; giving up", webhook_id, url, MAX_ATTEMPTS)

    async def _attempt(
        self, client: httpx.AsyncClient, url: str, webhook_id: str, body: bytes
    ) -> bool:
        sent_at = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(sent_at),
            "webhook-signature": sign(self._secret, webhook_id, sent_at, body),
        }
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError:
            return False
        return response.is_success
