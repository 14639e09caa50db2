"""Snapshots: a repository's files at one commit, as paths to bytes, read lazily.

The core only ever sees a `Snapshot`. The command line builds one from a working
tree or a local git commit; the GitHub side builds one from trees, blobs and
tarballs. Paths are POSIX, relative to the repository root, without a leading
`./`. Symlinks are kept as symlinks: `read()` returns the link target, as git
stores it, and `is_symlink()` says so.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob with this content (what `git hash-object` prints)."""
    header = b"blob %d\0" % len(data)
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


class Snapshot:
    """A read-only view of a repository at one commit (or a working tree)."""

    sha: str | None = None

    def paths(self) -> tuple[str, ...]:
        """Every file path (symlinks included), sorted."""
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        """The content of `path` (a symlink's target for a symlink); KeyError if absent."""
        raise NotImplementedError

    def is_symlink(self, path: str) -> bool:
        """Whether `path` is stored as a symlink."""
        return False

    def blob_id(self, path: str) -> str:
        """A content id for `path`: equal ids mean equal content."""
        return git_blob_id(self.read(path))

    def exists(self, path: str) -> bool:
        """Whether `path` is a file (or symlink) of this snapshot."""
        return path in self._path_set()

    def under(self, folder: str) -> Iterator[str]:
        """Paths below `folder` (recursively), sorted."""
        prefix = folder.rstrip("/") + "/"
        return (p for p in self.paths() if p.startswith(prefix))

    def memo(self, name: str) -> dict[Any, Any]:
        """A cache for data derived from this snapshot, which never changes once read."""
        caches: dict[str, dict[Any, Any]] | None = getattr(self, "_memo_caches", None)
        if caches is None:
            caches = {}
            self._memo_caches = caches
        return caches.setdefault(name, {})

    def _path_set(self) -> frozenset[str]:
        cached: frozenset[str] | None = getattr(self, "_paths_cache", None)
        if cached is None:
            cached = frozenset(self.paths())
            self._paths_cache = cached
        return cached


@dataclass(frozen=True, slots=True)
class Symlink:
    """A symlink entry for `DictSnapshot`: its target, relative to the link's folder."""

    target: str


class DictSnapshot(Snapshot):
    """A snapshot from a mapping of path to bytes (or `Symlink`); the core's test double."""

    def __init__(self, files: Mapping[str, bytes | str | Symlink], *, sha: str | None = None):
        self.sha = sha
        self._files: dict[str, bytes | Symlink] = {
            normalize(p): (v.encode() if isinstance(v, str) else v) for p, v in files.items()
        }
        self._sorted = tuple(sorted(self._files))

    def paths(self) -> tuple[str, ...]:
        """Every file path, sorted."""
        return self._sorted

    def read(self, path: str) -> bytes:
        """The content of `path`."""
        value = self._files[path]
        return value.target.encode() if isinstance(value, Symlink) else value

    def is_symlink(self, path: str) -> bool:
        """Whether `path` is a symlink."""
        return isinstance(self._files.get(path), Symlink)

    def with_changes(self, changes: Mapping[str, bytes | str | Symlink | None]) -> DictSnapshot:
        """A new snapshot with files replaced, added, or deleted (None)."""
        files: dict[str, bytes | str | Symlink] = dict(self._files)
        for path, value in changes.items():
            if value is None:
                files.pop(normalize(path), None)
            else:
                files[normalize(path)] = value
        return DictSnapshot(files)


# Folders never worth walking in a working tree.
_SKIP_DIRS = frozenset({".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".cache"})


class DirSnapshot(Snapshot):
    """The working tree of a directory, read lazily from disk."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"not a directory: {self.root}")
        self._list: tuple[str, ...] | None = None

    def paths(self) -> tuple[str, ...]:
        """Every file and symlink below the root, sorted."""
        if self._list is None:
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                rel = os.path.relpath(dirpath, self.root)
                keep = []
                for d in dirnames:
                    if d in _SKIP_DIRS:
                        continue
                    if os.path.islink(os.path.join(dirpath, d)):
                        filenames.append(d)  # a symlinked folder is a symlink entry
                    else:
                        keep.append(d)
                dirnames[:] = keep
                for name in filenames:
                    found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
            self._list = tuple(sorted(found))
        return self._list

    def _full(self, path: str) -> Path:
        if path != normalize(path) or path.startswith("../"):
            raise KeyError(path)
        return self.root / path

    def read(self, path: str) -> bytes:
        """The content of `path` (a symlink's target for a symlink), read from disk once."""
        cache = self.memo("read")
        data: bytes | None = cache.get(path)
        if data is None:
            full = self._full(path)
            try:
                if full.is_symlink():
                    data = os.readlink(full).encode()
                else:
                    data = full.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
                raise KeyError(path) from exc
            cache[path] = data
        return data

    def is_symlink(self, path: str) -> bool:
        """Whether `path` is a symlink on disk."""
        return self._full(path).is_symlink()


class GitError(RuntimeError):
    """A git command failed (unknown ref, not a repository)."""


def run_git(repo: str | os.PathLike[str], *args: str, input: bytes | None = None) -> bytes:
    """Run git in `repo` and return its stdout; GitError with git's message on failure."""
    proc = subprocess.run(
        ["git", "-C", os.fspath(repo), *args],
        input=input,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(message[-1] if message else f"git {' '.join(args)} failed")
    return proc.stdout


def resolve_ref(repo: str | os.PathLike[str], ref: str) -> str:
    """The commit sha that `ref` names in `repo`."""
    run_git(repo, "rev-parse", "--git-dir")  # "not a git repository" comes from here
    try:
        out = run_git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitError as exc:
        raise GitError(f"{ref!r} is not a commit of this repository") from exc
    return out.decode().strip()


class GitSnapshot(Snapshot):
    """A commit of a local git repository, read through `git cat-file` without a checkout."""

    def __init__(self, repo: str | os.PathLike[str], ref: str):
        self.repo = os.fspath(repo)
        self.sha = resolve_ref(self.repo, ref)
        self._entries: dict[str, tuple[str, str]] = {}  # path -> (mode, blob id)
        out = run_git(self.repo, "ls-tree", "-r", "-z", "--full-tree", self.sha)
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, oid = meta.decode().split(" ")
            if kind == "blob":
                self._entries[name.decode("utf-8", "surrogateescape")] = (mode, oid)
        self._sorted = tuple(sorted(self._entries))
        self._blobs: dict[str, bytes] = {}

    def paths(self) -> tuple[str, ...]:
        """Every file path of the commit, sorted."""
        return self._sorted

    def blob_id(self, path: str) -> str:
        """The git blob id, straight from the tree."""
        return self._entries[path][1]

    def is_symlink(self, path: str) -> bool:
        """Whether the tree entry has the symlink mode."""
        return self._entries[path][0] == "120000"

    def read(self, path: str) -> bytes:
        """The blob's content."""
        oid = self._entries[path][1]
        if oid not in self._blobs:
            self.prefetch([path])
        return self._blobs[oid]

    def prefetch(self, paths: Iterable[str]) -> None:
        """Read many blobs with one `git cat-file --batch` call."""
        wanted = [self._entries[p][1] for p in paths if p in self._entries]
        wanted = [oid for oid in dict.fromkeys(wanted) if oid not in self._blobs]
        if not wanted:
            return
        out = run_git(self.repo, "cat-file", "--batch", input="\n".join(wanted).encode() + b"\n")
        pos = 0
        for oid in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].split(b" ")
            size = int(header[2])
            self._blobs[oid] = out[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1


def normalize(path: str) -> str:
    """A path in the snapshot's form: POSIX, no `./`, no trailing slash."""
    path = path.replace("\\", "/")
    norm = posixpath.normpath(path) if path else path
    return norm[2:] if norm.startswith("./") else norm


def resolve_link(snapshot: Snapshot, path: str, *, max_hops: int = 8) -> str | None:
    """Follow symlinks from `path` inside the snapshot; None if a link leaves it or dangles.

    A file whose whole content is a relative path to another file of the snapshot is
    taken as a symlink too: that is how git checks out a symlink where symlinks are
    off (`core.symlinks=false`), and how the 2i2c snapshot stores daskhub's
    `values.jsonnet`.
    """
    cache = snapshot.memo("resolve_link")
    key = (path, max_hops)
    if key not in cache:
        cache[key] = _resolve_link(snapshot, path, max_hops)
    resolved: str | None = cache[key]
    return resolved


def _resolve_link(snapshot: Snapshot, path: str, max_hops: int) -> str | None:
    for _ in range(max_hops):
        if not snapshot.exists(path):
            return None
        target = link_target(snapshot, path)
        if target is None:
            return path
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if joined.startswith("../") or joined == ".." or posixpath.isabs(target):
            return None
        path = joined
    return None


def link_target(snapshot: Snapshot, path: str) -> str | None:
    """The target of `path` if it is a symlink (or a git symlink checked out as text)."""
    if snapshot.is_symlink(path):
        return snapshot.read(path).decode("utf-8", "replace")
    data = snapshot.read(path)
    if len(data) > 512 or b"\n" in data.rstrip(b"\n") or not data.strip():
        return None
    text = data.decode("utf-8", "replace").strip()
    if any(c.isspace() for c in text) or "/" not in text or text.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), text))
    return text if snapshot.exists(joined) and joined != path else None
