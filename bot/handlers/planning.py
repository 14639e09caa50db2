"""The one call from the GitHub side into the core planner: plan a change, render it.

Pure and blocking (YAML, schemas, Jsonnet): the handler runs it in a thread so
the event loop keeps answering webhooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from bot.core.findings import Finding, has_errors, sort_findings
from bot.core.markdown import MARKER, render_markdown, verdict
from bot.core.semantic import plan_snapshots
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.handlers.context import PlanOutcome

__all__ = ["MARKER", "conclusion_of", "plan_change", "summary_of"]


def plan_change(
    base: Snapshot,
    head: Snapshot,
    settings: Settings,
    labels: Sequence[str],
    extra_findings: Sequence[Finding] = (),
) -> PlanOutcome:
    """Plan `base` → `head` under `settings` and `labels`, with extra findings (hubbot.yaml's)."""
    plan = plan_snapshots(base, head, settings, tuple(labels))
    if extra_findings:
        merged = tuple(sort_findings([*plan.findings, *extra_findings]))
        plan = dataclasses.replace(plan, findings=merged)
    body = render_markdown(plan)
    return PlanOutcome(
        findings=plan.findings, body=body, title=verdict(plan), summary=summary_of(body)
    )


def summary_of(body: str) -> str:
    """The check run's summary: the comment body without its hidden marker."""
    return body.removeprefix(MARKER).lstrip("\n")


def conclusion_of(findings: Sequence[Finding]) -> Literal["failure", "success"]:
    """`failure` when any finding is an error, else `success`."""
    return "failure" if has_errors(findings) else "success"
