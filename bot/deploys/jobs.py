"""Turning a schedule step into a `DeployJob`: the command template, rendered for one release.

Placeholders, each shell-quoted when substituted:
`{cluster}` `{hub}` (`support` for a support release) `{release}` `{sha}`
`{chart}` (the chart's name) `{chart_path}` (its folder) `{values_files}` (the
release's values files, space-separated, repository-relative, in order)
`{values_flags}` (the same as `--values FILE ...`) `{namespace}` `{domain}`.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.core.model import Repository, is_secret_path
from bot.core.settings import Settings

PLACEHOLDERS = frozenset(
    {
        "cluster",
        "hub",
        "release",
        "sha",
        "chart",
        "chart_path",
        "values_files",
        "values_flags",
        "namespace",
        "domain",
    }
)
_SAFE_ID = re.compile(r"[^a-z0-9-]+")


class TemplateError(ValueError):
    """A command template names a placeholder hubbot does not know, or is malformed."""


def template_fields(template: str) -> set[str]:
    """The placeholder names a template uses; TemplateError if it cannot be parsed."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"malformed template {template!r}: {exc}") from exc


def check_template(template: str) -> list[str]:
    """Problems with a template, as sentences (empty when it is fine)."""
    try:
        unknown = sorted(template_fields(template) - PLACEHOLDERS)
    except TemplateError as exc:
        return [str(exc)]
    if unknown:
        known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        return [f"unknown placeholder {{{u}}}; known placeholders: {known}" for u in unknown]
    return []


@dataclass(frozen=True, slots=True)
class Release:
    """Everything a template can say about one release."""

    cluster: str
    hub: str | None
    chart: str
    chart_path: str
    values_files: tuple[str, ...]  # repository-relative, in order, secret files included
    domain: str

    @property
    def secret_files(self) -> tuple[str, ...]:
        """The values files that sops must decrypt before the command runs."""
        return tuple(f for f in self.values_files if is_secret_path(f))


def release_for(repo: Repository, cluster: str, hub: str | None) -> Release | None:
    """The release of a hub (or a cluster's support) in this repository, None if gone."""
    settings = repo.settings
    c = repo.clusters.get(cluster)
    if c is None:
        return None
    if hub is None:
        if c.support_values_files is None:
            return None
        return Release(
            cluster=cluster,
            hub=None,
            chart=settings.support_chart,
            chart_path=settings.support_chart_dir,
            values_files=tuple(c.file_path(f) for f in c.support_values_files),
            domain="",
        )
    h = c.hub(hub)
    if h is None:
        return None
    return Release(
        cluster=cluster,
        hub=hub,
        chart=h.chart,
        chart_path=f"{settings.charts_dir}/{h.chart}",
        values_files=tuple(c.file_path(f) for f in h.values_files),
        domain=h.domain or "",
    )


def render(template: str, release: Release, *, sha: str, settings: Settings) -> str:
    """A command template rendered for a release; every value is shell-quoted."""
    values: dict[str, str] = {
        "cluster": release.cluster,
        "hub": release.hub or "support",
        "release": release.hub or "support",
        "sha": sha,
        "chart": release.chart,
        "chart_path": release.chart_path,
        "domain": release.domain,
    }
    values["namespace"] = _format(settings.deploy.namespace, values, quote=False)
    quoted = {k: shlex.quote(v) for k, v in values.items()}
    quoted["values_files"] = " ".join(shlex.quote(f) for f in release.values_files)
    quoted["values_flags"] = " ".join(f"--values {shlex.quote(f)}" for f in release.values_files)
    return _format(template, quoted, quote=False)


def _format(template: str, values: Mapping[str, str], *, quote: bool) -> str:
    problems = check_template(template)
    if problems:
        raise TemplateError(problems[0])
    mapping = {k: shlex.quote(v) if quote else v for k, v in values.items()}
    return template.format_map(_Strict(mapping))


class _Strict(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise TemplateError(f"placeholder {{{key}}} has no value here")


def job_id(parts: Sequence[str]) -> str:
    """A stable, DNS-safe id from parts (Kubernetes names allow [a-z0-9-], 63 chars a label)."""
    text = "-".join(_SAFE_ID.sub("-", p.lower()).strip("-") for p in parts if p)
    return text[:200].strip("-") or "job"
