"""Which replica leads: a `coordination.k8s.io/v1` Lease, held with renewal (client-go's election).

https://kubernetes.io/docs/concepts/architecture/leases/#leader-election and
https://github.com/kubernetes/client-go/blob/master/tools/leaderelection/leaderelection.go:
every `retry_seconds` a candidate reads the Lease and takes it when it is free or its
holder stopped renewing for `leaseDurationSeconds` (an update carrying the resourceVersion
read, so of two takers one gets 409 and loses). The leader renews every `renew_seconds`;
when it could not renew for `renew_deadline` (shorter than the duration, so it stops
before anyone may take over) it has lost, and says so once through `on_lost`.

The holder identity is `<pod>_<nonce>@<host>:<port>`: the other replicas read from it
where to forward webhooks. `resign()` (a clean stop) releases the Lease at once, and the
replica keeps watching who leads next, as an observer that never takes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Kubernetes client is imported only when replicas elect a leader
    from bot.deploys.leases import HeldLease, LeaseLock

logger = logging.getLogger(__name__)

LEADER_TARGET = "leader"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class ElectionTiming:
    """client-go's knobs: how long a term lasts, how often to renew or retry."""

    duration_seconds: int = 15
    renew_seconds: float = 2.0
    renew_deadline: float = 10.0
    retry_seconds: float = 1.0


def lease_name_for(app_id: str) -> str:
    """The leader Lease of one GitHub App (its replicas share it; another app's do not)."""
    suffix = _DNS_LABEL.sub("-", app_id.lower()).strip("-")[:40] or "app"
    return f"hubbot-leader-{suffix}"


def identity_for(pod: str, host: str, port: int) -> str:
    """A holder identity naming this process and where other replicas reach it."""
    where = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{pod}_{uuid.uuid4().hex[:8]}@{where}:{port}"


def url_of(holder: str) -> str | None:
    """`http://host:port` of a holder identity, or None when it names no address."""
    _, at, address = holder.rpartition("@")
    if not at or not re.fullmatch(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", address):
        return None
    return f"http://{address}"


def pod_of(holder: str) -> str:
    """The pod part of a holder identity (what the status page may show)."""
    return holder.rpartition("@")[0].rpartition("_")[0] or holder.rpartition("@")[0]


class Election:
    """Campaigns for the leader Lease in the background; `leading` says how it stands."""

    def __init__(
        self,
        lock: LeaseLock,
        name: str,
        *,
        timing: ElectionTiming | None = None,
        on_lead: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.lock, self.name = lock, name
        self.identity = lock.identity
        self.timing = timing or ElectionTiming()
        self.on_lead, self.on_lost = on_lead, on_lost
        self.leading = False
        self.leader = ""  # the holder identity last seen ("" when none is known)
        self.candidate = True  # False once resigned or lost: never takes the Lease again
        self.since = 0.0  # monotonic time leadership (or the last change) began
        self._held: HeldLease | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._changed = asyncio.Event()
        self._refreshing: asyncio.Lock = asyncio.Lock()

    @property
    def leader_url(self) -> str | None:
        """Where the leader (another replica) answers, if one is known."""
        if self.leading or not self.leader or self.leader == self.identity:
            return None
        return url_of(self.leader)

    def start(self) -> None:
        """Campaign in the background (call inside the running loop)."""
        self._loop = asyncio.create_task(self._run(), name="hubbot-election")

    async def _run(self) -> None:
        while True:
            await self.refresh()
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timing.retry_seconds):
                    await self._poke.wait()

    def poke(self) -> None:
        """Look at the Lease now rather than at the next retry (the leader seems gone)."""
        self._poke.set()

    async def refresh(self) -> None:
        """Read the Lease once: take it if free or expired (a candidate), else learn who leads."""
        if self.leading:
            return
        from bot.deploys.kubeapi import KubeApiError
        from bot.deploys.leases import LeaseHeld

        async with self._refreshing:
            if self.leading:
                return
            try:
                if self.candidate:
                    held = await self.lock.acquire_named(self.name, LEADER_TARGET, self._meta())
                    self._lead(held)
                else:
                    holder, expired = await self.lock.holder(self.name)
                    self._follow("" if expired else holder)
            except LeaseHeld as exc:
                self._follow(exc.holder)
            except KubeApiError as exc:
                logger.warning("leader election: %s", exc)

    async def wait_changed(self, within: float) -> bool:
        """Wait up to `within` seconds for who leads to change; False if it did not."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._changed.wait()
                return True
        return False

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _follow(self, holder: str) -> None:
        if holder != self.leader:
            logger.info("leader is now %s", pod_of(holder) if holder else "nobody")
            self.leader, self.since = holder, time.monotonic()
            self._signal()

    def _lead(self, held: HeldLease) -> None:
        self._held, self.leading, self.leader = held, True, self.identity
        self.since = time.monotonic()
        logger.info("leading (lease %s)", self.name)
        self._tasks = [
            asyncio.create_task(self.lock.renew_forever(held), name="hubbot-leader-renew"),
            asyncio.create_task(self._watch(held), name="hubbot-leader-watch"),
        ]
        self._signal()
        self.on_lead()

    async def _watch(self, held: HeldLease) -> None:
        """Lost when the renewals say so, or when none succeeded for `renew_deadline`."""
        seen, last = held.renewals, time.monotonic()
        while not held.lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timing.renew_seconds):
                    await held.lost.wait()
            if held.renewals != seen:
                seen, last = held.renewals, time.monotonic()
            elif time.monotonic() - last > self.timing.renew_deadline:
                held.lost.set()  # a renewal hung: the API server is unreachable
        if self.leading:
            logger.error("leadership lost: could not renew the Lease %s", self.name)
            self.leading, self.candidate, self.leader = False, False, ""
            self._signal()
            self.on_lost()

    async def resign(self) -> None:
        """Stop leading (release the Lease so another replica takes it now) and campaigning."""
        self.candidate = False
        held, self._held = self._held, None
        was_leading, self.leading = self.leading, False
        await self._stop_tasks()
        if held is not None and was_leading:
            await self.lock.release(held)
            logger.info("resigned the lead (lease %s released)", self.name)
        self.leader = ""
        self._signal()
        self.poke()

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def close(self) -> None:
        """Resign if still leading, stop the loop, close the API client."""
        if self.leading:
            await self.resign()
        await self._stop_tasks()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await self.lock.close()

    async def abandon(self) -> None:
        """Stop everything without releasing the Lease: what a killed process leaves (tests)."""
        self.candidate, self.leading = False, False
        await self._stop_tasks()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await self.lock.close()

    def _meta(self) -> Any:
        from kubernetes.aio import client

        from bot.deploys.kubemanifest import MANAGED_BY, MANAGER, PREFIX

        return client.V1ObjectMeta(
            name=self.name,
            namespace=self.lock.namespace,
            labels={MANAGED_BY: MANAGER, PREFIX + "role": "leader"},
        )
