"""Cross-replica mutual exclusion per hub with coordination.k8s.io/v1 Leases.

    async with lock.hold("cluster", "hub") as held:
        result = await executor.run(job)

The algorithm is client-go's leader election
(https://github.com/kubernetes/client-go/blob/master/tools/leaderelection/leaderelection.go):
read the Lease; create it if absent; take it if it is free, ours, or expired
(`renewTime + leaseDurationSeconds` in the past) with an update carrying the
resourceVersion read, so a concurrent taker gets 409 Conflict and loses. The holder renews
in a background task every `renew_seconds`; on leaving the block it releases the Lease by
clearing `holderIdentity` (the object stays, keeping `leaseTransitions`).

A holder that cannot renew (another replica took an expired Lease, or the API server was
unreachable past the duration) sets `held.lost`; the deploy is not interrupted, because
aborting a helm upgrade midway is worse than reporting the overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from kubernetes.aio import client

from bot.deploys.kubeapi import KubeApiError, RetryPolicy, call
from bot.deploys.kubemanifest import (
    LABEL_CLUSTER,
    LABEL_HUB,
    LABEL_REPO,
    MANAGED_BY,
    MANAGER,
    PREFIX,
    label_value,
    lease_name,
)

logger = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]


def default_identity() -> str:
    """This process as a Lease holder: host (the pod name in a cluster), pid and a nonce."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseHeld(Exception):
    """Another holder has the target's Lease (and waiting, if allowed, did not free it)."""

    def __init__(self, target: str, holder: str, expires: dt.datetime | None) -> None:
        self.target, self.holder, self.expires = target, holder, expires
        until = f" until {expires:%Y-%m-%d %H:%M:%S} UTC unless renewed" if expires else ""
        super().__init__(f"{target} is being deployed by {holder}{until}")


@dataclass
class HeldLease:
    """A Lease this process holds."""

    name: str
    target: str
    identity: str
    resource_version: str
    spec: client.V1LeaseSpec
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    renewals: int = 0


class LeaseLock:
    """Per-target Leases in one namespace, for one repository."""

    def __init__(
        self,
        configuration: client.Configuration,
        *,
        namespace: str,
        repo: str,
        identity: str | None = None,
        duration_seconds: int = 60,
        renew_seconds: float | None = None,
        renew_deadline: float | None = None,
        poll_seconds: float = 2.0,
        wait_seconds: float = 0.0,
        retry: RetryPolicy | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.namespace, self.repo = namespace, repo
        self.identity = identity or default_identity()
        self.duration_seconds = duration_seconds
        self.renew_seconds = renew_seconds if renew_seconds is not None else duration_seconds / 3
        # Unrenewed this long, a held Lease counts as lost. A leader sets it below the duration
        # (client-go's renewDeadline), so it stops before another replica may take over.
        self.renew_deadline = renew_deadline if renew_deadline is not None else duration_seconds
        self.poll_seconds = poll_seconds
        self.wait_seconds = wait_seconds  # how long hold() waits for a taken Lease by default
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._api = client.ApiClient(configuration)
        self._leases = client.CoordinationV1Api(self._api)
        self._held: set[str] = set()  # Lease names held by this process

    async def close(self) -> None:
        """Close the API client."""
        await self._api.close()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def hold(
        self, cluster: str, hub: str | None = None, *, wait: float | None = None
    ) -> AsyncIterator[HeldLease]:
        """Hold the target's Lease for the block, renewing it; LeaseHeld if it stays taken."""
        held = await self.acquire(cluster, hub, wait=self.wait_seconds if wait is None else wait)
        renewer = asyncio.create_task(self.renew_forever(held))
        try:
            yield held
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.release(held)

    async def acquire(
        self, cluster: str, hub: str | None = None, *, wait: float = 0.0
    ) -> HeldLease:
        """Take the target's Lease, polling up to `wait` seconds while another holds it.

        Raises LeaseHeld when it stays taken (also by another task of this process), and
        KubeApiError when the API server fails for good.
        """
        name = lease_name(self.repo, cluster, hub)
        target = f"{cluster}/{hub or 'support'}"
        return await self.acquire_named(name, target, self._meta(name, target, cluster, hub), wait)

    async def acquire_named(
        self, name: str, target: str, meta: client.V1ObjectMeta, wait: float = 0.0
    ) -> HeldLease:
        """Take the Lease `name` (created with `meta` if absent), as `acquire` does."""
        give_up = time.monotonic() + wait
        while True:
            expires = None
            if name in self._held:  # another task of this process has it
                holder = self.identity
            else:
                lease = await self._read(name)
                if lease is None:
                    held = await self._create(meta, target)
                    if held is not None:
                        return self._taken(held)
                    continue  # 409: someone created it first; look again
                spec = lease.spec or client.V1LeaseSpec()
                holder = spec.holder_identity or ""
                if not holder or holder == self.identity or self._expired(spec):
                    held = await self._take(lease, target)
                    if held is not None:
                        return self._taken(held)
                    continue  # 409: someone updated it first; look again
                expires = self._expiry(spec)
            left = give_up - time.monotonic()
            if left <= 0:
                raise LeaseHeld(target, holder, expires)
            await asyncio.sleep(min(self.poll_seconds, left))

    async def holder(self, name: str) -> tuple[str, bool]:
        """The Lease's holder ("" when free or absent) and whether its term has run out."""
        lease = await self._read(name)
        spec = lease.spec if lease is not None else None
        if spec is None:
            return "", True
        return spec.holder_identity or "", self._expired(spec)

    def _taken(self, held: HeldLease) -> HeldLease:
        self._held.add(held.name)
        logger.info("lease %s (%s) taken by %s", held.name, held.target, self.identity)
        return held

    async def release(self, held: HeldLease) -> None:
        """Give the Lease up (if still ours): clear its holder so the next taker needn't wait."""
        self._held.discard(held.name)
        if held.lost.is_set():
            return
        spec = client.V1LeaseSpec(
            holder_identity="",
            lease_duration_seconds=1,
            acquire_time=held.spec.acquire_time,
            renew_time=self.clock(),
            lease_transitions=held.spec.lease_transitions,
        )
        rv = held.resource_version
        for _ in range(2):
            try:
                await self._replace(held, rv, spec)
                return
            except KubeApiError as exc:
                current = await self._read(held.name) if exc.status == 409 else None
                holder = current.spec.holder_identity if current and current.spec else None
                if current is None or holder != self.identity:  # gone, or no longer ours
                    if exc.status != 409:  # others: it will expire by itself
                        logger.warning("lease %s: release failed: %s", held.name, exc)
                    return
                # Ours, with a newer version (a renewal cut short by cancellation): retry.
                rv = _rv(current)

    # -- internals ---------------------------------------------------------------------------

    def _age(self, since: dt.datetime) -> float:
        return (self.clock() - since).total_seconds()

    def _expiry(self, spec: client.V1LeaseSpec) -> dt.datetime | None:
        if spec.renew_time is None:
            return None
        return spec.renew_time + dt.timedelta(seconds=spec.lease_duration_seconds or 0)

    def _expired(self, spec: client.V1LeaseSpec) -> bool:
        expiry = self._expiry(spec)
        return expiry is None or expiry < self.clock()

    def _meta(self, name: str, target: str, cluster: str, hub: str | None) -> client.V1ObjectMeta:
        return client.V1ObjectMeta(
            name=name,
            namespace=self.namespace,
            labels={
                MANAGED_BY: MANAGER,
                LABEL_REPO: label_value(self.repo),
                LABEL_CLUSTER: label_value(cluster),
                LABEL_HUB: label_value(hub or ""),
            },
            annotations={PREFIX + "repo": self.repo, PREFIX + "target": target},
        )

    async def _read(self, name: str) -> client.V1Lease | None:
        try:
            return await call(
                f"get Lease {name}",
                lambda: self._leases.read_namespaced_lease(name, self.namespace),
                self.retry,
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _create(self, meta: client.V1ObjectMeta, target: str) -> HeldLease | None:
        name = str(meta.name)
        now = self.clock()
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.duration_seconds,
            acquire_time=now,
            renew_time=now,
            lease_transitions=0,
        )
        body = client.V1Lease(metadata=meta, spec=spec)
        try:
            created = await call(
                f"create Lease {name}",
                lambda: self._leases.create_namespaced_lease(self.namespace, body),
                self.retry,
            )
        except KubeApiError as exc:
            if exc.status == 409:
                return None
            raise
        labels, annotations = _meta_of(body)
        return HeldLease(name, target, self.identity, _rv(created), spec, labels, annotations)

    async def _take(self, lease: client.V1Lease, target: str) -> HeldLease | None:
        old = lease.spec or client.V1LeaseSpec()
        now = self.clock()
        ours = old.holder_identity == self.identity
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.duration_seconds,
            acquire_time=old.acquire_time if ours else now,
            renew_time=now,
            lease_transitions=(old.lease_transitions or 0) + (0 if ours else 1),
        )
        name = str(lease.metadata.name if lease.metadata else "")
        labels, annotations = _meta_of(lease)
        held = HeldLease(name, target, self.identity, _rv(lease), spec, labels, annotations)
        try:
            updated = await self._replace(held, held.resource_version, spec)
        except KubeApiError as exc:
            if exc.status in (404, 409):
                return None
            raise
        if old.holder_identity and not ours:
            logger.warning("lease %s: took over from %s (expired)", name, old.holder_identity)
        held.resource_version = _rv(updated)
        return held

    async def _replace(self, held: HeldLease, rv: str, spec: client.V1LeaseSpec) -> client.V1Lease:
        """PUT the Lease with the resourceVersion last seen: 409 if anyone wrote it since."""
        metadata = client.V1ObjectMeta(
            name=held.name,
            namespace=self.namespace,
            resource_version=rv,
            labels=held.labels or None,
            annotations=held.annotations or None,
        )
        body = client.V1Lease(metadata=metadata, spec=spec)
        return await call(
            f"update Lease {held.name}",
            lambda: self._leases.replace_namespaced_lease(held.name, self.namespace, body),
            self.retry,
        )

    async def renew_forever(self, held: HeldLease) -> None:
        """Renew `held` every `renew_seconds` until it is lost (then `held.lost` is set)."""
        last_renewed = self.clock()
        while not held.lost.is_set():
            await asyncio.sleep(self.renew_seconds)
            try:
                renewed = await self._renew(held)
            except KubeApiError as exc:
                logger.warning("lease %s: renewal failed: %s", held.name, exc)
                renewed = False
            if renewed:
                last_renewed = self.clock()
            elif held.lost.is_set() or self._age(last_renewed) > self.renew_deadline:
                held.lost.set()
                logger.warning(
                    "lease %s (%s): lost; another replica may deploy it", held.name, held.target
                )

    async def _renew(self, held: HeldLease) -> bool:
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.duration_seconds,
            acquire_time=held.spec.acquire_time,
            renew_time=self.clock(),
            lease_transitions=held.spec.lease_transitions,
        )
        try:
            updated = await self._replace(held, held.resource_version, spec)
        except KubeApiError as exc:
            if exc.status in (404, 409):
                current = await self._read(held.name)
                holder = current.spec.holder_identity if current and current.spec else None
                if current is None or holder != self.identity:
                    held.lost.set()
                    return False
                held.resource_version = _rv(current)  # still ours: retry with the fresh version
            logger.warning("lease %s: renewal failed: %s", held.name, exc)
            return False
        held.resource_version, held.spec = _rv(updated), spec
        held.renewals += 1
        return True


def _rv(lease: client.V1Lease) -> str:
    return str(lease.metadata.resource_version if lease.metadata else "")


def _meta_of(lease: client.V1Lease) -> tuple[dict[str, str], dict[str, str]]:
    meta = lease.metadata
    labels = dict((meta.labels if meta else None) or {})
    return labels, dict((meta.annotations if meta else None) or {})
