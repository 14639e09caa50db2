"""The deploy service as the status page shows it: plain JSON data, read from memory only.

Rollouts in progress with each target's state, the staging claims last derived (the page
never calls GitHub), recent origins with how they ended, and how recovery went. Details
are one-line outcomes ("exit code 1"); logs and secrets never appear here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.deploys import progress

if TYPE_CHECKING:
    from bot.deploys.service import DeployService

RECENT = 20


def status_view(service: DeployService) -> dict[str, Any]:
    """Rollouts, claims, recent deploys and recovery, as JSON-ready data."""
    rollouts: list[dict[str, Any]] = []
    recent: list[dict[str, Any]] = []
    for name, ctx in sorted(service.repos.items()):
        reporter = ctx.reporter
        waves = []
        for wave in ctx.rollout.schedule.waves():
            origins = [o for o in reporter.origins.values() if wave.id in o.targets.values()]
            newest = max(origins, key=lambda o: o.id) if origins else None
            targets = []
            for key, step in sorted(wave.steps.items()):
                record = reporter.records.get((wave.id, key))
                started = record.started if record is not None else None
                seconds = time.monotonic() - started if started is not None else None
                targets.append(
                    {
                        "target": key,
                        "stage": step.stage,
                        "state": wave.state[key],
                        "detail": wave.detail.get(key, ""),
                        "seconds": round(seconds, 1) if seconds is not None else None,
                    }
                )
            waves.append(
                {
                    "id": wave.id,
                    "cluster": wave.cluster,
                    "stream": wave.stream,
                    "sha": wave.sha,
                    "pr": newest.pr if newest else None,
                    "actor": newest.actor if newest else "",
                    "sources": list(wave.sources),
                    "targets": targets,
                }
            )
        rollouts.append({"repo": name, "executor": ctx.executor.name, "waves": waves})
        for origin in reporter.origins.values():
            records = progress.by_key(reporter.records, origin)
            done = bool(records) and all(r.state in progress.FINAL for r in records)
            recent.append(
                {
                    "repo": name,
                    "kind": origin.kind,
                    "sha": origin.sha,
                    "pr": origin.pr,
                    "actor": origin.actor,
                    "heading": progress.heading(origin),
                    "progress": progress.counts(records) if records else "",
                    "state": progress.conclusion(records) if done else "in progress",
                    "created": _iso(datetime.fromtimestamp(origin.created, UTC)),
                }
            )
    return {
        "executor": ", ".join(sorted({r["executor"] for r in rollouts})) or "none",
        "recovery": dict(service.recovery),
        "rollouts": rollouts,
        "recent": sorted(recent, key=lambda r: str(r["created"]), reverse=True)[:RECENT],
        "claims": _claims(service),
    }


def _claims(service: DeployService) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "repo": repo,
            "environment": claim.environment,
            "pr": claim.pr,
            "author": claim.author,
            "since": _iso(claim.since),
            "expires": _iso(claim.expires),
        }
        for repo, claims in sorted(service.claim_views.items())
        for claim in sorted(claims.values(), key=lambda c: c.environment)
        if claim.expires > now
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
