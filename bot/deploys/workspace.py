"""Checkouts for the local executor in production: the repository at a SHA, from GitHub.

The files come from the repository's snapshot at that commit (one tarball, read through
`SnapshotReader.at_commit`, which already rejected unsafe members and keeps symlinks as
symlinks; the planner usually read the same snapshot moments before). They are written
into a fresh temporary folder that is removed when the deploy ends. Regular files are
written first and symlinks last, and no write follows a symlink, so a hostile tree cannot
write outside the folder. Tarball entries carry no file mode here, so a file starting
with `#!` is made executable (git repositories mark their scripts so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import gidgethub

from bot.core.snapshot import Snapshot
from bot.deploys.local import CheckoutError
from bot.github.snapshot import SnapshotError

Load = Callable[[str, str], Awaitable[Snapshot]]  # (repo "owner/name", sha) -> snapshot


class SnapshotWorkspace:
    """A `local.Workspace` writing each checkout from the snapshot of its commit."""

    def __init__(self, load: Load, *, parent: str | None = None) -> None:
        self.load = load
        self.parent = parent  # where temporary checkouts go (None: the system's temp folder)

    @contextlib.asynccontextmanager
    async def checkout(self, repo: str, sha: str) -> AsyncIterator[Path]:
        """The repository's files at `sha` in a temporary folder, removed on exit."""
        try:
            snapshot = await self.load(repo, sha)
        except (gidgethub.GitHubException, SnapshotError, aiohttp.ClientError, TimeoutError) as exc:
            # GitHub down, SHA gone: the deploy ends as an error that says why
            reason = type(exc).__name__
            raise CheckoutError(f"cannot read {sha[:12]} from GitHub: {reason}") from exc
        with tempfile.TemporaryDirectory(
            prefix="hubbot-checkout-", dir=self.parent, ignore_cleanup_errors=True
        ) as tmp:
            root = Path(tmp)
            writer = asyncio.ensure_future(asyncio.to_thread(write_tree, snapshot, root))
            try:
                await asyncio.shield(writer)
            except asyncio.CancelledError:
                # The thread cannot be stopped: let it finish before the folder is removed,
                # or the removal races the writes (a shutdown mid-checkout).
                await asyncio.wait([writer])
                raise
            yield root


def write_tree(snapshot: Snapshot, root: Path) -> None:
    """Write every file of `snapshot` under an empty `root`; CheckoutError if a path is unsafe."""
    paths = snapshot.paths()
    links = [p for p in paths if snapshot.is_symlink(p)]
    for path in paths:
        if not snapshot.is_symlink(path):
            _write_file(root, path, snapshot.read(path))
    for path in links:
        target = snapshot.read(path).decode("utf-8", "surrogateescape")
        place = _place(root, path)
        if place.exists() or place.is_symlink():  # a hostile tree: a folder and a link at once
            raise CheckoutError(
                f"unsafe path in the repository (a symlink over a folder): {path!r}"
            )
        os.symlink(target, place)


def _place(root: Path, path: str) -> Path:
    """Where `path` goes under `root`, its parent folders made; refuses escapes and symlinks."""
    if (
        path.startswith("/")
        or "\0" in path
        or posixpath.normpath(path) != path
        or ".." in path.split("/")
    ):
        raise CheckoutError(f"unsafe path in the repository: {path!r}")
    here = root
    for part in path.split("/")[:-1]:
        here = here / part
        if here.is_symlink():
            raise CheckoutError(f"unsafe path in the repository (through a symlink): {path!r}")
        here.mkdir(exist_ok=True)
    return root / path


def _write_file(root: Path, path: str, data: bytes) -> None:
    mode = 0o755 if data.startswith(b"#!") else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(_place(root, path), flags, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
