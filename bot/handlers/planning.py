"""The one call from the GitHub side into the core planner: plan a change, render it.

Pure and blocking (YAML, schemas, Jsonnet): the handler runs it in a thread so
the event loop keeps answering webhooks.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any, Literal

from bot.core.findings import Finding, has_errors, sort_findings
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.handlers.context import PlanOutcome

MARKER = "<!-- hubbot:plan -->"


def _core(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


def plan_change(
    base: Snapshot,
    head: Snapshot,
    settings: Settings,
    labels: Sequence[str],
    extra_findings: Sequence[Finding] = (),
) -> PlanOutcome:
    """Plan `base` → `head` under `settings` and `labels`, with extra findings (hubbot.yaml's)."""
    plan = _core("bot.core.semantic", "plan_snapshots")(base, head, settings, tuple(labels))
    if extra_findings:
        merged = tuple(sort_findings([*plan.findings, *extra_findings]))
        plan = dataclasses.replace(plan, findings=merged)
    body: str = _core("bot.core.markdown", "render_markdown")(plan)
    title: str = _core("bot.core.markdown", "verdict")(plan)
    findings: tuple[Finding, ...] = tuple(plan.findings)
    return PlanOutcome(findings=findings, body=body, title=title, summary=summary_of(body))


def summary_of(body: str) -> str:
    """The check run's summary: the comment body without its hidden marker."""
    return body.removeprefix(MARKER).lstrip("\n")


def conclusion_of(findings: Sequence[Finding]) -> Literal["failure", "success"]:
    """`failure` when any finding is an error, else `success`."""
    return "failure" if has_errors(findings) else "success"
