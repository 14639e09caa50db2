"""Plumbing for `kubernetes.aio`: explicit configuration, retries, errors, model checks.

Shared by the Kubernetes executor and the Lease lock. Each API call goes through `call()`,
which retries what Kubernetes says is transient (429, 5xx: see
https://kubernetes.io/docs/reference/using-api/api-concepts/#retrying) and connection
errors with jittered exponential backoff, and turns the rest into a `KubeApiError` whose
message is the API server's `Status.message`, never request headers or tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException
from pydantic import ValidationError

from bot.core.settings import KubernetesSettings
from bot.deploys.executor import DeployJob
from bot.deploys.kubemanifest import JobTemplateError, build_job

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What the bot's namespaced Role must grant, and all it needs: (API group, resource, verbs).
# The Kubernetes executor and the Lease lock use exactly these (tests/test_kube_executor.py
# checks it against the requests the API double served). `/version/` is a non-resource URL
# readable by every authenticated client by default.
RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "jobs", ("create", "delete", "get", "list", "patch", "watch")),
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
    ("coordination.k8s.io", "leases", ("create", "get", "update")),
)
# What leader election among replicas needs (and local deploys' hub Leases with it): the
# chart grants these whenever replicas > 1, even with the local executor.
LEADER_RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("coordination.k8s.io", "leases", ("create", "get", "update")),
)
RETRYABLE = frozenset({429, 500, 502, 503, 504})
CONNECTION_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class KubeApiError(Exception):
    """A Kubernetes API call failed for good (not retryable, or retries ran out)."""

    def __init__(self, what: str, status: int, reason: str, message: str = "") -> None:
        self.what, self.status, self.reason, self.message = what, status, reason, message
        text = f"Kubernetes API: {what}: " + (f"{status} {reason}" if status else reason)
        super().__init__(text + (f": {message}" if message else ""))


class KubeConfigError(Exception):
    """No usable connection settings for the Kubernetes API."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for 429/5xx answers and connection errors."""

    attempts: int = 5
    base_seconds: float = 0.2
    max_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        backoff: float = min(self.max_seconds, self.base_seconds * 2**attempt)
        return backoff * random.uniform(0.5, 1.0)


def describe(exc: BaseException) -> str:
    """A connection error in one line: type and message, never a repr.

    aiohttp's reprs can carry the request's headers, and so the bearer token.
    """
    return f"{type(exc).__name__}: {exc}"[:300]


def api_error(what: str, exc: ApiException) -> KubeApiError:
    """A KubeApiError from the client's exception, with the Status message (never headers)."""
    message = ""
    try:
        message = str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    return KubeApiError(what, int(exc.status or 0), str(exc.reason or ""), message[:500])


async def call(what: str, fn: Callable[[], Awaitable[T]], retry: RetryPolicy) -> T:
    """Await `fn()`, retrying 429/5xx and connection errors; KubeApiError when it fails."""
    for attempt in range(retry.attempts):
        last = attempt == retry.attempts - 1
        try:
            return await fn()
        except ApiException as exc:
            if exc.status not in RETRYABLE or last:
                raise api_error(what, exc) from None
            logger.warning("%s: %s %s, retrying", what, exc.status, exc.reason)
        except CONNECTION_ERRORS as exc:
            if last:
                reason = f"cannot reach the API server ({describe(exc)})"
                raise KubeApiError(what, 0, reason) from None
            logger.warning("%s: %s, retrying", what, describe(exc))
        await asyncio.sleep(retry.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def kube_configuration(
    *, host: str | None = None, token: str | None = None, ca_file: str | None = None
) -> client.Configuration:
    """An explicit client Configuration: `host` (+ token, CA), or the in-cluster service account."""
    configuration = client.Configuration()
    if host is None:
        from kubernetes.aio.config import ConfigException, load_incluster_config

        try:
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise KubeConfigError(
                f"not running in a cluster and no API host given: {exc}"
            ) from None
        return configuration
    configuration.host = host.rstrip("/")
    configuration.ssl_ca_cert = ca_file
    if token:
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return configuration


def check_job_template(settings: KubernetesSettings) -> None:
    """Raise JobTemplateError unless the template makes a valid Job (validated once, up front)."""
    probe = DeployJob("probe", "owner/repo", "cluster", "hub", "0" * 40, "true", 60.0)
    manifest = build_job(
        probe,
        settings.job_template,
        namespace=settings.namespace,
        ttl_seconds=settings.ttl_seconds_after_finished,
        deadline_seconds=60,
    )
    try:
        model = client.V1Job.from_dict(manifest)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5])
        raise JobTemplateError(f"job_template is not a valid batch/v1 Job: {where}") from None
    assert model is not None
    # The client's models drop fields they do not know, so a typo would vanish silently.
    unknown = dropped_fields(manifest, json.loads(model.to_json()), "")
    if unknown:
        raise JobTemplateError(f"job_template has unknown fields: {', '.join(unknown[:5])}")


def dropped_fields(sent: Any, kept: Any, path: str = "") -> list[str]:
    """Paths present (not null) in `sent` but missing from `kept`."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        out = []
        for key, value in sent.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in kept:
                out += [] if value is None else [where]
            else:
                out += dropped_fields(value, kept[key], where)
        return out
    if isinstance(sent, list) and isinstance(kept, list):
        return [
            p
            for i, (a, b) in enumerate(zip(sent, kept, strict=False))
            for p in dropped_fields(a, b, f"{path}[{i}]")
        ]
    return []
