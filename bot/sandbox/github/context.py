"""The one object every route of the double reaches through its typed app key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from bot.sandbox.github.auth import TokenStore
from bot.sandbox.github.gate import Gate
from bot.sandbox.github.gitrepo import GitRepo
from bot.sandbox.github.http import not_found
from bot.sandbox.github.shapes_git import GitShapes
from bot.sandbox.github.state import State
from bot.sandbox.github.webhooks import WebhookSender


@dataclass
class Context:
    """State, repository, shapes, tokens, webhook sender and the write lock of one double."""

    state: State
    repo: GitRepo
    shapes: GitShapes
    tokens: TokenStore
    hooks: WebhookSender
    gate: Gate
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


CONTEXT = web.AppKey("hubbot_github_sandbox", Context)


def ctx(request: web.Request) -> Context:
    """The double's context from a request."""
    return request.app[CONTEXT]


def repo_owner(request: web.Request, *, write: bool = False) -> str | None:
    """Check `{owner}/{repo}` names the repository (None) or, for reads, a fork of it (its owner).

    Raises GitHub's 404 otherwise (GitHub also answers 404, not 403, for repositories an
    installation cannot see).
    """
    state = ctx(request).state
    owner, name = request.match_info["owner"], request.match_info["repo"]
    if name.lower() != state.name.lower():
        raise not_found()
    if owner.lower() == state.owner.lower():
        return None
    forks = {p.user.lower() for p in state.pulls.values() if p.fork}
    if not write and owner.lower() in forks:
        return owner
    raise not_found()
