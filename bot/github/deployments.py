"""GitHub Deployments: one per deploy target, with statuses as it moves; listed for claims.

https://docs.github.com/en/rest/deployments/deployments: every deployment pins `ref` to
the SHA deployed, is made with `auto_merge: false` (never merge the default branch into
anything) and `required_contexts: []` (hubbot already decided; checks are not a gate here).
Environments are `<cluster>/<hub>` and `<cluster>/support`. hubbot's own facts live in
`payload["hubbot"]`, so claims and recovery can be derived from GitHub after a restart.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from gidgethub.abc import GitHubAPI

from bot.github.client import AmbiguousWrite, wait_for_late_writes

logger = logging.getLogger(__name__)

# https://docs.github.com/en/rest/deployments/statuses: "description ... maximum 140 characters".
MAX_DESCRIPTION = 140
PAYLOAD_KEY = "hubbot"
IN_FLIGHT = frozenset({"queued", "in_progress", "pending"})

State = Literal["queued", "in_progress", "success", "failure", "error", "inactive"]


@dataclass(frozen=True, slots=True)
class DeploymentRef:
    """A deployment hubbot created: its id, API URL, environment and SHA."""

    id: int
    url: str
    environment: str
    sha: str


@dataclass(frozen=True, slots=True)
class Listed:
    """A listed deployment of hubbot's, with its latest status (None when it has none)."""

    ref: DeploymentRef
    payload: Mapping[str, Any]  # payload["hubbot"]
    created_at: datetime
    state: str | None


def environment_of(cluster: str, hub: str | None) -> str:
    """The environment name of a target: `cluster/hub`, or `cluster/support`."""
    return f"{cluster}/{hub or 'support'}"


def short(text: str) -> str:
    """A status description cut to GitHub's 140 characters."""
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


async def create_deployment(
    gh: GitHubAPI,
    repo_url: str,
    *,
    sha: str,
    environment: str,
    production: bool,
    transient: bool,
    payload: Mapping[str, Any],
    description: str,
) -> DeploymentRef:
    """Create a deployment of `sha`; an ambiguous failure is looked up before it is repeated.

    `payload["attempt"]` (made up when absent) finds this very deployment again. A create
    that timed out may still land, so after one the lookup waits until it would have
    landed: repeating it sooner leaves a second Deployment that no status ever ends.
    """
    attempt = str(payload.get("attempt") or uuid.uuid4().hex)
    body = {
        "ref": sha,
        "task": "deploy",
        "auto_merge": False,
        "required_contexts": [],
        "environment": environment,
        "production_environment": production,
        "transient_environment": transient,
        "payload": {PAYLOAD_KEY: {**payload, "attempt": attempt}},
        "description": short(description),
    }
    for _ in range(3):
        try:
            created = await gh.post(f"{repo_url}/deployments", data=body)
        except AmbiguousWrite as exc:
            found = await _find_attempt(gh, repo_url, sha, environment, attempt)
            if found is None and exc.settles_at is not None:
                await wait_for_late_writes(gh, exc.settles_at)
                found = await _find_attempt(gh, repo_url, sha, environment, attempt)
            if found is not None:
                return found
            continue
        return _ref(created)
    raise AmbiguousWrite("POST", "/repos/{owner}/{repo}/deployments", "gave up creating it")


async def _find_attempt(
    gh: GitHubAPI, repo_url: str, sha: str, environment: str, attempt: str
) -> DeploymentRef | None:
    data = await gh.getitem(
        f"{repo_url}/deployments{{?sha,environment,per_page}}",
        {"sha": sha, "environment": environment, "per_page": 100},
    )
    for item in data if isinstance(data, list) else []:
        if _hubbot_payload(item).get("attempt") == attempt:
            return _ref(item)
    return None


async def set_status(
    gh: GitHubAPI,
    deployment: DeploymentRef,
    state: State,
    *,
    description: str,
    environment_url: str | None = None,
    log_url: str | None = None,
) -> None:
    """Add a status; statuses are a history, so a repeat after an ambiguous failure is harmless."""
    body: dict[str, Any] = {"state": state, "description": short(description)}
    if environment_url:
        body["environment_url"] = environment_url
    if log_url:
        body["log_url"] = log_url
    for attempt in range(2):
        try:
            await gh.post(f"{deployment.url}/statuses", data=body)
            return
        except AmbiguousWrite:
            if attempt:
                raise


async def latest_state(gh: GitHubAPI, deployment: DeploymentRef) -> str | None:
    """The state of a deployment's newest status (the list is newest first)."""
    data = await gh.getitem(f"{deployment.url}/statuses{{?per_page}}", {"per_page": 1})
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return str(data[0].get("state"))
    return None


async def list_hubbot(
    gh: GitHubAPI,
    repo_url: str,
    *,
    since: datetime,
    environment: str | None = None,
    with_state: bool = True,
    max_items: int = 1000,
    sha: str | None = None,
) -> list[Listed]:
    """hubbot's deployments created after `since` (of `sha` when given), newest first."""
    found: list[Listed] = []
    url_vars: dict[str, Any] = {}
    if environment is not None:
        url_vars["environment"] = environment
    if sha is not None:
        url_vars["sha"] = sha
    url_vars["per_page"] = 100
    template = f"{repo_url}/deployments{{?{','.join(url_vars)}}}"
    seen = 0
    async for item in gh.getiter(template, url_vars):
        seen += 1
        created = _time(item.get("created_at")) if isinstance(item, Mapping) else None
        if created is None or created < since or seen > max_items:
            break  # newest first: everything after this is older
        payload = _hubbot_payload(item)
        if not payload:
            continue
        ref = _ref(item)
        state = await latest_state(gh, ref) if with_state else None
        found.append(Listed(ref, payload, created, state))
    return found


async def newest_per_environment(
    gh: GitHubAPI,
    repo_url: str,
    *,
    since: datetime,
    state_of: Callable[[Mapping[str, Any]], bool] = lambda payload: True,
) -> list[Listed]:
    """hubbot's newest deployment of each environment since `since`.

    Its latest state is read (one call each) only when `state_of(payload)` says it matters;
    claims need it only for previews.
    """
    newest: dict[str, Listed] = {}
    for item in await list_hubbot(gh, repo_url, since=since, with_state=False):
        newest.setdefault(item.ref.environment, item)  # listed newest first
    found = []
    for item in newest.values():
        state = await latest_state(gh, item.ref) if state_of(item.payload) else None
        found.append(Listed(item.ref, item.payload, item.created_at, state))
    return found


def _hubbot_payload(item: Any) -> Mapping[str, Any]:
    payload = item.get("payload") if isinstance(item, Mapping) else None
    meta = payload.get(PAYLOAD_KEY) if isinstance(payload, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def _ref(item: Mapping[str, Any]) -> DeploymentRef:
    return DeploymentRef(
        id=int(item["id"]),
        url=str(item["url"]),
        environment=str(item.get("environment") or ""),
        sha=str(item.get("sha") or ""),
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
