"""`hubbot validate [--repo DIR] [--ref REF] [--format text|json]`: check a whole repository.

Exit codes: 0 no errors (warnings allowed), 1 errors, 2 usage or unreadable repository.
Text output is one finding per line, `path:line: severity [rule] message`, with a
summary on stderr; JSON output is `{"clusters": N, "hubs": M, "findings": [...]}`.
Settings come from the `hubbot.yaml` of the snapshot being validated. Rendered
Jsonnet is cached in $HUBBOT_CACHE_DIR (default ~/.cache/hubbot; "off" disables it),
see `core.jsonnet_cache`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from typing import TextIO

from bot.core.findings import Finding, has_errors
from bot.core.jsonnet import Renderer
from bot.core.model import Repository, load_repository
from bot.core.settings import SETTINGS_PATH, parse_settings
from bot.core.snapshot import DirSnapshot, GitError, GitSnapshot, Snapshot

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class Unreadable(Exception):
    """The repository cannot be read: one line for stderr."""


def open_snapshot(repo_dir: str, ref: str | None) -> Snapshot:
    """The working tree of `repo_dir`, or its commit `ref` read through git."""
    try:
        if ref is None:
            return DirSnapshot(repo_dir)
        return GitSnapshot(repo_dir, ref)
    except FileNotFoundError as exc:
        raise Unreadable(f"{repo_dir} is not a folder") from exc
    except (GitError, NotADirectoryError) as exc:
        raise Unreadable(f"cannot read {ref!r} in {repo_dir}: {exc}") from exc


def open_repository(snapshot: Snapshot) -> Repository:
    """The repository model, with its own hubbot.yaml's settings and their findings."""
    data = snapshot.read(SETTINGS_PATH) if snapshot.exists(SETTINGS_PATH) else None
    settings, findings = parse_settings(data)
    if isinstance(snapshot, GitSnapshot):  # one `git cat-file --batch` instead of one per file
        folders = (settings.clusters_dir + "/", settings.charts_dir + "/")
        snapshot.prefetch(p for p in snapshot.paths() if p.startswith(folders))
    repo = load_repository(snapshot, settings)
    repo.findings[:0] = findings
    if not any(p.startswith(settings.clusters_dir + "/") for p in snapshot.paths()):
        raise Unreadable(
            f"no {settings.clusters_dir}/ folder with files: not an infrastructure repository "
            "(or set clusters_dir in hubbot.yaml)"
        )
    return repo


def format_text(finding: Finding) -> str:
    """`path:line: severity [rule] message` (no `:line` when the line is unknown)."""
    where = finding.path if finding.line is None else f"{finding.path}:{finding.line}"
    return f"{where}: {finding.severity} [{finding.rule}] {finding.message}"


def run_validate(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run `hubbot validate`; returns the exit code."""
    from bot.core.jsonnet_cache import user_cache_dir
    from bot.core.jsonnet_pool import ProcessRenderer, default_renderer

    stdout = out or sys.stdout
    renderer = default_renderer(cache_dir=user_cache_dir(os.environ))
    if isinstance(renderer, ProcessRenderer):
        renderer.start()  # the workers start up while the repository loads
    # Parsed files live until the end and hold no reference cycles, so the cyclic
    # collector would only rescan them again and again: off, YAML loads ~3x faster.
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            repo = open_repository(open_snapshot(args.repo, args.ref))
        except Unreadable as exc:
            print(f"hubbot validate: {exc}", file=sys.stderr)
            return EXIT_USAGE
        findings = _validate(repo, renderer)
    finally:
        if collecting:
            gc.enable()
    clusters, hubs = len(repo.clusters), sum(1 for _ in repo.hubs())
    if args.format == "json":
        document = {"clusters": clusters, "hubs": hubs, "findings": [f.to_dict() for f in findings]}
        stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        for finding in findings:
            stdout.write(format_text(finding) + "\n")
        errors = sum(f.is_error for f in findings)
        print(
            f"{clusters} clusters, {hubs} hubs: {errors} errors, {len(findings) - errors} warnings",
            file=sys.stderr,
        )
    return EXIT_ERRORS if has_errors(findings) else EXIT_OK


def _validate(repo: Repository, renderer: Renderer) -> list[Finding]:
    """Validate everything, starting Jsonnet before the slow imports so that they overlap."""
    from bot.core.values import prefetch, release_sources

    prefetch(renderer, release_sources(repo, None))
    from bot.core.validate import validate  # jsonschema loads here, while Jsonnet renders

    return validate(repo, renderer=renderer)
