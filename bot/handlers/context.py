"""What every handler receives besides the event and its GitHub client: the app's shared services.

`router.dispatch(event, gh, services=services)`. The services hold only caches
and pure functions, so losing them (a restart) costs API calls, never correctness.
Later features add their own fields here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.core.findings import Finding
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.deploys.claims import Claim
from bot.deploys.service import DeployService
from bot.github.comments import CommentCache
from bot.github.permissions import PermissionCache
from bot.github.repo_settings import SettingsCache
from bot.github.snapshot import SnapshotReader


class PayloadError(ValueError):
    """A payload lacks a field a handler needs; the web layer logs it without a traceback."""


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """The planner's answer in the shape the GitHub side posts."""

    findings: tuple[Finding, ...]
    body: str  # the PR comment, starting with the plan marker
    title: str  # one line: the verdict
    summary: str  # the check run's summary (markdown)


class PlanFn(Protocol):
    """(base, head, settings, labels, extra findings) -> outcome; pure and blocking (a thread)."""

    def __call__(
        self,
        base: Snapshot,
        head: Snapshot,
        settings: Settings,
        labels: Sequence[str],
        extra_findings: Sequence[Finding],
        *,
        claims: Mapping[str, Claim] | None = None,
        pr: int | None = None,
    ) -> PlanOutcome:
        """Plan a change and render it (claims: staging claims to show; pr: this PR)."""
        ...


def _default_plan() -> PlanFn:
    from bot.handlers.planning import plan_change

    return plan_change


@dataclass(slots=True)
class Services:
    """Shared, app-wide services for handlers."""

    app_id: str | None = None
    snapshots: SnapshotReader = field(default_factory=SnapshotReader)
    settings: SettingsCache = field(default_factory=SettingsCache)
    comments: CommentCache = field(default_factory=CommentCache)
    plan: PlanFn = field(default_factory=_default_plan)
    deploys: DeployService = field(default_factory=DeployService)

    def __post_init__(self) -> None:
        # Deploys read the same snapshots, settings and comments as planning does.
        self.deploys.bind(
            snapshots=self.snapshots,
            settings=self.settings,
            comments=self.comments,
            app_id=self.app_id,
        )

    permissions: PermissionCache = field(default_factory=PermissionCache)
