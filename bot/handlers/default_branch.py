"""Pushes to the default branch: drop the cached `hubbot.yaml`, since the rules may have changed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.handlers.context import PayloadError, Services

logger = logging.getLogger(__name__)

router = routing.Router()


@router.register("push")
async def forget_settings(
    event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services
) -> None:
    """A push to the default branch invalidates that repository's cached settings."""
    repository = event.data.get("repository")
    if not isinstance(repository, Mapping):
        raise PayloadError("push payload lacks its repository")
    default = repository.get("default_branch")
    if default and event.data.get("ref") == f"refs/heads/{default}":
        services.settings.invalidate(str(repository.get("full_name")), event.data.get("after"))
        logger.debug("default branch moved: settings of %s dropped", repository.get("full_name"))
