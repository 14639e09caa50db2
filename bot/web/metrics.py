"""Prometheus metrics, in a registry of the app's own (never the global one).

Every label has a bounded set of values: event names come from a fixed list,
routes are templates (`/repos/{owner}/{repo}/pulls/{number}`), statuses are
HTTP codes. No PR numbers, SHAs, logins or repository names, so a busy bot
cannot grow the series without bound.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# GitHub's webhook event names (docs.github.com/en/webhooks/webhook-events-and-payloads);
# anything else is counted as "other".
KNOWN_EVENTS = frozenset(
    """branch_protection_rule check_run check_suite code_scanning_alert commit_comment create
    delete dependabot_alert deploy_key deployment deployment_review deployment_status
    discussion discussion_comment fork github_app_authorization gollum installation
    installation_repositories installation_target issue_comment issues label
    marketplace_purchase member membership merge_group meta milestone organization org_block
    package page_build ping project project_card project_column projects_v2_item public
    pull_request pull_request_review pull_request_review_comment pull_request_review_thread
    push registry_package release repository repository_dispatch repository_import
    repository_vulnerability_alert security_advisory sponsorship star status team team_add
    watch workflow_dispatch workflow_job workflow_run""".split()
)

DELIVERY_RESULTS = (
    "accepted",
    "duplicate",
    "ignored",
    "invalid_signature",
    "bad_request",
    "too_large",
    "queue_full",
)
HANDLER_RESULTS = ("ok", "error", "superseded")


def event_label(event: str | None) -> str:
    """The event name if GitHub documents it, else "other"."""
    return event if event in KNOWN_EVENTS else "other"


class Metrics:
    """The app's metrics; also the GitHub client's call recorder."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        r = self.registry
        self.deliveries = Counter(
            "hubbot_webhook_deliveries",
            "Webhook deliveries received, by event and how they were answered",
            ["event", "result"],
            registry=r,
        )
        self.handler_runs = Counter(
            "hubbot_handler_runs",
            "Background jobs finished, by event and result",
            ["event", "result"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            "hubbot_handler_seconds",
            "Time to handle one delivery in the background",
            ["event"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.queue_depth = Gauge(
            "hubbot_queue_depth", "Jobs waiting in the queue (not running)", registry=r
        )
        self.queue_running = Gauge("hubbot_queue_running", "Jobs running now", registry=r)
        self.deploys = Counter(
            "hubbot_deploys",
            "Deploy targets ended, by stage (support, staging, prod), executor and ending",
            ["stage", "executor", "ending"],
            registry=r,
        )
        self.deploy_seconds = Histogram(
            "hubbot_deploy_seconds",
            "Time one deploy target took (its job and health check), by stage",
            ["stage"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=r,
        )
        self.deploys_queued = Gauge(
            "hubbot_deploys_queued", "Deploy targets accepted and waiting to start", registry=r
        )
        self.deploys_running = Gauge(
            "hubbot_deploys_running", "Deploy targets running now", registry=r
        )
        self.api_calls = Counter(
            "hubbot_github_api_calls",
            "Requests made to GitHub, by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "hubbot_github_rate_limit_remaining",
            "Requests left in the current rate-limit window, as GitHub last reported",
            ["resource"],
            registry=r,
        )

    def delivery(self, event: str | None, result: str) -> None:
        """Count one webhook delivery and how it was answered."""
        self._child(self.deliveries, event_label(event), result).inc()

    def deploy_finished(self, executor: str, stage: str, ending: str, seconds: float) -> None:
        """Count one deploy target that ended; time it when it ran."""
        self.deploys.labels(stage, executor, ending).inc()
        if seconds > 0:
            self.deploy_seconds.labels(stage).observe(seconds)

    def handled(self, event: str, result: str, seconds: float | None = None) -> None:
        """Count one finished background job (and its duration if it ran)."""
        label = event_label(event)
        self._child(self.handler_runs, label, result).inc()
        if seconds is not None:
            self._child(self.handler_seconds, label).observe(seconds)

    def record_call(self, method: str, route: str, status: str) -> None:
        """Count one request to GitHub (`route` must be a template, `status` a code)."""
        self._child(self.api_calls, method, route, status).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        # Labelled children looked up once: labels() validates and locks on every call.
        key = (metric._name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def set_rate_limit(self, resource: str, remaining: int) -> None:
        """Remember the remaining rate limit GitHub reported for `resource`."""
        self.rate_limit_remaining.labels(_resource_label(resource)).set(remaining)

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return bytes(generate_latest(self.registry))


_RESOURCES = frozenset(
    {"core", "search", "graphql", "integration_manifest", "code_scanning_upload", "other"}
)


def _resource_label(resource: str) -> str:
    return resource if resource in _RESOURCES else "other"
