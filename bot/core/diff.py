"""Effective values and their diff, per release, between a base and a head repository.

A release's effective values are its merged non-secret values, as helm would see them
with the secret files left out (`bot.core.values`). The diff is a unified diff of
stable YAML dumps (keys sorted). Secret files are never read: a changed one is
reported only by name, as "encrypted file changed". A plaintext credential in a
plain file (an error of its own) is shown redacted, never as its value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import yaml

from bot.core.model import Cluster, Repository, is_secret_path
from bot.core.planner import Plan, TargetKey
from bot.core.secrets import redact_credentials

if TYPE_CHECKING:
    from bot.core.values import Sources

try:  # libyaml's emitter is several times faster; fall back for a source build
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

CONTEXT_LINES = 3
_EMPTIED = "__hubbot_pruned__"  # stands for a mapping whose keys are all on the other side


@dataclass(frozen=True, slots=True)
class TargetDiff:
    """What changed in one release's values: a unified diff and the changed secret files."""

    text: str  # unified diff of the non-secret effective values; "" when they are equal
    encrypted: tuple[str, ...] = ()  # secret files that changed, relative to the cluster folder
    note: str | None = None  # why there is no diff, when there is none (new release, bad file)

    @property
    def added(self) -> int:
        """Lines added by the diff."""
        return _count(self.text, "+")

    @property
    def removed(self) -> int:
        """Lines removed by the diff."""
        return _count(self.text, "-")


def _count(text: str, sign: str) -> int:
    return sum(
        1 for line in text.splitlines() if line.startswith(sign) and not line.startswith(sign * 3)
    )


def dump(data: Any) -> str:
    """A stable YAML dump: keys sorted, block style, unicode kept."""
    try:
        text = yaml.dump(
            data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True
        )
    except TypeError:  # keys of mixed types cannot be sorted; keep file order
        text = yaml.dump(
            data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
        )
    return str(text)


def unified(base: Any, head: Any) -> str:
    """A unified diff of two values documents, pruned to what changed ("" when equal).

    Unchanged keys are left out, so the diff shows each changed value under its
    parent keys, and a 1,000-line document costs a few lines to dump. The headers
    do not name the release, so releases with the same change have the same diff
    and the PR body can show it once.
    """
    if same(base, head):
        return ""
    base, head = prune(base, head)
    # An empty side (a key only added or only removed) shows as no lines, not as `{}`.
    before, after = _lines(base), _lines(head)
    if before == after:
        return ""
    lines = difflib.unified_diff(before, after, "base", "head", n=CONTEXT_LINES, lineterm="")
    return "\n".join(lines) + "\n"


def same(a: Any, b: Any) -> bool:
    """Deep equality in which `1`, `1.0` and `true` differ, as they do for helm."""
    if a is b:
        return True
    if a != b:  # C-speed, and Python's == only ever confuses equal numbers and bools
        return False
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    return True


def prune(base: Any, head: Any) -> tuple[Any, Any]:
    """Both documents without the mapping keys whose values are the same in both."""
    if not (isinstance(base, dict) and isinstance(head, dict)):
        return base, head
    before: dict[Any, Any] = {}
    after: dict[Any, Any] = {}
    for key in [*base, *(k for k in head if k not in base)]:
        if key not in head:
            before[key] = base[key]
        elif key not in base:
            after[key] = head[key]
        elif not same(base[key], head[key]):
            b, a = prune(base[key], head[key])
            # A parent whose keys all moved to one side shows as a bare `key:` line.
            before[key] = _EMPTIED if b == {} and base[key] else b
            after[key] = _EMPTIED if a == {} and head[key] else a
    return before, after


def _lines(document: Any) -> list[str]:
    if document == {}:
        return []
    lines = dump(document).splitlines()
    return [line.removesuffix(f" {_EMPTIED}") for line in lines]


def with_diffs(plan: Plan, base: Repository, head: Repository) -> Plan:
    """The plan with a values diff for every release that deploys."""
    from bot.core import values  # lazy: rendering needs Jsonnet workers
    from bot.core.jsonnet_pool import default_renderer

    keys = [t.key for t in (*plan.support, *plan.hubs)]
    sources = {
        (side, key): _sources(repo, key)
        for key in keys
        for side, repo in (("base", base), ("head", head))
    }
    renderer = default_renderer()
    values.prefetch(renderer, [s for s in sources.values() if s is not None])

    def effective(side: str, repo: Repository, key: TargetKey) -> tuple[Any, str | None]:
        found = sources[(side, key)]
        if found is None:
            return None, None
        result = values.build(repo, found, renderer=renderer)
        if not result.complete:
            return None, "values could not be computed (see the findings)"
        return redact_credentials(result.values, repo.settings.secret_keys), None

    diffs = {}
    for key in keys:
        head_values, head_problem = effective("head", head, key)
        encrypted = _encrypted_changes(base, head, key)
        if head_values is None:
            diffs[key] = TargetDiff("", encrypted, head_problem or "no values at head")
            continue
        base_values, base_problem = effective("base", base, key)
        if base_values is None:
            note = base_problem or "new release: no values at base"
            diffs[key] = TargetDiff(unified({}, head_values), encrypted, note)
        else:
            diffs[key] = TargetDiff(unified(base_values, head_values), encrypted)
    return replace(plan, diffs=diffs)


def _sources(repo: Repository, key: TargetKey) -> Sources | None:
    """The files of one release of `repo`, or None when the release is not there."""
    from bot.core import values

    cluster = repo.clusters.get(key[0])
    if cluster is None:
        return None
    if key[1] is None:
        if cluster.support_values_files is None:
            return None
        return values.support_sources(repo, cluster)
    hub = cluster.hub(key[1])
    return None if hub is None else values.hub_sources(repo, hub)


def _secret_files(cluster: Cluster | None, hub: str | None) -> Mapping[str, str]:
    """Secret values files of a release: repository path -> name as written."""
    if cluster is None:
        return {}
    files: Sequence[str]
    if hub is None:
        files = cluster.support_values_files or ()
    else:
        found = cluster.hub(hub)
        files = found.values_files if found is not None else ()
    return {cluster.file_path(f): f for f in files if is_secret_path(f)}


def _encrypted_changes(base: Repository, head: Repository, key: TargetKey) -> tuple[str, ...]:
    """Secret files of a release that were added or whose ciphertext changed (never read)."""
    before = _secret_files(base.clusters.get(key[0]), key[1])
    after = _secret_files(head.clusters.get(key[0]), key[1])
    before_blobs = {base.snapshot.blob_id(p) for p in before if base.snapshot.exists(p)}
    return tuple(
        rel
        for path, rel in after.items()
        if head.snapshot.exists(path) and head.snapshot.blob_id(path) not in before_blobs
    )
