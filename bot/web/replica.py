"""Several replicas, one leader: a standby forwards each verified delivery to the leader.

Every replica verifies a delivery (401/400/413 as ever). The leader queues it; a standby
POSTs it unchanged (raw body, GitHub's headers and signature, which authenticate it) to
the leader's `/webhook` and answers GitHub with the leader's answer, so dedupe, per-PR
order, supersession, merge coalescing, claims and `/cancel` all live in one process.

When the leader cannot be reached, the standby retries for `forward_seconds`, reading
the Lease meanwhile and taking it if it expired (then it routes the delivery itself).
Past that, it holds the delivery in memory (bounded) and answers 202; held deliveries go
to whichever replica leads next, in order. A request that arrives forwarded at a replica
that does not lead is answered 421, so forwarding never loops.

A leader that stops (SIGTERM) hands its waiting jobs to the next leader with
`X-Hubbot-Handover`, a MAC under the webhook secret: the receiver skips its record of
deliveries it forwarded itself (which would hide them as duplicates), and nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import cachetools
from aiohttp import web

from bot.web.election import Election, pod_of
from bot.web.queue import Job

logger = logging.getLogger(__name__)

FORWARDED_BY = "x-hubbot-forwarded-by"
HANDOVER = "x-hubbot-handover"
FORWARD_SECONDS = 3.0  # retrying an unreachable leader, within GitHub's 10 s timeout
ATTEMPT_SECONDS = 2.0  # one forward, connection included
HOLD_MAX = 500  # deliveries held while no leader is reachable...
HOLD_BYTES = 64 * 1024 * 1024  # ...and their bytes
_PASSED = ("content-type", "user-agent", "x-hub-signature-256")
# What a proxied page keeps of the leader's headers: its type and its security headers.
_PROXIED = frozenset(
    {
        "content-type",
        "cache-control",
        "content-security-policy",
        "referrer-policy",
        "x-content-type-options",
        "x-frame-options",
    }
)
MISDIRECTED = json.dumps({"message": "this replica does not lead; ask the leader"}).encode()


@dataclass(slots=True)
class Incoming:
    """A verified delivery: its raw body, GitHub's headers (lower-case) and parsed payload."""

    body: bytes
    headers: dict[str, str]
    data: dict[str, Any]

    @property
    def delivery_id(self) -> str:
        """X-GitHub-Delivery."""
        return self.headers.get("x-github-delivery", "")

    @property
    def event(self) -> str:
        """X-GitHub-Event."""
        return self.headers.get("x-github-event", "")

    @property
    def hook_id(self) -> str:
        """X-GitHub-Hook-ID."""
        return self.headers.get("x-github-hook-id", "")


Answer = tuple[web.Response, str]  # the response, and the result for metrics and the log
Route = Callable[[Incoming], Answer]  # the leader's own routing: dedupe, then the queue


class Unreachable(Exception):
    """The leader did not answer (connection failed, timed out, or it no longer leads)."""


def answer(status: int, body: bytes, retry_after: str | None = None) -> web.Response:
    """A JSON response carrying another replica's answer."""
    response = web.Response(body=body, status=status, content_type="application/json")
    if retry_after:
        response.headers["Retry-After"] = retry_after
    return response


def handover_mac(secret: str | None, delivery_id: str, signature: str) -> str:
    """The handover header's value for a delivery (signed body → signed handover)."""
    if not secret:
        return "unsigned"
    message = f"hubbot-handover\n{delivery_id}\n{signature}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str | None, body: bytes) -> str:
    """X-Hub-Signature-256 for a body, as GitHub computes it."""
    if not secret:
        return ""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Replica:
    """This process's part in a set of replicas (`election` None: it alone, and it leads)."""

    def __init__(
        self,
        *,
        election: Election | None,
        secret: str | None,
        pod: str = "",
        forward_seconds: float = FORWARD_SECONDS,
        hold_max: int = HOLD_MAX,
        hold_bytes: int = HOLD_BYTES,
    ) -> None:
        self.election = election
        self.secret = secret
        self.pod = pod
        self.forward_seconds = forward_seconds
        self.hold_max, self.hold_bytes = hold_max, hold_bytes
        self.stepping_down = False
        self.held: collections.deque[Incoming] = collections.deque()
        self._held_bytes = 0
        self._held_event = asyncio.Event()
        # Deliveries this replica forwarded and the leader accepted: once it leads, their
        # redeliveries are duplicates too. (Deliveries the old leader got directly are not here.)
        self.forwarded: cachetools.TTLCache[tuple[str, str], bool] = cachetools.TTLCache(
            maxsize=50_000, ttl=3 * 24 * 3600
        )
        self.route: Route | None = None  # set by the app factory
        self.session: aiohttp.ClientSession | None = None
        self.forwards: collections.deque[float] = collections.deque(maxlen=1000)  # seconds each
        self.on_passed: Callable[[str, int], None] = lambda delivery, status: None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        """Whether this process handles deliveries itself."""
        if self.election is None:
            return True
        return self.election.leading and not self.stepping_down

    @property
    def role(self) -> str:
        """`single`, `leader` or `standby`."""
        if self.election is None:
            return "single"
        return "leader" if self.leading else "standby"

    def view(self) -> dict[str, Any]:
        """Role, who leads (pod name only) and what is held, for the status page and /readyz."""
        leader = self.election.leader if self.election is not None else ""
        return {
            "role": self.role,
            "leader": pod_of(leader) if leader else "",
            "held": len(self.held),
            "forwarded": len(self.forwards),
        }

    def start(self, session: aiohttp.ClientSession) -> None:
        """Campaign, and deliver held deliveries whenever a leader appears."""
        self.session = session
        if self.election is not None:
            self.election.start()
            self._flusher = asyncio.create_task(self._flush_forever(), name="hubbot-held")

    async def close(self) -> None:
        """Stop the flusher and the election (resigning if still leading)."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self.election is not None:
            await self.election.close()

    # -- a delivery this replica does not handle itself -------------------------------------

    async def receive(self, incoming: Incoming) -> Answer:
        """Forward to the leader (or route it, on taking the lead); hold it if none answers."""
        if FORWARDED_BY in incoming.headers:
            return answer(421, MISDIRECTED), "misdirected"
        if self.held:  # behind the held ones, so the leader gets them in order
            return self._hold(incoming)
        delivered = await self._deliver(incoming, within=self.forward_seconds)
        if delivered is not None:
            return delivered
        return self._hold(incoming)

    async def _deliver(self, incoming: Incoming, *, within: float) -> Answer | None:
        """Route it (leading) or forward it, retrying `within` seconds; None if no one took it."""
        give_up = time.monotonic() + within
        pause = 0.05
        while True:
            if self.leading and self.route is not None:
                return self.route(incoming)
            url = self.election.leader_url if self.election is not None else None
            if url is not None:
                try:
                    return await self._forward(url, incoming)
                except Unreachable as exc:
                    logger.warning("the leader at %s did not take a delivery: %s", url, exc)
            left = give_up - time.monotonic()
            if left <= 0 or self.election is None:
                return None
            await self.election.refresh()  # maybe a new leader; maybe ours to take
            if not self.leading and self.election.leader_url in (None, url):
                await self.election.wait_changed(min(pause, left))
                pause = min(pause * 2, 0.5)

    async def _forward(self, url: str, incoming: Incoming) -> Answer:
        assert self.session is not None
        headers = {
            k: v for k, v in incoming.headers.items() if k.startswith("x-github-") or k in _PASSED
        }
        headers[FORWARDED_BY] = self.pod or "replica"
        if HANDOVER in incoming.headers:
            headers[HANDOVER] = incoming.headers[HANDOVER]
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_SECONDS, connect=1.0)
        try:
            async with self.session.post(
                f"{url}/webhook", data=incoming.body, headers=headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(type(exc).__name__) from None
        if status == 421:
            raise Unreachable("it no longer leads")
        self.forwards.append(time.perf_counter() - started)
        if status == 202 and b'"duplicate"' not in body:
            self.forwarded[(incoming.hook_id, incoming.delivery_id)] = True
        return answer(status, body, retry_after), "forwarded"

    def _hold(self, incoming: Incoming) -> Answer:
        size = len(incoming.body)
        if len(self.held) >= self.hold_max or self._held_bytes + size > self.hold_bytes:
            logger.error("no leader reachable and %d deliveries held: refused", len(self.held))
            body = json.dumps({"message": "no leader reachable; retry later"}).encode()
            return answer(503, body, "30"), "no_leader"
        self.held.append(incoming)
        self._held_bytes += size
        self._held_event.set()
        logger.warning("no leader reachable: delivery held (%d held)", len(self.held))
        body = json.dumps({"message": "accepted: held until a leader is reachable"}).encode()
        return answer(202, body), "held"

    async def _flush_forever(self) -> None:
        assert self.election is not None
        while True:
            if not self.held:
                self._held_event.clear()
                await self._held_event.wait()
                continue
            if not await self._flush_one():
                await self.election.wait_changed(self.election.timing.retry_seconds)

    async def _flush_one(self) -> bool:
        incoming = self.held[0]
        delivered = await self._deliver(incoming, within=0)
        if delivered is None or delivered[0].status == 503:
            return False
        self.held.popleft()
        self._held_bytes -= len(incoming.body)
        logger.info("held delivery %s passed on (%s)", incoming.delivery_id, delivered[0].status)
        self.on_passed(incoming.delivery_id, delivered[0].status)
        return True

    async def from_leader(self, path_qs: str) -> web.Response | None:
        """The leader's answer to a GET (status page, deploy log), None if it did not answer."""
        url = self.election.leader_url if self.election is not None else None
        if self.leading or url is None or self.session is None:
            return None
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_SECONDS, connect=1.0)
        try:
            async with self.session.get(
                f"{url}{path_qs}", headers={FORWARDED_BY: self.pod or "replica"}, timeout=timeout
            ) as resp:
                body = await resp.read()
                headers = {k: v for k, v in resp.headers.items() if k.lower() in _PROXIED}
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if status == 421:
            return None
        return web.Response(body=body, status=status, headers=headers)

    # -- stepping down ----------------------------------------------------------------------

    def as_incoming(self, job: Job) -> Incoming | None:
        """A waiting job as a delivery for the next leader (re-encoded, signed, marked)."""
        if job.work is not None or not isinstance(job.payload, dict):
            return None  # not a delivery: the next leader redoes its own recovery
        body = json.dumps(job.payload, separators=(",", ":")).encode()
        signature = sign(self.secret, body)
        headers = {
            "content-type": "application/json",
            "x-github-event": job.event,
            "x-github-delivery": job.delivery_id,
            "x-github-hook-id": job.hook_id,
            HANDOVER: handover_mac(self.secret, job.delivery_id, signature),
        }
        if signature:
            headers["x-hub-signature-256"] = signature
        return Incoming(body, headers, job.payload)

    def is_handover(self, incoming: Incoming) -> bool:
        """Whether a delivery is a stepping-down leader's handover (its MAC checks out)."""
        given = incoming.headers.get(HANDOVER)
        if given is None:
            return False
        signature = incoming.headers.get("x-hub-signature-256", "")
        expected = handover_mac(self.secret, incoming.delivery_id, signature)
        return hmac.compare_digest(given, expected)

    async def hand_over(self, jobs: list[Job], *, within: float) -> int:
        """Pass waiting jobs, then held deliveries, to the next leader; returns the number lost."""
        items = [i for i in (self.as_incoming(j) for j in jobs) if i is not None]
        items += list(self.held)
        self.held.clear()
        give_up = time.monotonic() + within
        for n, item in enumerate(items):
            while await self._deliver(item, within=0.5) is None:
                if time.monotonic() > give_up:
                    lost = [i.delivery_id for i in items[n:]]
                    logger.error(
                        "no leader took over in %.0f s: %d deliveries not handed over "
                        "(redeliver them from the app's settings): %s",
                        within,
                        len(lost),
                        ", ".join(lost[:50]),
                    )
                    return len(lost)
        if items:
            logger.info("handed %d deliveries over to the next leader", len(items))
        return 0
