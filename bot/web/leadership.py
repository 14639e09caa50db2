"""What this process does as it starts and stops leading.

Alone (no election) it leads from start-up to shutdown, as hubbot always did. With an
election, it starts the deploy service and runs start-up recovery when it takes the Lease.
Recovery, either way: open PRs whose `hubbot/plan` run a stopped process left open are
queued for a re-plan (`bot.handlers.plan_recovery`), then accepted deploys are resumed
(`DeployService.recover`).

Stepping down (SIGTERM, or the Lease lost), in this order:
1. stop leading: new deliveries are forwarded to the next leader (or held until there is one);
2. take the waiting jobs out of the queue, let the running ones finish (up to `RUNNING_GRACE`);
3. stop deploys: local ones are killed and rerun by the next leader's recovery, Kubernetes
   Jobs keep running and are adopted, open `hubbot/deploy` runs are concluded;
4. release the Lease, so a standby takes it at its next look (about a second);
5. hand the waiting jobs and held deliveries to the new leader (up to `HANDOVER_SECONDS`).
A process that lost the Lease involuntarily then asks to exit (`stopped`), like client-go's
controllers do: it comes back as a fresh standby.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import gidgethub

from bot.github.factory import GitHubFactory
from bot.github.installations import installed_repositories
from bot.handlers.context import Services
from bot.handlers.plan_recovery import StalePlan, find_stale, replan_stale
from bot.web.election import Election, ElectionTiming, identity_for, lease_name_for
from bot.web.queue import Job, JobQueue, QueueClosed, QueueFull
from bot.web.replica import Replica
from bot.web.settings import ServerSettings

logger = logging.getLogger(__name__)

RUNNING_GRACE = 8.0  # running handlers get this long to finish when the leader steps down
HANDOVER_SECONDS = 8.0  # and the next leader this long to appear and take the waiting ones
RECOVERY_HOLD_SECONDS = 60.0  # a new leader holds deliveries at most this long for recovery
FAILURES = (gidgethub.GitHubException, aiohttp.ClientError, TimeoutError)
PLAN_FAILURES = (*FAILURES, KeyError, TypeError, ValueError)


def build_replica(settings: ServerSettings) -> Replica:
    """This process's replica: alone, or a candidate in the app's leader election."""
    if not settings.leader_election:
        return Replica(election=None, secret=settings.webhook_secret)
    from bot.deploys.kubeapi import RetryPolicy as KubeRetry
    from bot.deploys.kubeapi import kube_configuration
    from bot.deploys.leases import LeaseLock

    configuration = kube_configuration(
        host=settings.kube_host, token=settings.kube_token, ca_file=settings.kube_ca
    )
    seconds = settings.leader_lease_seconds
    # client-go's defaults scaled to the term: 15 s lease, 10 s deadline, 2 s renew, 1 s retry.
    timing = ElectionTiming(
        duration_seconds=seconds,
        renew_seconds=seconds * 2 / 15,
        renew_deadline=seconds * 2 / 3,
        retry_seconds=seconds / 15,
    )
    lock = LeaseLock(
        configuration,
        namespace=settings.pod_namespace,
        repo="",
        identity=identity_for(settings.pod_name, settings.pod_ip, settings.port),
        duration_seconds=seconds,
        renew_seconds=timing.renew_seconds,
        renew_deadline=timing.renew_deadline,
        retry=KubeRetry(attempts=2, base_seconds=0.1, max_seconds=0.3),
    )
    election = Election(lock, lease_name_for(settings.app_id), timing=timing)
    return Replica(election=election, secret=settings.webhook_secret, pod=settings.pod_name)


class Leadership:
    """Starts what a leader runs, and steps down in order."""

    def __init__(self, replica: Replica, queue: JobQueue, services: Services) -> None:
        self.replica, self.queue, self.services = replica, queue, services
        self.github: GitHubFactory | None = None
        self.recovery: asyncio.Task[None] | None = None
        self._resuming: asyncio.Task[None] | None = None
        self.plans: dict[str, Any] = {"state": "not started", "stale": 0, "calls": 0}
        self.stopped = asyncio.Event()  # the Lease was lost: the process should exit
        self._stepping: asyncio.Task[None] | None = None
        self.led = False  # whether this process ever led (then it has deploys to stop)
        self.deploys_stopped = False
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, github: GitHubFactory, session: aiohttp.ClientSession) -> None:
        """Lead now (alone), or campaign (with an election)."""
        self.github = github
        election = self.replica.election
        if election is None:
            self.begin()
        else:
            election.on_lead, election.on_lost = self.begin, self._lost
        self.replica.start(session)

    def begin(self) -> None:
        """This process leads: start deploys and recovery."""
        assert self.github is not None
        self.led = True
        self.services.deploys.start(self.github)
        if self.replica.election is not None:
            # A new leader resumes the old one's deploys before anything newer is handled,
            # so a merge it accepts meanwhile queues behind them (order per hub holds).
            self.queue.hold()
        self.recovery = asyncio.create_task(self._recover(), name="hubbot-recovery")
        self.recovery.add_done_callback(_log_failure)

    async def _recover(self) -> None:
        try:
            await self.recover_plans()
        except Exception:  # a bug: deploys are still recovered
            logger.exception("plan recovery failed")
        deploys = asyncio.create_task(self.services.deploys.recover(), name="hubbot-resume")
        self._resuming = deploys
        done, _ = await asyncio.wait([deploys], timeout=RECOVERY_HOLD_SECONDS)
        if not done:
            logger.warning("deploy recovery is slow: handling deliveries meanwhile")
        self.queue.release()
        await deploys

    async def recover_plans(self) -> None:
        """Queue a re-plan for each open PR whose plan run a stopped process left open."""
        assert self.github is not None
        self.plans.update(state="running")
        problems = []
        try:
            async for gh, item in installed_repositories(self.github):
                try:
                    stale, calls = await find_stale(gh, item, app_id=self.services.app_id)
                except PLAN_FAILURES as exc:
                    problems.append(f"{item.get('full_name')}: {type(exc).__name__}")
                    continue
                self.plans["calls"] += calls
                for found in stale:
                    self._replan(gh, item, found)
        except FAILURES as exc:
            logger.error("plan recovery could not list the app's repositories: %s", exc)
            self.plans.update(state="failed", detail=type(exc).__name__)
            return
        self.plans.update(state="partial" if problems else "done", detail="; ".join(problems))

    def _replan(self, gh: Any, repository: dict[str, Any], stale: StalePlan) -> None:
        async def work() -> None:
            await replan_stale(gh, self.services, stale)

        job = Job(
            key=f"{repository.get('id') or repository.get('full_name')}#{stale.number}",
            delivery_id=f"plan-recovery-{stale.run.id}",
            event="plan_recovery",
            work=work,
        )
        try:
            self.queue.submit(job)
        except (QueueFull, QueueClosed):
            logger.warning("plan of #%s not recovered now: the queue is full", stale.number)
            return
        self.plans["stale"] += 1

    # -- stopping ---------------------------------------------------------------------------

    async def step_down(self) -> None:
        """Stop leading for good and hand the waiting work over (a no-op when alone)."""
        if self.replica.election is None:
            return
        if self._stepping is None:
            self._stepping = asyncio.create_task(self._step_down(), name="hubbot-step-down")
        await asyncio.shield(self._stepping)

    async def _step_down(self) -> None:
        election = self.replica.election
        assert election is not None
        self.replica.stepping_down, election.candidate = True, False
        waiting = self.queue.hand_over()
        await self.queue.close(drain_timeout=RUNNING_GRACE)
        if self.led:  # also when the Lease was lost: its successor reruns what it stops
            await self.stop_deploys()
        await election.resign()
        await self.replica.hand_over(waiting, within=HANDOVER_SECONDS)

    def _lost(self) -> None:
        async def after_loss() -> None:
            await self.step_down()
            self.stopped.set()

        task = asyncio.create_task(after_loss(), name="hubbot-leadership-lost")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop_deploys(self) -> None:
        """Stop recovery and the deploy service (once)."""
        if self.deploys_stopped:
            return
        self.deploys_stopped = True
        for task in (self.recovery, self._resuming):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.services.deploys.close()

    async def close(self) -> None:
        """Step down (with an election) and stop the replica's background work."""
        await self.step_down()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.replica.held:  # held while stepping down, and not passed on yet
            await self.replica.hand_over([], within=HANDOVER_SECONDS)
        await self.replica.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("start-up recovery failed", exc_info=task.exception())
