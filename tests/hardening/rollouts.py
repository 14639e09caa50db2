"""What every rollout run must leave behind, whatever went wrong on the way.

Shared by the rollout fault tests (GitHub faults, token expiry, Kubernetes faults,
restarts): every Deployment ends in a final state, no `hubbot/deploy` check is left open,
and a run that did not end as a clean one says so somewhere a person looks (a check run,
the PR's deploy comment, or a Deployment status).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from bot.web.keys import SERVICES

DEPLOY_MARKER = "<!-- hubbot:deploy -->"
DEPLOY_CHECK = "hubbot/deploy"
FINAL = frozenset({"success", "failure", "error", "inactive"})
CLEAN_STATES = ["queued", "in_progress", "success"]


def states(deployment: dict[str, Any]) -> list[str]:
    """A Deployment's status states, oldest first, repeats folded (a repeated write is harmless)."""
    folded: list[str] = []
    for status in deployment["statuses"]:
        if not folded or folded[-1] != status["state"]:
            folded.append(status["state"])
    return folded


def deploy_checks(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Every `hubbot/deploy` check run in a PR view, oldest first."""
    runs = [r for r in view["check_runs"] if r["name"] == DEPLOY_CHECK]
    return sorted(runs, key=lambda r: int(r["id"]))


def deploy_comments(view: dict[str, Any]) -> list[str]:
    """The bodies of the PR's deploy comments."""
    return [c["body"] for c in view["comments"] if c["body"].startswith(DEPLOY_MARKER)]


def unfinished(deployments: Iterable[dict[str, Any]], view: dict[str, Any]) -> list[str]:
    """Deployments whose last status is not final, and deploy checks not completed."""
    problems = []
    for d in deployments:
        last = d["statuses"][-1]["state"] if d["statuses"] else None
        if last not in FINAL:
            problems.append(f"Deployment {d['environment']} left {last or 'without a status'}")
    for run in deploy_checks(view):
        if run["status"] != "completed":
            problems.append(f"check run {run['id']} left {run['status']}")
    return problems


def ended_clean(
    deployments: Sequence[dict[str, Any]], view: dict[str, Any], environments: Sequence[str]
) -> list[str]:
    """How a run differs from a clean rollout of `environments` (empty: it does not)."""
    problems = []
    by_env: dict[str, list[dict[str, Any]]] = {}
    for d in deployments:
        by_env.setdefault(d["environment"], []).append(d)
    if set(by_env) != set(environments):
        problems.append(f"Deployments of {sorted(by_env)}, not {sorted(environments)}")
    for env, found in sorted(by_env.items()):
        if len(found) != 1:
            problems.append(f"{len(found)} Deployments of {env}: {[states(d) for d in found]}")
        elif states(found[0]) != CLEAN_STATES:
            problems.append(f"{env} went {states(found[0])}")
    runs = deploy_checks(view)
    if not runs or (runs[-1]["status"], runs[-1]["conclusion"]) != ("completed", "success"):
        problems.append(f"deploy checks {[(r['status'], r['conclusion']) for r in runs]}")
    comments = deploy_comments(view)
    done = f"all {len(environments)} done"
    if len(comments) != 1 or done not in comments[0]:
        problems.append(f"{len(comments)} deploy comment(s), saying {done!r}: {bool(comments)}")
    return problems


# Words with which hubbot says that GitHub (or the cluster) failed it.
SAID = re.compile(
    r"GitHub (answered|did not answer|gave)|may or may not have been applied|"
    r"could not|Kubernetes API|hubbot stopped|lost track",
)


def said(deployments: Sequence[dict[str, Any]], view: dict[str, Any]) -> list[str]:
    """Where a run says something went wrong: check runs, comments, Deployment statuses."""
    places = []
    for run in deploy_checks(view):
        output = run.get("output") or {}
        text = f"{output.get('title') or ''}\n{output.get('summary') or ''}"
        if run["conclusion"] not in (None, "success") and SAID.search(text):
            places.append(f"check run {run['id']} ({run['conclusion']})")
    for body in deploy_comments(view):
        if SAID.search(body):
            places.append("the deploy comment")
    for d in deployments:
        for status in d["statuses"]:
            if status["state"] in ("error", "failure") and SAID.search(status["description"]):
                places.append(f"a status of {d['environment']}")
    return places


def quick_reports(stack: Any) -> None:
    """Reports without production's pauses: the comment edited at once, failed writes tried
    again within a second (not after 2, 10 and 30 s)."""
    deploys = stack.app[SERVICES].deploys
    deploys.config = dataclasses.replace(
        deploys.config, throttle_seconds=0.05, report_retry_seconds=(0.05, 0.2, 0.5)
    )
