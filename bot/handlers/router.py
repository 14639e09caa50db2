"""Every feature's router merged into one, and how a webhook event maps to a queue key.

The web layer only knows this module: `router` to dispatch, `job_key` to keep the
events of one PR (or one pushed ref) in order, `coalesce_tag` to let a newer
re-plan replace a queued older one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from bot.handlers import closed, comments, default_branch, deploy_rerun, pull_requests, push

router = routing.Router(
    pull_requests.router,
    default_branch.router,
    comments.router,
    push.router,
    closed.router,
    deploy_rerun.router,
)


def job_key(event: sansio.Event) -> str:
    """The ordering key: `repo#number` for a PR (or its issue comments), `repo@ref` for a push.

    Never raises: a payload of an unexpected shape gets a key of its own kind.
    """
    data = event.data
    repository = _get(data, "repository")
    repo = str(_get(repository, "id") or _get(repository, "full_name") or "-")
    number = _pr_number(event.event, data)
    if number is not None:
        return f"{repo}#{number}"
    if event.event == "push":
        return f"{repo}@{_get(data, 'ref')}"
    return f"{repo}:{event.event}"


def _get(obj: Any, key: str | int) -> Any:
    """`obj[key]` for a mapping (or a list and an index), else None."""
    if isinstance(obj, Mapping) and isinstance(key, str):
        return obj.get(key)
    if isinstance(obj, list) and isinstance(key, int) and len(obj) > key:
        return obj[key]
    return None


def _pr_number(event: str, data: Any) -> int | None:
    if event.startswith("pull_request"):
        number = _get(_get(data, "pull_request"), "number") or _get(data, "number")
    elif event in ("issue_comment", "issues"):
        number = _get(_get(data, "issue"), "number")
    elif event in ("check_run", "check_suite"):
        number = _get(_get(_get(_get(data, event), "pull_requests"), 0), "number")
    else:
        return None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def coalesce_tag(event: sansio.Event) -> str | None:
    """The supersession tag of an event (see `bot.web.queue`), from the feature that owns it."""
    return pull_requests.coalesce_tag(event)
