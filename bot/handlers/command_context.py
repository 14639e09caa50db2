"""What the commands of one PR comment share: the PR read fresh, the settings, the commenter.

Read lazily and at most once per comment, so a comment of several commands costs
one `GET` of the PR, and the head SHA every deploy of that comment pins is the one
read when its commands were accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gidgethub.abc import GitHubAPI

from bot.core.permissions import Actor, teams_named
from bot.core.settings import Settings
from bot.github.repo_settings import RepoSettings
from bot.github.snapshot import RepoRef
from bot.handlers.context import PayloadError, Services
from bot.handlers.pull_requests import PullRequest


class Refused(Exception):
    """A command that is not allowed or not possible; the message tells the commenter why."""


@dataclass(frozen=True, slots=True)
class FreshPull:
    """The PR as GitHub has it now: read once per comment, when its commands are accepted."""

    pr: PullRequest
    author: str
    fork: bool
    html_url: str

    @property
    def open(self) -> bool:
        """Whether the PR is open."""
        return self.pr.state == "open"


class CommentRun:
    """One comment's commands: what they share (the PR, the settings, the commenter)."""

    def __init__(
        self,
        gh: GitHubAPI,
        services: Services,
        data: Mapping[str, Any],
        *,
        delivery: str = "",
    ) -> None:
        try:
            issue, comment, repository = data["issue"], data["comment"], data["repository"]
            self.repo = RepoRef(
                owner=str(repository["owner"]["login"]),
                name=str(repository["name"]),
                url=str(repository["url"]),
            )
            self.repo_html = str(repository.get("html_url") or "")
            self.default_branch = str(repository.get("default_branch") or "main")
            self.number = int(issue["number"])
            self.pull_url = str(issue["pull_request"]["url"])
            self.comments_url = str(issue["comments_url"])
            self.comment_id = int(comment["id"])
            self.comment_url = str(comment["url"])
            self.login = str(comment["user"]["login"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"issue_comment payload lacks {exc}") from None
        self.gh = gh
        self.services = services
        self.delivery = delivery  # the webhook delivery, recorded with the deploys it queues
        self._repository = repository
        self._fresh: FreshPull | None = None
        self._settings: RepoSettings | None = None

    async def pull(self) -> FreshPull:
        """The PR fetched fresh (once per comment): its head SHA is the one deploys pin."""
        if self._fresh is None:
            data = await self.gh.getitem(self.pull_url)
            if not isinstance(data, Mapping):
                raise PayloadError("the pull request answer is not an object")
            self._fresh = fresh_pull(data, self._repository)
        return self._fresh

    async def repo_settings(self) -> RepoSettings:
        """hubbot.yaml of the default branch, never of the PR."""
        if self._settings is None:
            self._settings = await self.services.settings.get(
                self.gh,
                repo=self.repo.full_name,
                repo_url=self.repo.url,
                default_branch=self.default_branch,
            )
        return self._settings

    async def settings(self) -> Settings:
        """The default branch's settings (defaults when hubbot.yaml is broken)."""
        return (await self.repo_settings()).settings

    async def actor(self, *, teams: bool = False) -> Actor:
        """The commenter: their role, and (when `teams`) the partner teams they are in."""
        named = teams_named(await self.settings()) if teams else set()
        return await self.services.permissions.actor(
            self.gh, repo_url=self.repo.url, repo=self.repo.full_name, login=self.login, teams=named
        )

    def pull_link(self, number: int) -> str:
        """`#n (url)`: a PR reference that renders as a link in the reply and reads in the log."""
        return f"#{number} ({self.repo_html}/pull/{number})" if self.repo_html else f"#{number}"


def fresh_pull(data: Mapping[str, Any], repository: Mapping[str, Any]) -> FreshPull:
    """A fresh `GET` of a pull request as a FreshPull; raises PayloadError."""
    pr = PullRequest.from_payload(data, repository)
    try:
        head_repo = data["head"].get("repo")
        base_repo = data["base"]["repo"]
        # The head's code lives in another repository: a fork (a deleted fork leaves `head.repo`
        # null). Not `head.repo.fork`, which is also true of every PR in a repository that is
        # itself a fork.
        fork = not isinstance(head_repo, Mapping) or _identity(head_repo) != _identity(base_repo)
        return FreshPull(pr, str(data["user"]["login"]), fork, str(data.get("html_url") or ""))
    except (KeyError, TypeError, AttributeError) as exc:
        raise PayloadError(f"pull request answer lacks {exc}") from None


def _identity(repo: Mapping[str, Any]) -> object:
    """A repository's id (stable across renames), else its full name."""
    return repo.get("id") or str(repo.get("full_name", "")).lower()
