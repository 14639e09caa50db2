"""Validation of a whole repository, or of the releases and files a change touches.

`validate(repo, scope=None, *, renderer=None) -> list[Finding]` runs, for the scope:

- the findings met while loading (settings, YAML of cluster.yaml and Chart.yaml);
- the cluster.yaml checks of `checks` (schema, unique names and domains, named files,
  unused values files) for every cluster the scope touches, and every Chart.yaml;
- each file's own checks: it parses (YAML/JSON limits, duplicate keys, encoding),
  secret files carry sops metadata, other files hold no plaintext credentials;
- each release's effective values (`values`) against its chart's values schema
  (`values.schema.json` or `.yaml`), and each local dependency's schema under its key
  (daskhub's `basehub:`), each failure reported at the file and line that set the
  offending value.

Paths matching `settings.ignored_paths` are never validated. Jsonnet renders in the
background (two worker processes) while files are parsed and checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable

from bot.core import filecache
from bot.core.checks import check_charts, check_clusters
from bot.core.findings import Finding, error, sort_findings
from bot.core.jsonnet import Renderer
from bot.core.merge import coalesce, get_path
from bot.core.model import Repository, is_secret_path
from bot.core.schemacheck import Problem, findings_at, problems, validator_for
from bot.core.secrets import plaintext_credentials, sops_findings, sops_text_findings
from bot.core.values import (
    EffectiveValues,
    Scope,
    Source,
    Sources,
    build,
    local_dependencies,
    prefetch,
    release_sources,
)
from bot.core.yamlload import YamlProblem

SCHEMA_FILES = ("values.schema.json", "values.schema.yaml", "values.schema.yml")
DATA_SUFFIXES = (".yaml", ".yml", ".json")
CHART_FILES = ("Chart.yaml", "values.yaml", "values.yml", "values.json")


def validate(
    repo: Repository, scope: Scope | None = None, *, renderer: Renderer | None = None
) -> list[Finding]:
    """Every finding for `scope` (None: the whole repository), sorted, errors first."""
    if renderer is None:
        from bot.core.jsonnet_pool import default_renderer

        renderer = default_renderer()
    sources = release_sources(repo, scope)
    prefetch(renderer, sources)  # rendering runs while the files below are checked
    # (a caller may have prefetched already, to overlap rendering with imports: a no-op)
    findings = list(repo.findings)
    findings += check_clusters(repo, None if scope is None else _clusters_of(repo, scope))
    findings += check_charts(repo)
    for path in files_to_check(repo, scope, sources):
        findings += check_file(repo, path)
    for release in sources:
        effective = build(repo, release, renderer=renderer)
        findings += effective.findings
        if effective.complete:
            findings += check_values(repo, effective)
    return [f for f in sort_findings(findings) if not repo.settings.is_ignored(f.path)]


def _clusters_of(repo: Repository, scope: Scope) -> set[str]:
    names = set(scope.support) | {key.split("/", 1)[0] for key in scope.hubs}
    prefix = repo.settings.clusters_dir + "/"
    for path in scope.paths:
        if path.startswith(prefix):
            names.add(path[len(prefix) :].split("/", 1)[0])
    return names & set(repo.clusters)


def files_to_check(repo: Repository, scope: Scope | None, sources: list[Sources]) -> list[str]:
    """The files whose own checks run: all of them, or those of the scope's releases."""
    settings = repo.settings
    if scope is None:
        candidates: Iterable[str] = (
            p
            for p in repo.snapshot.paths()
            if p.startswith(settings.clusters_dir + "/") or p.startswith(settings.charts_dir + "/")
        )
    else:
        used = {step.path for s in sources for step in s.steps} | {
            path for s in sources for path in s.secret_files
        }
        candidates = used | {p for p in scope.paths if repo.snapshot.exists(p)}
    return sorted(p for p in candidates if _is_checked(repo, p))


def _is_checked(repo: Repository, path: str) -> bool:
    settings = repo.settings
    if settings.is_ignored(path):
        return False
    charts = settings.charts_dir + "/"
    if path.startswith(charts):
        parts = path[len(charts) :].split("/")
        # A chart's templates are Go templates, not YAML: only its top-level files count.
        if len(parts) != 2:
            return False
        return is_secret_path(path) or parts[1] in CHART_FILES
    return path.startswith(settings.clusters_dir + "/")


def check_file(repo: Repository, path: str) -> list[Finding]:
    """A file's own checks: it loads; a secret file is encrypted; others hold no credentials."""
    secret = is_secret_path(path)
    if not path.endswith(DATA_SUFFIXES):
        if secret:
            return sops_text_findings(path, repo.snapshot.read(path).decode("utf-8", "replace"))
        return []
    try:
        loaded = filecache.parse(repo.snapshot, path)
    except KeyError:
        return []
    except YamlProblem as exc:
        return [error(path, exc.line, exc.rule, exc.message)]
    if secret:
        return sops_findings(path, loaded)
    return plaintext_credentials(path, loaded, repo.settings.secret_keys)


def chart_schemas(
    repo: Repository, chart: str, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path, schema file) of a chart's schema and its local dependencies', recursively."""
    folder = repo.charts[chart].folder
    for name in SCHEMA_FILES:
        if repo.snapshot.exists(f"{folder}/{name}"):
            yield prefix, f"{folder}/{name}"
            break
    if len(prefix) < 8:  # a dependency cycle stops here
        for key, dep in local_dependencies(repo, repo.charts[chart]):
            yield from chart_schemas(repo, dep, (*prefix, key))


def check_values(repo: Repository, effective: EffectiveValues) -> list[Finding]:
    """A release's values against its chart's schemas, at the lines that set each value."""
    if effective.chart is None:
        return []
    findings: list[Finding] = []
    fallback = _declared_at(repo, effective)

    def locate(problem: Problem) -> tuple[str, int | None]:
        source: Source | None = None
        if problem.missing_key is not None:
            source = effective.deleted_by((*problem.path, problem.missing_key))
        source = source or effective.source_of(problem.path) or fallback
        return source.path, source.line

    for prefix, schema_path in chart_schemas(repo, effective.chart):
        try:
            schema = filecache.parse(repo.snapshot, schema_path).data
            validator = validator_for(schema)
        except YamlProblem as exc:
            findings.append(error(schema_path, exc.line, exc.rule, exc.message))
            continue
        except (SchemaError, TypeError) as exc:
            message = getattr(exc, "message", str(exc))
            findings.append(
                error(schema_path, None, "schema-invalid", f"not a JSON schema: {message}")
            )
            continue
        found, instance = get_path(effective.values, prefix)
        if not found:
            continue
        if prefix and isinstance(instance, dict):
            # helm hands a dependency the parent's globals before validating it
            parent_globals = effective.values.get("global")
            if isinstance(parent_globals, dict):
                instance = coalesce({"global": parent_globals}, instance)
        found_problems = problems(validator, instance, prefix=prefix)
        suffix = f" (schema: {schema_path})"  # no release name: one finding per file and line
        try:
            findings += findings_at(found_problems, locate, rule="values-schema", suffix=suffix)
        except Unresolvable as exc:  # helm would fetch it; hubbot never uses the network
            message = f"the schema refers to {exc.ref!r}" if hasattr(exc, "ref") else str(exc)
            findings.append(
                error(schema_path, None, "schema-invalid", f"{message}, which cannot be resolved")
            )
    return findings


def _declared_at(repo: Repository, effective: EffectiveValues) -> Source:
    """Where the release is declared: its hub entry, or the cluster's support block."""
    cluster_name, _, hub_name = effective.release.partition("/")
    cluster = repo.clusters[cluster_name]
    hub = cluster.hub(hub_name)
    key: tuple[Any, ...] = ("hubs", hub.index) if hub is not None else ("support",)
    return Source(cluster.path, cluster.loaded.line_of(key))


__all__ = ["Scope", "check_file", "check_values", "validate"]
