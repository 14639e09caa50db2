"""`hubbot values [--repo DIR] CLUSTER (HUB | --support)`: a release's effective values, by hubbot.

It merges a release's values the way helm does (`bot.core.values`) and checks them
against the chart's schemas (`bot.core.validate.check_values`), so it is a stand-in
for `helm template` where helm is not installed: it renders no manifests. It prints
which layers made the values and a summary of them (keys and a digest), never a
value, because secret files may be merged in.

Secret values files are merged when they can be read: a file already decrypted in
the working tree (the local executor decrypts a deploy's secret files in its
checkout), or one that `sops` (on PATH, or $SOPS) can decrypt; otherwise they are
left out, and the output says so. Exit codes: 0 valid, 1 schema or file errors,
2 usage (no such release, unreadable repository).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.core.findings import Finding, has_errors, sort_findings
from bot.core.model import Repository
from bot.core.values import EffectiveValues, Layer, merge_layers
from bot.core.yamlload import YamlProblem, load_yaml

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
SOPS_TIMEOUT_SECONDS = 60


class ValuesError(Exception):
    """The release cannot be found or read: one line for stderr."""


@dataclass(frozen=True, slots=True)
class SecretFile:
    """What became of one secret values file: merged, or left out and why."""

    path: str
    merged: bool
    how: str  # "decrypted in the working tree", "decrypted with sops", or why it was left out


@dataclass(frozen=True, slots=True)
class Release:
    """A release read from a working tree: the repository, its effective values, its secrets."""

    repo: Repository
    effective: EffectiveValues
    secrets: list[SecretFile]


def run_values(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run `hubbot values`; returns the exit code."""
    stdout = out or sys.stdout
    try:
        release = load_release(Path(args.repo), args.cluster, None if args.support else args.hub)
    except ValuesError as exc:
        print(f"hubbot values: {exc}", file=sys.stderr)
        return EXIT_USAGE
    findings = check(release)
    if args.format == "json":
        document = summary(release.effective, release.secrets, findings)
        stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        stdout.write(format_summary(release.effective, release.secrets, findings))
    return EXIT_ERRORS if has_errors(findings) else EXIT_OK


def load_release(repo_dir: Path, cluster: str, hub: str | None) -> Release:
    """A hub's (or with `hub=None`, the support) release, with readable secret files merged in."""
    from bot.commands.validate import Unreadable, open_repository, open_snapshot
    from bot.core.values import hub_values, resolve_values_file, support_values

    try:
        repo = open_repository(open_snapshot(str(repo_dir), None))
    except Unreadable as exc:
        raise ValuesError(str(exc)) from None
    if cluster not in repo.clusters:
        known = ", ".join(sorted(repo.clusters)) or "none"
        raise ValuesError(f"no cluster {cluster!r} (clusters: {known})")
    model = repo.clusters[cluster]
    if hub is None:
        if model.support_values_files is None:
            raise ValuesError(f"cluster {cluster!r} has no support release")
        effective = support_values(repo, model)
        files = model.support_values_files
    else:
        found = repo.hub(f"{cluster}/{hub}")
        if found is None:
            names = ", ".join(h.name for h in model.hubs) or "none"
            raise ValuesError(f"cluster {cluster!r} has no hub {hub!r} (hubs: {names})")
        effective = hub_values(repo, found)
        files = found.values_files
    secrets = [_read_secret(repo_dir, path) for path in effective.secret_files]
    layers = [layer for _, layer in secrets if layer is not None]
    order = [resolve_values_file(repo, model, name, line=None)[0] or "" for name in files]
    merged = with_layers(effective, layers, order=order)
    return Release(repo, merged, [state for state, _ in secrets])


def _read_secret(repo_dir: Path, path: str) -> tuple[SecretFile, Layer | None]:
    """A secret file as a layer: plaintext already, or decrypted by sops into memory."""
    try:
        data = (repo_dir / path).read_bytes()
        loaded = load_yaml(data)
    except (OSError, YamlProblem):
        return SecretFile(path, False, "left out: it cannot be read as YAML"), None
    how = "decrypted in the working tree"
    if isinstance(loaded.data, dict) and "sops" in loaded.data:
        sops = os.environ.get("SOPS") or shutil.which("sops")
        if sops is None:
            return SecretFile(path, False, "left out: sops is not installed"), None
        decrypted = _sops_decrypt(sops, repo_dir / path)
        if decrypted is None:
            return SecretFile(path, False, "left out: sops could not decrypt it"), None
        loaded, how = decrypted, "decrypted with sops"
    if not isinstance(loaded.data, dict):
        return SecretFile(path, False, "left out: it is not a mapping"), None
    return SecretFile(path, True, how), Layer("values", path, loaded.data, loaded)


def _sops_decrypt(sops: str, path: Path) -> Any:
    """The decrypted document (with line marks), or None; plaintext stays in memory."""
    try:
        done = subprocess.run(
            [sops, "--disable-version-check", "--decrypt", str(path)],
            capture_output=True,
            timeout=SOPS_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return load_yaml(done.stdout)
    except YamlProblem:
        return None


def with_layers(
    effective: EffectiveValues, extra: list[Layer], *, order: list[str]
) -> EffectiveValues:
    """`effective` with `extra` user layers, placed by `order` (the release's files), remerged."""
    if not extra:
        return effective
    defaults = [layer for layer in effective.layers if layer.is_default]
    user = [layer for layer in effective.layers if not layer.is_default] + extra
    # The chart's Jsonnet comes first (not in `order`); files follow cluster.yaml's order.
    user.sort(key=lambda layer: order.index(layer.path) if layer.path in order else -1)
    layers = [*defaults, *user]
    return EffectiveValues(
        release=effective.release,
        chart=effective.chart,
        values=merge_layers(defaults, user),
        layers=layers,
        findings=effective.findings,
        secret_files=effective.secret_files,
        complete=effective.complete,
    )


def check(release: Release) -> list[Finding]:
    """The release's findings: building its values, then its chart schemas on them."""
    from bot.core.validate import check_values

    findings = list(release.effective.findings)
    if release.effective.complete:
        findings += check_values(release.repo, release.effective)
    return sort_findings(findings)


def count_settings(value: Any) -> int:
    """How many leaf settings a values document holds (an empty mapping or list counts one)."""
    if isinstance(value, dict) and value:
        return sum(count_settings(v) for v in value.values())
    if isinstance(value, list) and value:
        return sum(count_settings(v) for v in value)
    return 1


def digest(values: Any) -> str:
    """A short, stable digest of a values document (compare two renders without showing them)."""
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def summary(
    effective: EffectiveValues, secrets: list[SecretFile], findings: list[Finding]
) -> dict[str, Any]:
    """The JSON shape of the output: layers, secret files, key counts, digest, findings."""
    values = effective.values
    return {
        "release": effective.release,
        "chart": effective.chart,
        "rendered_by": "hubbot",
        "layers": [
            {"kind": layer.kind, "path": layer.path, "under": ".".join(layer.prefix) or None}
            for layer in effective.layers
        ],
        "secret_files": [{"path": s.path, "merged": s.merged, "how": s.how} for s in secrets],
        "settings": count_settings(values),
        "top_level": {str(k): count_settings(v) for k, v in sorted(values.items())},
        "sha256": digest(values),
        "findings": [f.to_dict() for f in findings],
    }


def format_summary(
    effective: EffectiveValues, secrets: list[SecretFile], findings: list[Finding]
) -> str:
    """The text output: what was merged and what it came to, never a value."""
    data = summary(effective, secrets, findings)
    lines = [
        f"effective values of {effective.release} (chart {effective.chart}), "
        "merged by hubbot (helm renders no manifests here)",
        "layers, in merge order:",
    ]
    how = {s.path: s.how for s in secrets}
    for layer in data["layers"]:
        under = f" (under {layer['under']})" if layer["under"] else ""
        if layer["path"] in how:  # a merged secret file: its place in the order, and how
            lines.append(f"  {'secret':<15} {layer['path']}: {how.pop(layer['path'])}")
        else:
            lines.append(f"  {layer['kind']:<15} {layer['path']}{under}")
    for path, why in how.items():
        lines.append(f"  {'secret':<15} {path}: {why}")
    top = ", ".join(f"{k} ({n})" for k, n in data["top_level"].items())
    lines.append(f"{data['settings']} settings (sha256 {data['sha256']}): {top}")
    errors = sum(f.is_error for f in findings)
    if not findings:
        lines.append("schema: valid")
    else:
        lines.append(f"schema: {errors} errors, {len(findings) - errors} warnings")
        for f in findings:
            where = f.path if f.line is None else f"{f.path}:{f.line}"
            lines.append(f"  {where}: {f.severity} [{f.rule}] {f.message}")
    return "\n".join(lines) + "\n"
