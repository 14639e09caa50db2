"""Rendered Jsonnet on disk, by job key, so repeated command-line runs skip go-jsonnet.

Rendering 2i2c's 201 releases costs ~3 CPU-seconds, almost all of it in go-jsonnet's
`std.format` (written in Jsonnet itself), while everything else in `hubbot validate`
costs under one. A job's key is a SHA-256 of everything the output depends on (the
source, every importable file, the external variables and the limits), and the
folder is named after the go-jsonnet build, so an entry can never be stale: a
changed input is a different key. Only successful renders are stored. The folder
is safe to delete at any time; a damaged entry is a miss. The GitHub App does not
need this: its renderer keeps results in memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def engine_id() -> str:
    """An id of the installed go-jsonnet build (found without loading it)."""
    spec = importlib.util.find_spec("_gojsonnet")
    origin = spec.origin if spec is not None else None
    if origin is None:
        return "none"
    stat = os.stat(origin)
    return hashlib.sha256(f"{origin}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:16]


class DiskCache:
    """Rendered output by job key, below `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / f"jsonnet-{engine_id()}"

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> bytes | None:
        """The stored output of `key`, if any."""
        try:
            return self._path(key).read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        """Store the output of `key` atomically; a full or read-only disk is not an error."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        except OSError:
            return


def user_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """The command line's cache folder: $HUBBOT_CACHE_DIR ("off": none), else ~/.cache/hubbot."""
    chosen = environ.get("HUBBOT_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip() in ("", "off") else Path(chosen)
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hubbot"
