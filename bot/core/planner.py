"""The deploy planner: from what changed to which releases deploy, each with its reasons.

Two modes share one assembly step (labels, the staging gate, validation):

- file mode (`plan_files`) follows 2i2c's intended rules on a list of changed paths;
- semantic mode (`bot.core.semantic.plan_snapshots`) compares two snapshots and
  knows more than file names.

Both return a `Plan`, whose `to_json()` is the `hubbot plan --format json` contract.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from bot.core.findings import Finding, has_errors, sort_findings
from bot.core.model import CLUSTER_FILE, Repository, is_secret_path
from bot.core.settings import SETTINGS_PATH, Settings, parse_settings
from bot.core.snapshot import Snapshot, normalize

if TYPE_CHECKING:
    from bot.core.diff import TargetDiff

TargetKey = tuple[str, str | None]  # (cluster, hub), hub None for the support release


@dataclass(frozen=True, slots=True)
class Target:
    """A release that deploys (or is skipped): a hub, or a cluster's support when hub is None."""

    cluster: str
    hub: str | None
    reasons: tuple[str, ...]

    @property
    def key(self) -> TargetKey:
        """`(cluster, hub)`, the target's identity."""
        return (self.cluster, self.hub)

    @property
    def name(self) -> str:
        """`cluster/hub`, or `cluster` for a support release."""
        return self.cluster if self.hub is None else f"{self.cluster}/{self.hub}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: support targets have no `hub` key, hub targets do."""
        if self.hub is None:
            return {"cluster": self.cluster, "reasons": list(self.reasons)}
        return {"cluster": self.cluster, "hub": self.hub, "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Plan:
    """What a change deploys: targets with reasons, findings, and per-target values diffs.

    `skipped` holds releases the change touched that do not deploy: a skip label, or
    (semantic mode) inputs changed only in comments or formatting. `removed` holds
    releases present at base and gone at head; hubbot never uninstalls them.
    """

    base: str | None
    head: str | None
    findings: tuple[Finding, ...]
    support: tuple[Target, ...]
    staging: tuple[Target, ...]
    prod: tuple[Target, ...]
    skipped: tuple[Target, ...] = ()
    removed: tuple[TargetKey, ...] = ()
    diffs: Mapping[TargetKey, TargetDiff] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # plain-language remarks for people, not part of the JSON

    def to_json(self) -> dict[str, Any]:
        """Exactly the `hubbot plan --format json` contract."""
        return {
            "base": self.base,
            "head": self.head,
            "findings": [f.to_dict() for f in self.findings],
            "support": [t.to_dict() for t in self.support],
            "staging": [t.to_dict() for t in self.staging],
            "prod": [t.to_dict() for t in self.prod],
            "skipped": [_skipped_dict(t) for t in self.skipped],
            "removed": [{"cluster": c, "hub": h} for c, h in self.removed],
        }

    @property
    def hubs(self) -> tuple[Target, ...]:
        """Hub targets that deploy, staging first."""
        return self.staging + self.prod

    def hub_keys(self, which: Literal["staging", "prod", "skipped", "all"] = "all") -> set[str]:
        """`cluster/hub` names of the hub targets in one list (`all`: staging and prod)."""
        targets = self.hubs if which == "all" else getattr(self, which)
        return {t.name for t in targets if t.hub is not None}

    @property
    def support_clusters(self) -> set[str]:
        """Clusters whose support release deploys."""
        return {t.cluster for t in self.support}

    @property
    def is_empty(self) -> bool:
        """Whether nothing deploys."""
        return not (self.support or self.staging or self.prod)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The error findings."""
        return tuple(f for f in self.findings if f.is_error)

    @property
    def blocked(self) -> bool:
        """Whether errors block this deploy."""
        return has_errors(self.findings)


def _skipped_dict(target: Target) -> dict[str, Any]:
    return {"cluster": target.cluster, "hub": target.hub, "reasons": list(target.reasons)}


@dataclass(slots=True)
class Reasons:
    """Reasons collected per release while planning; the planner's scratch pad."""

    deploy: dict[TargetKey, list[str]] = field(default_factory=dict)
    skip: dict[TargetKey, list[str]] = field(default_factory=dict)
    removed: set[TargetKey] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def add(self, key: TargetKey, reason: str) -> None:
        """Deploy `key` for `reason` (repeated reasons are kept once)."""
        reasons = self.deploy.setdefault(key, [])
        if reason not in reasons:
            reasons.append(reason)

    def skip_for(self, key: TargetKey, reason: str) -> None:
        """Record that `key` was touched but does not deploy, and why."""
        reasons = self.skip.setdefault(key, [])
        if reason not in reasons:
            reasons.append(reason)


def settings_of(snapshot: Snapshot) -> tuple[Settings, list[Finding]]:
    """The settings in a snapshot's hubbot.yaml (defaults when absent) and their findings."""
    data = snapshot.read(SETTINGS_PATH) if snapshot.exists(SETTINGS_PATH) else None
    return parse_settings(data)


def plan_files(
    repo: Repository,
    changed: Sequence[str],
    labels: Collection[str] = (),
    *,
    validate: bool = True,
) -> Plan:
    """File mode: the targets of a change given as changed paths (deleted paths allowed)."""
    settings = repo.settings
    paths = sorted({normalize(p) for p in changed if p.strip()})
    relevant = [p for p in paths if not settings.is_ignored(p)]
    reasons = Reasons()
    usage = _file_usage(repo)
    chart_files: dict[str, list[str]] = {}
    for path in relevant:
        chart = _chart_of(repo, path)
        if chart is not None:
            chart_files.setdefault(chart, []).append(path)
        elif settings.redeploys_all(path):
            for hub in repo.hubs():
                reasons.add((hub.cluster, hub.name), f"{path} changed (redeploys every hub)")
        elif posixpath.basename(path) == CLUSTER_FILE and _cluster_of(repo, path) is not None:
            _cluster_file_changed(repo, path, reasons)
        for key, reason in usage.get(path, ()):
            reasons.add(key, reason)
    for chart, files in sorted(chart_files.items()):
        _chart_changed(repo, chart, files, reasons)
    plan = finish_plan(repo, reasons, labels, base=None, head=repo.snapshot.sha)
    if validate:
        plan = with_findings(plan, repo, relevant)
    return plan


def _file_usage(repo: Repository) -> dict[str, list[tuple[TargetKey, str]]]:
    """Each file a release reads from its cluster folder, mapped to (release, reason)."""
    usage: dict[str, list[tuple[TargetKey, str]]] = {}
    for cluster in repo.clusters.values():
        for hub in cluster.hubs:
            for rel in hub.values_files:
                path = cluster.file_path(rel)
                usage.setdefault(path, []).append(((cluster.name, hub.name), file_reason(rel)))
            if hub.chart_override:
                path = cluster.file_path(hub.chart_override)
                reason = f"chart override {hub.chart_override} changed"
                usage.setdefault(path, []).append(((cluster.name, hub.name), reason))
        for rel in cluster.support_values_files or ():
            path = cluster.file_path(rel)
            usage.setdefault(path, []).append(((cluster.name, None), file_reason(rel)))
    return usage


def file_reason(rel: str, what: str = "changed") -> str:
    """The reason for a changed values file; secret files say only that they changed."""
    if is_secret_path(rel):
        return f"encrypted file {rel} {what}"
    return f"values file {rel} {what}"


def _chart_of(repo: Repository, path: str) -> str | None:
    """The chart a path belongs to: a folder of the charts folder that is a chart or is used."""
    prefix = repo.settings.charts_dir + "/"
    if not path.startswith(prefix):
        return None
    name, sep, _ = path[len(prefix) :].partition("/")
    if not sep:
        return None
    used = name in repo.charts or name == repo.settings.support_chart
    return name if used or any(h.chart == name for h in repo.hubs()) else None


def _cluster_of(repo: Repository, path: str) -> str | None:
    prefix = repo.settings.clusters_dir + "/"
    if not path.startswith(prefix):
        return None
    name, _, rest = path[len(prefix) :].partition("/")
    return name if rest == CLUSTER_FILE else None


def _cluster_file_changed(repo: Repository, path: str, reasons: Reasons) -> None:
    name = _cluster_of(repo, path)
    assert name is not None
    cluster = repo.clusters.get(name)
    if cluster is None:
        if not repo.snapshot.exists(path):
            reasons.notes.append(
                f"{path} was deleted: hubbot never uninstalls releases, remove them by hand"
            )
        return  # a cluster.yaml that does not load is a validation finding
    for hub in cluster.hubs:
        reasons.add((name, hub.name), f"{CLUSTER_FILE} changed")
    if cluster.support_values_files is not None:
        reasons.add((name, None), f"{CLUSTER_FILE} changed")


def _chart_changed(repo: Repository, chart: str, files: Sequence[str], reasons: Reasons) -> None:
    folder = f"{repo.settings.charts_dir}/{chart}/"
    what = summarize([f[len(folder) :] for f in files])
    if chart == repo.settings.support_chart:
        for cluster in repo.clusters.values():
            if cluster.support_values_files is not None:
                reasons.add((cluster.name, None), f"support chart changed ({what})")
        return
    for hub in repo.hubs():
        reasons.add((hub.cluster, hub.name), f"chart {chart} changed ({what})")


def summarize(items: Sequence[str], limit: int = 3) -> str:
    """`a, b, c +2 more`: a short list for a reason."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} +{len(items) - limit} more"


def finish_plan(
    repo: Repository,
    reasons: Reasons,
    labels: Collection[str],
    *,
    base: str | None,
    head: str | None,
) -> Plan:
    """Apply labels and the staging gate to collected reasons, and sort into a Plan."""
    names = repo.settings.labels
    label_set = set(labels)
    if names.deploy_all_hubs in label_set:
        for hub in repo.hubs():
            reasons.add((hub.cluster, hub.name), f"label {names.deploy_all_hubs}")
    if names.deploy_all_support in label_set:
        for cluster in repo.clusters.values():
            if cluster.support_values_files is not None:
                reasons.add((cluster.name, None), f"label {names.deploy_all_support}")
    _staging_gate(repo, reasons)
    if names.skip_deploy in label_set:
        _skip_all(reasons, f"label {names.skip_deploy}", hubs_only=False)
    elif names.skip_deploy_hubs in label_set:
        _skip_all(reasons, f"label {names.skip_deploy_hubs}", hubs_only=True)
    deploy = [Target(c, h, tuple(r)) for (c, h), r in reasons.deploy.items()]
    staging = [t for t in deploy if t.hub is not None and repo.settings.is_staging(t.hub)]
    prod = [t for t in deploy if t.hub is not None and not repo.settings.is_staging(t.hub)]
    skipped = [
        Target(c, h, tuple(r)) for (c, h), r in reasons.skip.items() if (c, h) not in reasons.deploy
    ]
    return Plan(
        base=base,
        head=head,
        findings=tuple(repo.findings),
        support=_sorted(t for t in deploy if t.hub is None),
        staging=_sorted(staging),
        prod=_sorted(prod),
        skipped=_sorted(skipped),
        removed=tuple(sorted(reasons.removed, key=_order)),
        notes=tuple(reasons.notes),
    )


def _staging_gate(repo: Repository, reasons: Reasons) -> None:
    """A cluster with prod hubs deploying and no staging hub deploying gets all its staging hubs."""
    is_staging = repo.settings.is_staging
    for cluster in repo.clusters.values():
        targets = [h for h in cluster.hubs if (cluster.name, h.name) in reasons.deploy]
        prod = [h.name for h in targets if not is_staging(h.name)]
        if not prod or any(is_staging(h.name) for h in targets):
            continue
        staging = [h for h in cluster.hubs if is_staging(h.name)]
        if not staging:
            reasons.notes.append(
                f"cluster {cluster.name} has no staging hub: its prod hubs deploy ungated"
            )
        for hub in staging:
            reasons.add(
                (cluster.name, hub.name), f"staging gate: prod hubs deploy ({summarize(prod)})"
            )


def _skip_all(reasons: Reasons, reason: str, *, hubs_only: bool) -> None:
    for key in list(reasons.deploy):
        if hubs_only and key[1] is None:
            continue
        for r in reasons.deploy.pop(key):
            reasons.skip_for(key, r)
        reasons.skip_for(key, reason)


def _order(key: TargetKey) -> tuple[str, str]:
    return (key[0], key[1] or "")


def _sorted(targets: Iterable[Target]) -> tuple[Target, ...]:
    return tuple(sorted(targets, key=lambda t: _order(t.key)))


def with_findings(plan: Plan, repo: Repository, changed: Iterable[str]) -> Plan:
    """The plan with validation findings for its releases and changed paths added."""
    from bot.core.jsonnet_pool import default_renderer
    from bot.core.values import Scope, prefetch, release_sources

    scope = Scope(
        hubs=frozenset(plan.hub_keys("all") | plan.hub_keys("skipped")),
        support=frozenset(plan.support_clusters | {t.cluster for t in plan.skipped if not t.hub}),
        paths=frozenset(changed),
    )
    renderer = default_renderer()
    prefetch(renderer, release_sources(repo, scope))
    from bot.core.validate import validate  # jsonschema imports while Jsonnet renders

    findings = sort_findings([*plan.findings, *validate(repo, scope, renderer=renderer)])
    return replace(plan, findings=tuple(findings))
