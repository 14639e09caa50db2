"""`GET /` and `GET /status.json`: what the bot is doing, read-only and without secrets.

The page shows the recent deliveries (from the `DeliveryLog`), the queue, and
the rollouts, recent deploys and staging claims of the deploy service
(`DeployService.snapshot()`, which reads memory only: the page never calls GitHub).
Only whitelisted fields of that snapshot are shown, every string is cut short,
and the known secrets (webhook secret, private key, Kubernetes token) and
anything shaped like a GitHub token, an age key or a PEM block are redacted before
rendering. The HTML is escaped (`status_html`), carries a strict CSP, and
refreshes itself with a `<meta>` tag: there is no script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from bot.deploys.secrets import redact, scrub
from bot.web.keys import DELIVERY_LOG, LEADERSHIP, QUEUE, REPLICA, SERVICES, SETTINGS
from bot.web.status_html import CSP, render

logger = logging.getLogger(__name__)

# Headers for both answers: never cached, never sniffed, no Referer leaks to links.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_MAX_TEXT = 300
_MAX_ITEMS = 2000  # rollouts, waves, targets or claims shown: an all-hubs rollout fits


class DeploySource(Protocol):
    """Anything that can describe its rollouts and claims (the `DeployService`)."""

    def snapshot(self) -> dict[str, Any]:
        """Rollouts and claims as plain data."""
        ...


def iso(value: object) -> str:
    """A time (epoch seconds, datetime or ISO string) as `YYYY-MM-DD HH:MM:SSZ`, else ""."""
    if isinstance(value, bool):
        return ""
    try:
        if isinstance(value, int | float):
            value = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):  # not a time, or out of datetime's range
        return ""
    if not isinstance(value, datetime):
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


class _Cleaner:
    """Turns untrusted values into short, secret-free plain data."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def text(self, value: object) -> str:
        if value is None or isinstance(value, bool | dict | list | tuple | set):
            return ""
        text = scrub(redact(str(value), self.secrets))
        return text[:_MAX_TEXT]

    def number(self, value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return round(float(value), 3)

    def integer(self, value: object) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def texts(self, value: object) -> list[str]:
        return [self.text(v) for v in _items(value)]


def _items(value: object) -> list[Any]:
    return list(value)[:_MAX_ITEMS] if isinstance(value, list | tuple) else []


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def deploy_view(raw: object, clean: _Cleaner) -> dict[str, Any]:
    """The whitelisted, cleaned part of a `DeployService.snapshot()` the page shows."""
    raw = _mapping(raw)
    recovery = _mapping(raw.get("recovery"))
    return {
        "executor": clean.text(raw.get("executor")),
        "recovery": {k: clean.text(recovery.get(k)) for k in ("state", "detail")}
        | {k: clean.integer(recovery.get(k)) for k in ("requeued", "adopted", "missed_pushes")},
        "rollouts": [_rollout(r, clean) for r in _items(raw.get("rollouts"))],
        "claims": [_claim(c, clean) for c in _items(raw.get("claims"))],
        "recent": [_origin(o, clean) for o in _items(raw.get("recent"))],
    }


def _rollout(raw: object, clean: _Cleaner) -> dict[str, Any]:
    raw = _mapping(raw)
    return {
        "repo": clean.text(raw.get("repo")),
        "executor": clean.text(raw.get("executor")),
        "waves": [_wave(w, clean) for w in _items(raw.get("waves"))],
    }


def _wave(raw: object, clean: _Cleaner) -> dict[str, Any]:
    raw = _mapping(raw)
    fields = ("cluster", "stream", "sha", "actor")
    return {k: clean.text(raw.get(k)) for k in fields} | {
        "id": clean.integer(raw.get("id")),
        "pr": clean.integer(raw.get("pr")),
        "sources": clean.texts(raw.get("sources")),
        "targets": [_target(t, clean) for t in _items(raw.get("targets"))],
    }


def _target(raw: object, clean: _Cleaner) -> dict[str, Any]:
    raw = _mapping(raw)
    fields = ("target", "stage", "state", "detail")
    return {k: clean.text(raw.get(k)) for k in fields} | {
        "seconds": clean.number(raw.get("seconds"))
    }


def _origin(raw: object, clean: _Cleaner) -> dict[str, Any]:
    raw = _mapping(raw)
    fields = ("repo", "kind", "sha", "actor", "progress", "state")
    return {k: clean.text(raw.get(k)) for k in fields} | {
        "pr": clean.integer(raw.get("pr")),
        "created": iso(raw.get("created")),
    }


def _claim(raw: object, clean: _Cleaner) -> dict[str, Any]:
    raw = _mapping(raw)
    return {k: clean.text(raw.get(k)) for k in ("repo", "environment", "author")} | {
        "pr": clean.integer(raw.get("pr")),
        "since": iso(raw.get("since")),
        "expires": iso(raw.get("expires")),
    }


def _secrets(app: web.Application) -> list[str]:
    settings = app[SETTINGS]
    found = [settings.webhook_secret or "", settings.private_key]
    found += [line for line in settings.private_key.splitlines() if len(line.strip()) >= 16]
    found.append(app[SERVICES].deploys.config.kube_token or "")
    return found


def _replica(app: web.Application, clean: _Cleaner) -> dict[str, Any]:
    """This replica's role, the leader's pod name, what it holds, how plan recovery went."""
    view = app[REPLICA].view()
    plans = app[LEADERSHIP].plans
    return {
        "role": clean.text(view["role"]),
        "leader": clean.text(view["leader"]),
        "held": clean.integer(view["held"]),
        "plan_recovery": {
            "state": clean.text(plans.get("state")),
            "detail": clean.text(plans.get("detail")),
        }
        | {k: clean.integer(plans.get(k)) for k in ("stale", "calls")},
    }


def status_data(app: web.Application, *, now: Callable[[], float] = time.time) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-ready data."""
    clean = _Cleaner(_secrets(app))
    queue = app[QUEUE]
    deliveries = []
    for entry in app[DELIVERY_LOG].recent():
        row = {k: clean.text(v) if isinstance(v, str) else v for k, v in entry.as_dict().items()}
        row["received_at"] = iso(entry.received_at)
        deliveries.append(row)
    data: dict[str, Any] = {
        "generated_at": iso(now()),
        "queue": {
            "depth": queue.depth,
            "max": queue.maxsize,
            "running": queue.running,
            "workers": app[SETTINGS].workers,
        },
        "deliveries": deliveries,
        "replica": _replica(app, clean),
        "deploys": None,
        "deploys_problem": "",
    }
    source: DeploySource = app[SERVICES].deploys
    try:
        raw = source.snapshot()
    except NotImplementedError:
        data["deploys_problem"] = "the deploy service does not report its state yet"
    except Exception:  # the page must still show deliveries when the deploy side is broken
        logger.exception("the deploy service's snapshot failed")
        data["deploys_problem"] = "the deploy service's state could not be read"
    else:
        data["deploys"] = deploy_view(raw, clean)
    return data


async def status_page(request: web.Request) -> web.Response:
    """`GET /`: the status page (HTML)."""
    body = render(status_data(request.app))
    headers = SECURITY_HEADERS | {"Content-Security-Policy": CSP}
    return web.Response(text=body, content_type="text/html", charset="utf-8", headers=headers)


async def status_json(request: web.Request) -> web.Response:
    """`GET /status.json`: the page's data as JSON."""
    headers = SECURITY_HEADERS | {"Content-Security-Policy": "default-src 'none'"}
    return web.json_response(status_data(request.app), headers=headers)
