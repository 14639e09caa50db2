"""Effective values of a release, as helm would see them, with the provenance of every key.

Public interface (the planner and `validate` use these):

- `hub_values(repo, hub, *, renderer=None) -> EffectiveValues`
- `support_values(repo, cluster, *, renderer=None) -> EffectiveValues`
- `hub_sources(repo, hub)` / `support_sources(repo, cluster) -> Sources`: the files of a
  release, resolved and checked, without rendering anything; `Sources.jobs` are the
  Jsonnet jobs, which `prefetch(renderer, sources)` starts rendering in the background;
  `build(repo, sources, *, renderer=None)` then makes the `EffectiveValues`.
- `Scope` (hubs as `cluster/hub`, support releases as cluster names, changed paths) and
  `release_sources(repo, scope)`: the sources of every release in scope (None: all).
- `renderer=None` means `jsonnet_pool.default_renderer()`: worker processes that bound
  time, memory and output, shared by the whole process.
- `EffectiveValues`: `values` (the merged document; read-only, it shares subtrees
  with cached files), `layers` (in merge order), `findings` (problems met building
  it), `secret_files` (the release's encrypted files, never read), `complete` (no
  layer failed; schema checks on an incomplete document would be false alarms),
  and `source_of(path) -> Source | None`: the file and 1-based line that set the
  value at a key path (a tuple of keys and list indexes); the line is None for a
  Jsonnet layer. `deleted_by(path)`: the user layer whose `null` removed a default.

Layers, in helm's order (see `merge` for the exact rules):
1. chart defaults: each local dependency's `values.yaml` under its name or alias
   (daskhub's `basehub:`), then the chart's own `values.yaml`;
2. the chart's `values.jsonnet`, rendered for this hub (support: for this cluster);
3. the release's values files in order: hubs' `helm_chart_values_files`, the
   cluster's `support.helm_chart_values_files`; a `.jsonnet` one is rendered.
Secret files (`model.is_secret_path`) are listed, never read. Values files are
relative to the cluster folder and must stay inside it, symlinks included.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.core import filecache
from bot.core.findings import Finding, error
from bot.core.jsonnet import JsonnetJob, Renderer, ext_vars_for, make_job
from bot.core.merge import coalesce, get_path, merge_user, nest
from bot.core.model import Chart, Cluster, Hub, Repository, is_secret_path
from bot.core.snapshot import resolve_link
from bot.core.yamlload import Loaded, PathKey, YamlProblem

LayerKind = Literal["chart-defaults", "chart-jsonnet", "values", "values-jsonnet"]
JSONNET_SUFFIX = ".jsonnet"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value was set: a repository path and a 1-based line (None: unknown)."""

    path: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Layer:
    """One file's contribution, placed under `prefix` in the merged document."""

    kind: LayerKind
    path: str  # where the content was read (after following links)
    data: Mapping[str, Any]
    loaded: Loaded | None = None  # line marks; None for rendered Jsonnet
    prefix: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        """Whether this layer is a chart default (below every user layer)."""
        return self.kind == "chart-defaults"

    def lookup(self, path: PathKey) -> tuple[bool, Any]:
        """(found, value) of a merged-document path in this layer."""
        return get_path(nest(self.prefix, self.data), path)

    def line_of(self, path: PathKey) -> int | None:
        """The line of a merged-document path in this layer's file."""
        if self.loaded is None:
            return None
        return self.loaded.line_of(tuple(path)[len(self.prefix) :])


@dataclass(frozen=True, slots=True)
class Step:
    """One user layer to build: a YAML file to read, or a Jsonnet job to render."""

    kind: Literal["chart-jsonnet", "values", "values-jsonnet"]
    path: str  # the resolved file
    job: JsonnetJob | None = None


@dataclass(slots=True)
class Sources:
    """The files of one release, resolved and checked, before anything is read or rendered."""

    release: str  # "cluster/hub", or "cluster/support"
    chart: str | None  # None when the chart does not exist
    steps: list[Step] = field(default_factory=list)
    secret_files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def jobs(self) -> list[JsonnetJob]:
        """The Jsonnet jobs among the steps."""
        return [s.job for s in self.steps if s.job is not None]


@dataclass(slots=True)
class EffectiveValues:
    """A release's merged values, how they were built, and what went wrong."""

    release: str
    chart: str | None
    values: dict[str, Any]
    layers: list[Layer]
    findings: list[Finding]
    secret_files: list[str]
    complete: bool

    def source_of(self, path: Iterable[Any]) -> Source | None:
        """The file and line of the last layer that set `path` (or the value holding it)."""
        key = tuple(path)
        for layer in reversed(self.layers):
            found, _ = layer.lookup(key)
            if found:
                return Source(layer.path, layer.line_of(key))
        return None

    def deleted_by(self, path: Iterable[Any]) -> Source | None:
        """The user layer whose `null` at `path` deleted a chart default, if one did."""
        key = tuple(path)
        for layer in reversed(self.layers):
            if layer.is_default:
                return None
            found, value = layer.lookup(key)
            if found:
                return Source(layer.path, layer.line_of(key)) if value is None else None
        return None


def local_dependencies(repo: Repository, chart: Chart) -> list[tuple[str, str]]:
    """(key in values, chart name) of the chart's `file://` dependencies present in the repo."""
    data = chart.loaded.data if chart.loaded is not None else None
    deps = data.get("dependencies") if isinstance(data, dict) else None
    found = []
    for dep in deps if isinstance(deps, list) else []:
        repository = dep.get("repository") if isinstance(dep, dict) else None
        if not isinstance(repository, str) or not repository.startswith("file://"):
            continue
        target = posixpath.normpath(posixpath.join(chart.folder, repository[len("file://") :]))
        name = posixpath.basename(target)
        key = dep.get("alias") or dep.get("name") or name
        if name in repo.charts and isinstance(key, str):
            found.append((key, name))
    return found


def chart_default_layers(
    repo: Repository, chart: str, findings: list[Finding], *, _seen: tuple[str, ...] = ()
) -> list[Layer]:
    """The defaults of `chart`: its local dependencies' (nested), then its own values.yaml."""
    if chart in _seen or chart not in repo.charts:
        return []
    layers: list[Layer] = []
    for key, dep in local_dependencies(repo, repo.charts[chart]):
        for layer in chart_default_layers(repo, dep, findings, _seen=(*_seen, chart)):
            layers.append(
                Layer(layer.kind, layer.path, layer.data, layer.loaded, (key, *layer.prefix))
            )
    path = resolve_link(repo.snapshot, f"{repo.charts[chart].folder}/values.yaml")
    loaded = _load(repo, path, findings) if path is not None else None  # defaults are optional
    if path is not None and loaded is not None:
        layers.append(Layer("chart-defaults", path, loaded.data, loaded))
    return layers


def _load(repo: Repository, path: str, findings: list[Finding]) -> Loaded | None:
    """A YAML values file as a mapping; problems become findings and None."""
    try:
        loaded = filecache.parse(repo.snapshot, path)
    except KeyError:
        findings.append(error(path, None, "missing-file", "file does not exist"))
        return None
    except YamlProblem as exc:
        findings.append(error(path, exc.line, exc.rule, exc.message))
        return None
    if loaded.data is None:
        return Loaded({}, loaded.lines)
    if not isinstance(loaded.data, dict):
        findings.append(
            error(path, loaded.line_of(()), "values-type", "a values file must be a mapping")
        )
        return None
    return loaded


def resolve_values_file(
    repo: Repository, cluster: Cluster, relative: str, *, line: int | None
) -> tuple[str | None, Finding | None]:
    """The repository path of a file named in cluster.yaml, or the finding (at `line`)."""
    where = cluster.path

    def problem(rule: str, message: str) -> tuple[None, Finding]:
        return None, error(where, line, rule, message)

    if relative.startswith("/") or relative.startswith("\\") or ":" in relative[:3]:
        return problem("values-path", f"{relative!r} is absolute; name it relative to the folder")
    joined = posixpath.normpath(posixpath.join(cluster.folder, relative))
    if not joined.startswith(cluster.folder + "/"):
        return problem("values-path", f"{relative!r} leaves the cluster folder {cluster.folder}/")
    if not repo.snapshot.exists(joined):
        return problem("missing-file", f"{relative!r} does not exist in {cluster.folder}/")
    resolved = resolve_link(repo.snapshot, joined)
    if resolved is None or not resolved.startswith(cluster.folder + "/"):
        return problem(
            "values-path",
            f"{relative!r} is a symlink that leaves the cluster folder or points nowhere",
        )
    return resolved, None


def hub_sources(repo: Repository, hub: Hub) -> Sources:
    """The files of a hub's release, resolved and checked."""
    cluster = repo.clusters[hub.cluster]
    chart = hub.chart if hub.chart in repo.charts else None
    sources = Sources(release=hub.key, chart=chart)
    lines = cluster.loaded
    if chart is None:
        known = ", ".join(sorted(repo.charts)) or "none"
        sources.findings.append(
            error(
                cluster.path,
                lines.line_of(("hubs", hub.index, "helm_chart")),
                "unknown-chart",
                f"hub {hub.name!r} uses chart {hub.chart!r}, which is not a folder of "
                f"{repo.settings.charts_dir}/ (charts: {known})",
            )
        )
    ext_vars = ext_vars_for(
        repo.settings.jsonnet, cluster_name=cluster.name, cluster=cluster.data, hub=hub.entry
    )
    if chart is not None:
        _add_chart_jsonnet(repo, chart, ext_vars, sources)
    for i, relative in enumerate(hub.values_files):
        line = lines.line_of(("hubs", hub.index, "helm_chart_values_files", i))
        _add_file(repo, cluster, relative, line, ext_vars, sources)
    return sources


def support_sources(repo: Repository, cluster: Cluster) -> Sources:
    """The files of a cluster's support release, resolved and checked."""
    support = repo.settings.support_chart
    chart = support if support in repo.charts else None
    sources = Sources(release=f"{cluster.name}/support", chart=chart)
    if chart is None:
        sources.findings.append(
            error(
                cluster.path,
                cluster.loaded.line_of(("support",)),
                "unknown-chart",
                f"the support chart {repo.settings.support_chart_dir}/ does not exist",
            )
        )
    ext_vars = ext_vars_for(repo.settings.jsonnet, cluster_name=cluster.name, cluster=cluster.data)
    if chart is not None:
        _add_chart_jsonnet(repo, chart, ext_vars, sources)
    for i, relative in enumerate(cluster.support_values_files or ()):
        line = cluster.loaded.line_of(("support", "helm_chart_values_files", i))
        _add_file(repo, cluster, relative, line, ext_vars, sources)
    return sources


def _add_chart_jsonnet(
    repo: Repository, chart: str, ext_vars: Mapping[str, str], sources: Sources
) -> None:
    folder = repo.charts[chart].folder
    path = f"{folder}/values.jsonnet"
    if not repo.snapshot.exists(path):
        return
    job = make_job(
        repo.snapshot, path, root=folder, ext_vars=ext_vars, settings=repo.settings.jsonnet
    )
    if isinstance(job, Finding):
        sources.findings.append(job)
    else:
        sources.steps.append(Step("chart-jsonnet", job.content_path, job))


def _add_file(
    repo: Repository,
    cluster: Cluster,
    relative: str,
    line: int | None,
    ext_vars: Mapping[str, str],
    sources: Sources,
) -> None:
    path, problem = resolve_values_file(repo, cluster, relative, line=line)
    if problem is not None:
        sources.findings.append(problem)
        return
    assert path is not None
    if is_secret_path(path) or is_secret_path(relative):
        sources.secret_files.append(path)
    elif relative.endswith(JSONNET_SUFFIX):
        job = make_job(
            repo.snapshot,
            posixpath.normpath(posixpath.join(cluster.folder, relative)),
            root=cluster.folder,
            ext_vars=ext_vars,
            settings=repo.settings.jsonnet,
        )
        if isinstance(job, Finding):
            sources.findings.append(job)
        else:
            sources.steps.append(Step("values-jsonnet", job.content_path, job))
    else:
        sources.steps.append(Step("values", path))


def prefetch(renderer: Renderer, sources: Iterable[Sources]) -> None:
    """Start rendering every Jsonnet job of `sources`, slowest first (chart Jsonnet of support)."""
    jobs = [job for s in sources for job in s.jobs]
    jobs.sort(key=lambda j: -len(j.source))
    renderer.prefetch(jobs)


def build(
    repo: Repository, sources: Sources, *, renderer: Renderer | None = None
) -> EffectiveValues:
    """Read and render `sources` and merge them the way helm does."""
    findings = list(sources.findings)
    defaults = chart_default_layers(repo, sources.chart, findings) if sources.chart else []
    complete = not any(f.is_error for f in findings)
    user: list[Layer] = []
    for step in sources.steps:
        layer = _layer(repo, step, renderer, findings)
        if layer is None:
            complete = False
        else:
            user.append(layer)
    return EffectiveValues(
        release=sources.release,
        chart=sources.chart,
        values=merge_layers(defaults, user),
        layers=[*defaults, *user],
        findings=findings,
        secret_files=list(sources.secret_files),
        complete=complete,
    )


def _layer(
    repo: Repository, step: Step, renderer: Renderer | None, findings: list[Finding]
) -> Layer | None:
    if step.job is None:
        loaded = _load(repo, step.path, findings)
        return None if loaded is None else Layer("values", step.path, loaded.data, loaded)
    if renderer is None:
        from bot.core.jsonnet_pool import default_renderer

        renderer = default_renderer()
    result = renderer.render(step.job)
    if result.finding is not None:
        findings.append(result.finding)
        return None
    if not isinstance(result.value, dict):
        findings.append(
            error(step.path, None, "values-type", "Jsonnet values must render to an object")
        )
        return None
    return Layer(step.kind, step.path, result.value)


def hub_values(repo: Repository, hub: Hub, *, renderer: Renderer | None = None) -> EffectiveValues:
    """A hub's effective values (see the module docstring)."""
    return build(repo, hub_sources(repo, hub), renderer=renderer)


def support_values(
    repo: Repository, cluster: Cluster, *, renderer: Renderer | None = None
) -> EffectiveValues:
    """A cluster's support release's effective values (see the module docstring)."""
    return build(repo, support_sources(repo, cluster), renderer=renderer)


@dataclass(frozen=True, slots=True)
class Scope:
    """What to validate: hubs (`cluster/hub`), support releases (cluster names), changed files."""

    hubs: frozenset[str] = frozenset()
    support: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()


def release_sources(repo: Repository, scope: Scope | None) -> list[Sources]:
    """The sources of every release in scope: support releases first (they render slowest)."""
    found = []
    for cluster in repo.clusters.values():
        in_scope = scope is None or cluster.name in scope.support
        if in_scope and cluster.support_values_files is not None:
            found.append(support_sources(repo, cluster))
    for hub in repo.hubs():
        if scope is None or hub.key in scope.hubs:
            found.append(hub_sources(repo, hub))
    return found


def merge_layers(defaults: Sequence[Layer], user: Sequence[Layer]) -> dict[str, Any]:
    """Values as helm merges them: chart defaults coalesced, user files over them in order."""
    default_values: dict[str, Any] = {}
    for layer in defaults:
        default_values = coalesce(nest(layer.prefix, layer.data), default_values)
    user_values: dict[str, Any] = {}
    for layer in user:
        user_values = merge_user(user_values, layer.data)
    return coalesce(user_values, default_values)
