"""GitHub App authentication: app JWTs and installation tokens, cached until just before expiry.

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app
An installation token lives one hour; we refresh it five minutes before its
`expires_at`, and drop it early when GitHub answers 401 (revoked, or the clock
lied). Concurrent callers for one installation share one token request.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cachetools
from gidgethub import apps
from gidgethub.abc import GitHubAPI

logger = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 5 * 60
# When GitHub's answer has no usable expires_at, assume a short life rather than an hour.
FALLBACK_LIFETIME_SECONDS = 10 * 60

TokenFetcher = Callable[[int], Awaitable[dict[str, Any]]]


class TokenError(Exception):
    """GitHub gave no usable installation token (the message never holds a secret)."""


def app_jwt(app_id: str, private_key: str) -> str:
    """A fresh app JWT (valid ten minutes, backdated a minute for clock drift)."""
    return apps.get_jwt(app_id=app_id, private_key=private_key)


def token_fetcher(app_client: GitHubAPI, *, app_id: str, private_key: str) -> TokenFetcher:
    """A fetcher that asks GitHub for an installation token through `app_client`."""

    async def fetch(installation_id: int) -> dict[str, Any]:
        return await apps.get_installation_access_token(
            app_client,
            installation_id=str(installation_id),
            app_id=app_id,
            private_key=private_key,
        )

    return fetch


def parse_expiry(value: object, now: float) -> float:
    """`expires_at` as epoch seconds; a short default when absent or malformed."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.UTC)
            return parsed.timestamp()
    return now + FALLBACK_LIFETIME_SECONDS


class InstallationTokens:
    """Installation tokens per installation id, refreshed `margin` seconds before expiry."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        clock: Callable[[], float] = time.time,
        margin: float = REFRESH_MARGIN_SECONDS,
        maxsize: int = 4096,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        # A per-item TTL: each token expires at its own expires_at minus the margin.
        self._cache: cachetools.TLRUCache[int, tuple[str, float]] = cachetools.TLRUCache(
            maxsize=maxsize, ttu=lambda _key, value, _now: value[1] - margin, timer=clock
        )
        self._locks: cachetools.LRUCache[int, asyncio.Lock] = cachetools.LRUCache(maxsize)
        self.fetches = 0

    async def get(self, installation_id: int) -> str:
        """A token for the installation, from cache unless it is within the margin of expiry."""
        cached = self._cache.get(installation_id)
        if cached is not None:
            return cached[0]
        lock = self._locks.get(installation_id)
        if lock is None:
            lock = self._locks[installation_id] = asyncio.Lock()
        async with lock:
            cached = self._cache.get(installation_id)
            if cached is not None:
                return cached[0]
            answer = await self._fetch(installation_id)
            self.fetches += 1
            token = answer.get("token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise TokenError(f"GitHub returned no token for installation {installation_id}")
            expires = parse_expiry(answer.get("expires_at"), self._clock())
            if expires - self._margin > self._clock():
                self._cache[installation_id] = (token, expires)
            else:
                logger.warning("installation %s token expires within the margin", installation_id)
            return token

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the installation's token (after a 401), so the next call fetches a new one.

        With `token`, only that token is dropped: another job may have refreshed it already.
        """
        cached = self._cache.get(installation_id)
        if cached is not None and (token is None or cached[0] == token):
            del self._cache[installation_id]
