"""Effective values and their diff, per release, between a base and a head repository.

A release's effective values are its merged non-secret values, as helm would see them
with the secret files left out (`bot.core.values`). The diff is a unified diff of
stable YAML dumps (keys sorted). Secret files are never read: a changed one is
reported only by name, as "encrypted file changed".
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from bot.core.model import Cluster, Repository, is_secret_path
from bot.core.planner import Plan, TargetKey

try:  # libyaml's emitter is several times faster; fall back for a source build
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

CONTEXT_LINES = 3


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
    """A unified diff of two values documents ("" when their dumps are equal).

    The headers do not name the release, so that releases with the same change have
    the same diff and the PR body can show it once.
    """
    before, after = dump(base).splitlines(), dump(head).splitlines()
    if before == after:
        return ""
    lines = difflib.unified_diff(before, after, "base", "head", n=CONTEXT_LINES, lineterm="")
    return "\n".join(lines) + "\n"


def with_diffs(plan: Plan, base: Repository, head: Repository) -> Plan:
    """The plan with a values diff for every release that deploys."""
    diffs = {t.key: target_diff(base, head, t.key) for t in (*plan.support, *plan.hubs)}
    return replace(plan, diffs=diffs)


def target_diff(base: Repository, head: Repository, key: TargetKey) -> TargetDiff:
    """The values diff of one release between base and head."""
    encrypted = _encrypted_changes(base, head, key)
    head_values, head_problem = effective_values(head, key)
    if head_values is None:
        return TargetDiff("", encrypted, head_problem or "no values at head")
    base_values, base_problem = effective_values(base, key)
    if base_values is None:
        note = base_problem or "new release: no values at base"
        return TargetDiff(unified({}, head_values), encrypted, note)
    return TargetDiff(unified(base_values, head_values), encrypted)


def effective_values(repo: Repository, key: TargetKey) -> tuple[Any, str | None]:
    """A release's merged non-secret values, or None and why they could not be computed."""
    from bot.core import values  # lazy: rendering needs Jsonnet

    cluster = repo.clusters.get(key[0])
    if cluster is None:
        return None, None
    if key[1] is None:
        if cluster.support_values_files is None:
            return None, None
        result = values.support_values(repo, cluster)
    else:
        hub = cluster.hub(key[1])
        if hub is None:
            return None, None
        result = values.hub_values(repo, hub)
    if any(f.is_error for f in result.findings):
        return None, "values could not be computed (see the findings)"
    return result.values, None


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
