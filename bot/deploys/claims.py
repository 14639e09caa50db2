"""Staging claims: a PR that previews on a staging hub holds it until released.

Claims live in GitHub, as the Deployments hubbot creates: a PR preview is a
transient deployment to `<cluster>/<hub>` whose payload names the PR. The newest
deployment of an environment decides: if it is a preview of an open PR, younger
than `claim_hours`, and not marked `inactive` (released by `/unlock`, by closing
the PR, or by a merge that redeployed the hub), that PR holds the hub. A merge to
the default branch always wins: its deployment is newer and names no PR.

This module is pure: the GitHub side feeds it deployment records; memory keeps
only a cache of the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Deployment statuses after which a preview no longer holds its hub.
RELEASED_STATES = frozenset({"inactive"})


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """What the claim rules need of one GitHub Deployment."""

    id: int
    environment: str  # "<cluster>/<hub>"
    sha: str
    created_at: datetime
    payload: Mapping[str, Any]  # hubbot's payload: {"hubbot": {"pr": n, "author": login, ...}}
    state: str | None  # the latest status, None when it has none yet

    @property
    def pr(self) -> int | None:
        """The PR this deployment previews, if it is a preview."""
        meta = self.payload.get("hubbot") if isinstance(self.payload, Mapping) else None
        pr = meta.get("pr") if isinstance(meta, Mapping) else None
        return pr if isinstance(pr, int) and not isinstance(pr, bool) else None

    @property
    def author(self) -> str:
        """The login of the previewed PR's author, as recorded."""
        meta = self.payload.get("hubbot") if isinstance(self.payload, Mapping) else None
        author = meta.get("pr_author") if isinstance(meta, Mapping) else None
        return author if isinstance(author, str) else ""


@dataclass(frozen=True, slots=True)
class Claim:
    """A staging hub held by a PR."""

    environment: str
    pr: int
    author: str
    since: datetime
    expires: datetime
    deployment_id: int


def derive_claims(
    records: Iterable[DeploymentRecord],
    *,
    now: datetime,
    claim_hours: float,
    open_prs: Iterable[int] | None = None,
) -> dict[str, Claim]:
    """Which PR holds each environment, from the newest deployment of each."""
    newest: dict[str, DeploymentRecord] = {}
    for record in records:
        current = newest.get(record.environment)
        if current is None or (record.created_at, record.id) > (current.created_at, current.id):
            newest[record.environment] = record
    still_open = set(open_prs) if open_prs is not None else None
    claims = {}
    for env, record in newest.items():
        pr = record.pr
        if pr is None or record.state in RELEASED_STATES:
            continue
        if still_open is not None and pr not in still_open:
            continue
        expires = record.created_at + timedelta(hours=claim_hours)
        if expires <= now:
            continue
        claims[env] = Claim(env, pr, record.author, record.created_at, expires, record.id)
    return claims


def conflicts(claims: Mapping[str, Claim], environments: Iterable[str], pr: int) -> list[Claim]:
    """Claims held by another PR on any of these environments."""
    return [claims[e] for e in sorted(set(environments)) if e in claims and claims[e].pr != pr]
