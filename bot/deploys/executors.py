"""Which executor a repository's deploys run on, built from its settings and the server's.

`local` (the default) runs each deploy as a subprocess in a checkout written from the
repository's snapshot at the deploy's SHA. `kubernetes` runs each as a Job, under the
hub's Lease. An executor that cannot be built (no API server reachable from the settings,
an invalid `job_template`) is replaced by one that ends every deploy as an error saying
why, so the failure shows on each Deployment instead of vanishing in a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gidgethub.abc import GitHubAPI

from bot.core.settings import Settings
from bot.deploys.executor import DeployJob, DeployResult, Executor
from bot.deploys.repo import local_executor
from bot.github.snapshot import RepoRef, SnapshotReader

if TYPE_CHECKING:
    from bot.deploys.leased import Ended
    from bot.deploys.service import DeployConfig

logger = logging.getLogger(__name__)


def executor_settings(settings: Settings) -> tuple[str, Any]:
    """What an executor is built from: when it changes, the executor is built again."""
    return settings.deploy.executor, settings.deploy.kubernetes


def build_executor(
    config: DeployConfig,
    repo: RepoRef,
    settings: Settings,
    *,
    snapshots: SnapshotReader,
    gh: Callable[[], GitHubAPI],
    ended: Ended | None = None,
) -> Executor:
    """The executor the settings ask for (or `Unavailable`, saying why it cannot start).

    `ended` tells a Leased executor that a resumed deploy already ended elsewhere.
    """
    from bot.deploys.kubeapi import KubeConfigError

    if settings.deploy.executor == "kubernetes":
        from bot.deploys.kubeexec import kubernetes_executor
        from bot.deploys.kubemanifest import JobTemplateError

        try:
            return kubernetes_executor(config, repo, settings, ended=ended)
        except (KubeConfigError, JobTemplateError) as exc:
            logger.error("%s: the Kubernetes executor cannot start: %s", repo.full_name, exc)
            return Unavailable("kubernetes", f"the Kubernetes executor cannot start: {exc}")
    local = local_executor(snapshots, repo, gh, passthrough=config.passthrough)
    if config.lease_namespace is None:
        return local
    from bot.deploys.kubeexec import leased_local

    try:
        return leased_local(config, repo, local, config.lease_namespace, ended=ended)
    except KubeConfigError as exc:  # checked at start-up; only a vanished token gets here
        logger.error("%s: hub Leases unavailable: %s", repo.full_name, exc)
        return Unavailable("local", f"the hub Leases cannot be taken: {exc}")


class Unavailable(Executor):
    """An executor that could not be built: every job ends as an error saying why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    async def run(self, job: DeployJob) -> DeployResult:
        """Refuse the job, saying why."""
        return DeployResult("error", self.reason)

    async def cancel(self, job_id: str) -> bool:
        """Nothing runs here."""
        return False
