"""Everything the GitHub double remembers: users, pulls, comments, checks, deployments, logs.

Plain dataclasses; the git side (branches, commits) lives in the repository itself.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Permission = Literal["admin", "maintain", "write", "triage", "read", "none"]
PERMISSIONS: tuple[Permission, ...] = ("admin", "maintain", "write", "triage", "read", "none")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")


def now() -> dt.datetime:
    """The current UTC time, to the second (GitHub's timestamps have no fractions)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    """GitHub's timestamp format: `2024-01-31T12:00:00Z`."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class User:
    """A GitHub account: a person, a bot, or the organisation that owns the repository."""

    login: str
    id: int
    type: str = "User"  # User, Bot, Organization
    permission: Permission = "none"
    name: str | None = None

    @property
    def email(self) -> str:
        """The noreply address GitHub gives commits made through the web."""
        return f"{self.id}+{self.login}@users.noreply.github.com"


@dataclass
class Reaction:
    """An emoji reaction on a comment."""

    id: int
    user: str
    content: str
    created_at: dt.datetime


@dataclass
class Comment:
    """An issue comment on a pull request."""

    id: int
    number: int
    user: str
    body: str
    created_at: dt.datetime
    updated_at: dt.datetime
    via_app: bool = False
    reactions: list[Reaction] = field(default_factory=list)


@dataclass
class Review:
    """A pull request review."""

    id: int
    user: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED
    body: str
    commit_id: str
    submitted_at: dt.datetime


@dataclass
class Label:
    """A repository label."""

    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Pull:
    """A pull request; `head_sha` follows the head branch while open and freezes when closed."""

    number: int
    id: int
    title: str
    body: str | None
    user: str
    head_ref: str
    base_ref: str
    head_sha: str
    base_sha: str
    created_at: dt.datetime
    updated_at: dt.datetime
    draft: bool = False
    fork: bool = False
    state: str = "open"
    merged: bool = False
    merged_by: str | None = None
    merged_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    merge_commit_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    head_history: list[str] = field(default_factory=list)


@dataclass
class CheckRun:
    """A check run and every annotation it has gathered."""

    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    external_id: str | None = None
    details_url: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    suite_id: int = 0


@dataclass
class DeploymentStatus:
    """One status of a deployment."""

    id: int
    state: str
    description: str
    environment: str
    environment_url: str
    log_url: str
    creator: str
    created_at: dt.datetime


@dataclass
class Deployment:
    """A GitHub Deployment and its statuses (oldest first)."""

    id: int
    sha: str
    ref: str
    task: str
    payload: dict[str, Any] | str
    environment: str
    original_environment: str
    description: str | None
    creator: str
    created_at: dt.datetime
    updated_at: dt.datetime
    production_environment: bool
    transient_environment: bool
    statuses: list[DeploymentStatus] = field(default_factory=list)


@dataclass
class Delivery:
    """A webhook sent (or re-sent): what went out, and what the receiver answered."""

    index: int
    guid: str
    event: str
    action: str | None
    payload: bytes
    redelivery: bool = False
    status: int | None = None
    error: str | None = None
    delivered_at: dt.datetime | None = None
    duration_ms: float | None = None

    def summary(self) -> dict[str, Any]:
        """The control API's view of the delivery (without the payload)."""
        return {
            "index": self.index,
            "id": self.guid,
            "event": self.event,
            "action": self.action,
            "status": self.status,
            "error": self.error,
            "redelivery": self.redelivery,
            "delivered_at": iso(self.delivered_at) if self.delivered_at else None,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RecordedRequest:
    """An API request the double answered (tokens are never kept, only who they belong to)."""

    index: int
    method: str
    path: str
    query: str
    status: int
    time: str
    duration_ms: float
    auth: str  # installation:<id>, jwt:<app id>, none, invalid

    def to_dict(self) -> dict[str, Any]:
        """The control API's view of the request."""
        return {
            "index": self.index,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "time": self.time,
            "duration_ms": self.duration_ms,
            "auth": self.auth,
        }


@dataclass
class Fault:
    """An injected failure for the next `times` requests matching method and path.

    The first `skip` matching requests pass untouched, so a test can fail the n-th call
    of a path it calls repeatedly.
    """

    id: int
    method: str
    path: re.Pattern[str]
    status: int | None
    times: int
    delay_seconds: float
    headers: dict[str, str]
    body: Any
    skip: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return (
            self.times > 0
            and self.method in ("*", method.upper())
            and self.path.search(path) is not None
        )

    def to_dict(self) -> dict[str, Any]:
        """The control API's view of the fault."""
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path.pattern,
            "status": self.status,
            "times": self.times,
            "delay_seconds": self.delay_seconds,
            "headers": self.headers,
            "body": self.body,
            "skip": self.skip,
        }


@dataclass
class Team:
    """An organisation team and its members (login to role)."""

    org: str
    slug: str
    id: int
    members: dict[str, str] = field(default_factory=dict)


@dataclass
class AppInfo:
    """The GitHub App the double hosts, and its single installation."""

    id: int
    slug: str
    name: str
    installation_id: int
    private_key_pem: str
    client_id: str
    client_secret: str
    webhook_secret: str | None
    webhook_url: str | None
    hook_id: int
    created_at: dt.datetime

    @property
    def bot_login(self) -> str:
        """The login GitHub gives the app's bot user."""
        return f"{self.slug}[bot]"


class State:
    """The double's whole memory, shared by the REST routes, the control API and the webhooks."""

    def __init__(self, *, owner: str, name: str, app: AppInfo, repo_id: int = 1296269):
        self.owner = owner
        self.name = name
        self.app = app
        self.repo_id = repo_id
        self.created_at = now()
        self.pushed_at = self.created_at
        self.base_url = ""  # set once the server listens
        self._ids = itertools.count(1000)
        self.users: dict[str, User] = {}
        self.pulls: dict[int, Pull] = {}
        self.comments: dict[int, Comment] = {}
        self.labels: dict[str, Label] = {}
        self.check_runs: dict[int, CheckRun] = {}
        self.deployments: dict[int, Deployment] = {}
        self.teams: dict[tuple[str, str], Team] = {}
        self.deliveries: list[Delivery] = []
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.violations: list[str] = []
        self.manifest_codes: dict[str, tuple[dt.datetime, dict[str, Any]]] = {}
        self.suites: dict[str, int] = {}  # head sha -> check suite id
        self.add_user(owner, type="Organization", permission="admin")
        self.add_user(app.bot_login, type="Bot", permission="none")

    @property
    def full_name(self) -> str:
        """`owner/name` of the repository."""
        return f"{self.owner}/{self.name}"

    def next_id(self) -> int:
        """A fresh id, unique across every kind of object."""
        return next(self._ids)

    def add_user(self, login: str, *, type: str = "User", permission: Permission = "none") -> User:
        """Create or update a user."""
        user = self.users.get(login.lower())
        if user is None:
            user = User(login=login, id=self.next_id(), type=type, permission=permission)
            self.users[login.lower()] = user
        else:
            user.type, user.permission = type, permission
        return user

    def user(self, login: str) -> User | None:
        """A user by login (case-insensitive, as on GitHub)."""
        return self.users.get(login.lower())

    def ensure_user(self, login: str) -> User:
        """A user by login, created with no permission when unknown."""
        return self.user(login) or self.add_user(login)

    def next_number(self) -> int:
        """The next pull request number."""
        return max(self.pulls, default=0) + 1

    def suite_id(self, head_sha: str) -> int:
        """The check suite id of a commit (one suite per commit for the app)."""
        if head_sha not in self.suites:
            self.suites[head_sha] = self.next_id()
        return self.suites[head_sha]

    def label(self, name: str) -> Label:
        """A repository label, created on first use as GitHub's add-labels endpoint does."""
        key = name.lower()
        if key not in self.labels:
            self.labels[key] = Label(id=self.next_id(), name=name)
        return self.labels[key]
