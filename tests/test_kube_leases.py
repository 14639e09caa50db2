"""Per-hub Leases between replicas, against the API double through `kubernetes.aio`."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.aio import client

from bot.deploys.kubeapi import RetryPolicy
from bot.deploys.kubemanifest import lease_name
from bot.deploys.leases import LeaseHeld, LeaseLock
from bot.sandbox.kube import KubeSandbox

NS = "hubbot"
REPO = "2i2c-org/infrastructure"
NAME = lease_name(REPO, "c1", "staging")


class Clock:
    """A wall clock the test moves by hand (Lease expiry is measured in wall time)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def locks(kube: KubeSandbox, clock: Clock) -> AsyncIterator[Any]:
    made: list[LeaseLock] = []

    def make(identity: str, **kw: Any) -> LeaseLock:
        options: dict[str, Any] = {
            "duration_seconds": 15,
            "renew_seconds": 3600.0,  # no renewal unless a test asks for it
            "poll_seconds": 0.01,
            "retry": RetryPolicy(attempts=4, base_seconds=0.01, max_seconds=0.05),
            "clock": clock,
        }
        options.update(kw)
        lock = LeaseLock(
            kube.configuration(), namespace=NS, repo=REPO, identity=identity, **options
        )
        made.append(lock)
        return lock

    yield make
    for lock in made:
        await lock.close()


def spec(kube: KubeSandbox) -> dict[str, Any]:
    (lease,) = kube.leases(NS)
    return dict(lease["spec"])


async def test_hold_creates_then_release_frees(kube: KubeSandbox, locks: Any, clock: Clock) -> None:
    a = locks("replica-a")
    async with a.hold("c1", "staging") as held:
        assert held.name == NAME and not held.lost.is_set()
        (lease,) = kube.leases(NS)
        assert lease["metadata"]["name"] == NAME
        assert lease["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "hubbot"
        assert lease["metadata"]["annotations"]["hubbot.dev/target"] == "c1/staging"
        assert spec(kube) == {
            "holderIdentity": "replica-a",
            "leaseDurationSeconds": 15,
            "acquireTime": "2025-01-01T00:00:00.000000Z",
            "renewTime": "2025-01-01T00:00:00.000000Z",
            "leaseTransitions": 0,
        }
    assert spec(kube)["holderIdentity"] == ""
    assert kube.leases(NS)[0]["metadata"]["labels"]  # release keeps the labels


async def test_a_second_holder_is_refused_with_the_holder_named(locks: Any) -> None:
    a, b = locks("replica-a"), locks("replica-b")
    async with a.hold("c1", "staging"):
        with pytest.raises(LeaseHeld) as err:
            async with b.hold("c1", "staging"):
                pytest.fail("both replicas hold the same hub")
    assert err.value.holder == "replica-a"
    assert str(err.value) == (
        "c1/staging is being deployed by replica-a until 2025-01-01 00:00:15 UTC unless renewed"
    )


async def test_two_tasks_of_one_process_exclude_each_other(locks: Any) -> None:
    a = locks("replica-a")
    async with a.hold("c1", "staging"):
        with pytest.raises(LeaseHeld) as err:
            await a.acquire("c1", "staging")
        assert err.value.holder == "replica-a"
    async with a.hold("c1", "staging"):  # released: free again
        pass


async def test_release_after_an_unseen_renewal_still_frees_it(
    kube: KubeSandbox, api_client: client.ApiClient, locks: Any
) -> None:
    a = locks("replica-a")
    held = await a.acquire("c1", "staging")
    leases = client.CoordinationV1Api(api_client)
    lease = await leases.read_namespaced_lease(NAME, NS)
    await leases.replace_namespaced_lease(NAME, NS, lease)  # a renewal whose answer was lost
    await a.release(held)
    assert spec(kube)["holderIdentity"] == ""
    assert kube.faults.count("PUT", "/leases/", status=409) == 1


async def test_other_targets_are_independent(locks: Any) -> None:
    a, b = locks("replica-a"), locks("replica-b")
    async with a.hold("c1", "staging"), b.hold("c1", "prod"), b.hold("c1", None):
        pass


async def test_a_waiting_holder_gets_it_when_released(kube: KubeSandbox, locks: Any) -> None:
    a, b = locks("replica-a"), locks("replica-b")
    entered = asyncio.Event()

    async def second() -> int:
        async with b.hold("c1", "staging", wait=10) as held:
            entered.set()
            return int(spec(kube)["leaseTransitions"]) if held else -1

    async with a.hold("c1", "staging"):
        task = asyncio.create_task(second())
        await kube.wait_for(lambda: kube.faults.count("GET", "/leases/") >= 3)
        assert not entered.is_set()
    assert await asyncio.wait_for(task, 5) == 1


async def test_waiting_is_bounded(locks: Any) -> None:
    a, b = locks("replica-a"), locks("replica-b")
    async with a.hold("c1", "staging"):
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(LeaseHeld):
            await b.acquire("c1", "staging", wait=0.2)
        assert 0.2 <= loop.time() - began < 2


async def test_an_expired_lease_is_taken_over(kube: KubeSandbox, locks: Any, clock: Clock) -> None:
    a, b = locks("replica-a"), locks("replica-b")
    held_a = await a.acquire("c1", "staging")  # replica a then dies without releasing
    clock.advance(14)
    with pytest.raises(LeaseHeld):
        await b.acquire("c1", "staging")
    clock.advance(2)
    held_b = await b.acquire("c1", "staging")
    assert (spec(kube)["holderIdentity"], spec(kube)["leaseTransitions"]) == ("replica-b", 1)
    await a.release(held_a)  # a stale release (409) must not free b's lease
    assert spec(kube)["holderIdentity"] == "replica-b"
    assert kube.faults.count("PUT", "/leases/", status=409) == 1
    await b.release(held_b)


async def test_an_update_with_a_stale_resource_version_loses(
    kube: KubeSandbox, locks: Any, clock: Clock
) -> None:
    a, b, c = locks("replica-a"), locks("replica-b"), locks("replica-c")
    await a.acquire("c1", "staging")
    clock.advance(60)
    seen_by_b = await b._read(NAME)  # b reads the expired lease...
    await c.acquire("c1", "staging")  # ...c takes it first...
    assert await b._take(seen_by_b, "c1/staging") is None  # ...so b's update gets 409
    assert kube.faults.count("PUT", "/leases/", status=409) == 1
    assert spec(kube)["holderIdentity"] == "replica-c"


@pytest.mark.parametrize("run", range(5))
async def test_concurrent_takers_of_an_expired_lease_one_wins(
    kube: KubeSandbox, locks: Any, clock: Clock, run: int
) -> None:
    await locks("replica-a").acquire("c1", "staging")
    clock.advance(60)
    takers = [locks(f"replica-{i}") for i in range(3)]
    results = await asyncio.gather(
        *(t.acquire("c1", "staging") for t in takers), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, LeaseHeld) for r in results if r not in winners)
    assert spec(kube)["holderIdentity"] == winners[0].identity


async def test_renewal_keeps_the_lease(kube: KubeSandbox, locks: Any, clock: Clock) -> None:
    a, b = locks("replica-a", renew_seconds=0.01), locks("replica-b")
    async with a.hold("c1", "staging") as held:
        clock.advance(10)
        await kube.wait_for(lambda: spec(kube)["renewTime"] == "2025-01-01T00:00:10.000000Z")
        clock.advance(10)  # 20 s after acquiring, 10 s after the renewal
        with pytest.raises(LeaseHeld):
            await b.acquire("c1", "staging")
        assert held.renewals >= 1 and not held.lost.is_set()
    assert spec(kube)["acquireTime"] == "2025-01-01T00:00:00.000000Z"


async def test_a_holder_notices_when_it_lost_the_lease(
    kube: KubeSandbox, api_client: client.ApiClient, locks: Any
) -> None:
    a = locks("replica-a", renew_seconds=0.01)
    async with a.hold("c1", "staging") as held:
        leases = client.CoordinationV1Api(api_client)
        lease = await leases.read_namespaced_lease(NAME, NS)
        lease.spec.holder_identity = "replica-z"  # another replica with a skewed clock
        await leases.replace_namespaced_lease(NAME, NS, lease)
        await asyncio.wait_for(held.lost.wait(), 5)
    assert spec(kube)["holderIdentity"] == "replica-z"  # no release of a lease not ours


async def test_the_lease_is_released_when_the_block_raises(kube: KubeSandbox, locks: Any) -> None:
    with pytest.raises(RuntimeError):
        async with locks("replica-a").hold("c1", "staging"):
            raise RuntimeError("deploy crashed")
    assert spec(kube)["holderIdentity"] == ""


async def test_transient_api_errors_are_retried(kube: KubeSandbox, locks: Any) -> None:
    kube.faults.fail(500, method="GET", path="/leases/", times=2)
    kube.faults.fail(503, method="POST", path="/leases$", times=1)
    async with locks("replica-a").hold("c1", "staging"):
        assert spec(kube)["holderIdentity"] == "replica-a"


@pytest.fixture
async def api_client(kube: KubeSandbox) -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(kube.configuration())
    yield api
    await api.close()
