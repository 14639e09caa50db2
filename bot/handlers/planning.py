"""The one call from the GitHub side into the core planner: plan a change, render it.

Pure and blocking (YAML, schemas, Jsonnet): the handler runs it in a thread so
the event loop keeps answering webhooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from bot.core.findings import Finding, has_errors, sort_findings
from bot.core.markdown import MARKER, render_markdown, verdict
from bot.core.planner import Plan
from bot.core.semantic import plan_snapshots
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.deploys.claims import Claim
from bot.handlers.context import PlanOutcome

__all__ = ["MARKER", "conclusion_of", "plan_change", "summary_of"]


def plan_change(
    base: Snapshot,
    head: Snapshot,
    settings: Settings,
    labels: Sequence[str],
    extra_findings: Sequence[Finding] = (),
    *,
    claims: Mapping[str, Claim] | None = None,
    pr: int | None = None,
) -> PlanOutcome:
    """Plan `base` → `head` under `settings` and `labels`, with extra findings (hubbot.yaml's)."""
    plan = plan_snapshots(base, head, settings, tuple(labels), diffs=True)
    if extra_findings:
        merged = tuple(sort_findings([*plan.findings, *extra_findings]))
        plan = dataclasses.replace(plan, findings=merged)
    section = claims_section(plan, claims or {}, pr)
    body = render_markdown(plan, extra_sections=[section] if section else ())
    return PlanOutcome(
        findings=plan.findings, body=body, title=verdict(plan), summary=summary_of(body)
    )


def claims_section(plan: Plan, claims: Mapping[str, Claim], pr: int | None) -> str:
    """The staging claims on the hubs this plan would preview, for the plan comment."""
    staging = plan.hub_keys("staging")
    held = {env: claim for env, claim in claims.items() if env in staging}
    if not held:
        return ""
    rows = []
    for env, claim in sorted(held.items()):
        # No @-mention: the comment is edited on every push and must not ping anyone.
        who = (
            "this PR"
            if claim.pr == pr
            else f"#{claim.pr}" + (f" ({claim.author})" if claim.author else "")
        )
        until = claim.expires.strftime("%Y-%m-%d %H:%M UTC")
        rows.append(f"| `{env.replace('`', '')}` | {who} | {until} |")
    lines = ["### Staging claims", "", "| hub | held by | until |", "|---|---|---|", *rows]
    if any(claim.pr != pr for claim in held.values()):
        lines += [
            "",
            "`/deploy` from this PR is refused on a hub another PR holds, until that PR is "
            "merged or closed, its author runs `/unlock`, or the claim expires.",
        ]
    return "\n".join(lines)


def summary_of(body: str) -> str:
    """The check run's summary: the comment body without its hidden marker."""
    return body.removeprefix(MARKER).lstrip("\n")


def conclusion_of(findings: Sequence[Finding]) -> Literal["failure", "success"]:
    """`failure` when any finding is an error, else `success`."""
    return "failure" if has_errors(findings) else "success"
