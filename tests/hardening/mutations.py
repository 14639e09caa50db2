"""Mutations of a repository's files for config fuzzing: each a Hypothesis strategy that takes
the real files of one cluster (and the charts) and returns the changes to make.

Every mutation is a `Mutation`: which cluster, what kind, the file it targets, and the
changes (path to new bytes, a `Symlink`, or None to delete). Its repr is short, so a
failing example reads well even when it holds megabytes.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from hypothesis import strategies as st

from bot.core.snapshot import Symlink

Files = Mapping[str, bytes | str | Symlink]
Change = bytes | Symlink | None


class Mutation:
    """A change to a repository: what, where, and the new content of each path.

    Not a dataclass: Hypothesis prints dataclasses field by field, megabytes included.
    """

    def __init__(
        self, cluster: str, kind: str, path: str, detail: str, changes: Mapping[str, Change]
    ) -> None:
        self.cluster, self.kind, self.path, self.detail = cluster, kind, path, detail
        self.changes = changes

    def __repr__(self) -> str:
        sizes = {
            p: ("deleted" if c is None else f"-> {c.target}" if isinstance(c, Symlink) else len(c))
            for p, c in self.changes.items()
        }
        return f"Mutation({self.kind} of {self.path} in {self.cluster}: {self.detail}; {sizes})"


CHART_FILES = ("Chart.yaml", "values.yaml", "values.schema.json", "values.schema.yaml")


def data_files(files: Files, cluster: str) -> list[str]:
    """The files worth mutating: the cluster's own, and the charts' data files."""
    folder = f"config/clusters/{cluster}/"
    return sorted(
        p
        for p, v in files.items()
        if not isinstance(v, Symlink)
        and (p.startswith(folder) or (p.startswith("helm-charts/") and p.count("/") == 2))
        and (p.startswith(folder) or posixpath.basename(p) in CHART_FILES)
    )


def content(files: Files, path: str) -> bytes:
    """A file's bytes."""
    value = files[path]
    assert not isinstance(value, Symlink)
    return value.encode() if isinstance(value, str) else value


def referenced(files: Files, cluster: str) -> list[str]:
    """The values files the cluster's cluster.yaml names, as repository paths."""
    folder = f"config/clusters/{cluster}"
    data = yaml.safe_load(content(files, f"{folder}/cluster.yaml")) or {}
    names: list[str] = []
    for hub in data.get("hubs") or []:
        names += hub.get("helm_chart_values_files") or []
    names += (data.get("support") or {}).get("helm_chart_values_files") or []
    paths = {posixpath.normpath(f"{folder}/{n}") for n in names}
    return sorted(p for p in paths if p in files)


Mutator = Callable[[Any, str, Files], Mutation]
MUTATORS: dict[str, Mutator] = {}


def mutator(kind: str) -> Callable[[Mutator], Mutator]:
    """Register a mutation kind."""

    def register(fn: Mutator) -> Mutator:
        MUTATORS[kind] = fn
        return fn

    return register


def _target(draw: Any, files: Files, cluster: str) -> tuple[str, bytes]:
    path = draw(st.sampled_from(data_files(files, cluster)))
    return path, content(files, path)


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


@mutator("byte-flips")
def byte_flips(draw: Any, cluster: str, files: Files) -> Mutation:
    """XOR a few bytes with random masks."""
    path, data = _target(draw, files, cluster)
    out = bytearray(data)
    spots = draw(st.lists(st.integers(0, max(len(out) - 1, 0)), min_size=1, max_size=6))
    for spot in spots:
        if out:
            out[spot] ^= draw(st.integers(1, 255))
    return Mutation(cluster, "byte-flips", path, f"at {spots}", {path: bytes(out)})


@mutator("truncation")
def truncation(draw: Any, cluster: str, files: Files) -> Mutation:
    """Cut the file anywhere, mid-line and mid-character included."""
    path, data = _target(draw, files, cluster)
    at = draw(st.integers(0, len(data)))
    return Mutation(cluster, "truncation", path, f"at byte {at}", {path: data[:at]})


@mutator("lines")
def lines(draw: Any, cluster: str, files: Files) -> Mutation:
    """Delete, duplicate or re-indent a few lines (duplicate keys, broken structure)."""
    path, data = _target(draw, files, cluster)
    rows = _lines(data)
    at = draw(st.integers(0, len(rows) - 1))
    count = draw(st.integers(1, 3))
    how = draw(st.sampled_from(["delete", "duplicate", "indent", "dedent", "tab"]))
    chunk = rows[at : at + count]
    if how == "delete":
        rows[at : at + count] = []
    elif how == "duplicate":
        rows[at:at] = chunk
    elif how == "indent":
        rows[at : at + count] = [b" " * draw(st.integers(1, 5)) + r for r in chunk]
    elif how == "dedent":
        rows[at : at + count] = [r.lstrip(b" ") for r in chunk]
    else:
        rows[at : at + count] = [b"\t" + r for r in chunk]
    detail = f"{how} {count} line(s) from line {at + 1}"
    return Mutation(cluster, "lines", path, detail, {path: b"".join(rows)})


ODD_VALUES = [
    b"[1, 2]",
    b"{a: 1}",
    b"12345678901234567890123",
    b"true",
    b"null",
    b"~",
    b"''",
    b"!!binary aGVsbG8=",
    b"!!set {a, b}",
    b"!!python/object:os.system ls",
    b"2001-12-14t21:59:43.10-05:00",
    b".nan",
    b"-.inf",
    b"0x1F",
    b"0o17",
    b"&anchor value",
    b"*nowhere",
    b"!custom x",
    b"'unterminated",
    b"{",
    b"[[[",
    b"@reserved",
    b"%directive",
    b"? complex",
    b"<<: {a: 1}",
    b"|\n  block\n   text",
    b'"\\ud800"',
    b'"\\x00"',
]
_KEY_VALUE = re.compile(rb"^(\s*(?:- )?[\w.\-/\"']+:[ \t]+)(\S.*)$")


@mutator("value-types")
def value_types(draw: Any, cluster: str, files: Files) -> Mutation:
    """Swap a value for one of another type (or YAML's odder forms)."""
    path, data = _target(draw, files, cluster)
    rows = _lines(data)
    spots = [i for i, r in enumerate(rows) if _KEY_VALUE.match(r.rstrip(b"\r\n"))]
    new = draw(st.sampled_from(ODD_VALUES))
    if not spots:
        rows.append(b"\nodd: " + new + b"\n")
        return Mutation(cluster, "value-types", path, f"appended {new!r}", {path: b"".join(rows)})
    at = draw(st.sampled_from(spots))
    match = _KEY_VALUE.match(rows[at].rstrip(b"\r\n"))
    assert match is not None
    rows[at] = match.group(1) + new + b"\n"
    detail = f"line {at + 1} := {new!r}"
    return Mutation(cluster, "value-types", path, detail, {path: b"".join(rows)})


@mutator("deep-nesting")
def deep_nesting(draw: Any, cluster: str, files: Files) -> Mutation:
    """Append flow or block nesting around the 100-level limit, and far past it."""
    path, data = _target(draw, files, cluster)
    depth = draw(st.sampled_from([50, 99, 100, 101, 150, 1000, 20_000]))
    style = draw(st.sampled_from(["flow-list", "flow-map", "block"]))
    if style == "flow-list":
        nested = b"[" * depth + b"]" * depth
    elif style == "flow-map":
        nested = b"{a: " * depth + b"1" + b"}" * depth
    else:
        depth = min(depth, 400)  # the file's size grows with the square of the depth
        nested = b"".join(b"\n" + b"  " * (i + 1) + b"a:" for i in range(depth)) + b" 1"
    detail = f"{style} nesting {depth} deep"
    return Mutation(cluster, "deep-nesting", path, detail, {path: data + b"\ndeep: " + nested})


@mutator("huge")
def huge(draw: Any, cluster: str, files: Files) -> Mutation:
    """Append a huge string, a huge key, or very many keys (under and over 5 MB)."""
    path, data = _target(draw, files, cluster)
    size = draw(st.sampled_from([100_000, 1_000_000, 5_300_000]))
    shape = draw(st.sampled_from(["value", "key", "keys", "line"]))
    if shape == "value":
        extra = b'\nhuge: "' + b"x" * size + b'"\n'
    elif shape == "key":
        extra = b"\n" + b"k" * size + b": 1\n"
    elif shape == "keys":
        extra = b"".join(b"\nk%d: %d" % (i, i) for i in range(size // 12))
    else:
        extra = b"\n# " + b"y" * size  # one enormous comment line
    detail = f"{size:,}-byte {shape}"
    return Mutation(cluster, "huge", path, detail, {path: data + extra})


BOMB = b"""
lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
lol1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
lol2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
lol3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
lol4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
lol5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
lol6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
lol7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
lol8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
"""
MERGE_BOMB = b"""
m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}
m1: &m1 {<<: [*m0, *m0, *m0, *m0, *m0, *m0, *m0, *m0], x: 1}
m2: &m2 {<<: [*m1, *m1, *m1, *m1, *m1, *m1, *m1, *m1], x: 2}
m3: &m3 {<<: [*m2, *m2, *m2, *m2, *m2, *m2, *m2, *m2], x: 3}
m4: {<<: [*m3, *m3, *m3, *m3, *m3, *m3, *m3, *m3], x: 4}
"""
SELF_ALIAS = b"\nloop: &loop [*loop]\n"


@mutator("alias-bomb")
def alias_bomb(draw: Any, cluster: str, files: Files) -> Mutation:
    """Append a billion laughs, a merge-key bomb, or an alias to itself."""
    path, data = _target(draw, files, cluster)
    name, bomb = draw(
        st.sampled_from(
            [("billion laughs", BOMB), ("merge bomb", MERGE_BOMB), ("self", SELF_ALIAS)]
        )
    )
    return Mutation(cluster, "alias-bomb", path, name, {path: data.rstrip(b"\n") + b"\n" + bomb})


BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80"]


@mutator("encoding")
def encoding(draw: Any, cluster: str, files: Files) -> Mutation:
    """Insert invalid UTF-8, NUL bytes, a BOM mid-file, or re-encode as UTF-16."""
    path, data = _target(draw, files, cluster)
    at = draw(st.integers(0, len(data)))
    what = draw(st.sampled_from([*BAD_BYTES, b"\x00", b"\xef\xbb\xbf", b"utf-16"]))
    if what == b"utf-16":
        new = data.decode("utf-8").encode("utf-16")
        return Mutation(cluster, "encoding", path, "as UTF-16", {path: new})
    return Mutation(
        cluster, "encoding", path, f"{what!r} at {at}", {path: data[:at] + what + data[at:]}
    )


@mutator("missing-files")
def missing_files(draw: Any, cluster: str, files: Files) -> Mutation:
    """Delete or rename a referenced values file, the cluster.yaml, or a chart's file."""
    folder = f"config/clusters/{cluster}"
    candidates = [
        *referenced(files, cluster),
        f"{folder}/cluster.yaml",
        *(p for p in data_files(files, cluster) if p.startswith("helm-charts/")),
    ]
    path = draw(st.sampled_from(candidates))
    how = draw(st.sampled_from(["delete", "rename", "case"]))
    changes: dict[str, Change] = {path: None}
    if how == "rename":
        changes[posixpath.join(posixpath.dirname(path), "renamed-" + posixpath.basename(path))] = (
            content(files, path)
        )
    elif how == "case":
        changes[posixpath.join(posixpath.dirname(path), posixpath.basename(path).upper())] = (
            content(files, path)
        )
    return Mutation(cluster, "missing-files", path, how, changes)


LINK_TARGETS = [
    "../../../../etc/passwd",
    "/etc/passwd",
    "../../../helm-charts/basehub/values.yaml",
    "../../../../../../../../../../../../proc/self/environ",
    "loop.yaml",
    ".",
    "",
]


@mutator("symlinks")
def symlinks(draw: Any, cluster: str, files: Files) -> Mutation:
    """Replace a referenced file (or a chart file) with a symlink out, to a folder, or a loop."""
    candidates = referenced(files, cluster) or data_files(files, cluster)
    candidates += [f"helm-charts/{c}/values.jsonnet" for c in ("basehub", "daskhub", "support")]
    path = draw(st.sampled_from(candidates))
    target = draw(st.sampled_from(LINK_TARGETS))
    changes: dict[str, Change] = {path: Symlink(target)}
    if target == "loop.yaml":
        loop = posixpath.join(posixpath.dirname(path), "loop.yaml")
        changes[loop] = Symlink(posixpath.basename(path))
    return Mutation(cluster, "symlinks", path, f"-> {target!r}", changes)


NASTY_JSONNET = [
    'import "/etc/passwd"',
    'importstr "/etc/passwd"',
    'importstr "../../config/clusters/2i2c/enc-deployer-credentials.secret.json"',
    'importstr "../../../../../../etc/passwd"',
    'import "values.jsonnet"',
    "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1); f(60)",
    "std.length(std.range(0, 200000000))",
    '{ big: std.repeat("x", 20000000) }',
    'error "boom"',
    "{ a: self.a }",
    'std.extVar("NOT_SET")',
    'std.native("exec")("ls")',
    "[",
    '{ "\\u0000": 1 }',
    "1",
    "[1, 2]",
    "null",
    "{ hub: std.thisFile }",
    "{ [std.toString(i)]: i for i in std.range(0, 200000) }",
]


@mutator("jsonnet")
def jsonnet(draw: Any, cluster: str, files: Files) -> Mutation:
    """Replace a chart's values.jsonnet with hostile programs, random text or random bytes."""
    chart = draw(st.sampled_from(["basehub", "daskhub", "support"]))
    path = f"helm-charts/{chart}/values.jsonnet"  # daskhub's is a link to basehub's
    program = draw(
        st.one_of(
            st.sampled_from(NASTY_JSONNET).map(str.encode),
            st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.binary(max_size=200),
        )
    )
    return Mutation(cluster, "jsonnet", path, repr(program[:60]), {path: program})
