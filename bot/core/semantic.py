"""Semantic mode: plan by comparing two snapshots, not by file names.

A release deploys when something it is built from changed in meaning:

- a values file's parsed content (a comment or formatting change is not a change);
- its entry in cluster.yaml, or the cluster-level keys of cluster.yaml;
- a file of its chart or of a chart it depends on (`Chart.yaml` dependencies);
- a redeploy-all path (hubs only), or a label.

Files are compared by blob id first, so only changed files are ever read. A release
whose inputs were touched only cosmetically (comments, formatting, a rename with
identical content) is listed under `skipped` with the reason, when the
`skip_unchanged_values` setting is on; with it off, such a release deploys.
A release present at base and gone at head is listed under `removed`: hubbot never
uninstalls. The settings come from the base snapshot, so a PR is judged by the rules
already merged.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from bot.core import filecache
from bot.core.findings import sort_findings
from bot.core.model import CLUSTER_FILE, Cluster, Repository, is_secret_path, load_repository
from bot.core.planner import Plan, Reasons, TargetKey, file_reason, finish_plan, summarize
from bot.core.planner import with_findings as _with_findings
from bot.core.settings import SETTINGS_PATH, Settings, parse_settings
from bot.core.snapshot import Snapshot, resolve_link
from bot.core.yamlload import YamlProblem, load_yaml

Change = Literal["same", "cosmetic", "changed", "missing"]

_DATA_SUFFIXES = (".yaml", ".yml", ".json")
# Chart files whose meaning is their parsed data; templates are compared byte for byte.
_CHART_DATA_FILES = frozenset(
    {"Chart.yaml", "values.yaml", "values.schema.yaml", "values.schema.json"}
)
_UNPARSEABLE = object()


def changed_paths(base: Snapshot, head: Snapshot) -> list[str]:
    """Paths added, deleted or modified between two snapshots (by blob id and mode)."""
    out = []
    for path in sorted(set(base.paths()) | set(head.paths())):
        if not (base.exists(path) and head.exists(path)):
            out.append(path)
        elif base.blob_id(path) != head.blob_id(path):
            out.append(path)
        elif base.is_symlink(path) != head.is_symlink(path):
            out.append(path)
    return out


def plan_snapshots(
    base: Snapshot,
    head: Snapshot,
    settings: Settings,
    labels: Collection[str] = (),
    *,
    validate: bool = True,
    diffs: bool = False,
) -> Plan:
    """Semantic mode: what deploys when `base` becomes `head` (settings from the base).

    With `diffs`, each release that deploys carries the diff of its effective values.
    """
    base_repo = load_repository(base, settings)
    head_repo = load_repository(head, settings)
    changed = changed_paths(base, head)
    plan = plan_repositories(base_repo, head_repo, changed, labels, validate=validate)
    if diffs:
        from bot.core.diff import with_diffs  # lazy: diffs render values with Jsonnet

        plan = with_diffs(plan, base_repo, head_repo)
    return with_proposed_settings(plan, head, changed) if validate else plan


def with_proposed_settings(plan: Plan, head: Snapshot, changed: Collection[str]) -> Plan:
    """Check a `hubbot.yaml` the change proposes, without applying it.

    The plan always follows the base's settings (a change must not alter the rules it is
    judged by), but a broken proposal must fail now, not on every PR after its merge.
    """
    if SETTINGS_PATH not in changed or not head.exists(SETTINGS_PATH):
        return plan
    _, problems = parse_settings(head.read(SETTINGS_PATH))
    note = (
        f"This change edits {SETTINGS_PATH}: it was checked, but this plan follows the "
        "settings already merged; the new ones apply once this change is merged."
    )
    return replace(
        plan,
        findings=tuple(sort_findings([*plan.findings, *problems])),
        notes=(*plan.notes, note),
    )


def plan_repositories(
    base_repo: Repository,
    head_repo: Repository,
    changed: Sequence[str],
    labels: Collection[str] = (),
    *,
    validate: bool = True,
) -> Plan:
    """Semantic mode on loaded repositories and the paths that differ between them."""
    relevant = [p for p in changed if not head_repo.settings.is_ignored(p)]
    for snapshot in (base_repo.snapshot, head_repo.snapshot):
        prefetch = getattr(snapshot, "prefetch", None)
        if prefetch is not None:
            prefetch([p for p in relevant if snapshot.exists(p)])
    reasons = _Comparison(base_repo, head_repo, relevant).reasons()
    plan = finish_plan(
        head_repo, reasons, labels, base=base_repo.snapshot.sha, head=head_repo.snapshot.sha
    )
    return _with_findings(plan, head_repo, relevant) if validate else plan


def canonical(value: Any) -> Any:
    """A hashable form of plain data in which `1`, `1.0` and `true` stay different."""
    if isinstance(value, dict):
        return ("map", frozenset((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("seq", tuple(canonical(v) for v in value))
    return (type(value).__name__, repr(value))


def changed_keys(
    base: Mapping[str, Any], head: Mapping[str, Any], *, skip: Collection[str]
) -> list[str]:
    """Top-level keys whose values differ between two mappings, ignoring `skip`."""
    keys = (set(base) | set(head)) - set(skip)
    return sorted(
        str(k)
        for k in keys
        if canonical(base.get(k, _UNPARSEABLE)) != canonical(head.get(k, _UNPARSEABLE))
    )


class _Comparison:
    """One base/head comparison, with per-file and per-chart results cached."""

    def __init__(self, base: Repository, head: Repository, changed: Sequence[str]):
        self.base = base
        self.head = head
        self.settings = head.settings
        self.changed = frozenset(changed)
        self.out = Reasons()
        self._data: dict[str, Any] = {}  # blob id -> canonical data: blobs never change meaning
        self._charts: dict[str, tuple[list[str], list[str]]] = {}

    def reasons(self) -> Reasons:
        """Compare every release of head with its base, and list the removed ones."""
        redeploy_all = [p for p in sorted(self.changed) if self.settings.redeploys_all(p)]
        for cluster in self.head.clusters.values():
            self._cluster(cluster, redeploy_all)
        for name, cluster in self.base.clusters.items():
            head_cluster = self.head.clusters.get(name)
            if head_cluster is None and self.head.snapshot.exists(cluster.path):
                # A cluster.yaml that no longer loads is a finding, not a removal.
                self.out.notes.append(
                    f"{cluster.path} does not load at head: its releases cannot be planned"
                )
                continue
            for hub in cluster.hubs:
                if head_cluster is None or head_cluster.hub(hub.name) is None:
                    self.out.removed.add((name, hub.name))
            has_support = head_cluster is not None and head_cluster.support_values_files is not None
            if cluster.support_values_files is not None and not has_support:
                self.out.removed.add((name, None))
        if self.out.removed:
            self.out.notes.append(
                "hubbot never uninstalls: releases listed as removed stay installed "
                "until someone removes them"
            )
        return self.out

    # -- files ---------------------------------------------------------------------------

    def file_change(self, base_path: str | None, head_path: str | None) -> Change:
        """How a file read by a release changed, following symlinks inside the snapshot."""
        bpath = self._resolve(self.base.snapshot, base_path)
        hpath = self._resolve(self.head.snapshot, head_path)
        if hpath is None:
            return "same" if bpath is None else "missing"
        if bpath is None:
            return "changed"
        if (
            bpath == hpath
            and bpath not in self.changed
            and (base_path, head_path) == (bpath, hpath)
        ):
            return "same"
        bid, hid = self.base.snapshot.blob_id(bpath), self.head.snapshot.blob_id(hpath)
        if bid == hid:
            return "same"
        if not self._is_data(hpath) or not self._is_data(bpath):
            return "changed"
        bdata = self._parsed(self.base.snapshot, bpath, bid)
        hdata = self._parsed(self.head.snapshot, hpath, hid)
        if bdata is _UNPARSEABLE or hdata is _UNPARSEABLE or bdata != hdata:
            return "changed"
        return "cosmetic"

    @staticmethod
    def _resolve(snapshot: Snapshot, path: str | None) -> str | None:
        if path is None or not snapshot.exists(path):
            return None
        return resolve_link(snapshot, path) if snapshot.is_symlink(path) else path

    def _is_data(self, path: str) -> bool:
        if is_secret_path(path) or not path.endswith(_DATA_SUFFIXES):
            return False
        prefix = self.settings.charts_dir + "/"
        return not path.startswith(prefix) or posixpath.basename(path) in _CHART_DATA_FILES

    def _parsed(self, snapshot: Snapshot, path: str, blob: str) -> Any:
        if blob not in self._data:
            try:
                # YAML files through the shared cache (validation parses them too); JSON
                # is compared as YAML reads it, as it always was.
                loaded = (
                    load_yaml(snapshot.read(path))
                    if path.endswith(".json")
                    else filecache.parse(snapshot, path)
                )
                self._data[blob] = canonical(loaded.data)
            except YamlProblem:
                self._data[blob] = _UNPARSEABLE
        return self._data[blob]

    def _cosmetic(self, key: TargetKey, reason: str) -> None:
        if self.settings.skip_unchanged_values:
            self.out.skip_for(key, f"{reason} changed only in comments or formatting")
        else:
            self.out.add(key, f"{reason} changed (comments or formatting only)")

    # -- releases ------------------------------------------------------------------------

    def _cluster(self, cluster: Cluster, redeploy_all: Sequence[str]) -> None:
        base = self.base.clusters.get(cluster.name)
        support: TargetKey = (cluster.name, None)
        if base is None:
            # A cluster.yaml that did not load at base is compared with nothing, too.
            broken = self.base.snapshot.exists(cluster.path)
            reason = f"{CLUSTER_FILE} did not load at base" if broken else "new cluster"
            for hub in cluster.hubs:
                self.out.add((cluster.name, hub.name), reason)
            if cluster.support_values_files is not None:
                self.out.add(support, reason)
            return
        everyone = self._cluster_level(base, cluster)
        for hub in cluster.hubs:
            key = (cluster.name, hub.name)
            for reason in everyone:
                self.out.add(key, reason)
            for path in redeploy_all:
                self.out.add(key, f"{path} changed (redeploys every hub)")
            self._hub(base, cluster, hub.name)
        if cluster.support_values_files is not None:
            for reason in everyone:
                self.out.add(support, reason)
            self._support(base, cluster)

    def _cluster_level(self, base: Cluster, head: Cluster) -> list[str]:
        """Reasons that redeploy every release of the cluster (cluster.yaml itself)."""
        change = self.file_change(base.path, head.path)
        if change == "same":
            return []
        if self.settings.cluster_file_changes == "all-hubs":
            return [f"{CLUSTER_FILE} changed"]
        keys = changed_keys(base.data, head.data, skip=("hubs", "support"))
        if keys:
            return [f"{CLUSTER_FILE}: cluster settings changed ({summarize(keys)})"]
        if change == "cosmetic":
            for hub in head.hubs:
                self.out.skip_for(
                    (head.name, hub.name), f"{CLUSTER_FILE} changed only in comments or formatting"
                )
            if head.support_values_files is not None:
                self.out.skip_for(
                    (head.name, None), f"{CLUSTER_FILE} changed only in comments or formatting"
                )
        return []

    def _hub(self, base_cluster: Cluster, cluster: Cluster, name: str) -> None:
        key = (cluster.name, name)
        hub, base = cluster.hub(name), base_cluster.hub(name)
        assert hub is not None
        if base is None:
            self.out.add(key, "new hub")
            return
        keys = changed_keys(base.entry, hub.entry, skip=("helm_chart_values_files",))
        if keys:
            self.out.add(key, f"{CLUSTER_FILE}: hub entry changed ({summarize(keys)})")
        self._values_files(key, base_cluster, base.values_files, cluster, hub.values_files)
        if base.chart_override or hub.chart_override:
            bpath = base_cluster.file_path(base.chart_override) if base.chart_override else None
            hpath = cluster.file_path(hub.chart_override) if hub.chart_override else None
            change = self.file_change(bpath, hpath)
            what = f"chart override {hub.chart_override or base.chart_override}"
            if change == "cosmetic":
                self._cosmetic(key, what)
            elif change != "same":
                self.out.add(key, f"{what} changed")
        self._charts_of(key, hub.chart)

    def _support(self, base_cluster: Cluster, cluster: Cluster) -> None:
        key: TargetKey = (cluster.name, None)
        if base_cluster.support_values_files is None:
            self.out.add(key, "support release added")
            return
        base_block = base_cluster.data.get("support")
        head_block = cluster.data.get("support")
        if isinstance(base_block, dict) and isinstance(head_block, dict):
            keys = changed_keys(base_block, head_block, skip=("helm_chart_values_files",))
            if keys:
                self.out.add(key, f"{CLUSTER_FILE}: support settings changed ({summarize(keys)})")
        self._values_files(
            key,
            base_cluster,
            base_cluster.support_values_files,
            cluster,
            cluster.support_values_files or (),
        )
        self._charts_of(key, self.settings.support_chart)

    def _values_files(
        self,
        key: TargetKey,
        base_cluster: Cluster,
        base_files: Sequence[str],
        cluster: Cluster,
        files: Sequence[str],
    ) -> None:
        """Compare a release's values files in order; a rename with equal content is no change."""
        bpaths = [base_cluster.file_path(f) for f in base_files]
        hpaths = [cluster.file_path(f) for f in files]
        if len(bpaths) == len(hpaths) and set(bpaths) != set(hpaths):
            self._renamed_files(key, base_files, bpaths, files, hpaths)
            return
        for rel, hpath in zip(files, hpaths, strict=True):
            if hpath not in bpaths:
                self.out.add(key, file_reason(rel, "added"))
            else:
                self._file(key, rel, self.file_change(hpath, hpath))
        for rel, bpath in zip(base_files, bpaths, strict=True):
            if bpath not in hpaths:
                self.out.add(key, file_reason(rel, "no longer used"))
        if set(bpaths) == set(hpaths) and bpaths != hpaths:
            self.out.add(key, "values files reordered")

    def _renamed_files(
        self,
        key: TargetKey,
        base_files: Sequence[str],
        bpaths: Sequence[str],
        files: Sequence[str],
        hpaths: Sequence[str],
    ) -> None:
        """Pair files by position: a renamed file with equal content is not a change."""
        for brel, bpath, rel, hpath in zip(base_files, bpaths, files, hpaths, strict=True):
            change = self.file_change(bpath, hpath)
            if bpath == hpath:
                self._file(key, rel, change)
            elif change == "same":
                self.out.skip_for(key, f"{file_reason(brel, 'renamed')} to {rel}, same content")
            else:
                self._file(key, f"{rel} (was {brel})", change)

    def _file(self, key: TargetKey, rel: str, change: Change) -> None:
        if change == "cosmetic":
            self._cosmetic(key, file_reason(rel, "").rstrip())
        elif change == "missing":
            self.out.add(key, file_reason(rel, "is missing"))
        elif change == "changed":
            self.out.add(key, file_reason(rel))

    def _charts_of(self, key: TargetKey, chart: str) -> None:
        for name in sorted(self.head.chart_closure(chart)):
            changed, cosmetic = self._chart_change(name)
            label = "support chart" if name == self.settings.support_chart else f"chart {name}"
            if changed:
                self.out.add(key, f"{label} changed ({summarize(changed)})")
            for rel in cosmetic:
                self._cosmetic(key, f"{label} {rel}")

    def _chart_change(self, chart: str) -> tuple[list[str], list[str]]:
        """Files of one chart folder that changed in meaning, and those changed cosmetically."""
        if chart not in self._charts:
            folder = f"{self.settings.charts_dir}/{chart}/"
            changed: list[str] = []
            cosmetic: list[str] = []
            for path in sorted(p for p in self.changed if p.startswith(folder)):
                rel = path[len(folder) :]
                change = self.file_change(
                    path if self.base.snapshot.exists(path) else None,
                    path if self.head.snapshot.exists(path) else None,
                )
                if change == "cosmetic":
                    cosmetic.append(rel)
                elif change != "same":
                    changed.append(rel)
            self._charts[chart] = (changed, cosmetic)
        return self._charts[chart]
