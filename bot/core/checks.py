"""Checks of cluster.yaml files: the schema, and what must agree across files.

- every cluster.yaml against `schemas/cluster.schema.json` (every hub, not just the first);
- hub names unique within a cluster, domains unique across the repository;
- a cluster's `name` equal to its folder name (a warning: 2i2c's deployer names a
  cluster by its folder, while Jsonnet and people read `name`);
- files named in cluster.yaml outside the values lists (`chart_override`, and the
  provider's credentials file: `gcp.key`, `aws.key`, `azure.key`, `kubeconfig.file`)
  exist and stay inside the cluster folder;
- a values file in a cluster folder that cluster.yaml never names is a warning;
- each chart's Chart.yaml names itself and a version, and its `file://` dependencies
  exist in the repository without a cycle (helm could not build the chart otherwise).
  "Values file" means a name ending in `.values.yaml`/`.yml`/`.json`/`.jsonnet`:
  2i2c also keeps `enc-grafana-token.secret.yaml` (read by its deployer, not by helm)
  and READMEs there, which are not values files and are never reported.
"""

from __future__ import annotations

import functools
import json
import posixpath
from collections.abc import Iterable
from importlib import resources
from typing import Any

from bot.core.findings import Finding, error, warning
from bot.core.model import Cluster, Repository
from bot.core.schemacheck import Problem, findings_at, problems, validator_for
from bot.core.values import resolve_values_file

VALUES_SUFFIXES = (".values.yaml", ".values.yml", ".values.json", ".values.jsonnet")
CREDENTIAL_FILES = (("gcp", "key"), ("aws", "key"), ("azure", "key"), ("kubeconfig", "file"))


@functools.cache
def cluster_schema() -> dict[str, Any]:
    """The JSON schema of cluster.yaml, as shipped in the package."""
    text = resources.files("bot.core").joinpath("schemas/cluster.schema.json").read_text()
    return dict(json.loads(text))


def check_clusters(repo: Repository, clusters: Iterable[str] | None = None) -> list[Finding]:
    """Every cluster-level check, reported for `clusters` (None: all of them)."""
    wanted = set(repo.clusters) if clusters is None else set(clusters)
    findings: list[Finding] = []
    for name in sorted(wanted & set(repo.clusters)):
        cluster = repo.clusters[name]
        findings += schema_findings(cluster)
        findings += duplicate_hub_names(cluster)
        findings += named_files(repo, cluster)
        findings += unreferenced_values_files(repo, cluster)
        declared = cluster.data.get("name")
        if isinstance(declared, str) and declared != cluster.name:
            findings.append(
                warning(
                    cluster.path,
                    cluster.loaded.line_of(("name",)),
                    "cluster-name",
                    f"name {declared!r} differs from the folder name {cluster.name!r}; "
                    "deploys use the folder name, so make them equal",
                )
            )
    findings += duplicate_domains(repo, wanted)
    return findings


def schema_findings(cluster: Cluster) -> list[Finding]:
    """cluster.yaml against the cluster schema, at the line of each offending value."""

    def locate(problem: Problem) -> tuple[str, int | None]:
        return cluster.path, cluster.loaded.line_of(problem.path)

    found = problems(validator_for(cluster_schema()), cluster.data)
    return findings_at(found, locate, rule="cluster-schema")


def duplicate_hub_names(cluster: Cluster) -> list[Finding]:
    """A hub name used twice in one cluster: an error at each repeat."""
    seen: dict[str, int | None] = {}
    findings = []
    for hub in cluster.hubs:
        line = cluster.loaded.line_of(("hubs", hub.index, "name"))
        if hub.name in seen:
            first = seen[hub.name]
            findings.append(
                error(
                    cluster.path,
                    line,
                    "duplicate-hub",
                    f"hub name {hub.name!r} is already used on line {first}; "
                    "hub names must be unique within a cluster",
                )
            )
        else:
            seen[hub.name] = line
    return findings


def duplicate_domains(repo: Repository, clusters: set[str]) -> list[Finding]:
    """A domain served by two hubs anywhere in the repository: an error at each use."""
    users: dict[str, list[tuple[str, str, int | None]]] = {}
    for hub in repo.hubs():
        if hub.domain:
            cluster = repo.clusters[hub.cluster]
            line = cluster.loaded.line_of(("hubs", hub.index, "domain"))
            users.setdefault(hub.domain.lower().rstrip("."), []).append(
                (hub.key, cluster.path, line)
            )
    findings = []
    for domain, uses in users.items():
        if len(uses) < 2:
            continue
        for key, path, line in uses:
            if key.split("/", 1)[0] not in clusters:
                continue
            others = ", ".join(f"{k} ({p}:{n})" for k, p, n in uses if k != key)
            findings.append(
                error(
                    path,
                    line,
                    "duplicate-domain",
                    f"domain {domain!r} is also used by {others}; each hub needs its own domain",
                )
            )
    return findings


def named_files(repo: Repository, cluster: Cluster) -> list[Finding]:
    """`chart_override` and credentials files named in cluster.yaml exist, inside the folder."""
    findings = []
    for hub in cluster.hubs:
        if hub.chart_override is not None:
            line = cluster.loaded.line_of(("hubs", hub.index, "chart_override"))
            _, problem = resolve_values_file(repo, cluster, hub.chart_override, line=line)
            if problem is not None:
                findings.append(problem)
    for block, key in CREDENTIAL_FILES:
        section = cluster.data.get(block)
        name = section.get(key) if isinstance(section, dict) else None
        if isinstance(name, str) and name:
            line = cluster.loaded.line_of((block, key))
            _, problem = resolve_values_file(repo, cluster, name, line=line)
            if problem is not None:
                findings.append(problem)
    return findings


def referenced_files(repo: Repository, cluster: Cluster) -> set[str]:
    """Repository paths of every file cluster.yaml names (as written and after links)."""
    names: list[str] = list(cluster.support_values_files or ())
    for hub in cluster.hubs:
        names += hub.values_files
        if hub.chart_override:
            names.append(hub.chart_override)
    for block, key in CREDENTIAL_FILES:
        section = cluster.data.get(block)
        if isinstance(section, dict) and isinstance(section.get(key), str):
            names.append(section[key])
    paths = set()
    for name in names:
        paths.add(posixpath.normpath(posixpath.join(cluster.folder, name)))
        resolved, _ = resolve_values_file(repo, cluster, name, line=None)
        if resolved is not None:
            paths.add(resolved)
    return paths


def unreferenced_values_files(repo: Repository, cluster: Cluster) -> list[Finding]:
    """A warning for each values file of the cluster folder that cluster.yaml never names."""
    used = referenced_files(repo, cluster)
    findings = []
    for path in repo.snapshot.under(cluster.folder):
        if path in used or repo.settings.is_ignored(path):
            continue
        if posixpath.basename(path).endswith(VALUES_SUFFIXES):
            findings.append(
                warning(
                    path,
                    None,
                    "unused-values-file",
                    f"no hub or support release in {cluster.path} uses this values file; "
                    "add it to a helm_chart_values_files list, or delete it",
                )
            )
    return findings


def check_charts(repo: Repository) -> list[Finding]:
    """Chart.yaml of every chart: a mapping with name and version; local dependencies exist."""
    findings = []
    for chart in repo.charts.values():
        if chart.loaded is None:
            continue  # the loader already reported why
        path = f"{chart.folder}/Chart.yaml"
        data = chart.loaded.data
        if not isinstance(data, dict):
            findings.append(error(path, 1, "chart", "Chart.yaml must be a mapping"))
            continue
        for key in ("name", "version"):
            if not isinstance(data.get(key), str | int | float) or data.get(key) == "":
                findings.append(
                    error(path, chart.loaded.line_of(()), "chart", f"Chart.yaml must set {key!r}")
                )
        deps = data.get("dependencies") or []
        for i, dep in enumerate(deps if isinstance(deps, list) else []):
            repository = dep.get("repository") if isinstance(dep, dict) else None
            if not isinstance(repository, str) or not repository.startswith("file://"):
                continue
            target = posixpath.normpath(posixpath.join(chart.folder, repository[7:]))
            if not repo.snapshot.exists(f"{target}/Chart.yaml"):
                findings.append(
                    error(
                        path,
                        chart.loaded.line_of(("dependencies", i, "repository")),
                        "chart",
                        f"dependency {repository!r} is not a chart folder of this repository",
                    )
                )
        if chart.name in _reachable(repo, chart.dependencies):
            findings.append(
                error(
                    path,
                    chart.loaded.line_of(("dependencies",)),
                    "chart",
                    "local dependencies form a cycle back to this chart; helm cannot build it",
                )
            )
    return findings


def _reachable(repo: Repository, start: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen and name in repo.charts:
            seen.add(name)
            todo.extend(repo.charts[name].dependencies)
    return seen
