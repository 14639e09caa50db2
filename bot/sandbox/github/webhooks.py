"""Webhook deliveries: signed like GitHub's, sent in order, recorded, and redeliverable.

https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any

import aiohttp

from bot.sandbox.github.state import Delivery, State, now

logger = logging.getLogger(__name__)

DELIVERY_TIMEOUT = 10.0  # GitHub gives a receiver 10 seconds to answer
USER_AGENT = "GitHub-Hookshot/5a4c3f1"


def signature_headers(secret: str | None, body: bytes) -> dict[str, str]:
    """`X-Hub-Signature-256` and the legacy `X-Hub-Signature` for a body (none without a secret)."""
    if not secret:
        return {}
    key = secret.encode()
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
    }


class WebhookSender:
    """Sends deliveries one at a time, oldest first, to the app's webhook URL."""

    def __init__(self, state: State, *, timeout: float = DELIVERY_TIMEOUT):
        self.state = state
        self.timeout = timeout
        self._queue: asyncio.Queue[tuple[Delivery, asyncio.Future[Delivery]]] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the HTTP session and start the delivery worker."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._worker = asyncio.create_task(self._run(), name="sandbox-webhooks")

    async def close(self) -> None:
        """Stop the worker (pending deliveries are marked as not sent) and close the session."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        while not self._queue.empty():
            delivery, future = self._queue.get_nowait()
            delivery.error = "sandbox stopped before delivery"
            if not future.done():
                future.set_result(delivery)
        if self._session is not None:
            await self._session.close()

    def enqueue(self, event: str, payload: dict[str, Any]) -> asyncio.Future[Delivery]:
        """Queue a new delivery; the future resolves once the receiver answered (or failed)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        action = payload.get("action") if isinstance(payload.get("action"), str) else None
        delivery = Delivery(
            index=len(self.state.deliveries),
            guid=str(uuid.uuid4()),
            event=event,
            action=action,
            payload=body,
        )
        self.state.deliveries.append(delivery)
        return self._put(delivery)

    async def send(self, event: str, payload: dict[str, Any]) -> Delivery:
        """Queue a delivery and wait until it has been answered."""
        return await self.enqueue(event, payload)

    async def redeliver(self, guid: str) -> Delivery:
        """Send a recorded delivery again with the same `X-GitHub-Delivery`; KeyError if unknown."""
        original = next((d for d in self.state.deliveries if d.guid == guid), None)
        if original is None:
            raise KeyError(guid)
        again = Delivery(
            index=len(self.state.deliveries),
            guid=original.guid,
            event=original.event,
            action=original.action,
            payload=original.payload,
            redelivery=True,
        )
        self.state.deliveries.append(again)
        return await self._put(again)

    async def drain(self) -> None:
        """Wait until every queued delivery has been sent."""
        await self._queue.join()

    def _put(self, delivery: Delivery) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((delivery, future))
        return future

    async def _run(self) -> None:
        while True:
            delivery, future = await self._queue.get()
            try:
                await self._deliver(delivery)
            finally:
                self._queue.task_done()
                if not future.done():
                    future.set_result(delivery)

    async def _deliver(self, delivery: Delivery) -> None:
        app = self.state.app
        delivery.delivered_at = now()
        if not app.webhook_url or self._session is None:
            delivery.error = "no webhook URL configured"
            return
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Delivery": delivery.guid,
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Hook-ID": str(app.hook_id),
            "X-GitHub-Hook-Installation-Target-ID": str(app.id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            **signature_headers(app.webhook_secret, delivery.payload),
        }
        started = time.perf_counter()
        try:
            async with self._session.post(
                app.webhook_url, data=delivery.payload, headers=headers
            ) as resp:
                await resp.read()
                delivery.status = resp.status
        except TimeoutError:
            delivery.error = f"timed out after {self.timeout:g} s"
        except aiohttp.ClientError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        delivery.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        logger.debug(
            "delivery %s %s.%s -> %s",
            delivery.guid,
            delivery.event,
            delivery.action,
            delivery.status or delivery.error,
        )
