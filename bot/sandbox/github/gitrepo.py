"""The double's git side: real commits, merges, diffs, trees and archives in a local repository.

Writes use git plumbing with a temporary index (`read-tree`, `hash-object -w`,
`update-index`, `write-tree`, `commit-tree`, `update-ref`), so the working tree
and the user's index of DIR are never touched. Merges use `git merge-tree
--write-tree` (git >= 2.38) and a two-parent commit.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from bot.core.snapshot import GitError, run_git

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_SHA = re.compile(r"[0-9a-f]{40}")
F = TypeVar("F", bound=Callable[..., Any])


def by_sha(method: F) -> F:
    """Memoise a read whose arguments are all object ids: objects never change, refs do."""
    cached = functools.lru_cache(maxsize=4096)(method)

    @functools.wraps(method)
    def wrapper(self: GitRepo, *args: Any, **kwargs: Any) -> Any:
        if not all(isinstance(a, str) and _SHA.fullmatch(a) for a in args):
            return method(self, *args, **kwargs)
        result = cached(self, *args, **kwargs)
        return list(result) if isinstance(result, list) else result  # callers may edit lists

    return cast(F, wrapper)


@dataclass(frozen=True, slots=True)
class Person:
    """A commit author or committer."""

    name: str
    email: str
    date: str  # ISO 8601


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """One commit as git stores it."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str


@dataclass(frozen=True, slots=True)
class FileChange:
    """One changed path between two commits, with GitHub's status words."""

    filename: str
    status: str  # added, removed, modified, renamed
    sha: str | None  # blob after the change (before it, for removals)
    previous_filename: str | None
    additions: int
    deletions: int
    patch: str | None = None  # the unified diff hunks, as GitHub's `patch` (None for binary)


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One entry of a recursive tree listing."""

    path: str
    mode: str
    type: str  # blob, tree, commit
    sha: str
    size: int | None


class MergeConflict(Exception):
    """`git merge-tree` found conflicts; carries the conflicting paths."""

    def __init__(self, paths: list[str]):
        super().__init__(", ".join(paths) or "conflict")
        self.paths = paths


class GitRepo:
    """A local git repository whose default branch is the double's `main`."""

    def __init__(self, path: str | os.PathLike[str], default_branch: str = "main"):
        self.path = os.fspath(Path(path).resolve())
        self.default_branch = default_branch

    # ---- reading -----------------------------------------------------------------
    def git(self, *args: str, input: bytes | None = None) -> bytes:
        """Run git in the repository (see `bot.core.snapshot.run_git`)."""
        _check_args(args)
        return run_git(self.path, *args, input=input)

    def resolve(self, ref: str) -> str | None:
        """The commit sha `ref` names (branch, tag, sha or `refs/...`), or None."""
        if not ref or ref.startswith("-") or ".." in ref:
            return None
        try:
            out = self.git(
                "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
            )
        except GitError:
            return None
        return out.decode().strip() or None

    def branch_sha(self, branch: str) -> str | None:
        """The head of `refs/heads/<branch>`, or None."""
        return self.resolve(f"refs/heads/{branch}")

    def branches(self) -> list[str]:
        """Every branch name."""
        out = self.git("for-each-ref", "--format=%(refname:strip=2)", "refs/heads/")
        return out.decode().split()

    def object_type(self, sha: str) -> str | None:
        """`blob`, `tree`, `commit` or `tag` for an existing object, else None."""
        if not sha or not all(c in "0123456789abcdef" for c in sha.lower()):
            return None
        try:
            return self.git("cat-file", "-t", sha).decode().strip()
        except GitError:
            return None

    @by_sha
    def commit(self, sha: str) -> CommitInfo:
        """The commit `sha` (already resolved)."""
        fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
        out = self.git("show", "-s", f"--format={fmt}", sha, "--").decode()
        f = out.split("\x00")
        return CommitInfo(
            sha=f[0],
            tree=f[1],
            parents=tuple(f[2].split()),
            author=Person(f[3], f[4], f[5]),
            committer=Person(f[6], f[7], f[8]),
            message=f[9].rstrip("\n"),
        )

    @by_sha
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether `ancestor` is reachable from `descendant`."""
        try:
            self.git("merge-base", "--is-ancestor", ancestor, descendant)
        except GitError:
            return False
        return True

    @by_sha
    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits, or None when unrelated."""
        try:
            return self.git("merge-base", a, b).decode().strip() or None
        except GitError:
            return None

    @by_sha
    def commits_between(self, base: str, head: str, limit: int = 250) -> list[str]:
        """Commits reachable from `head` but not `base`, oldest first (at most `limit`)."""
        out = self.git("rev-list", "--reverse", f"--max-count={limit}", head, f"^{base}")
        return out.decode().split()

    @by_sha
    def history(self, head: str, limit: int = 1000) -> list[str]:
        """Commits reachable from `head`, newest first (git's order, as GitHub lists them)."""
        return self.git("rev-list", f"--max-count={limit}", head).decode().split()

    @by_sha
    def count_between(self, base: str, head: str) -> int:
        """How many commits `head` has that `base` lacks."""
        return int(self.git("rev-list", "--count", head, f"^{base}").decode())

    @by_sha
    def changes(self, base: str, head: str) -> list[FileChange]:
        """Files changed from `base` to `head` with rename detection, sorted by path."""
        raw = self.git("diff", "--raw", "-z", "-M", "--no-abbrev", base, head, "--").split(b"\0")
        stats = self._numstat(base, head)
        patches = self._patches(base, head)
        found: list[FileChange] = []
        i = 0
        while i < len(raw) - 1:
            meta = raw[i].decode()
            if not meta.startswith(":"):
                i += 1
                continue
            _, _, old_sha, new_sha, code = meta[1:].split(" ")
            kind = code[0]
            first = raw[i + 1].decode("utf-8", "surrogateescape")
            if kind in "RC":
                second = raw[i + 2].decode("utf-8", "surrogateescape")
                i += 3
            else:
                second = None
                i += 2
            name = second or first
            adds, dels = stats.get(name, (0, 0))
            status = {"A": "added", "D": "removed", "R": "renamed", "C": "added"}.get(
                kind, "modified"
            )
            sha: str | None = old_sha if kind == "D" else new_sha
            if kind == "M" and old_sha == new_sha:
                sha = None  # only the mode changed: GitHub answers a null sha
            found.append(
                FileChange(
                    filename=name,
                    status=status,
                    sha=sha,
                    previous_filename=first if kind == "R" else None,
                    additions=adds,
                    deletions=dels,
                    patch=patches[len(found)] if len(found) < len(patches) else None,
                )
            )
        return sorted(found, key=lambda c: c.filename)

    def _patches(self, base: str, head: str) -> list[str | None]:
        """Each file's diff hunks, in git's diff order (the order of `--raw` above).

        GitHub's `patch` is the hunks without the `diff --git`/`---`/`+++` headers.
        """
        out = self.git("diff", "-M", "-U3", "--no-color", "--no-ext-diff", base, head, "--")
        text = out.decode("utf-8", "replace")
        patches: list[str | None] = []
        for part in text.split("\ndiff --git ")[0:] if text else []:
            hunk = part.find("\n@@")
            if part.startswith("@@"):
                hunk = -1
            patches.append(part[hunk + 1 :].rstrip("\n") if hunk >= 0 else None)
        return patches

    def _numstat(self, base: str, head: str) -> dict[str, tuple[int, int]]:
        out = self.git("diff", "--numstat", "-z", "-M", base, head, "--").split(b"\0")
        stats: dict[str, tuple[int, int]] = {}
        i = 0
        while i < len(out):
            rec = out[i].decode("utf-8", "surrogateescape")
            i += 1
            if not rec:
                continue
            adds, dels, name = rec.split("\t", 2)
            if not name:  # a rename: old and new names follow as separate records
                name = out[i + 1].decode("utf-8", "surrogateescape")
                i += 2
            stats[name] = (int(adds) if adds != "-" else 0, int(dels) if dels != "-" else 0)
        return stats

    @by_sha
    def tree(self, sha: str, *, recursive: bool) -> list[TreeEntry]:
        """The entries of a tree (or a commit's tree), recursively on request."""
        args = ["ls-tree", "-l", "-z", "--full-tree"]
        if recursive:
            args += ["-r", "-t"]
        out = self.git(*args, sha).split(b"\0")
        entries = []
        for rec in out:
            if not rec:
                continue
            meta, _, path = rec.partition(b"\t")
            mode, kind, oid, size = meta.decode().split()
            entries.append(
                TreeEntry(
                    path=path.decode("utf-8", "surrogateescape"),
                    mode=mode,
                    type=kind,
                    sha=oid,
                    size=int(size) if size != "-" else None,
                )
            )
        return entries

    def tree_sha(self, ref: str) -> str | None:
        """The tree a tree sha, commit sha or ref names, or None."""
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{tree}}").decode().strip()
        except GitError:
            return None

    def blob(self, sha: str) -> bytes:
        """The content of a blob."""
        return self.git("cat-file", "blob", sha)

    def entry(self, commit: str, path: str) -> TreeEntry | None:
        """The tree entry at `path` in `commit` (file, symlink, folder), or None."""
        path = path.strip("/")
        if not path:
            return TreeEntry("", "040000", "tree", self.tree_sha(commit) or "", None)
        try:
            out = self.git("ls-tree", "-l", "-z", "--full-tree", commit, "--", path)
        except GitError:
            return None  # a path git refuses (outside the repository, NUL): nothing there
        for rec in out.split(b"\0"):
            meta, _, name = rec.partition(b"\t")
            if name.decode("utf-8", "surrogateescape") == path:
                mode, kind, oid, size = meta.decode().split()
                return TreeEntry(path, mode, kind, oid, int(size) if size != "-" else None)
        return None

    def archive(self, sha: str, prefix: str) -> bytes:
        """A gzip tarball of `sha` under the folder `prefix/` (symlinks kept as symlinks)."""
        return self.git("archive", "--format=tar.gz", f"--prefix={prefix}/", sha)

    # ---- writing -----------------------------------------------------------------
    def commit_files(
        self,
        parent: str,
        files: Mapping[str, str | bytes | None],
        *,
        message: str,
        author: Person,
        committer: Person | None = None,
    ) -> str:
        """A new commit on top of `parent` with `files` written (None deletes); returns its sha."""
        clean = {_clean_path(path): content for path, content in files.items()}
        written = [p for p, c in clean.items() if c is not None]
        with tempfile.TemporaryDirectory(prefix="hubbot-index-") as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            # Five git calls whatever the number of files: blobs are written in one
            # `hash-object` over temporary files and staged in one `update-index --index-info`.
            blobs = []
            for i, path in enumerate(written):
                content = clean[path]
                blob = os.path.join(tmp, f"blob-{i}")
                with open(blob, "wb") as handle:
                    handle.write(content.encode() if isinstance(content, str) else content or b"")
                blobs.append(blob)
            oids = self._run(["hash-object", "-w", "--", *blobs]).decode().split() if blobs else []
            records = [f"100644 {oid}\t{path}" for oid, path in zip(oids, written, strict=True)]
            records += [f"0 {'0' * 40}\t{p}" for p, c in clean.items() if c is None]  # removals
            self._run(["read-tree", parent], env=env)
            staged = "".join(r + "\0" for r in records).encode()
            self._run(["update-index", "-z", "--index-info"], env=env, input=staged)
            tree = self._run(["write-tree"], env=env).decode().strip()
        return self.commit_tree(tree, [parent], message=message, author=author, committer=committer)

    def commit_tree(
        self,
        tree: str,
        parents: list[str],
        *,
        message: str,
        author: Person,
        committer: Person | None = None,
    ) -> str:
        """Write a commit object for `tree` and `parents`; returns its sha."""
        committer = committer or author
        env = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_AUTHOR_DATE": author.date,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_COMMITTER_DATE": committer.date,
        }
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        return self._run(args, env=env, input=message.encode()).decode().strip()

    @by_sha
    def merge_tree(self, ours: str, theirs: str) -> str:
        """The tree of merging `theirs` into `ours`; MergeConflict when it does not merge."""
        proc = self._proc(["merge-tree", "--write-tree", "--name-only", ours, theirs])
        lines = proc.stdout.decode("utf-8", "surrogateescape").split("\n")
        if proc.returncode == 0:
            return lines[0].strip()
        if proc.returncode == 1:
            paths = []
            for line in lines[1:]:
                if not line.strip():
                    break  # the informational messages follow a blank line
                paths.append(line.strip())
            raise MergeConflict(sorted(set(paths)))
        raise GitError(proc.stderr.decode(errors="replace").strip() or "git merge-tree failed")

    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        """Point `ref` at `new` (atomically checking `old` when given; "" means must not exist)."""
        args = ["update-ref", ref, new]
        if old is not None:
            args.append(old or "0" * 40)
        self.git(*args)

    def delete_ref(self, ref: str) -> None:
        """Delete `ref`."""
        self.git("update-ref", "-d", ref)

    def _proc(
        self, args: list[str], *, env: Mapping[str, str] | None = None, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        # Own subprocess call (not run_git) because plumbing here needs GIT_INDEX_FILE,
        # identity variables and merge-tree's exit status 1 ("conflicts").
        _check_args(args)
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            ["git", "-C", self.path, "-c", "commit.gpgsign=false", *args],
            input=input,
            capture_output=True,
            env=full_env,
            check=False,
        )

    def _run(
        self, args: list[str], *, env: Mapping[str, str] | None = None, input: bytes | None = None
    ) -> bytes:
        proc = self._proc(args, env=env, input=input)
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(message[-1] if message else f"git {args[0]} failed")
        return proc.stdout


def _check_args(args: tuple[str, ...] | list[str]) -> None:
    """Refuse arguments no process can receive (a NUL byte from a URL such as `%00`)."""
    if any("\0" in a for a in args):
        raise GitError("invalid argument: NUL byte")


def _clean_path(path: str) -> str:
    """A repository path, refusing absolute paths, `..` and `.git`."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or parts[0] == ".git":
        raise ValueError(f"invalid path: {path!r}")
    return "/".join(parts)
