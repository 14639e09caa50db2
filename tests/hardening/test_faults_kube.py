"""Kubernetes API faults at each stage of a rollout, with the Kubernetes executor.

A merge deploys City College's support release, staging hub and prod hub, each as a Job
of the Kubernetes API double (a real process, held by a gate file until the test opens it).
At one stage, the API fails: a create answered 409 or 500 (applied or not), 500s past every
retry, reads and watches that fail or are cut, Leases that fail. Each run must end with
every Deployment final and no check open; a fault within the retries ends as a clean
run does; one past them is said; and no Job is ever created twice for a target.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.deploys.kubemanifest import LABEL_CLUSTER, LABEL_HUB
from tests.deploy_support import (
    by_environment,
    deployments,
    eventually,
    gate_each,
    merge_change,
    running,
    states,
)
from tests.hardening.conftest import ROLLOUT_ENVIRONMENTS, rollout_change
from tests.hardening.harness import gather_limited
from tests.hardening.rollouts import ended_clean, quick_reports, said, unfinished
from tests.hardening.support import LoopWatch, SampledChecker

pytest.importorskip("bot.sandbox.kube", reason="the Kubernetes API double")
pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

JOBS = r"/namespaces/hubbot/jobs$"
STAGES = ("support", "staging", "prod")
PARALLEL_RUNS = 8  # runs at once: they mostly wait (gates, watches, backoff)
# The bot's Kubernetes calls are tried 5 times (`kubeapi.RetryPolicy`): failing each of
# them is past every retry.
PAST = 5


@dataclass(frozen=True, slots=True)
class KubeFault:
    """Faults armed at one stage: before its Job is created, or while it runs."""

    name: str
    arm: Callable[[Any, str], None]  # (kube, the stage's target name, e.g. city-college-prod)
    when: str  # "create": before the stage's Job exists; "follow": while it runs
    recoverable: bool = True
    cut_watches: bool = False  # end the open watch streams, so the bot reads and watches anew
    wait_fired: bool = False  # the Job runs on only once the faults have all been hit


def _create(status: int, *, times: int = 1, after: bool = False) -> Callable[[Any, str], None]:
    return lambda kube, _: kube.faults.fail(
        status, method="POST", path=JOBS, times=times, after=after
    )


def _reads(kube: Any, target: str) -> None:
    kube.faults.fail(500, method="GET", path=f"/jobs/hubbot-deploy-{target}-", watch=False, times=2)
    kube.faults.fail(500, method="GET", path=r"/pods$", times=2)
    kube.faults.fail(503, method="GET", path=r"/log$", times=2)


def _watches(kube: Any, _: str) -> None:
    kube.faults.fail(500, method="GET", path=r"/jobs$", watch=True, times=1)
    kube.faults.fail(410, method="GET", path=r"/jobs$", watch=True, times=1)
    kube.faults.drop_watch(after_events=0, path=r"/jobs$", times=2)


def _lost_track(kube: Any, target: str) -> None:
    path = f"/jobs/hubbot-deploy-{target}-"
    kube.faults.fail(500, method="GET", path=path, watch=False, times=PAST)


def _leases(times: int) -> Callable[[Any, str], None]:
    return lambda kube, target: kube.faults.fail(
        500, path=f"/leases/hubbot-lock-{target}-", times=times
    )


FAULTS = {
    f.name: f
    for f in (
        # A create that happened, answered 409 (as a retried create is): adopted, not redone.
        KubeFault("create-409-applied", _create(409, after=True), "create"),
        KubeFault("create-500s", _create(500, times=2), "create"),
        # A create that happened, answered 500: retried, 409, adopted.
        KubeFault("create-500-applied", _create(500, after=True), "create"),
        KubeFault("create-500-past-retries", _create(500, times=PAST), "create", False),
        KubeFault("reads-500s", _reads, "follow", cut_watches=True),
        KubeFault("watch-500-410-cut", _watches, "follow", cut_watches=True, wait_fired=True),
        KubeFault("job-reads-past-retries", _lost_track, "follow", False, True, True),
        KubeFault("lease-500s", _leases(2), "create"),
        KubeFault("lease-500-past-retries", _leases(PAST), "create", False),
    )
}


def kube_config(gates: Path) -> str:
    """The example's settings with the Kubernetes executor; each Job waits for its gate."""
    from tests.test_deploy_restart import kube_hubbot_yaml

    text = kube_hubbot_yaml()
    old = "  command: 'echo deploying {cluster}/{hub} at {sha} into {namespace}'"
    support = "  support_command: 'python3 deploy.py {cluster} --support --mode template'"
    assert old in text and support in text, "the restart test's Kubernetes settings changed"
    command = f"{gate_each(gates)} echo deploying {{cluster}}/{{hub}} at {{sha}}"
    support_command = f"{gate_each(gates, 'support')} echo deploying support of {{cluster}}"
    text = text.replace(old, f"  command: {_quoted(command)}")
    return text.replace(support, f"  support_command: {_quoted(support_command)}")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class KubeRun:
    """What a run left: GitHub's view, the Jobs per target and the API requests served."""

    deployments: list[dict[str, Any]]
    view: dict[str, Any]
    jobs: dict[str, list[str]]  # environment -> Job names
    creates: int  # POSTs of Jobs the double served (whatever it answered)
    unfired: int  # armed faults that never hit a request
    loop_errors: str
    problems: list[str] = field(default_factory=list)


def job_pattern(stage: str) -> str:
    """The start of the Job name of a City College stage (`kubemanifest.job_name`)."""
    return f"hubbot-deploy-city-college-{stage}-"


def jobs_by_environment(kube: Any) -> dict[str, list[str]]:
    """The double's Jobs, by the environment their labels name."""
    found: dict[str, list[str]] = {}
    for job in kube.jobs("hubbot"):
        labels = job["metadata"].get("labels") or {}
        env = f"{labels.get(LABEL_CLUSTER)}/{labels.get(LABEL_HUB) or 'support'}"
        found.setdefault(env, []).append(job["metadata"]["name"])
    return found


async def kube_run(where: Path, checker: Any, fault: KubeFault, stage: str) -> KubeRun:
    """Merge with the fault armed at `stage`; what GitHub and the cluster show at the end."""
    from bot.sandbox.kube import KubeSandbox

    gates = where / "gates"
    gates.mkdir(parents=True)
    target = STAGES.index(stage)
    watch = LoopWatch().install()
    try:
        async with KubeSandbox() as kube:
            server = {"kube_host": kube.url, "kube_token": kube.token}
            async with running(where, checker, hubbot_yaml=kube_config(gates), **server) as stack:
                quick_reports(stack)
                if fault.when == "create" and target == 0:
                    fault.arm(kube, f"city-college-{stage}")
                _, sha = await merge_change(stack, rollout_change(), branch="change", wait=False)
                await _drive(stack, kube, gates, fault, target, sha)
                await stack.deployed()
                found = await deployments(stack)
                view = await stack.pull(1)
            jobs = jobs_by_environment(kube)
            creates = kube.faults.count("POST", JOBS)
            unfired = sum(rule.hits == 0 for rule in kube.faults.rules)
            unfired += sum(drop.times > 0 for drop in kube.faults.drops)
    finally:
        watch.uninstall()
    return KubeRun(found, view, jobs, creates, unfired, watch.describe())


async def _drive(
    stack: Any, kube: Any, gates: Path, fault: KubeFault, target: int, sha: str
) -> None:
    """Open each stage's gate in turn, arming the fault at its moment."""
    for index, stage in enumerate(STAGES):
        env = f"city-college/{stage}"
        if index == target and fault.when == "create" and not fault.recoverable:
            await _all_fired(kube)  # the stage's Job (or its Lease) failed for good
            break
        await kube.wait_for(lambda env=env: env in jobs_by_environment(kube), 30)
        if index == target and fault.when == "follow":
            await eventually(lambda env=env: _running(stack, env, sha))
            fault.arm(kube, env.replace("/", "-"))
            if fault.cut_watches:
                kube.store.end_watches()
            if fault.wait_fired:
                await _all_fired(kube)
            if not fault.recoverable:
                break
        if index + 1 == target and fault.when == "create":
            fault.arm(kube, f"city-college-{STAGES[target]}")
        (gates / f"go-{env.replace('/', '-')}").touch()
    (gates / "go").touch()  # whatever is left runs to its end


async def _all_fired(kube: Any) -> None:
    def fired() -> bool:
        rules, drops = kube.faults.rules, kube.faults.drops
        return all(r.times == 0 for r in rules) and all(d.times == 0 for d in drops)

    await kube.wait_for(fired, 30)


async def _running(stack: Any, env: str, sha: str) -> bool:
    found = by_environment(await deployments(stack), sha).get(env)
    return found is not None and "in_progress" in states(found)


def judge(fault: KubeFault, stage: str, run: KubeRun) -> list[str]:
    """Why a run is wrong (empty when it ended as it must)."""
    problems = []
    if run.loop_errors:
        problems.append(f"unhandled task exceptions: {run.loop_errors}")
    if run.unfired:
        problems.append(f"{run.unfired} armed fault(s) never fired")
    twice = {env: names for env, names in run.jobs.items() if len(names) > 1}
    if twice:
        problems.append(f"Jobs created twice: {twice}")
    problems += unfinished(run.deployments, run.view)
    different = ended_clean(run.deployments, run.view, ROLLOUT_ENVIRONMENTS)
    if fault.recoverable:
        problems += different
        if set(run.jobs) != set(ROLLOUT_ENVIRONMENTS):
            problems.append(f"Jobs of {sorted(run.jobs)}")
    elif not different:
        problems.append("a fault past every retry changed nothing: it did not hit")
    elif not said(run.deployments, run.view):
        problems.append(f"ended otherwise, and nothing says so: {different}")
    return problems


def stages_of(fault: KubeFault) -> tuple[str, ...]:
    """Where a fault is armed: every stage when it stops the stage (what is blocked after it
    differs), one stage when the bot rides it out (the same code at any stage; each stage
    gets two of those)."""
    if not fault.recoverable:
        return STAGES
    riding = [f.name for f in FAULTS.values() if f.recoverable]
    return (STAGES[riding.index(fault.name) % len(STAGES)],)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def campaign(
    tmp_path_factory: pytest.TempPathFactory, openapi_checker: Any
) -> AsyncIterator[dict[tuple[str, str], KubeRun]]:
    """Every run of this module, a few at a time: (fault, stage) -> what it left."""
    checker = SampledChecker(openapi_checker)
    where = tmp_path_factory.mktemp("kube-faults")
    pairs = [(name, stage) for name, fault in FAULTS.items() for stage in stages_of(fault)]
    jobs = [
        functools.partial(kube_run, where / f"{name}-{stage}", checker, FAULTS[name], stage)
        for name, stage in pairs
    ]
    runs = await gather_limited(jobs, PARALLEL_RUNS)
    yield dict(zip(pairs, runs, strict=True))


@pytest.mark.parametrize("name", list(FAULTS))
def test_kubernetes_api_faults_at_each_stage_of_a_rollout(
    name: str, campaign: dict[tuple[str, str], KubeRun]
) -> None:
    fault = FAULTS[name]
    problems = [
        f"{name} at {stage}: {problem}"
        for stage in stages_of(fault)
        for problem in judge(fault, stage, campaign[(name, stage)])
    ]
    assert not problems, "\n".join(problems)


def test_every_stage_meets_faults_it_rides_out_and_faults_that_stop_it() -> None:
    for stage in STAGES:
        kinds = [f for f in FAULTS.values() if stage in stages_of(f)]
        assert sum(f.recoverable for f in kinds) >= 2
        assert {f.when for f in kinds if not f.recoverable} == {"create", "follow"}


def test_job_names_start_with_their_target() -> None:
    from bot.deploys.executor import DeployJob
    from bot.deploys.kubemanifest import job_name

    job = DeployJob("j-1", "o/r", "city-college", "staging", "a" * 40, "true", 60.0)
    assert re.match(job_pattern("staging"), job_name(job))
