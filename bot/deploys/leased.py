"""An executor that holds the target's Kubernetes Lease while its job runs (several replicas).

Two replicas must never deploy one hub at once: each `run()` (and each `watch()` of a job
adopted after a restart) holds the hub's `coordination.k8s.io/v1` Lease, waiting for it up
to the job's timeout. A Lease that stays taken ends the job as an error that names the holder.
Once the Lease is held, `ended(job)` may say the deploy already ended elsewhere (a deploy
resumed after a restart that the old process, still holding the Lease, finished after all):
then it is not run again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.deploys.executor import DeployJob, DeployResult, Executor
from bot.deploys.kubeapi import KubeApiError
from bot.deploys.leases import LeaseHeld, LeaseLock

Ended = Callable[[DeployJob], Awaitable[DeployResult | None]]


class LeasedExecutor(Executor):
    """Wraps an executor; each job runs under its target's Lease."""

    def __init__(
        self,
        inner: Executor,
        lock: LeaseLock,
        *,
        adopt_wait: float = 90.0,
        ended: Ended | None = None,
    ) -> None:
        self.inner, self.lock = inner, lock
        self.name = inner.name
        self.adopt_wait = adopt_wait  # a dead replica's Lease expires within its duration
        self.ended = ended

    async def run(self, job: DeployJob) -> DeployResult:
        """Take the Lease, then run the job (unless it ended elsewhere meanwhile)."""
        try:
            async with self.lock.hold(job.cluster, job.hub, wait=job.timeout_seconds):
                done = await self.ended(job) if self.ended is not None else None
                if done is not None:
                    return done
                return await self.inner.run(job)
        except LeaseHeld as exc:
            return DeployResult("error", f"not deployed: {exc}")
        except KubeApiError as exc:
            return DeployResult("error", f"could not take the deploy lock: {exc}")

    async def watch(self, job: DeployJob) -> DeployResult:
        """Take the Lease (a dead holder's expires), then follow the adopted job."""
        try:
            async with self.lock.hold(job.cluster, job.hub, wait=self.adopt_wait):
                return await self.inner.watch(job)
        except LeaseHeld as exc:
            return DeployResult("error", f"another replica follows this deploy: {exc}")
        except KubeApiError as exc:
            return DeployResult("error", f"could not take the deploy lock: {exc}")

    async def cancel(self, job_id: str) -> bool:
        """Cancel through the wrapped executor."""
        return await self.inner.cancel(job_id)

    async def recover(self) -> list[DeployJob]:
        """Jobs in flight, from the wrapped executor."""
        return await self.inner.recover()

    async def close(self) -> None:
        """Close the executor and the lock's client."""
        await self.inner.close()
        await self.lock.close()
