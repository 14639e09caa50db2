"""Questions about a pull request's visible state (the double's `GET /_sandbox/pulls/{n}`).

The walk waits on these and reports with them: which comment is the plan, which check run
or deployment is the newest for a commit, what the progress comment says, and, when a
step fails, a one-line description of what was seen instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.demo.stack import StepFailed
from bot.demo.transcript import short, statuses_line
from bot.deploys.progress import DEPLOY_CHECK as DEPLOY_CHECK
from bot.deploys.progress import DEPLOY_MARKER
from bot.github.checks import PLAN_CHECK as PLAN_CHECK
from bot.handlers.planning import MARKER


def names_hub(body: str, cluster: str, hub: str) -> bool:
    """Whether a plan comment lists `cluster/hub` (as `cluster/hub` or a table row)."""
    plain = re.sub(r"</?code>|`", "", body)
    name = rf"(?<![\w.-]){re.escape(cluster)}(/|\s*\|\s*){re.escape(hub)}(?![\w.-])"
    return re.search(name, plain) is not None


def is_plan(comment: Mapping[str, Any], bot: str) -> bool:
    """Whether a comment is the bot's plan comment."""
    return comment["user"] == bot and str(comment["body"]).startswith(MARKER)


def plan_comment(view: Mapping[str, Any], bot: str) -> dict[str, Any] | None:
    """The bot's plan comment, if there is one."""
    return next((c for c in view["comments"] if is_plan(c, bot)), None)


def progress_heading(view: Mapping[str, Any], bot: str, sha: str) -> str | None:
    """The heading of the progress comment's section about `sha` (a preview or a merge)."""
    comment = next(
        (c for c in view["comments"] if c["user"] == bot and c["body"].startswith(DEPLOY_MARKER)),
        None,
    )
    body = str((comment or {}).get("body", ""))
    for line in body.splitlines():
        if line.startswith("#") and f"`{short(sha)}`" in line:
            return line.lstrip("# ").strip()
    return None


def progress_done(view: Mapping[str, Any], bot: str, sha: str) -> bool:
    """Whether the progress comment says every target of `sha` is done."""
    heading = progress_heading(view, bot, sha)
    return heading is not None and re.search(r": all \d+ done", heading) is not None


def latest_run(view: Mapping[str, Any], name: str, sha: str) -> dict[str, Any] | None:
    """The newest check run called `name` on `sha`."""
    runs = [r for r in view["check_runs"] if r["name"] == name and r["head_sha"] == sha]
    return max(runs, key=lambda r: r["id"]) if runs else None


def plan_run(view: Mapping[str, Any], sha: str) -> dict[str, Any] | None:
    """The newest `hubbot/plan` run on `sha`."""
    return latest_run(view, PLAN_CHECK, sha)


def deployment(view: Mapping[str, Any], env: str, sha: str) -> dict[str, Any] | None:
    """The newest deployment of `sha` to `env`."""
    deps = [d for d in view["deployments"] if d["environment"] == env and d["sha"] == sha]
    return max(deps, key=lambda d: d["id"]) if deps else None


def final_state(dep: Mapping[str, Any]) -> str:
    """A deployment's first final state (`success`, `failure`, ...), or `pending`."""
    states = [s["state"] for s in dep["statuses"]]
    final = [s for s in states if s in ("success", "failure", "error", "inactive")]
    return final[0] if final else "pending"


def first_id(dep: Mapping[str, Any] | None, states: tuple[str, ...]) -> int | None:
    """The id of a deployment's first status in `states` (ids order everything)."""
    ids = [int(s["id"]) for s in (dep or {}).get("statuses", ()) if s["state"] in states]
    return min(ids) if ids else None


def check_order(deps: Mapping[str, dict[str, Any] | None]) -> None:
    """Prod starts only after staging succeeded; support (when it has a deployment) first."""
    order = [("uni-a/support", "uni-a/staging"), ("uni-a/staging", "uni-a/prod")]
    for first, then in order:
        done = first_id(deps.get(first), ("success",))
        started = first_id(deps.get(then), ("in_progress", "success", "failure", "error"))
        if deps.get(first) is None:
            continue
        if done is None or started is None or started < done:
            raise StepFailed(
                f"{then} to start only after {first} succeeded",
                f"{first}: {statuses_line(deps[first] or {})} (done at #{done}); "
                f"{then} started at #{started}",
            )


def describe_plan(view: Mapping[str, Any], sha: str, bot: str) -> str:
    """What the plan check and comment show, for a failure report."""
    run = plan_run(view, sha)
    comment = plan_comment(view, bot)
    where = (
        "no check run"
        if run is None
        else f"{run['status']}/{run['conclusion']}: {(run['output'] or {}).get('title')}"
    )
    said = "no plan comment" if comment is None else first_line(comment["body"])
    return f"{PLAN_CHECK} on {short(sha)}: {where}; comment: {said}"


def describe_deployment(dep: Mapping[str, Any] | None) -> str:
    """A deployment's states and last description, for a failure report."""
    if dep is None:
        return "no deployment"
    statuses = dep.get("statuses") or ()
    last = statuses[-1].get("description") if statuses else None
    kind = "transient" if dep.get("transient_environment") else "not transient"
    return f"{dep['environment']} ({kind}): {statuses_line(dep)}" + (f" — {last}" if last else "")


def describe_deploys(view: Mapping[str, Any], comment_id: int, bot: str, sha: str) -> str:
    """What a `/deploy` command led to so far, for a failure report."""
    comment = next((c for c in view["comments"] if c["id"] == comment_id), None)
    given = [r["content"] for r in (comment or {}).get("reactions", ()) if r["user"] == bot]
    deps = [describe_deployment(d) for d in view["deployments"]] or ["no deployments"]
    replies = [
        first_line(c["body"])
        for c in view["comments"]
        if c["id"] > comment_id and not c["body"].startswith(DEPLOY_MARKER)
    ]
    progress = progress_heading(view, bot, sha) or "none"
    return (
        f"reactions {given}; {'; '.join(deps)}; replies: {replies or 'none'}; "
        f"progress comment: {progress}"
    )


def describe_rollout(view: Mapping[str, Any], sha: str, bot: str) -> str:
    """What a merge's rollout shows so far, for a failure report."""
    deps = [describe_deployment(d) for d in view["deployments"] if d["sha"] == sha]
    run = latest_run(view, DEPLOY_CHECK, sha)
    check = "no check run" if run is None else f"{run['status']}/{run['conclusion']}"
    progress = progress_heading(view, bot, sha) or "none"
    return (
        f"deployments of {short(sha)}: {'; '.join(deps) or 'none'}; {DEPLOY_CHECK}: {check}; "
        f"progress comment: {progress}"
    )


def first_line(body: str) -> str:
    """The first visible line of a comment body (markers dropped)."""
    lines = [
        line
        for line in body.replace(MARKER, "").replace(DEPLOY_MARKER, "").splitlines()
        if line.strip()
    ]
    return lines[0][:160] if lines else "(empty)"
