"""Read a repository at a commit from GitHub with the fewest calls, content-addressed.

- A whole commit comes from one tarball (`GET /repos/{o}/{r}/tarball/{sha}`).
- A PR head is its merge base overlaid with the files `compare` says changed.
  Their head blob ids are in the compare answer, so blobs already seen (in any
  earlier tarball or blob call) cost nothing; so do blobs rebuilt from the
  base content and compare's `patch`, when the result has the right blob id;
  one or two still missing cost one `GET /git/blobs/{sha}` each; more cost the
  head tarball instead.
- Blobs live in a byte-bounded LRU keyed by git blob id: a blob id never changes
  meaning, so it never needs invalidating and is never fetched twice while held.
- Whole snapshots are cached by (repository, commit), since commits never change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import cachetools
from gidgethub.abc import GitHubAPI

from bot.core.snapshot import Snapshot, git_blob_id
from bot.github.client import Downloader
from bot.github.patch import PatchError, apply_patch
from bot.github.tarball import DEFAULT_MAX_UNPACKED, TarballError, unpack

logger = logging.getLogger(__name__)

# compare lists at most 300 files: https://docs.github.com/en/rest/commits/commits#compare-two-commits
COMPARE_FILE_CAP = 300
# Up to this many missing blobs are fetched one by one; more costs one head tarball.
MAX_SINGLE_BLOBS = 2
DEFAULT_MAX_TARBALL = 200 * 1024 * 1024


class SnapshotError(Exception):
    """GitHub's answer could not be turned into a snapshot (the message says why)."""


class BlobSnapshot(Snapshot):
    """A commit's files as (blob id, is_symlink) entries over a shared blob store."""

    def __init__(
        self,
        entries: Mapping[str, tuple[str, bool]],
        blobs: Mapping[str, bytes],
        *,
        sha: str | None = None,
    ) -> None:
        self.sha = sha
        self._entries = dict(entries)
        self._blobs = dict(blobs)  # strong references: an LRU eviction never breaks a snapshot
        self._sorted = tuple(sorted(self._entries))

    def paths(self) -> tuple[str, ...]:
        """Every file path, sorted."""
        return self._sorted

    def read(self, path: str) -> bytes:
        """The content of `path` (a symlink's target for a symlink)."""
        return self._blobs[self._entries[path][0]]

    def blob_id(self, path: str) -> str:
        """The git blob id, without hashing."""
        return self._entries[path][0]

    def is_symlink(self, path: str) -> bool:
        """Whether the entry is a symlink."""
        return self._entries[path][1]

    def content_of(self, blob: str) -> bytes | None:
        """The bytes of a blob this snapshot holds, by blob id."""
        return self._blobs.get(blob)

    def overlay(
        self,
        changes: Mapping[str, tuple[str, bool] | None],
        blobs: Mapping[str, bytes],
        *,
        sha: str | None,
    ) -> BlobSnapshot:
        """A new snapshot with entries replaced, added or deleted (None)."""
        entries = dict(self._entries)
        for path, entry in changes.items():
            if entry is None:
                entries.pop(path, None)
            else:
                entries[path] = entry
        wanted = {blob for blob, _ in entries.values()}
        store = {b: v for b, v in self._blobs.items() if b in wanted}
        store.update((b, v) for b, v in blobs.items() if b in wanted)
        return BlobSnapshot(entries, store, sha=sha)


@dataclass(frozen=True, slots=True)
class RepoRef:
    """A repository as the API names it, with its API URL from the payload."""

    owner: str
    name: str
    url: str  # https://api.github.com/repos/{owner}/{name}

    @property
    def full_name(self) -> str:
        """owner/name."""
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class ChangedFile:
    """One file of a comparison: its path, status, head blob id and former path."""

    path: str
    status: str
    sha: str | None
    previous: str | None = None
    patch: str | None = None  # GitHub's unified-diff hunks, when it sent them


@dataclass(frozen=True, slots=True)
class Comparison:
    """What `compare base...head` says: the merge base and the changed files."""

    merge_base: str
    head: str
    files: tuple[ChangedFile, ...]
    complete: bool  # False when GitHub capped the file list

    @classmethod
    def from_api(cls, data: Mapping[str, object], head: str) -> Comparison:
        """Parse the compare answer; raises SnapshotError on a shape we cannot use."""
        try:
            base = data["merge_base_commit"]
            merge_base = str(base["sha"])  # type: ignore[index]
            raw = data.get("files") or []
            files = tuple(
                ChangedFile(
                    path=str(f["filename"]),
                    status=str(f["status"]),
                    sha=f.get("sha") or None,
                    previous=f.get("previous_filename") or None,
                    patch=f.get("patch") if isinstance(f.get("patch"), str) else None,
                )
                for f in raw  # type: ignore[attr-defined]
            )
        except (KeyError, TypeError) as exc:
            raise SnapshotError(f"unexpected compare answer: missing {exc}") from None
        complete = len(files) < COMPARE_FILE_CAP and all(
            f.sha is not None or f.status == "removed" for f in files
        )
        return cls(merge_base=merge_base, head=head, files=files, complete=complete)


class SnapshotReader:
    """Reads commits from GitHub into snapshots, sharing a blob LRU and a snapshot LRU."""

    def __init__(
        self,
        *,
        blob_cache_bytes: int = 256 * 1024 * 1024,
        snapshot_cache: int = 32,
        max_tarball_bytes: int = DEFAULT_MAX_TARBALL,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED,
    ) -> None:
        self.blobs: cachetools.LRUCache[str, bytes] = cachetools.LRUCache(
            maxsize=blob_cache_bytes, getsizeof=lambda b: max(1, len(b))
        )
        self._snapshots: cachetools.LRUCache[tuple[str, str], BlobSnapshot] = cachetools.LRUCache(
            maxsize=snapshot_cache
        )
        self._max_tarball = max_tarball_bytes
        self._max_unpacked = max_unpacked_bytes
        self._locks: cachetools.LRUCache[tuple[str, str], asyncio.Lock] = cachetools.LRUCache(256)
        self.blob_fetches = 0
        self.tarball_fetches = 0
        self.patched = 0  # head blobs rebuilt from compare's patches

    def cached(self, repo: RepoRef, sha: str) -> BlobSnapshot | None:
        """The snapshot of `sha` if already read."""
        return self._snapshots.get((repo.full_name, sha))

    async def at_commit(self, gh: GitHubAPI, repo: RepoRef, sha: str) -> BlobSnapshot:
        """The whole repository at commit `sha` (one tarball call, then cached)."""
        key = (repo.full_name, sha)
        snapshot = self._snapshots.get(key)
        if snapshot is not None:
            return snapshot
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            snapshot = self._snapshots.get(key)
            if snapshot is None:
                snapshot = await self._from_tarball(gh, repo, sha)
                self._snapshots[key] = snapshot
        return snapshot

    async def compare(self, gh: GitHubAPI, repo: RepoRef, base: str, head: str) -> Comparison:
        """The merge base of base and head, and the files changed from it to head."""
        data = await gh.getitem(f"{repo.url}/compare/{base}...{head}")
        if not isinstance(data, Mapping):
            raise SnapshotError("unexpected compare answer: not an object")
        return Comparison.from_api(data, head)

    async def at_head(
        self, gh: GitHubAPI, repo: RepoRef, base: BlobSnapshot, comparison: Comparison
    ) -> BlobSnapshot:
        """The head of a comparison: `base` (its merge base) overlaid with the changed files."""
        cached = self.cached(repo, comparison.head)
        if cached is not None:
            return cached
        if not comparison.complete:
            return await self.at_commit(gh, repo, comparison.head)
        changes: dict[str, tuple[str, bool] | None] = {}
        for f in comparison.files:
            if f.previous is not None and f.status == "renamed":
                changes[f.previous] = None
            if f.status == "removed":
                changes[f.path] = None
            elif f.sha is not None:
                # compare gives no file mode; a path that was a symlink stays one.
                was_link = base.exists(f.path) and base.is_symlink(f.path)
                changes[f.path] = (f.sha, was_link)
        wanted = {e[0] for e in changes.values() if e is not None}
        self._rebuild_from_patches(base, comparison)
        missing = [b for b in wanted if b not in self.blobs and base.content_of(b) is None]
        if len(missing) > MAX_SINGLE_BLOBS:
            return await self.at_commit(gh, repo, comparison.head)
        for blob in missing:
            await self.blob(gh, repo, blob)
        store: dict[str, bytes] = {}
        for b in wanted:
            content = self.blobs.get(b)
            content = base.content_of(b) if content is None else content
            if content is not None:
                store[b] = content
        if len(store) < len(wanted):
            # Evicted between the check and now (a tiny cache): read the head whole.
            return await self.at_commit(gh, repo, comparison.head)
        snapshot = base.overlay(changes, store, sha=comparison.head)
        self._snapshots[(repo.full_name, comparison.head)] = snapshot
        return snapshot

    def _rebuild_from_patches(self, base: BlobSnapshot, comparison: Comparison) -> None:
        """Head blobs rebuilt from base content and compare's patches, kept if their id matches."""
        for f in comparison.files:
            if f.sha is None or f.sha in self.blobs or base.content_of(f.sha) is not None:
                continue
            source = f.previous if f.status == "renamed" and f.previous else f.path
            if base.exists(source):
                old = base.read(source)
            elif f.status == "added":
                old = b""
            else:
                continue
            if f.patch is None and f.status not in ("renamed", "changed"):
                continue
            try:
                content = apply_patch(old, f.patch or "")
            except PatchError:
                continue
            if git_blob_id(content) == f.sha:
                self.patched += 1
                self._remember(f.sha, content)

    async def blob(self, gh: GitHubAPI, repo: RepoRef, sha: str) -> bytes:
        """One blob by id, from the LRU or `GET /git/blobs/{sha}` (checked against its id)."""
        cached = self.blobs.get(sha)
        if cached is not None:
            return cached
        data = await gh.getitem(f"{repo.url}/git/blobs/{sha}")
        self.blob_fetches += 1
        content = _blob_content(data)
        if git_blob_id(content) != sha:
            raise SnapshotError(f"blob {sha[:12]} does not match its id")
        self._remember(sha, content)
        return content

    async def _from_tarball(self, gh: GitHubAPI, repo: RepoRef, sha: str) -> BlobSnapshot:
        if not isinstance(gh, Downloader):
            raise SnapshotError("reading a tarball needs a client that can download")
        data = await gh.download(f"{repo.url}/tarball/{sha}", max_bytes=self._max_tarball)
        self.tarball_fetches += 1
        try:
            unpacked = await asyncio.to_thread(unpack, data, max_unpacked=self._max_unpacked)
        except TarballError as exc:
            raise SnapshotError(f"tarball of {sha[:12]}: {exc}") from None
        if unpacked.commit is not None and unpacked.commit != sha:
            raise SnapshotError(f"tarball of {sha[:12]} holds commit {unpacked.commit[:12]}")
        entries: dict[str, tuple[str, bool]] = {}
        store: dict[str, bytes] = {}
        for path, (content, is_link) in unpacked.files.items():
            blob = git_blob_id(content)
            # Reuse the cached bytes object, so equal blobs share memory across snapshots.
            content = self.blobs.get(blob, content)
            entries[path] = (blob, is_link)
            store[blob] = content
            self._remember(blob, content)
        return BlobSnapshot(entries, store, sha=sha)

    def _remember(self, blob: str, content: bytes) -> None:
        if len(content) <= self.blobs.maxsize:
            self.blobs[blob] = content

    def forget_snapshots(self) -> None:
        """Drop cached snapshots (blobs stay)."""
        self._snapshots.clear()


def _blob_content(data: object) -> bytes:
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), str):
        raise SnapshotError("unexpected blob answer")
    encoding = data.get("encoding", "base64")
    text: str = data["content"]
    if encoding == "utf-8":
        return text.encode()
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise SnapshotError("blob content is not valid base64") from None
