"""The repository model: clusters, hubs, support releases and charts, read from a snapshot.

Loading is tolerant: a broken file becomes a finding and the rest still loads, so
one bad cluster.yaml never hides the problems of the others. Schema and
cross-file checks live in `validate`; this module only reads structure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core import filecache
from bot.core.findings import Finding, error
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.core.yamlload import Loaded, YamlProblem

CLUSTER_FILE = "cluster.yaml"


def is_secret_path(path: str) -> bool:
    """Whether a file is sops-encrypted by naming convention (its name contains `secret`)."""
    return "secret" in posixpath.basename(path)


@dataclass(frozen=True, slots=True)
class Hub:
    """One hub: a Helm release of a chart, configured by values files."""

    cluster: str
    name: str
    chart: str
    values_files: tuple[str, ...]  # as written, relative to the cluster folder
    domain: str | None
    display_name: str | None
    chart_override: str | None  # a replacement Chart.yaml in the cluster folder, as written
    index: int  # position in the cluster's hubs list
    line: int | None  # line of the entry in cluster.yaml
    entry: Mapping[str, Any]  # the raw entry, for semantic comparison

    @property
    def key(self) -> str:
        """`cluster/hub`, the hub's name across the repository."""
        return f"{self.cluster}/{self.name}"


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster: its folder, cluster.yaml data, support release and hubs."""

    name: str  # the folder name, which 2i2c's deployer takes as the cluster's name
    folder: str  # repository-relative folder
    data: Mapping[str, Any]
    loaded: Loaded
    hubs: tuple[Hub, ...]
    support_values_files: tuple[str, ...] | None  # None: the cluster has no support release

    @property
    def path(self) -> str:
        """The cluster.yaml path."""
        return f"{self.folder}/{CLUSTER_FILE}"

    @property
    def provider(self) -> str | None:
        """The cluster's provider (`aws`, `gcp`, ...)."""
        value = self.data.get("provider")
        return value if isinstance(value, str) else None

    def file_path(self, relative: str) -> str:
        """A repository path for a file named relative to the cluster folder (normalized)."""
        return posixpath.normpath(posixpath.join(self.folder, relative))

    def hub(self, name: str) -> Hub | None:
        """The hub of that exact name, if any."""
        return next((h for h in self.hubs if h.name == name), None)


@dataclass(frozen=True, slots=True)
class Chart:
    """A Helm chart folder of the repository."""

    name: str
    folder: str
    dependencies: tuple[str, ...]  # local charts this one depends on (file://../<name>)
    loaded: Loaded | None  # Chart.yaml


@dataclass(slots=True)
class Repository:
    """Everything hubbot knows about one snapshot, plus the findings met while loading."""

    settings: Settings
    snapshot: Snapshot
    clusters: dict[str, Cluster] = field(default_factory=dict)
    charts: dict[str, Chart] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def hubs(self) -> Iterator[Hub]:
        """Every hub, cluster by cluster, in file order."""
        for cluster in self.clusters.values():
            yield from cluster.hubs

    def hub(self, key: str) -> Hub | None:
        """The hub named `cluster/hub`."""
        cluster_name, _, hub_name = key.partition("/")
        cluster = self.clusters.get(cluster_name)
        return cluster.hub(hub_name) if cluster else None

    def chart_closure(self, chart: str) -> set[str]:
        """`chart` and every local chart it depends on, transitively."""
        seen: set[str] = set()
        todo = [chart]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.charts:
                todo.extend(self.charts[name].dependencies)
        return seen


def load_repository(snapshot: Snapshot, settings: Settings) -> Repository:
    """Read clusters and charts from `snapshot`; problems become findings."""
    repo = Repository(settings=settings, snapshot=snapshot)
    for path in snapshot.under(settings.charts_dir):
        rel = path[len(settings.charts_dir) + 1 :]
        parts = rel.split("/")
        if len(parts) == 2 and parts[1] == "Chart.yaml":
            chart = _load_chart(snapshot, parts[0], path, repo.findings)
            repo.charts[chart.name] = chart
    for path in snapshot.under(settings.clusters_dir):
        rel = path[len(settings.clusters_dir) + 1 :]
        parts = rel.split("/")
        if len(parts) != 2 or parts[1] != CLUSTER_FILE or settings.is_ignored(path):
            continue
        cluster = _load_cluster(snapshot, parts[0], path, repo.findings)
        if cluster is not None:
            repo.clusters[cluster.name] = cluster
    return repo


def load_file(snapshot: Snapshot, path: str, findings: list[Finding]) -> Loaded | None:
    """Load a YAML file of the snapshot (parsed once per content); a problem: finding and None."""
    try:
        return filecache.parse(snapshot, path)
    except KeyError:
        findings.append(error(path, None, "missing-file", "file does not exist"))
    except YamlProblem as exc:
        findings.append(error(path, exc.line, exc.rule, exc.message))
    return None


def _load_chart(snapshot: Snapshot, name: str, path: str, findings: list[Finding]) -> Chart:
    folder = posixpath.dirname(path)
    loaded = load_file(snapshot, path, findings)
    deps: list[str] = []
    data = loaded.data if loaded is not None else None
    if isinstance(data, dict):
        for dep in data.get("dependencies") or []:
            if not isinstance(dep, dict):
                continue
            repository = dep.get("repository")
            if isinstance(repository, str) and repository.startswith("file://"):
                target = posixpath.normpath(posixpath.join(folder, repository[len("file://") :]))
                deps.append(posixpath.basename(target))
    return Chart(name=name, folder=folder, dependencies=tuple(deps), loaded=loaded)


def _load_cluster(
    snapshot: Snapshot, name: str, path: str, findings: list[Finding]
) -> Cluster | None:
    loaded = load_file(snapshot, path, findings)
    if loaded is None:
        return None
    data = loaded.data
    if not isinstance(data, dict):
        findings.append(
            error(path, loaded.line_of(()), "cluster-schema", "cluster.yaml must be a mapping")
        )
        return None
    hubs = []
    raw_hubs = data.get("hubs")
    for i, entry in enumerate(raw_hubs if isinstance(raw_hubs, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue  # the schema check reports it at its line
        hubs.append(
            Hub(
                cluster=name,
                name=entry["name"],
                chart=_str(entry.get("helm_chart")) or "",
                values_files=_str_list(entry.get("helm_chart_values_files")),
                domain=_str(entry.get("domain")),
                display_name=_str(entry.get("display_name")),
                chart_override=_str(entry.get("chart_override")),
                index=i,
                line=loaded.line_of(("hubs", i)),
                entry=entry,
            )
        )
    support = data.get("support")
    support_files = (
        _str_list(support.get("helm_chart_values_files")) if isinstance(support, dict) else None
    )
    return Cluster(
        name=name,
        folder=posixpath.dirname(path),
        data=data,
        loaded=loaded,
        hubs=tuple(hubs),
        support_values_files=support_files,
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))
