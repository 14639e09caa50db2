"""The deploy service: every deploy hubbot runs goes through here, one `Rollout` per repository.

Handlers call it: a push to the default branch (`deploy_merge`), `/deploy staging` and
`/deploy <cluster>/<hub>` (`deploy_preview`), `/deploy <cluster>/<hub>@<sha>` (`redeploy`),
`/cancel` (`cancel_pr`), `/unlock` and a closed PR (`release_claims`). It keeps in memory
only what is running; GitHub's Deployments hold the rest, so `recover()` at start-up finds
accepted deploys again, and `claims()` derives staging claims from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gidgethub.abc import GitHubAPI

from bot.core.settings import Settings
from bot.deploys.claims import Claim
from bot.deploys.schedule import Step, Wave
from bot.github.snapshot import RepoRef


@dataclass(frozen=True, slots=True)
class DeployConfig:
    """Server-side deploy settings (never from a repository): links, Kubernetes access, env."""

    public_url: str | None = None  # the bot's own URL, for `log_url` links to `/deploys/{id}`
    kube_host: str | None = None  # the Kubernetes API server; None: in-cluster config
    kube_token: str | None = field(default=None, repr=False)
    kube_ca: str | None = None
    passthrough: tuple[str, ...] = ()  # extra environment variables a local deploy may see


class DeployService:
    """Runs and reports deploys for every repository of the app's installations."""

    def __init__(self, config: DeployConfig | None = None) -> None:
        self.config = config or DeployConfig()

    async def deploy_merge(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        before: str,
        after: str,
        default_branch: str,
        pr: int | None = None,
        labels: Sequence[str] = (),
        comments_url: str | None = None,
        source: str = "",
    ) -> list[Wave]:
        """Plan `before..after` on the default branch and roll it out (support, staging, prod)."""
        raise NotImplementedError

    async def deploy_preview(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        pr: int,
        pr_author: str,
        head_sha: str,
        targets: Sequence[tuple[str, str]],
        actor: str,
        comments_url: str,
    ) -> list[Wave]:
        """Deploy a PR's head (pinned) to staging hubs `(cluster, hub)`; they become its claims."""
        raise NotImplementedError

    async def redeploy(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        targets: Sequence[tuple[str, str]],
        sha: str,
        actor: str,
        pr: int | None,
        comments_url: str | None,
    ) -> list[Wave]:
        """Deploy a default-branch commit to any hubs (redeploy or roll back)."""
        raise NotImplementedError

    async def cancel_pr(self, repo: RepoRef, pr: int, *, actor: str) -> list[Step]:
        """Cancel the queued and running deploys a PR asked for; returns the steps hit."""
        raise NotImplementedError

    def started_by(self, repo: RepoRef, pr: int) -> set[str]:
        """Logins whose deploys for this PR are queued or running."""
        raise NotImplementedError

    async def claims(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        environments: Iterable[str] | None = None,
        *,
        fresh: bool = False,
        settings: Settings | None = None,
    ) -> dict[str, Claim]:
        """Staging claims by environment (`cluster/hub`), derived from GitHub's Deployments."""
        raise NotImplementedError

    async def release_claims(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        pr: int,
        environments: Iterable[str] | None,
        reason: str,
    ) -> list[Claim]:
        """Release a PR's claims (all, or on `environments`): its previews become `inactive`."""
        raise NotImplementedError

    async def recover(self) -> None:
        """At start-up: requeue accepted deploys found in GitHub, adopt running Kubernetes Jobs."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Rollouts and claims for the status page, as plain JSON data (never a secret).

        `{"executor": str, "recovery": {"state", "requeued", "adopted", "detail"},
          "rollouts": [{"repo", "waves": [{"id", "cluster", "stream", "sha", "pr", "actor",
                        "sources", "targets": [{"target", "stage", "state", "detail",
                        "seconds"}]}]}],
          "claims": [{"repo", "environment", "pr", "author", "since", "expires"}]}`
        """
        raise NotImplementedError
