"""Helpers for the core's tests: repositories built from real 2i2c files plus a mutation."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bot.core.model import Repository, load_repository
from bot.core.settings import Settings
from bot.core.snapshot import DictSnapshot, Symlink
from tests.conftest import SNAPSHOT_2I2C

CHARTS = ("basehub", "daskhub", "support")


def real_files(*clusters: str) -> dict[str, bytes | str | Symlink]:
    """The 2i2c charts and the named cluster folders, as a mapping for `DictSnapshot`."""
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    files: dict[str, bytes | str | Symlink] = {}
    folders = [f"helm-charts/{c}" for c in CHARTS] + [f"config/clusters/{c}" for c in clusters]
    for folder in folders:
        for path in sorted((SNAPSHOT_2I2C / folder).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(SNAPSHOT_2I2C))] = path.read_bytes()
    return files


def repo_of(
    files: Mapping[str, bytes | str | Symlink],
    changes: Mapping[str, bytes | str | Symlink | None] | None = None,
    settings: Settings | None = None,
) -> Repository:
    """A repository from `files` with `changes` applied (None deletes a file)."""
    snapshot = DictSnapshot(files).with_changes(changes or {})
    return load_repository(snapshot, settings or Settings())


def text_of(files: Mapping[str, bytes | str | Symlink], path: str) -> str:
    """A file of `files` as text."""
    value = files[path]
    assert not isinstance(value, Symlink)
    return value.decode() if isinstance(value, bytes) else value


def line_containing(text: str, needle: str, start: int = 1) -> int:
    """The 1-based number of the first line at or after `start` that contains `needle`."""
    for number, line in enumerate(text.splitlines(), 1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not found")
