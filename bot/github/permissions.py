"""Who a commenter is to the repository: their role, and the partner teams they belong to.

The role comes from `GET /repos/{o}/{r}/collaborators/{user}/permission`
(https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user):
`role_name` is admin, maintain, write, triage or read, or a custom role's name, in
which case the coarser `permission` (admin, write, read, none) decides. A 404 (no
such user, or no access) means `none`. Team membership is asked only for the
`@org/team` names that `partners:` mentions, with
`GET /orgs/{org}/teams/{team_slug}/memberships/{user}`: `state: active` is a
member, a 404 is not (https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user).
Both answers are cached briefly: a permission change takes effect within a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cachetools
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.core.permissions import Actor

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 60.0
ROLES = frozenset({"admin", "maintain", "write", "triage", "read", "none"})
# `permission` of the same answer, for custom roles whose `role_name` is their own name.
_PERMISSION_ROLE = {"admin": "admin", "write": "write", "read": "read", "none": "none"}


def role_of(answer: Any) -> str:
    """The role in a permission answer: `role_name` when standard, else `permission`."""
    if not isinstance(answer, Mapping):
        return "none"
    role = answer.get("role_name")
    if isinstance(role, str) and role.lower() in ROLES:
        return role.lower()
    permission = answer.get("permission")
    return _PERMISSION_ROLE.get(permission, "none") if isinstance(permission, str) else "none"


def split_team(name: str) -> tuple[str, str] | None:
    """`@org/slug` as `(org, slug)`, or None if it is not a team name."""
    org, sep, slug = name.removeprefix("@").partition("/")
    if not name.startswith("@") or not sep or not org or not slug or "/" in slug:
        return None
    return org, slug


class PermissionCache:
    """Roles and team memberships, cached for `ttl` seconds, case-insensitive by login."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        maxsize: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._roles: cachetools.TTLCache[tuple[str, str], str] = cachetools.TTLCache(
            maxsize=maxsize, ttl=ttl, timer=clock
        )
        self._members: cachetools.TTLCache[tuple[str, str, str], bool] = cachetools.TTLCache(
            maxsize=maxsize, ttl=ttl, timer=clock
        )

    async def role(self, gh: GitHubAPI, *, repo_url: str, repo: str, login: str) -> str:
        """`login`'s role on the repository at `repo_url` (named `repo`), `none` when unknown."""
        key = (repo.lower(), login.lower())
        cached = self._roles.get(key)
        if cached is not None:
            return cached
        try:
            answer = await gh.getitem(
                f"{repo_url}/collaborators/{{username}}/permission", {"username": login}
            )
        except gidgethub.BadRequest as exc:
            if exc.status_code != 404:
                raise
            answer = None
        role = role_of(answer)
        self._roles[key] = role
        return role

    async def is_member(self, gh: GitHubAPI, *, team: str, login: str) -> bool:
        """Whether `login` is an active member of `@org/slug` (False if GitHub won't say)."""
        parts = split_team(team)
        if parts is None:
            return False
        key = (parts[0].lower(), parts[1].lower(), login.lower())
        cached = self._members.get(key)
        if cached is not None:
            return cached
        try:
            answer = await gh.getitem(
                "/orgs/{org}/teams/{team_slug}/memberships/{username}",
                {"org": parts[0], "team_slug": parts[1], "username": login},
            )
        except gidgethub.BadRequest as exc:
            if exc.status_code == 404:
                member = False
            elif exc.status_code == 403:
                # The app lacks `members: read` on that organisation: it cannot tell, so no.
                logger.warning("GitHub refused to say who is in %s (403): counted as not", team)
                member = False
            else:
                raise
        else:
            member = isinstance(answer, Mapping) and answer.get("state") == "active"
        self._members[key] = member
        return member

    async def actor(
        self,
        gh: GitHubAPI,
        *,
        repo_url: str,
        repo: str,
        login: str,
        teams: Iterable[str] = (),
    ) -> Actor:
        """The Actor for `login`: their role, and which of `teams` they are in.

        Teams are asked only of users without write access, whose role alone cannot
        allow a deploy.
        """
        role = await self.role(gh, repo_url=repo_url, repo=repo, login=login)
        if role in ("admin", "maintain", "write"):
            return Actor(login, role)
        names = sorted(set(teams))
        answers = await asyncio.gather(*(self.is_member(gh, team=t, login=login) for t in names))
        return Actor(
            login, role, frozenset(t for t, yes in zip(names, answers, strict=True) if yes)
        )
