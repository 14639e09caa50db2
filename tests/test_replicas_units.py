"""The parts of several-replica support that need no second replica.

Holder identities and the addresses read back from them, the server settings that turn
leader election on, the queue handing its waiting jobs over, the handover MAC, the bound
on deliveries held while no leader answers, and the election itself against the
Kubernetes API double: two candidates, one leader; a clean resign hands over at once; a
leader that cannot renew (API errors) says it lost before its term could be taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.deploys.kubeapi import RBAC_RULES, RetryPolicy
from bot.deploys.leases import LeaseLock
from bot.web.election import (
    Election,
    ElectionTiming,
    identity_for,
    lease_name_for,
    pod_of,
    url_of,
)
from bot.web.queue import Job, JobQueue, QueueClosed
from bot.web.replica import HANDOVER, Incoming, Replica, handover_mac, sign
from bot.web.settings import SettingsError, load_settings

# -- identities ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "host", "port", "url"),
    [
        ("hubbot-7d9c-x2", "10.0.3.7", 8080, "http://10.0.3.7:8080"),
        ("hubbot-0", "fd00::12", 8080, "http://[fd00::12]:8080"),
        ("bot", "hubbot-0.hubbot.ns.svc", 9000, "http://hubbot-0.hubbot.ns.svc:9000"),
    ],
)
def test_a_holder_identity_says_where_the_leader_answers(
    pod: str, host: str, port: int, url: str
) -> None:
    identity = identity_for(pod, host, port)
    assert url_of(identity) == url
    assert pod_of(identity) == pod
    assert identity != identity_for(pod, host, port)  # a restarted process is someone else


@pytest.mark.parametrize(
    "holder", ["", "hubbot-a", "hubbot-a@", "x@evil.example/path:80", "a@host:port", "a@[zz]:1"]
)
def test_a_holder_naming_no_address_gives_no_url(holder: str) -> None:
    assert url_of(holder) is None


@pytest.mark.parametrize(
    ("app_id", "name"),
    [("123456", "hubbot-leader-123456"), ("Iv1.AbC_9", "hubbot-leader-iv1-abc-9")],
)
def test_one_leader_lease_per_app(app_id: str, name: str) -> None:
    assert lease_name_for(app_id) == name


# -- settings ------------------------------------------------------------------------------


@pytest.fixture
def base_env(private_key_pem: str) -> dict[str, str]:
    return {
        "HUBBOT_APP_ID": "1",
        "HUBBOT_PRIVATE_KEY": private_key_pem,
        "HUBBOT_WEBHOOK_SECRET": "s",
    }


ELECTION = {
    "HUBBOT_LEADER_ELECTION": "true",
    "HUBBOT_POD_NAME": "hubbot-a",
    "HUBBOT_POD_IP": "10.0.0.5",
    "HUBBOT_POD_NAMESPACE": "bots",
    "HUBBOT_KUBE_HOST": "https://k8s.example.org",
}


def test_leader_election_is_off_unless_asked(base_env: dict[str, str]) -> None:
    settings = load_settings(base_env)
    assert not settings.leader_election and settings.pod_ip == ""


def test_leader_election_settings(base_env: dict[str, str]) -> None:
    settings = load_settings(base_env | ELECTION | {"HUBBOT_LEADER_LEASE_SECONDS": "20"})
    assert settings.leader_election
    assert (settings.pod_name, settings.pod_ip, settings.pod_namespace) == (
        "hubbot-a",
        "10.0.0.5",
        "bots",
    )
    assert settings.leader_lease_seconds == 20


def test_in_a_cluster_the_service_account_is_enough(base_env: dict[str, str]) -> None:
    env = {k: v for k, v in (base_env | ELECTION).items() if k != "HUBBOT_KUBE_HOST"}
    assert load_settings(env | {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}).leader_election


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"HUBBOT_LEADER_ELECTION": "maybe"}, "HUBBOT_LEADER_ELECTION must be true or false"),
        ({"HUBBOT_POD_IP": ""}, "needs HUBBOT_POD_IP"),
        ({"HUBBOT_KUBE_HOST": ""}, "needs the Kubernetes API"),
        ({"HUBBOT_PORT": "0"}, "needs a fixed HUBBOT_PORT"),
        ({"HUBBOT_LEADER_LEASE_SECONDS": "1"}, "between 3 and 300"),
    ],
)
def test_leader_election_settings_that_cannot_work_stop_start_up(
    base_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(base_env | ELECTION | change)


def test_the_namespace_comes_from_the_service_account_when_not_given(
    base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.web import settings as module

    env = {k: v for k, v in (base_env | ELECTION).items() if k != "HUBBOT_POD_NAMESPACE"}
    monkeypatch.setattr(module, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")
    with pytest.raises(SettingsError, match="HUBBOT_POD_NAMESPACE"):
        load_settings(env)
    (tmp_path / "namespace").write_text("from-the-token\n")
    monkeypatch.setattr(module, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "namespace")
    assert load_settings(env).pod_namespace == "from-the-token"


# -- the queue hands its waiting jobs over ------------------------------------------------


async def test_the_queue_hands_over_waiting_jobs_oldest_first_and_lets_running_ones_end() -> None:
    release = asyncio.Event()
    ran: list[str] = []
    ended: list[tuple[str, str]] = []

    async def handle(job: Job) -> None:
        ran.append(job.delivery_id)
        await release.wait()

    queue = JobQueue(
        handle, maxsize=10, workers=1, on_done=lambda j, r, s: ended.append((j.delivery_id, r))
    )
    queue.start()
    for n, key in enumerate(["pr1", "pr1", "pr2", "pr1"]):
        queue.submit(Job(key=key, delivery_id=f"d{n}", event="pull_request"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ran == ["d0"]
    handed = queue.hand_over()
    assert [j.delivery_id for j in handed] == ["d1", "d2", "d3"]
    assert queue.depth == 0
    with pytest.raises(QueueClosed):
        queue.submit(Job(key="pr3", delivery_id="late", event="push"))
    release.set()
    await queue.close(drain_timeout=5)
    assert ran == ["d0"]  # nothing handed over ran here
    handed_over = [(f"d{n}", "handed_over") for n in (1, 2, 3)]
    assert ended == [*handed_over, ("d0", "ok")]


# -- handover MAC and held deliveries -----------------------------------------------------


def test_a_handover_is_recognised_only_with_its_mac() -> None:
    replica = Replica(election=None, secret="s3cret")
    job = Job(key="k", delivery_id="d-1", event="push", payload={"ref": "x"}, hook_id="7")
    incoming = replica.as_incoming(job)
    assert incoming is not None and replica.is_handover(incoming)
    assert incoming.headers["x-github-hook-id"] == "7"
    assert incoming.headers["x-hub-signature-256"] == sign("s3cret", incoming.body)
    forged = Incoming(incoming.body, dict(incoming.headers) | {HANDOVER: "0" * 64}, {})
    assert not replica.is_handover(forged)
    other = Incoming(incoming.body, dict(incoming.headers) | {"x-github-delivery": "d-2"}, {})
    assert not replica.is_handover(other)  # the MAC binds the delivery id
    assert (
        handover_mac("another", "d-1", incoming.headers["x-hub-signature-256"])
        != (incoming.headers[HANDOVER])
    )
    assert replica.as_incoming(Job(key="k", delivery_id="r", event="x", work=_noop)) is None


async def _noop() -> None:
    return None


class NoLeader:
    """An election in which nobody leads and nobody can be asked."""

    leading = False
    leader = ""
    leader_url = None
    timing = ElectionTiming()

    async def refresh(self) -> None:
        return None

    async def wait_changed(self, within: float) -> bool:
        return False


async def test_deliveries_are_held_while_no_leader_answers_up_to_a_bound() -> None:
    replica = Replica(election=NoLeader(), secret=None, forward_seconds=0, hold_max=2)  # type: ignore[arg-type]

    def delivery(n: int) -> Incoming:
        return Incoming(b"{}", {"x-github-delivery": f"d{n}", "x-github-event": "push"}, {})

    answers = [await replica.receive(delivery(n)) for n in range(3)]  # no leader: held
    assert [(r.status, result) for r, result in answers] == [
        (202, "held"),
        (202, "held"),
        (503, "no_leader"),
    ]
    assert answers[2][0].headers["Retry-After"] == "30"
    assert [i.delivery_id for i in replica.held] == ["d0", "d1"]
    forwarded = Incoming(b"{}", {"x-hubbot-forwarded-by": "other"}, {})
    response, result = await replica.receive(forwarded)
    assert (response.status, result) == (421, "misdirected")
    # A leader appears: held deliveries go first, and a new one queues behind them.
    routed: list[str] = []
    replica.route = lambda incoming: (routed.append(incoming.delivery_id), answers[0])[1]
    replica.hold_max = 3
    assert (await replica.receive(delivery(3)))[1] == "held"
    replica.election.leading = True  # type: ignore[union-attr]
    while replica.held:
        assert await replica._flush_one()
    assert routed == ["d0", "d1", "d3"]


# -- the election against the Kubernetes API double ----------------------------------------

FAST = ElectionTiming(duration_seconds=3, renew_seconds=0.3, renew_deadline=1.5, retry_seconds=0.1)


@pytest.fixture
async def kube() -> AsyncIterator[Any]:
    from bot.sandbox.kube import KubeSandbox

    async with KubeSandbox() as sandbox:
        yield sandbox


def candidate(kube: Any, pod: str, port: int, events: list[str]) -> Election:
    lock = LeaseLock(
        kube.configuration(),
        namespace="ns",
        repo="",
        identity=identity_for(pod, "127.0.0.1", port),
        duration_seconds=FAST.duration_seconds,
        renew_seconds=FAST.renew_seconds,
        renew_deadline=FAST.renew_deadline,
        retry=RetryPolicy(attempts=1, base_seconds=0.01, max_seconds=0.01),
    )
    return Election(
        lock,
        "hubbot-leader-1",
        timing=FAST,
        on_lead=lambda: events.append(f"{pod} leads"),
        on_lost=lambda: events.append(f"{pod} lost"),
    )


async def wait_for(check: Any, within: float = 10.0) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_one_candidate_leads_and_a_resign_hands_over_at_once(kube: Any) -> None:
    events: list[str] = []
    a, b = candidate(kube, "a", 1, events), candidate(kube, "b", 2, events)
    a.start()
    await wait_for(lambda: a.leading)
    b.start()
    await wait_for(lambda: b.leader_url == "http://127.0.0.1:1")
    assert not b.leading
    (lease,) = kube.leases("ns")
    assert lease["spec"]["holderIdentity"] == a.identity
    assert lease["spec"]["leaseDurationSeconds"] == 3
    await asyncio.sleep(4 * FAST.renew_seconds)
    assert a.leading and not b.leading  # renewals keep the term
    took = await asyncio.gather(a.resign(), wait_for(lambda: b.leading))
    assert took[1] < 1.0  # the next look (retry 0.1 s) finds it free: no term to wait out
    assert events == ["a leads", "b leads"]
    await wait_for(lambda: a.leader_url == "http://127.0.0.1:2")  # a observes, never retakes
    await asyncio.sleep(0.3)
    assert not a.leading
    await a.close()
    await b.close()
    verbs = {r.method for r in kube.faults.requests if "/leases" in r.path}
    assert verbs <= {"GET", "POST", "PUT"}  # get, create, update: LEADER_RBAC_RULES


async def test_a_leader_that_cannot_renew_stops_before_its_term_is_taken(kube: Any) -> None:
    events: list[str] = []
    a, b = candidate(kube, "a", 1, events), candidate(kube, "b", 2, events)
    a.start()
    await wait_for(lambda: a.leading)
    b.start()
    await wait_for(lambda: b.leader_url is not None)
    kube.faults.fail(500, method="PUT", path="leases/hubbot-leader-1", times=10_000)
    cut = time.monotonic()
    await wait_for(lambda: "a lost" in events)
    lost_after = time.monotonic() - cut
    kube.faults.clear()
    await wait_for(lambda: b.leading)
    taken_after = time.monotonic() - cut
    # a stopped within its renew deadline; b took over only once the term ran out.
    assert lost_after <= FAST.renew_deadline + 2 * FAST.renew_seconds
    assert taken_after >= lost_after
    assert events == ["a leads", "a lost", "b leads"]
    assert not a.candidate
    await a.close()
    await b.close()


def test_the_election_needs_only_what_the_role_grants() -> None:
    leases = {(g, r): set(v) for g, r, v in RBAC_RULES}[("coordination.k8s.io", "leases")]
    from bot.deploys.kubeapi import LEADER_RBAC_RULES

    assert LEADER_RBAC_RULES == (("coordination.k8s.io", "leases", ("create", "get", "update")),)
    assert set(LEADER_RBAC_RULES[0][2]) <= leases


# -- a checkout cut by a stopping leader ends cancelled, its folder gone --------------------


async def test_a_checkout_cancelled_mid_write_is_cancelled_and_removed(tmp_path: Path) -> None:
    from bot.core.snapshot import DictSnapshot
    from bot.deploys.workspace import SnapshotWorkspace

    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    reads: list[str] = []

    class Slow(DictSnapshot):
        def read(self, path: str) -> bytes:
            reads.append(path)
            if len(reads) == 50:
                loop.call_soon_threadsafe(started.set)
            time.sleep(0.0005)  # the writer thread is busy when the deploy is cancelled
            return super().read(path)

    files = {f"c/{n // 10}/{n}.yaml": f"n: {n}\n" for n in range(2000)}

    async def load(repo: str, sha: str) -> DictSnapshot:
        return Slow(files)

    workspace = SnapshotWorkspace(load, parent=str(tmp_path))

    async def deploy() -> None:
        async with workspace.checkout("o/r", "0" * 40):
            raise AssertionError("the checkout should not have finished")

    task = asyncio.create_task(deploy())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # not an OSError from removing a folder the writer still fills
    assert len(reads) == len(files)  # the writer finished before the removal...
    assert list(tmp_path.iterdir()) == []  # ...so nothing was left behind


# -- a resumed deploy that the old leader finished meanwhile is not run again ---------------


class Statuses:
    """A GitHub client that answers one Deployment's statuses (newest first)."""

    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.asked: list[str] = []

    async def getitem(self, url: str, url_vars: dict[str, Any] | None = None) -> Any:
        self.asked.append(url)
        return [{"state": s, "description": ""} for s in self.states]


def resumed_context(gh: Statuses, attempt: str) -> Any:
    from types import SimpleNamespace

    from bot.github.deployments import DeploymentRef

    ref = DeploymentRef(7, "https://api.example/repos/o/r/deployments/7", "c/hub", "a" * 40)
    reporter = SimpleNamespace(
        deployments={attempt: ref}, reused={1: {"c/hub": (ref, "in_progress")}}
    )
    return SimpleNamespace(reporter=reporter, gh=gh)


def job(attempt: str) -> Any:
    from bot.deploys.executor import DeployJob

    return DeployJob("j", "o/r", "c", "hub", "a" * 40, "true", 60.0, labels={"attempt": attempt})


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        (["in_progress", "queued", "in_progress", "queued"], None),  # still ours to run
        (["success", "in_progress", "queued", "in_progress", "queued"], "success"),
        (["in_progress", "queued", "failure", "in_progress", "queued"], "failure"),
        (["inactive", "in_progress", "queued"], "cancelled"),
    ],
)
async def test_a_resumed_deploy_that_ended_elsewhere_is_not_run(
    states: list[str], outcome: str | None
) -> None:
    from bot.deploys.recovery import ended_meanwhile

    gh = Statuses(states)
    result = await ended_meanwhile(resumed_context(gh, "att"), job("att"))
    assert (result.outcome if result else None) == outcome
    assert gh.asked == ["https://api.example/repos/o/r/deployments/7/statuses{?per_page}"]
    assert await ended_meanwhile(resumed_context(gh, "att"), job("new-attempt")) is None
    assert len(gh.asked) == 1  # a deploy on a new Deployment costs no call


async def test_the_check_runs_once_the_old_holder_lets_the_hubs_lease_go(kube: Any) -> None:
    from bot.deploys.executor import DeployResult, Executor
    from bot.deploys.leased import LeasedExecutor
    from bot.deploys.recovery import ended_meanwhile

    class Never(Executor):
        ran = 0

        async def run(self, job: Any) -> DeployResult:
            self.ran += 1
            return DeployResult("success", "deployed twice")

        async def cancel(self, job_id: str) -> bool:
            return False

    def lock(identity: str) -> LeaseLock:
        return LeaseLock(
            kube.configuration(),
            namespace="ns",
            repo="o/r",
            identity=identity,
            poll_seconds=0.05,
            retry=RetryPolicy(attempts=1, base_seconds=0.01, max_seconds=0.01),
        )

    old, new = lock("old-leader"), lock("new-leader")
    gh = Statuses(["in_progress", "queued", "in_progress", "queued"])
    inner = Never()
    executor = LeasedExecutor(
        inner, new, ended=lambda j: ended_meanwhile(resumed_context(gh, "att"), j)
    )
    async with old.hold("c", "hub"):  # the cut-off leader still deploys the hub
        polls = kube.faults.count("GET", "/leases/")
        running = asyncio.create_task(executor.run(job("att")))
        await wait_for(lambda: kube.faults.count("GET", "/leases/") >= polls + 3)
        assert not running.done() and gh.asked == []  # polling the taken Lease
        gh.states.insert(0, "success")  # it finishes and says so on the Deployment
    result = await asyncio.wait_for(running, 10)
    assert (result.outcome, inner.ran) == ("success", 0)
    assert "already ended (success)" in result.detail
    await old.close()
    await new.close()


def test_one_replica_never_imports_the_kubernetes_client() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys, bot.web.app, bot.web.serve\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'kubernetes'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"  # its models cost ~20 MB: loaded only when a Lease is used
