"""The rollout driver over the schedule, with an in-memory executor we control."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from bot.deploys.executor import DeployJob, DeployResult, Executor
from bot.deploys.health import HealthResult
from bot.deploys.rollout import Rollout, StepOutcome
from bot.deploys.schedule import Step, Wave


@dataclass
class ScriptedExecutor(Executor):
    """Each job waits on a gate the test opens, then ends as scripted."""

    fail: set[str] = field(default_factory=set)
    crash: set[str] = field(default_factory=set)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    gated: bool = False
    started: list[tuple[str, str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    async def run(self, job: DeployJob) -> DeployResult:
        key = job.target
        self.started.append((key, job.sha))
        if key in self.crash:
            raise RuntimeError("boom")
        if self.gated:
            await self.gate(key).wait()
            self.gate(key).clear()
        if job.id in self.cancelled:
            return DeployResult("cancelled", "cancelled while running")
        if key in self.fail:
            return DeployResult("failure", "exit code 1")
        return DeployResult("success", "exit code 0")

    async def cancel(self, job_id: str) -> bool:
        self.cancelled.append(job_id)
        for event in self.gates.values():
            event.set()
        return True

    async def watch(self, job: DeployJob) -> DeployResult:
        self.watched.append(job.id)
        return DeployResult("success", "watched to the end")


@dataclass
class RecordingReporter:
    events: list[tuple[str, str, str]] = field(default_factory=list)
    broken: bool = False

    async def queued(self, waves: list[Wave]) -> None:
        for wave in waves:
            for key in sorted(wave.steps):
                self.events.append(("queued", key, wave.sha))
        if self.broken:
            raise RuntimeError("GitHub is down")

    async def started(self, step: Step, job: DeployJob) -> None:
        self.events.append(("started", step.key, job.sha))

    async def finished(self, step: Step, outcome: StepOutcome) -> None:
        self.events.append((outcome.ending, step.key, outcome.detail))

    def endings(self) -> dict[str, str]:
        return {k: e for e, k, _ in self.events if e not in ("queued", "started")}


async def prepare(step: Step) -> DeployJob | None:
    if step.hub == "gone":
        return None
    return DeployJob(
        id=f"{step.key}-{step.sha}-{step.wave}",
        repo="o/r",
        cluster=step.cluster,
        hub=step.hub,
        sha=step.sha,
        command="true",
        timeout_seconds=10,
    )


def rollout(ex: Executor, rep: RecordingReporter, **kw: object) -> Rollout:
    return Rollout(
        executor=ex,
        prepare=prepare,
        reporter=rep,
        max_parallel=10,
        max_parallel_per_cluster=3,
        **kw,  # type: ignore[arg-type]
    )


def cluster(name: str, *prod: str) -> list[Step]:
    return [Step(name, None, "support"), Step(name, "staging", "staging")] + [
        Step(name, p, "prod") for p in prod
    ]


async def finish(r: Rollout) -> None:
    async with asyncio.timeout(10):
        await r.wait_idle()


async def test_every_step_ends_and_is_reported() -> None:
    ex, rep = ScriptedExecutor(fail={"b/staging"}), RecordingReporter()
    r = rollout(ex, rep)
    await r.submit(cluster("a", "p1") + cluster("b", "p1"), sha="s1")
    await finish(r)
    assert rep.endings() == {
        "a/support": "success",
        "a/staging": "success",
        "a/p1": "success",
        "b/support": "success",
        "b/staging": "failure",
        "b/p1": "blocked",
    }
    started = [k for k, _ in ex.started]
    assert started.index("a/support") < started.index("a/staging") < started.index("a/p1")
    assert "b/p1" not in started
    await r.close()


async def test_crash_and_vanished_release_are_reported() -> None:
    ex, rep = ScriptedExecutor(crash={"a/staging"}), RecordingReporter()
    r = rollout(ex, rep)
    await r.submit([Step("a", "staging", "staging"), Step("a", "gone", "staging")], sha="s")
    await finish(r)
    assert rep.endings() == {"a/staging": "error", "a/gone": "skipped"}
    await r.close()


async def test_merges_queued_during_a_rollout_coalesce_and_none_is_lost() -> None:
    ex, rep = ScriptedExecutor(gated=True), RecordingReporter()
    r = rollout(ex, rep)
    await r.submit([Step("a", "staging", "staging")], sha="s1", source="#1")
    async with asyncio.timeout(5):
        while not ex.started:
            await asyncio.sleep(0)
    await r.submit([Step("a", "staging", "staging"), Step("a", "p1", "prod")], sha="s2")
    await r.submit([Step("a", "p2", "prod"), Step("b", "staging", "staging")], sha="s3")
    for _ in range(8):
        for event in list(ex.gates.values()):
            event.set()
        await asyncio.sleep(0.01)
    for key in ("a/staging", "a/p1", "a/p2", "b/staging"):
        ex.gate(key).set()
    async with asyncio.timeout(10):
        while not r.idle:
            for event in list(ex.gates.values()):
                event.set()
            await asyncio.sleep(0.01)
    # s2 and s3 coalesced on cluster a: one deploy at s3 for each target
    assert ex.started.count(("a/staging", "s1")) == 1
    assert ex.started.count(("a/staging", "s3")) == 1
    assert ("a/p1", "s3") in ex.started and ("a/p2", "s3") in ex.started
    assert ("b/staging", "s3") in ex.started
    assert not any(sha == "s2" for _, sha in ex.started)
    await r.close()


async def test_cancel_stops_queued_and_running() -> None:
    ex, rep = ScriptedExecutor(gated=True), RecordingReporter()
    r = rollout(ex, rep)
    await r.submit(cluster("a", "p1"), sha="s1", stream="pr#3")
    async with asyncio.timeout(5):
        while not ex.started:
            await asyncio.sleep(0)
    hit = await r.cancel(lambda step, wave: wave.stream == "pr#3", reason="cancelled by @alice")
    assert {s.key for s in hit} == {"a/support", "a/staging", "a/p1"}
    await finish(r)
    endings = rep.endings()
    assert endings["a/staging"] == "cancelled" and endings["a/p1"] == "cancelled"
    assert endings["a/support"] == "cancelled"
    await r.close()


async def test_adopted_jobs_are_watched_not_started() -> None:
    ex, rep = ScriptedExecutor(), RecordingReporter()
    r = rollout(ex, rep)
    job = DeployJob(
        id="old-job",
        repo="o/r",
        cluster="a",
        hub="staging",
        sha="s0",
        command="true",
        timeout_seconds=5,
    )
    await r.adopt(Step("a", "staging", "staging"), job)
    await finish(r)
    assert ex.watched == ["old-job"] and ex.started == []
    assert rep.endings() == {"a/staging": "success"}
    await r.close()


@pytest.mark.parametrize(
    ("health", "ending", "text"),
    [
        (HealthResult(True, 1, "passed"), "success", "health check passed"),
        (HealthResult(True, 2, "passed on attempt 2 of 3 (flaky: ...)"), "success", "flaky"),
        (HealthResult(False, 3, "failed 3 times"), "failure", "health check failed 3 times"),
    ],
)
async def test_health_checks(health: HealthResult, ending: str, text: str) -> None:
    ex, rep = ScriptedExecutor(), RecordingReporter()

    async def check(step: Step, job: DeployJob) -> HealthResult:
        return health

    r = rollout(ex, rep, health_check=check)
    await r.submit([Step("a", "staging", "staging")], sha="s")
    await finish(r)
    (event,) = [e for e in rep.events if e[1] == "a/staging" and e[0] not in ("queued", "started")]
    assert event[0] == ending and text in event[2]
    await r.close()


async def test_a_broken_reporter_never_stops_deploys() -> None:
    ex, rep = ScriptedExecutor(), RecordingReporter(broken=True)
    r = rollout(ex, rep)
    await r.submit(cluster("a", "p1"), sha="s")
    await finish(r)
    assert [k for k, _ in ex.started] == ["a/support", "a/staging", "a/p1"]
    await r.close()
