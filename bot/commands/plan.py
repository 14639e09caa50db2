"""`hubbot plan`: what a change deploys, as a PR body (markdown) or as JSON.

File mode (`--changed PATH...`) reads the working tree of `--repo`; changed paths are
relative to the repository root (absolute paths inside it are accepted, and paths
that no longer exist are fine). Semantic mode (`--base REF [--head REF]`) reads two
commits of a local git repository through git, without a checkout, and takes its
settings from the base commit: a change is judged by the rules already merged.

Exit codes: 0 no errors (warnings allowed), 1 errors, 2 usage or an unreadable repository.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bot.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from bot.core.findings import Finding, sort_findings
from bot.core.model import load_repository
from bot.core.planner import Plan, plan_files, settings_of
from bot.core.settings import Settings
from bot.core.snapshot import DirSnapshot, GitError, GitSnapshot, Snapshot, normalize


class UsageError(Exception):
    """A problem with the command line or the repository, reported in one line, exit 2."""


def run_plan(args: argparse.Namespace) -> int:
    """Run `hubbot plan` with parsed arguments; returns the exit code."""
    from bot.core.jsonnet_cache import user_cache_dir
    from bot.core.jsonnet_pool import ProcessRenderer, default_renderer

    # As `hubbot validate` does: rendered Jsonnet is kept in the user's cache folder
    # ($HUBBOT_CACHE_DIR, "off" for none), and the workers start while files load.
    renderer = default_renderer(cache_dir=user_cache_dir(os.environ))
    if isinstance(renderer, ProcessRenderer):
        renderer.start()
    # Parsed files live until exit and hold no reference cycles: the cyclic collector
    # would only rescan them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        plan = build_plan(
            Path(args.repo),
            changed=args.changed,
            base=args.base,
            head=args.head,
            labels=args.label,
        )
    except UsageError as exc:
        print(f"hubbot plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if collecting:
            gc.enable()
    if args.format == "json":
        sys.stdout.write(json.dumps(plan.to_json(), indent=2) + "\n")
    else:
        from bot.core.markdown import render_markdown

        sys.stdout.write(render_markdown(plan))
    return EXIT_FINDINGS if plan.blocked else EXIT_OK


def build_plan(
    root: Path,
    *,
    changed: Sequence[str] | None,
    base: str | None,
    head: str | None,
    labels: Sequence[str] = (),
) -> Plan:
    """The plan for a working tree and changed paths, or for two git refs."""
    if not root.is_dir():
        raise UsageError(f"not a directory: {root}")
    if head is not None and base is None:
        raise UsageError("--head needs --base")
    try:
        if changed is not None:
            return _file_mode(root, changed, labels)
        assert base is not None
        return _semantic_mode(root, base, head or "HEAD", labels)
    except GitError as exc:
        raise UsageError(f"git: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read the repository: {exc.strerror or exc}") from exc


def _check_layout(snapshot: Snapshot, settings: Settings, where: str) -> None:
    if next(iter(snapshot.under(settings.clusters_dir)), None) is None:
        raise UsageError(
            f"no {settings.clusters_dir}/ folder in {where}: is it an infrastructure repository?"
        )


def _file_mode(root: Path, changed: Sequence[str], labels: Sequence[str]) -> Plan:
    snapshot = DirSnapshot(root)
    settings, problems = settings_of(snapshot)
    _check_layout(snapshot, settings, str(root))
    paths = [_relative(root, p) for p in changed]
    plan = plan_files(load_repository(snapshot, settings), paths, labels)
    return _with_settings_findings(plan, problems)


def _relative(root: Path, path: str) -> str:
    """A changed path relative to the repository root; absolute ones must be inside it."""
    rel = path
    if os.path.isabs(path):
        try:
            rel = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
        except ValueError as exc:  # another drive on Windows
            raise UsageError(f"{path} is not a file inside {root}") from exc
    rel = normalize(rel)
    if rel in ("", ".", "..") or rel.startswith("../"):
        raise UsageError(f"{path} is not a file inside {root}")
    return rel


def _semantic_mode(root: Path, base_ref: str, head_ref: str, labels: Sequence[str]) -> Plan:
    from bot.core.semantic import plan_snapshots

    base, head = GitSnapshot(root, base_ref), GitSnapshot(root, head_ref)
    settings, problems = settings_of(base)
    _check_layout(head, settings, f"{head_ref} of {root}")
    plan = plan_snapshots(base, head, settings, labels, diffs=True)
    return _with_settings_findings(plan, problems)


def _with_settings_findings(plan: Plan, problems: Sequence[Finding]) -> Plan:
    if not problems:
        return plan
    return replace(plan, findings=tuple(sort_findings([*problems, *plan.findings])))
