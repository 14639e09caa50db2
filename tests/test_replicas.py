"""Two replicas, one leader (a Lease in the Kubernetes API double), GitHub's double behind both.

Webhooks reach the replicas through a stand-in for the Kubernetes Service (round robin, or
pinned to one). Whatever replica gets a delivery, the leader handles it, once: the plan
comment and check appear once, a redelivery to the other replica is a duplicate, merges
sent to alternating replicas coalesce and deploy in order, and `/cancel` sent to the
standby stops the leader's deploy. The leader stepping down (SIGTERM) or vanishing (its
Lease expiring) hands everything to the standby, which recovers and finishes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.web.keys import DELIVERY_LOG, SERVICES
from tests.deploy_support import (
    COMMON,
    SUPPORT,
    by_environment,
    deploy_comments,
    deploy_runs,
    deployments,
    edited,
    eventually,
    example_repo,
    gate,
    hubbot_yaml,
    merge_change,
    needs_tools,
    states,
    tools_path,
)
from tests.e2e_support import MARKER, SECRET, STAGING, Stack
from tests.replica_support import (
    NAMESPACE,
    Node,
    Service,
    leader_of,
    settle,
    stack_on,
    start_node,
    until,
)
from tests.test_commands_e2e import add_user, comment, open_pr_as, reactions, reply

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")
pytest.importorskip("bot.sandbox.kube", reason="the Kubernetes API double")


@dataclass
class Pair:
    """The doubles, the Service and two replicas (`a` led first)."""

    sandbox: Any
    kube: Any
    service: Service
    a: Node
    b: Node
    http: aiohttp.ClientSession

    def stack(self, leader: Node) -> Stack:
        return stack_on(self.sandbox, self.service, leader, self.http)


@pytest.fixture
async def pair(tmp_path: Path, openapi_checker: Any) -> AsyncIterator[Pair]:
    """Replica `a` starts first and leads; `b` stands by. Both behind one Service."""
    async for made in _pair(tmp_path, openapi_checker, None):
        yield made


async def _pair(tmp_path: Path, checker: Any, hubbot_config: str | None) -> AsyncIterator[Pair]:
    from bot.sandbox.github.app import GitHubSandbox
    from bot.sandbox.kube import KubeSandbox

    repo = example_repo(tmp_path, hubbot_yaml=hubbot_config)
    sandbox = await GitHubSandbox(repo, webhook_secret=SECRET, checker=checker).start()
    nodes: list[Node] = []
    try:
        async with KubeSandbox() as kube, aiohttp.ClientSession() as http:
            service = await Service().start()
            try:
                a = await start_node(sandbox, kube, "hubbot-a")
                nodes.append(a)
                await leader_of(a)
                b = await start_node(sandbox, kube, "hubbot-b")
                nodes.append(b)
                assert await leader_of(a, b) is a
                service.targets = [a.url, b.url]
                await http.post(
                    f"{sandbox.control_url}/webhook", json={"url": f"{service.url}/webhook"}
                )
                yield Pair(sandbox, kube, service, a, b, http)
            finally:
                for node in nodes:
                    await node.runner.cleanup()
                await service.close()
    finally:
        await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


CHANGE = {STAGING: edited(STAGING, "replicas")}


def plan_comments(view: dict[str, Any]) -> list[str]:
    return [c["body"] for c in view["comments"] if c["body"].startswith(MARKER)]


def plan_runs(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in view["check_runs"] if r["name"] == "hubbot/plan"]


async def test_a_delivery_to_the_standby_is_handled_once_by_the_leader(pair: Pair) -> None:
    pair.service.pinned = pair.b.url
    stack = pair.stack(pair.a)
    number = await open_pr_as(stack, "octocat", CHANGE)
    await settle(pair.a, pair.b)
    view = await stack.pull(number)
    assert len(plan_comments(view)) == 1
    (run,) = plan_runs(view)
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    delivered = await stack.control("GET", "/deliveries")
    assert [d["status"] for d in delivered] == [202] * len(delivered)
    opened = next(d for d in delivered if d["event"] == "pull_request")
    # The standby forwarded it; the leader accepted and ran it.
    on_b = {e.delivery_id: e for e in pair.b.app[DELIVERY_LOG].recent()}
    on_a = {e.delivery_id: e for e in pair.a.app[DELIVERY_LOG].recent()}
    assert (on_b[opened["id"]].answer, on_b[opened["id"]].handling) == ("forwarded", "")
    assert (on_a[opened["id"]].answer, on_a[opened["id"]].handling) == ("accepted", "ok")
    assert pair.b.replica.forwards and not pair.a.replica.forwards


@pytest.mark.parametrize("first", ["a", "b"])
async def test_a_redelivery_to_the_other_replica_is_a_duplicate(pair: Pair, first: str) -> None:
    nodes = {"a": pair.a, "b": pair.b}
    pair.service.pinned = nodes[first].url
    stack = pair.stack(pair.a)
    number = await open_pr_as(stack, "octocat", CHANGE)
    await settle(pair.a)
    opened = next(
        d for d in await stack.control("GET", "/deliveries") if d["event"] == "pull_request"
    )
    pair.service.pinned = nodes["b" if first == "a" else "a"].url
    before = len(pair.sandbox.requests)
    again = await stack.control("POST", "/redeliver", {"delivery": opened["id"]})
    await settle(pair.a)
    assert again["status"] == 202
    assert pair.sandbox.requests[before:] == []  # nothing done twice: no GitHub call at all
    assert len(plan_runs(await stack.pull(number))) == 1


async def test_the_standby_shows_the_leaders_status_page(pair: Pair) -> None:
    async with pair.http.get(f"{pair.b.url}/status.json") as resp:
        data = await resp.json()
    assert data["replica"]["role"] == "leader"  # the leader's own page, through the standby
    async with pair.http.get(f"{pair.b.url}/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["role"] == "standby"
    async with pair.http.get(f"{pair.b.url}/deploys/{'0' * 32}") as resp:
        assert resp.status == 404 and "No log is kept" in await resp.text()


async def test_a_forwarded_delivery_at_a_replica_that_does_not_lead_is_misdirected(
    pair: Pair,
) -> None:
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "loop",
        "X-Hubbot-Forwarded-By": "hubbot-a",
        "Content-Type": "application/json",
    }
    from tests.conftest import sign

    body = b'{"zen": "x"}'
    headers["X-Hub-Signature-256"] = sign(body, SECRET)
    async with pair.http.post(f"{pair.b.url}/webhook", data=body, headers=headers) as resp:
        assert resp.status == 421
    headers["X-Hub-Signature-256"] = sign(body, "another secret")
    async with pair.http.post(f"{pair.b.url}/webhook", data=body, headers=headers) as resp:
        assert resp.status == 401  # every replica checks signatures first


@pytest.fixture
async def gated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> AsyncIterator[tuple[Pair, Path]]:
    """Replicas that really deploy (helm), each deploy held at a gate the test opens."""
    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    async for made in _pair(tmp_path, openapi_checker, hubbot_yaml(before_command=gate(gates))):
        yield made, gates


async def deployed(*nodes: Node, within: float = 120.0) -> None:
    """Every node's queue idle and every deploy it runs ended, reported."""
    await settle(*nodes)
    for node in nodes:
        await asyncio.wait_for(node.app[SERVICES].deploys.wait_idle(), within)


async def test_merges_sent_to_alternating_replicas_coalesce_and_deploy_in_order(
    gated: tuple[Pair, Path],
) -> None:
    pair, gates = gated
    stack = pair.stack(pair.a)  # round robin: each delivery goes to the other replica
    ocean = "config/clusters/ocean-lab/staging.values.yaml"
    _, sha1 = await merge_change(stack, {STAGING: edited(STAGING, "one")}, branch="one", wait=False)

    async def first_running() -> bool:
        d = by_environment(await deployments(stack), sha1).get("uni-a/staging")
        return d is not None and "in_progress" in states(d)

    await eventually(first_running)
    _, sha2 = await merge_change(stack, {COMMON: edited(COMMON, "two")}, branch="two", wait=False)
    await settle(pair.a)
    files = {SUPPORT: edited(SUPPORT, "three", 7), ocean: edited(ocean, "three")}
    _, sha3 = await merge_change(stack, files, branch="three", wait=False)
    await settle(pair.a)
    (gates / "go").touch()
    await deployed(pair.a, pair.b)

    assert {pair.a.url, pair.b.url} <= set(pair.service.sent)  # both replicas got deliveries
    everything = await deployments(stack)
    assert {d["sha"] for d in everything} == {sha1, sha2, sha3}
    at2, at3 = (by_environment(everything, sha) for sha in (sha2, sha3))
    for d in at2.values():  # merge 2 waited behind merge 1 and coalesced into merge 3
        assert states(d) == ["queued", "inactive"]
    assert all(states(d) == ["queued", "in_progress", "success"] for d in at3.values())
    started = sorted(
        (s["id"], d["sha"])
        for d in everything
        if d["environment"] == "uni-a/staging"
        for s in d["statuses"]
        if s["state"] == "in_progress"
    )
    assert [sha for _, sha in started] == [sha1, sha3]  # never an older commit last
    assert pair.b.app[SERVICES].deploys.repos == {}  # the standby deployed nothing


async def test_cancel_sent_to_the_standby_cancels_the_leaders_deploy(
    gated: tuple[Pair, Path],
) -> None:
    pair, gates = gated
    pair.service.pinned = pair.b.url
    stack = pair.stack(pair.a)
    await add_user(stack, "alice-partner", "read")
    number = await open_pr_as(stack, "alice-partner", {STAGING: edited(STAGING, "cancel")})
    head = (await stack.pull(number))["head"]["sha"]
    await comment(stack, number, "alice-partner", "/deploy staging")

    async def running() -> bool:
        d = by_environment(await deployments(stack), head).get("uni-a/staging")
        return d is not None and "in_progress" in states(d)

    await eventually(running)
    cid = await comment(stack, number, "alice-partner", "/cancel")
    view = await stack.pull(number)
    assert "✅ **`/cancel`** cancelled `uni-a/staging`" in reply(view, cid)
    assert reactions(view, cid) == ["eyes", "rocket"]
    await deployed(pair.a)
    last = by_environment(await deployments(stack), head)["uni-a/staging"]["statuses"][-1]
    assert (last["state"], last["description"]) == ("error", "cancelled by @alice-partner")
    assert not (gates / "go").exists()
    # Local deploys hold their hub's Lease while replicas elect a leader; released after.
    hubs = [x for x in pair.kube.leases(NAMESPACE) if "leader" not in x["metadata"]["name"]]
    assert hubs and all(not x["spec"].get("holderIdentity") for x in hubs)


UNI_A = ("uni-a/staging", "uni-a/r-staging", "uni-a/prod", "uni-a/r-prod")


@pytest.fixture
async def one_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> AsyncIterator[tuple[Pair, Path]]:
    """Deploying replicas, one deploy at a time per cluster, each held at a gate."""
    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(before_command=gate(gates), max_parallel_per_cluster="1")
    async for made in _pair(tmp_path, openapi_checker, config):
        yield made, gates


async def test_the_leader_stepping_down_mid_rollout_hands_everything_to_the_standby(
    one_lane: tuple[Pair, Path],
) -> None:
    pair, gates = one_lane
    stack = pair.stack(pair.a)
    number, sha = await merge_change(
        stack, {COMMON: edited(COMMON, "handover")}, branch="h", wait=False
    )

    async def one_running() -> bool:
        found = by_environment(await deployments(stack), sha)
        return set(found) == set(UNI_A) and "in_progress" in states(found["uni-a/r-staging"])

    await eventually(one_running)
    await settle(pair.a)
    ids = {e: d["id"] for e, d in by_environment(await deployments(stack), sha).items()}

    takeover = asyncio.create_task(until(lambda: pair.b.leading))
    started = time.monotonic()
    await pair.a.leadership.step_down()  # SIGTERM: step down while still serving
    stepped = time.monotonic() - started
    await takeover
    handover = time.monotonic() - started
    await pair.a.runner.cleanup()
    assert handover < 5.0, f"the standby took {handover:.2f} s to lead"
    print(f"\nstep-down {stepped:.2f} s, standby leading after {handover:.2f} s")

    stack = pair.stack(pair.b)
    await asyncio.wait_for(pair.b.app[SERVICES].deploys.wait_recovered(), 30)
    assert pair.b.app[SERVICES].deploys.recovery["requeued"] == 4
    (gates / "go").touch()
    await deployed(pair.b)
    after = by_environment(await deployments(stack), sha)
    assert {e: d["id"] for e, d in after.items()} == ids  # the same Deployments, resumed
    assert states(after["uni-a/r-staging"]) == [
        "queued",
        "in_progress",
        "queued",
        "in_progress",
        "success",
    ]
    for env in UNI_A:
        assert states(after[env])[-1] == "success"
    runs = deploy_runs(await stack.pull(number), sha)
    assert [r["conclusion"] for r in runs] == ["cancelled", "success"]
    (body,) = deploy_comments(await stack.pull(number))
    assert "all 4 done" in body
    leases = {x["metadata"]["name"]: x["spec"] for x in pair.kube.leases(NAMESPACE)}
    leader = next(spec for name, spec in leases.items() if name.startswith("hubbot-leader"))
    assert leader["holderIdentity"] == pair.b.election.identity
    assert leader["leaseTransitions"] == 1


async def test_a_stepping_down_leader_hands_its_waiting_deliveries_over(pair: Pair) -> None:
    # Through b: b forwarded them, so b knows them; the handover must not look a duplicate.
    pair.service.pinned = pair.b.url
    stack = pair.stack(pair.a)
    # The first plan hangs on the compare; the PR's next event waits behind it in the queue.
    await stack.control(
        "POST", "/faults", {"method": "GET", "path": "/compare/", "delay_seconds": 1.5}
    )
    await stack.control("POST", "/branches", {"name": "w", "from": "main", "files": CHANGE})
    number = int((await stack.control("POST", "/pulls", {"head": "w"}))["number"])
    labeled = await stack.control("POST", f"/pulls/{number}/labels", {"add": ["wait"]})
    (waiting,) = [d["id"] for d in labeled["deliveries"]]
    assert pair.a.app[SERVICES] is not None and pair.a.app[DELIVERY_LOG].recent()
    await pair.a.stop()
    await until(lambda: pair.b.leading)
    await settle(pair.b)
    on_a = {e.delivery_id: e.handling for e in pair.a.app[DELIVERY_LOG].recent()}
    on_b = [(e.answer, e.handling) for e in pair.b.app[DELIVERY_LOG].recent()[::-1]]
    assert on_a[waiting] == "handed over"
    entries = [e for e in pair.b.app[DELIVERY_LOG].recent()[::-1] if e.delivery_id == waiting]
    assert [(e.answer, e.handling) for e in entries] == [("forwarded", ""), ("accepted", "ok")]
    assert on_b  # the new leader ran it, once
    runs = plan_runs(await pair.stack(pair.b).pull(number))
    assert runs and all(r["status"] == "completed" for r in runs)


async def test_a_leader_that_cannot_renew_steps_down_and_asks_to_exit(pair: Pair) -> None:
    # The API server refuses the leader's renewals (a partition, as far as it can tell).
    pair.kube.faults.fail(500, method="PUT", path="leases/hubbot-leader", times=10_000)
    lost = await until(lambda: pair.a.leadership.stopped.is_set(), within=10)
    assert not pair.a.leading and not pair.a.election.candidate
    assert pair.a.leadership.deploys_stopped  # what it ran, its successor resumes
    assert lost <= 3 * 2 / 3 + 1.5  # the renew deadline (2/3 of the 3 s term), and a retry
    pair.kube.faults.clear()
    await until(lambda: pair.b.leading, within=10)  # once a's term has run out
    pair.service.pinned = pair.a.url  # GitHub still reaches the pod that lost: it forwards
    stack = pair.stack(pair.b)
    number = await open_pr_as(stack, "octocat", CHANGE)
    await settle(pair.b)
    assert len(plan_comments(await stack.pull(number))) == 1
