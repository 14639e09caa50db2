"""Unpack a GitHub tarball into path → (content, is_symlink), safely and within limits.

GitHub's `/tarball/{ref}` archives put every file under one top folder
(`owner-repo-abc1234/`). Members that would land outside it (absolute paths,
`..`), devices, FIFOs and hard links are rejected; symlinks are kept as
symlinks (their target is their content, as git stores it). The total unpacked
size and the member count are capped, so a hostile archive cannot eat memory.
"""

from __future__ import annotations

import io
import logging
import posixpath
import tarfile
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

DEFAULT_MAX_UNPACKED = 512 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 200_000


class TarballError(ValueError):
    """The archive is corrupt or over a limit."""


@dataclass(slots=True)
class Unpacked:
    """A tarball's files, the commit id GitHub recorded in it (if any), and what was refused."""

    files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    commit: str | None = None
    rejected: list[str] = field(default_factory=list)


def unpack(
    data: bytes,
    *,
    max_unpacked: int = DEFAULT_MAX_UNPACKED,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Unpacked:
    """Read a (gzipped) tar archive of a repository; raises TarballError."""
    out = Unpacked()
    top: str | None = None
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as archive:
            for member in archive:
                count += 1
                if count > max_members:
                    raise TarballError(f"archive has more than {max_members} members")
                if top is None:
                    top = member.name.split("/", 1)[0]
                rel = _relative(member.name, top)
                if rel is None:
                    out.rejected.append(member.name)
                    continue
                if member.isdir() or rel == "":
                    continue
                if member.issym():
                    out.files[rel] = (member.linkname.encode(), True)
                    continue
                if not member.isreg():
                    out.rejected.append(member.name)
                    continue
                total += member.size
                if total > max_unpacked:
                    raise TarballError(f"archive unpacks to more than {max_unpacked} bytes")
                stream = archive.extractfile(member)
                content = stream.read() if stream is not None else b""
                out.files[rel] = (content, False)
            comment = archive.pax_headers.get("comment")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise TarballError(f"not a readable tar archive: {exc}") from None
    if isinstance(comment, str) and len(comment) == 40:
        out.commit = comment
    if out.rejected:
        logger.warning(
            "tarball: rejected %d unsafe member(s), e.g. %r", len(out.rejected), out.rejected[0]
        )
    return out


def _relative(name: str, top: str) -> str | None:
    """The member's path below the top folder, or None if it is unsafe or outside it."""
    if name.startswith("/") or "\\" in name or "\0" in name:
        return None
    parts = name.split("/")
    if parts[0] != top or any(p in ("..",) for p in parts):
        return None
    rel = "/".join(p for p in parts[1:] if p not in ("", "."))
    if rel and posixpath.normpath(rel) != rel:
        return None
    return rel
