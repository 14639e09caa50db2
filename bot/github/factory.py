"""Builds GitHub clients that share one session, the token cache, ETag caches and metrics.

A client is cheap: the web layer makes one per job, bound to the event's
installation, and hands it to the router. Handlers never build clients.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import cachetools

from bot.github.auth import InstallationTokens, token_fetcher
from bot.github.client import CallRecorder, GitHubClient, LateWrites, RetryPolicy, Sleep


class GitHubFactory:
    """Clients for the app (JWT) and for each installation (cached tokens)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: str,
        private_key: str,
        base_url: str,
        requester: str = "hubbot",
        policy: RetryPolicy | None = None,
        recorder: CallRecorder | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self._session = session
        self._base_url = base_url
        self._requester = requester
        self._policy = policy or RetryPolicy()
        self._recorder = recorder
        self._sleep = sleep
        self._app_id = app_id
        self._private_key = private_key
        # Shared by every client: the reporter changes client with each event.
        self.late_writes = LateWrites()
        self.tokens = InstallationTokens(
            token_fetcher(self.app_client(), app_id=app_id, private_key=private_key)
        )
        # ETags per installation: a 304 is only trusted for the token that saw the 200.
        self._etags: cachetools.LRUCache[int, cachetools.LRUCache[str, Any]] = cachetools.LRUCache(
            maxsize=256
        )

    def app_client(self) -> GitHubClient:
        """A client that authenticates as the app itself (JWT), e.g. for token requests."""
        client = GitHubClient(
            self._session,
            self._requester,
            base_url=self._base_url,
            policy=self._policy,
            recorder=self._recorder,
            sleep=self._sleep,
            late_writes=self.late_writes,
        )
        # gidgethub signs each request with a fresh-enough JWT when these are set.
        client.app_id = self._app_id
        client.private_key = self._private_key
        return client

    def for_installation(self, installation_id: int) -> GitHubClient:
        """A client acting as one installation."""
        cache = self._etags.get(installation_id)
        if cache is None:
            cache = self._etags[installation_id] = cachetools.LRUCache(maxsize=512)
        return GitHubClient(
            self._session,
            self._requester,
            base_url=self._base_url,
            installation_id=installation_id,
            tokens=self.tokens,
            cache=cache,
            policy=self._policy,
            recorder=self._recorder,
            sleep=self._sleep,
            late_writes=self.late_writes,
        )
