"""Config fuzzing: random mutations of the real 2i2c files through validate and plan.

Each example takes the charts and one real cluster of the 2i2c snapshot, applies one
mutation (see `mutations.py`: byte flips, truncation, lines deleted/duplicated/re-indented,
values of other types, deep nesting, huge strings, alias bombs, bad encodings and NUL
bytes, missing and renamed files, symlinks out, Jsonnet garbage), and runs the head through
`validate`, `plan_files` (file mode) and `plan_snapshots` (semantic mode, base = the real
files). Properties: always a list of findings, never an exception; every finding is well
formed, at a line inside its file (or None); each run takes under RUN_SECONDS; the
process's peak memory grows by less than MEMORY_BYTES.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.findings import Finding
from bot.core.jsonnet_pool import default_renderer
from bot.core.model import load_repository
from bot.core.planner import plan_files
from bot.core.semantic import plan_snapshots
from bot.core.settings import JsonnetSettings, Settings
from bot.core.snapshot import DictSnapshot, DirSnapshot, Symlink, resolve_link
from bot.core.validate import validate
from tests.conftest import SNAPSHOT_2I2C
from tests.core_support import real_files
from tests.hardening.mutations import (
    BAD_BYTES,
    BOMB,
    LINK_TARGETS,
    MERGE_BOMB,
    MUTATORS,
    NASTY_JSONNET,
    SELF_ALIAS,
    Mutation,
)
from tests.hardening.support import fuzz_settings

RUN_SECONDS = 5.0
MEMORY_BYTES = 256 << 20
# Jsonnet gets 1 s per file here (10 s by default), so a hostile program fits RUN_SECONDS.
SETTINGS = Settings(jsonnet=JsonnetSettings(timeout_seconds=1.0))
RULE = re.compile(r"^[a-z][a-z0-9-]*$")


def clusters() -> list[str]:
    """The real clusters (without `templates`, which is ignored by default)."""
    folder = SNAPSHOT_2I2C / "config" / "clusters"
    if not folder.is_dir():
        return ["absent"]  # the tests skip through real_files()
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "templates")


@functools.cache
def base_files(cluster: str) -> dict[str, bytes | str | Symlink]:
    """The charts and one cluster's folder, read once."""
    return real_files(cluster)


@functools.cache
def base_snapshot(cluster: str) -> DictSnapshot:
    """The unmutated files as a snapshot (shared: its parse caches are warm)."""
    return DictSnapshot(base_files(cluster))


def lines_of(data: bytes) -> int:
    """The number of lines a finding may point at (one past the end for errors at EOF)."""
    return data.count(b"\n") + 1


def check_findings(found: Any, head: DictSnapshot, mutation: Mutation) -> None:
    """Findings are a list of well-formed Finding objects at lines inside their files."""
    assert isinstance(found, list | tuple), type(found)
    limits: dict[str, int] = {}  # lines per path: 80,000 findings in a 1 MB file happen
    for f in found:
        assert isinstance(f, Finding), f
        assert f.severity in ("error", "warning"), f
        assert isinstance(f.rule, str) and RULE.match(f.rule), f
        assert isinstance(f.path, str) and f.path, f
        assert not f.path.startswith(("/", "../")) and "/../" not in f.path, f
        assert isinstance(f.message, str) and f.message.strip(), f
        assert len(f.message) < 2000, f"{f.path}: a {len(f.message)}-character message"
        assert "Traceback" not in f.message, f
        if f.line is None:
            continue
        assert isinstance(f.line, int) and not isinstance(f.line, bool), f
        assert f.line >= 1, f
        assert head.exists(f.path), f"{f} points at a line of a file that does not exist"
        # GitHub shows a symlink as one line (its target); a finding may also mean the file
        # the link leads to.
        if f.path not in limits:
            where = resolve_link(head, f.path)
            size = lines_of(head.read(where)) if where else 0
            limits[f.path] = max(lines_of(head.read(f.path)), size)
        assert f.line <= limits[f.path], f"{f} is past the end of {f.path}"


def timed(what: str, mutation: Mutation, call: Callable[[], Any]) -> Any:
    """Run `call`; fail (naming the mutation) if it raises or takes over RUN_SECONDS."""
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:  # the property under test: never an exception
        raise AssertionError(f"{what} raised {exc!r} on {mutation!r}") from exc
    took = time.monotonic() - started
    assert took < RUN_SECONDS, f"{what} took {took:.1f} s on {mutation!r}"
    return result


class PeakMemory:
    """The process's peak RSS growth over a block (Linux: VmHWM, reset through clear_refs)."""

    def __init__(self) -> None:
        self.supported = os.access("/proc/self/clear_refs", os.W_OK)

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    def __enter__(self) -> PeakMemory:
        if self.supported:
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            self.start = self._status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = self._status("VmHWM") - self.start if self.supported else 0


def run_everything(mutation: Mutation) -> None:
    """validate, file-mode plan and semantic plan on the mutated files, checked."""
    base = base_snapshot(mutation.cluster)
    head = base.with_changes(mutation.changes)
    renderer = default_renderer()
    with PeakMemory() as memory:
        repo = timed("load_repository", mutation, lambda: load_repository(head, SETTINGS))
        found = timed("validate", mutation, lambda: validate(repo, renderer=renderer))
        check_findings(found, head, mutation)
        changed = list(mutation.changes)
        plan = timed("plan_files", mutation, lambda: plan_files(repo, changed))
        check_findings(list(plan.findings), head, mutation)
        plan = timed("plan_snapshots", mutation, lambda: plan_snapshots(base, head, SETTINGS))
        check_findings(list(plan.findings), head, mutation)
        assert isinstance(plan.to_json(), dict)
    assert memory.growth < MEMORY_BYTES, f"peak memory grew {memory.growth >> 20} MB"


@st.composite
def mutations(draw: Any, kind: str) -> Mutation:
    """One mutation of `kind` of a randomly chosen real cluster."""
    cluster = draw(st.sampled_from(clusters()))
    return MUTATORS[kind](draw, cluster, base_files(cluster))


@pytest.mark.parametrize("kind", sorted(MUTATORS))
def test_mutated_real_files_give_findings_never_an_exception(
    kind: str, snapshot_2i2c: Path
) -> None:
    @fuzz_settings(8)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        run_everything(data.draw(mutations(kind), label="mutation"))

    run()


CLUSTER = "2i2c"  # the largest real cluster folder
VALUES = f"config/clusters/{CLUSTER}/staging.values.yaml"
APPENDED = {
    "billion-laughs": BOMB,
    "merge-bomb": MERGE_BOMB,
    "self-alias": SELF_ALIAS,
    "flow-nesting-20000": b"\ndeep: " + b"[" * 20_000 + b"]" * 20_000,
    "block-nesting-150": b"\ndeep:" + b"".join(b"\n" + b"  " * (i + 1) + b"a:" for i in range(150)),
    "1MB-of-keys": b"".join(b"\nk%d: %d" % (i, i) for i in range(1_000_000 // 12)),
    "5.3MB-string": b'\nhuge: "' + b"x" * 5_300_000 + b'"',
    "NUL": b"\x00",
    **{f"bytes-{raw.hex()}": raw for raw in BAD_BYTES},
}


def extreme(name: str) -> Mutation:
    """The named worst case of a kind (see EXTREMES), on the largest real cluster."""
    kind, _, what = name.partition(":")
    if kind == "jsonnet":
        chart, _, index = what.partition("/")
        program = NASTY_JSONNET[int(index)]
        path = f"helm-charts/{chart}/values.jsonnet"
        return Mutation(CLUSTER, kind, path, program[:40], {path: program.encode()})
    if kind == "symlink":
        target = LINK_TARGETS[int(what)]
        return Mutation(CLUSTER, kind, VALUES, f"-> {target!r}", {VALUES: Symlink(target)})
    original = base_files(CLUSTER)[VALUES]
    assert isinstance(original, bytes)
    return Mutation(CLUSTER, kind, VALUES, what, {VALUES: original + APPENDED[what]})


EXTREMES = [
    *(
        f"jsonnet:{chart}/{i}"
        for chart in ("basehub", "support")
        for i in range(len(NASTY_JSONNET))
    ),
    *(f"append:{name}" for name in APPENDED),
    *(f"symlink:{i}" for i in range(len(LINK_TARGETS))),
]


@pytest.mark.parametrize("name", EXTREMES)
def test_the_worst_of_each_kind(name: str, snapshot_2i2c: Path) -> None:
    """Each hostile program, bomb, size, encoding and link, whatever Hypothesis draws."""
    run_everything(extreme(name))


def test_unmutated_files_are_clean(snapshot_2i2c: Path) -> None:
    """The baseline: the fuzzed clusters have no errors before any mutation."""
    for cluster in ("2i2c", "leap", "nasa-veda"):
        repo = load_repository(base_snapshot(cluster), SETTINGS)
        errors = [f for f in validate(repo, renderer=default_renderer()) if f.is_error]
        assert errors == [], errors


def test_a_symlink_on_disk_never_leaks_what_it_points_at(
    tmp_path: Path, snapshot_2i2c: Path
) -> None:
    """A working tree whose values file links out of the repository (as a PR could make it):
    a finding, and nothing of the target's content in any message."""
    secret = tmp_path / "outside.yaml"
    secret.write_text("jupyterhub:\n  hub:\n    cookieSecret: s3cr3t-outside-the-repo\n")
    root = tmp_path / "repo"
    for path, value in base_files("2i2c").items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(value if isinstance(value, bytes) else str(value).encode())
    victim = root / "config/clusters/2i2c/staging.values.yaml"
    assert victim.is_file()
    victim.unlink()
    victim.symlink_to(secret)
    repo = load_repository(DirSnapshot(root), SETTINGS)
    found = validate(repo, renderer=default_renderer())
    plan = plan_files(repo, ["config/clusters/2i2c/staging.values.yaml"])
    messages = "\n".join(f.message for f in [*found, *plan.findings])
    assert any("staging.values.yaml" in f.message and f.is_error for f in found), found
    assert "s3cr3t" not in messages and "cookieSecret" not in messages
