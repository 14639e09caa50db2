"""Every repository the app is installed on, for work no webhook starts (recovery at start-up)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from gidgethub.abc import GitHubAPI


class Clients(Protocol):
    """What is needed of `bot.github.factory.GitHubFactory`."""

    def for_installation(self, installation_id: int) -> Any:
        """A client acting as one installation."""

    def app_client(self) -> Any:
        """A client acting as the app (JWT)."""


async def installed_repositories(
    github: Clients,
) -> AsyncIterator[tuple[GitHubAPI, dict[str, Any]]]:
    """Each installed repository (as `GET /installation/repositories` lists it) and its client."""
    async for installation in github.app_client().getiter("/app/installations"):
        gh = github.for_installation(int(installation["id"]))
        async for item in gh.getiter("/installation/repositories", iterable_key="repositories"):
            yield gh, item
