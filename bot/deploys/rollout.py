"""The rollout driver: runs the pure `Schedule` with an executor and tells a reporter.

One `Rollout` per repository. `submit()` queues steps (from a merge's plan or a
PR preview); the driver starts whatever the schedule says is ready, runs each
step through the executor (and its health check), records how it ended, and
reports every transition. Accepted steps are never dropped: each one ends as
success, failure, error, blocked or cancelled, and the reporter hears it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.deploys.executor import DeployJob, DeployResult, Executor
from bot.deploys.health import HealthResult
from bot.deploys.schedule import ADOPTED, MAIN, Schedule, Step, Wave

logger = logging.getLogger(__name__)

Ending = Literal["success", "failure", "error", "cancelled", "blocked", "skipped"]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one step ended, for reports."""

    ending: Ending
    detail: str
    result: DeployResult | None = None
    health: HealthResult | None = None
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the step counts as deployed (a vanished release counts: nothing to do)."""
        return self.ending in ("success", "skipped")


class Reporter(Protocol):
    """Hears every transition of every step."""

    async def queued(self, waves: list[Wave]) -> None:
        """Steps were accepted into these waves."""

    async def started(self, step: Step, job: DeployJob) -> None:
        """A step's job started."""

    async def finished(self, step: Step, outcome: StepOutcome) -> None:
        """A step ended (including blocked, cancelled and skipped steps)."""


Prepare = Callable[[Step], Awaitable[DeployJob | None]]
HealthCheck = Callable[[Step, DeployJob], Awaitable[HealthResult | None]]


class Rollout:
    """Drives one repository's schedule."""

    def __init__(
        self,
        *,
        executor: Executor,
        prepare: Prepare,
        reporter: Reporter,
        max_parallel: int,
        max_parallel_per_cluster: int,
        health_check: HealthCheck | None = None,
    ):
        self.executor = executor
        self.prepare = prepare
        self.reporter = reporter
        self.health_check = health_check
        self.schedule = Schedule(
            max_parallel=max_parallel, max_parallel_per_cluster=max_parallel_per_cluster
        )
        self.jobs: dict[str, DeployJob] = {}  # step key -> job of running steps
        self._adopted: dict[tuple[str, int], DeployJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.Task[None] | None = None

    def set_caps(self, *, max_parallel: int, max_parallel_per_cluster: int) -> None:
        """Apply new caps (settings changed on the default branch)."""
        self.schedule.max_parallel = max_parallel
        self.schedule.max_parallel_per_cluster = max_parallel_per_cluster

    async def submit(
        self, steps: Iterable[Step], *, sha: str, stream: str = MAIN, source: str = ""
    ) -> list[Wave]:
        """Accept steps; they coalesce with queued ones of the same stream."""
        waves = self.schedule.add(steps, sha=sha, stream=stream, source=source)
        if waves:
            self._idle.clear()
            await self._report(self.reporter.queued(waves))
            self._ensure_running()
            self._wake.set()
        return waves

    async def adopt(self, step: Step, job: DeployJob, *, source: str = "") -> None:
        """Take over a job already running (found after a restart): watch it, do not start it."""
        (wave,) = self.schedule.add([step], sha=job.sha, stream=f"{ADOPTED}{job.id}", source=source)
        self._adopted[(step.key, wave.id)] = job
        self._idle.clear()
        self._ensure_running()
        self._wake.set()

    def _ensure_running(self) -> None:
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._drive(), name="hubbot-rollout")

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            for step in self.schedule.ready():
                self.schedule.start(step)
                task = asyncio.create_task(self._run_step(step), name=f"deploy {step.key}")
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
            if self.schedule.idle and not self._tasks:
                self._idle.set()
            await self._wake.wait()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _run_step(self, step: Step) -> None:
        started = time.monotonic()
        try:
            outcome = await self._execute(step)
        except Exception as exc:  # a bug or an I/O failure: the step still ends, reported
            logger.exception("deploy of %s failed unexpectedly", step.key)
            outcome = StepOutcome(
                "error", f"hubbot failed to run this deploy: {type(exc).__name__}"
            )
        finally:
            self.jobs.pop(step.key, None)
        outcome = _with_duration(outcome, time.monotonic() - started)
        blocked = self.schedule.finish(step, outcome.ok, outcome.detail)
        self._wake.set()
        await self._report(self.reporter.finished(step, outcome))
        for other, why in blocked:
            await self._report(self.reporter.finished(other, StepOutcome("blocked", why)))

    async def _execute(self, step: Step) -> StepOutcome:
        adopted = self._adopted.pop((step.key, step.wave), None)
        if adopted is not None:
            self.jobs[step.key] = adopted
            result = await self.executor.watch(adopted)
            return _outcome(result, None)
        job = await self.prepare(step)
        if job is None:
            return StepOutcome("skipped", "this release no longer exists at this commit")
        self.jobs[step.key] = job
        await self._report(self.reporter.started(step, job))
        result = await self.executor.run(job)
        health = None
        if result.ok and self.health_check is not None:
            health = await self.health_check(step, job)
        return _outcome(result, health)

    async def cancel(self, match: Callable[[Step, Wave], bool], *, reason: str) -> list[Step]:
        """Cancel queued steps and stop running ones that match; returns every step hit."""
        running = [
            (step, self.jobs[step.key])
            for wave in self.schedule.waves()
            for key, step in wave.steps.items()
            if wave.state[key] == "running" and key in self.jobs and match(step, wave)
        ]
        queued = self.schedule.cancel(match, reason)
        for step in queued:
            await self._report(self.reporter.finished(step, StepOutcome("cancelled", reason)))
        for _, job in running:
            await self.executor.cancel(job.id)
        self._wake.set()
        return queued + [s for s, _ in running]

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or running (wrap in `asyncio.timeout`)."""
        await self._idle.wait()

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or running."""
        return self._idle.is_set()

    async def close(self) -> None:
        """Stop driving (running jobs are left to the executor, which may resume them)."""
        if self._loop is not None:
            self._loop.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *(t for t in [self._loop] if t), return_exceptions=True)

    async def _report(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:  # a reporting failure must never stop deploys
            logger.exception("reporting a deploy transition failed")


def _outcome(result: DeployResult, health: HealthResult | None) -> StepOutcome:
    if result.outcome != "success":
        return StepOutcome(result.outcome, result.detail, result)
    if health is None:
        return StepOutcome("success", result.detail, result)
    if not health.ok:
        return StepOutcome(
            "failure", f"deployed, but the health check {health.detail}", result, health
        )
    detail = "deployed; health check " + health.detail
    return StepOutcome("success", detail, result, health)


def _with_duration(outcome: StepOutcome, seconds: float) -> StepOutcome:
    return StepOutcome(outcome.ending, outcome.detail, outcome.result, outcome.health, seconds)
