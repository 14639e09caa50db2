"""Who may run which command: pure decisions over settings and what GitHub says of a user.

Write access (write, maintain or admin, from the collaborator permission API) may
deploy anything a command allows. Partners (from `partners:` in hubbot.yaml on
the default branch) may deploy only staging hubs of clusters they are a partner
on, and only when every target of the command is theirs. PRs from forks deploy
only for users with write access. Every refusal says exactly why.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from bot.core.settings import Settings

WRITE_ROLES = frozenset({"admin", "maintain", "write"})


@dataclass(frozen=True, slots=True)
class Actor:
    """A GitHub user as the decision needs them."""

    login: str
    role: str  # role_name from the permission API: admin, maintain, write, triage, read, none
    teams: frozenset[str] = field(default_factory=frozenset)  # "@org/slug" they are active in
    bot: bool = False

    @property
    def can_write(self) -> bool:
        """Whether the user has write access (or more) to the repository."""
        return self.role in WRITE_ROLES


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed or not, and a sentence saying why for a refusal."""

    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def teams_named(settings: Settings) -> set[str]:
    """Every `@org/team` the partners setting mentions (the only memberships worth asking)."""
    return {m for members in settings.partners.values() for m in members if m.startswith("@")}


def _names(actor: Actor) -> set[str]:
    return {actor.login.lower(), *(t.lower() for t in actor.teams)}


def partner_clusters(settings: Settings, actor: Actor) -> set[str]:
    """Clusters on which the actor is a partner (through any `cluster/hub` or `cluster/*` key)."""
    mine = _names(actor)
    return {
        key.split("/", 1)[0]
        for key, members in settings.partners.items()
        if mine & {m.lower() for m in members}
    }


def may_deploy_pr(
    settings: Settings,
    actor: Actor,
    targets: Iterable[tuple[str, str]],
    *,
    fork: bool,
    is_staging: Callable[[str], bool] | None = None,
) -> Decision:
    """May `actor` deploy a PR's head to these `(cluster, hub)` targets? Staging hubs only."""
    staging = is_staging or settings.is_staging
    wanted = sorted(set(targets))
    if not wanted:
        return Decision(False, "there is nothing to deploy: the plan has no staging hubs")
    prod = [f"{c}/{h}" for c, h in wanted if not staging(h)]
    if prod:
        verb = "is not a staging hub" if len(prod) == 1 else "are not staging hubs"
        return Decision(
            False,
            f"{', '.join(f'`{t}`' for t in prod)} {verb}: a PR deploys to staging only; prod "
            "changes on merge, or with `/deploy <cluster>/<hub>@<sha>` of the default branch by "
            "someone with write access",
        )
    if actor.can_write:
        return ALLOW
    if fork:
        return Decision(
            False,
            f"@{actor.login} does not have write access, and this PR comes from a fork: "
            "only users with write access may deploy a fork's code",
        )
    clusters = partner_clusters(settings, actor)
    if not clusters:
        return Decision(
            False,
            f"@{actor.login} is neither a partner of any hub in `hubbot.yaml` nor has write "
            "access to this repository",
        )
    outside = [f"{c}/{h}" for c, h in wanted if c not in clusters]
    if outside:
        return Decision(
            False,
            f"@{actor.login} is a partner on {', '.join(f'`{c}`' for c in sorted(clusters))} "
            f"only, not on {', '.join(f'`{t}`' for t in outside)}; nothing was deployed",
        )
    return ALLOW


def may_redeploy(actor: Actor) -> Decision:
    """May `actor` redeploy a commit of the default branch (`/deploy c/h@sha`)? Write access."""
    if actor.can_write:
        return ALLOW
    return Decision(
        False,
        f"`/deploy <cluster>/<hub>@<sha>` needs write access to this repository, and "
        f"@{actor.login} has `{actor.role}`",
    )


def may_unlock(actor: Actor, *, holder_authors: Collection[str]) -> Decision:
    """May `actor` release claims held by PRs with these authors?"""
    if actor.can_write or all(a.lower() == actor.login.lower() for a in holder_authors):
        return ALLOW
    return Decision(
        False,
        f"only the author of the PR holding the claim, or someone with write access, may "
        f"unlock it; @{actor.login} is neither",
    )


def may_cancel(actor: Actor, *, started_by: Collection[str]) -> Decision:
    """May `actor` cancel deploys started by these users?"""
    if actor.can_write or all(s.lower() == actor.login.lower() for s in started_by):
        return ALLOW
    return Decision(
        False,
        f"only whoever started these deploys ({', '.join('@' + s for s in sorted(started_by))}) "
        f"or someone with write access may cancel them",
    )
