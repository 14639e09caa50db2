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
) -> Executor:
    """The executor the settings ask for (or `Unavailable`, saying why it cannot start)."""
    if settings.deploy.executor == "kubernetes":
        from bot.deploys.kubeapi import KubeConfigError
        from bot.deploys.kubeexec import kubernetes_executor
        from bot.deploys.kubemanifest import JobTemplateError

        try:
            return kubernetes_executor(config, repo, settings)
        except (KubeConfigError, JobTemplateError) as exc:
            logger.error("%s: the Kubernetes executor cannot start: %s", repo.full_name, exc)
            return Unavailable("kubernetes", f"the Kubernetes executor cannot start: {exc}")
    return local_executor(snapshots, repo, gh, passthrough=config.passthrough)


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
