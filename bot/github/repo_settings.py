"""Repository settings (`hubbot.yaml`), always read from the default branch, cached per repo.

A PR must not change the rules it is judged by, so the file is never read from
the PR head. The cache is dropped by a push to the default branch (which also
tells us the branch's new head) and, as a backstop, after a short TTL. A broken
file is not an error of ours: it comes back as findings, reported on every PR.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass

import cachetools
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.core.findings import Finding, error
from bot.core.settings import SETTINGS_PATH, Settings, parse_settings
from bot.core.snapshot import Snapshot

DEFAULT_TTL_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RepoSettings:
    """Settings of one repository, the findings about its hubbot.yaml, and where they came from."""

    settings: Settings
    findings: tuple[Finding, ...]
    source: str  # "snapshot" or "api": how this entry was read


class SettingsCache:
    """hubbot.yaml of each repository's default branch, cached until a push or the TTL."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        maxsize: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache: cachetools.TTLCache[str, RepoSettings] = cachetools.TTLCache(
            maxsize=maxsize, ttl=ttl, timer=clock
        )
        # The default branch's head, as the last push told us; None when unknown.
        self._heads: cachetools.LRUCache[str, str] = cachetools.LRUCache(maxsize)
        self.api_reads = 0

    def invalidate(self, repo: str, head_sha: str | None = None) -> None:
        """Forget `repo`'s settings (a push landed on its default branch, now at `head_sha`)."""
        self._cache.pop(repo, None)
        if head_sha:
            self._heads[repo] = head_sha

    async def get(
        self,
        gh: GitHubAPI,
        *,
        repo: str,
        repo_url: str,
        default_branch: str,
        default_head: Snapshot | None = None,
    ) -> RepoSettings:
        """The settings of `repo`'s default branch.

        `default_head` is a snapshot the caller believes is the default branch's head
        (e.g. the PR's merge base when it equals `pull_request.base.sha` on the default
        branch); it is used, for free, unless a push told us of a newer head.
        """
        cached = self._cache.get(repo)
        if cached is not None:
            return cached
        known = self._heads.get(repo)
        if default_head is not None and (known is None or known == default_head.sha):
            data = default_head.read(SETTINGS_PATH) if default_head.exists(SETTINGS_PATH) else None
            entry = _entry(data, "snapshot")
        else:
            entry = _entry(await _read_file(gh, repo_url, default_branch), "api")
            self.api_reads += 1
        self._cache[repo] = entry
        return entry


def _entry(data: bytes | Finding | None, source: str) -> RepoSettings:
    if isinstance(data, Finding):
        return RepoSettings(Settings(), (data,), source)
    settings, findings = parse_settings(data)
    return RepoSettings(settings, tuple(findings), source)


async def _read_file(gh: GitHubAPI, repo_url: str, ref: str) -> bytes | Finding | None:
    """hubbot.yaml at `ref` via the contents API: bytes, None if absent, or why it is unusable."""
    try:
        data = await gh.getitem(f"{repo_url}/contents/{SETTINGS_PATH}{{?ref}}", {"ref": ref})
    except gidgethub.BadRequest as exc:
        if exc.status_code == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type", "file") != "file":
        return error(SETTINGS_PATH, None, "settings-unreadable", "hubbot.yaml is not a file")
    content = data.get("content")
    if data.get("encoding") == "base64" and isinstance(content, str):
        try:
            return base64.b64decode(content)
        except (binascii.Error, ValueError):
            pass
    # Over 1 MB the contents API sends no content; a settings file that big is a mistake.
    return error(
        SETTINGS_PATH, None, "settings-unreadable", "hubbot.yaml is too large or not readable"
    )
