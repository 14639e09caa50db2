"""The aiohttp application factory (aiohttp-demos style): routes, one session, background workers.

`create_app(settings)` wires the webhook route, health, readiness and metrics.
Its cleanup contexts open the one `ClientSession` (closed on shutdown), build
the GitHub client factory, start the queue's workers (drained and stopped on
shutdown), and lead: alone at once, or with leader election once this replica
holds the Lease (`bot.web.leadership`; standbys forward, `bot.web.replica`).
Each queued job gets a client bound to its installation and is dispatched
through the merged router with the shared services.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import cachetools
from aiohttp import web
from gidgethub import routing, sansio

from bot.deploys.service import DeployConfig, DeployService
from bot.github.client import RetryPolicy
from bot.github.factory import GitHubFactory
from bot.handlers.context import PayloadError, Services
from bot.web.deliveries import DeliveryLog
from bot.web.deploys import deploy_log
from bot.web.keys import (
    DELIVERIES,
    DELIVERY_LOG,
    GITHUB,
    LEADERSHIP,
    METRICS,
    QUEUE,
    REPLICA,
    ROUTER,
    SERVICES,
    SESSION,
    SETTINGS,
)
from bot.web.leadership import Leadership, build_replica
from bot.web.logs import install_record_factory
from bot.web.metrics import CONTENT_TYPE, Metrics
from bot.web.queue import Handler, Job, JobQueue, Observer
from bot.web.replica import FORWARDED_BY, MISDIRECTED
from bot.web.settings import ServerSettings
from bot.web.status import status_json, status_page
from bot.web.webhook import receive, route

logger = logging.getLogger(__name__)

# Deliveries remembered for deduplication: GitHub redelivers on request, within days.
DEDUPE_TTL_SECONDS = 3 * 24 * 3600
DEDUPE_MAX = 50_000
DRAIN_SECONDS = 20.0


def create_app(
    settings: ServerSettings,
    *,
    router: routing.Router | None = None,
    services: Services | None = None,
    policy: RetryPolicy | None = None,
) -> web.Application:
    """The hubbot web application for `settings` (router, services and retry policy injectable)."""
    install_record_factory()
    # A little above the cap, so an oversized body is answered 413 by our check, not aiohttp's.
    app = web.Application(client_max_size=settings.max_webhook_bytes + 1)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    if router is None:
        from bot.handlers.router import router as default_router

        router = default_router
    app[ROUTER] = router
    app[SERVICES] = services or Services(
        app_id=settings.app_id, deploys=DeployService(deploy_config(settings))
    )
    app[DELIVERIES] = cachetools.TTLCache(maxsize=DEDUPE_MAX, ttl=DEDUPE_TTL_SECONDS)
    app[DELIVERY_LOG] = log = DeliveryLog()
    app[QUEUE] = JobQueue(
        log.running(_dispatcher(app)),
        maxsize=settings.queue_size,
        workers=settings.workers,
        on_done=log.observer(_observer(app[METRICS])),
    )
    app[REPLICA] = replica = build_replica(settings)
    replica.route = functools.partial(route, app)
    replica.on_passed = lambda delivery, status: log.handling(delivery, f"passed on ({status})")
    app[LEADERSHIP] = Leadership(replica, app[QUEUE], app[SERVICES])
    app[METRICS].queue_depth.set_function(lambda: app[QUEUE].depth)
    app[METRICS].queue_running.set_function(lambda: app[QUEUE].running)
    _measure_deploys(app[METRICS], app[SERVICES].deploys)
    app.router.add_post("/webhook", receive)
    app.router.add_post("/", receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    # What the leader knows: a standby shows the leader's page (its own if the leader is gone).
    app.router.add_get("/", _leaders(status_page))  # POST / stays the webhook
    app.router.add_get("/status.json", _leaders(status_json))
    app.router.add_get("/deploys/{attempt}", _leaders(deploy_log))
    app.cleanup_ctx.append(_github(policy or RetryPolicy(timeout=settings.request_timeout)))
    app.cleanup_ctx.append(_deploys)
    app.cleanup_ctx.append(_workers)
    app.cleanup_ctx.append(_leadership)
    return app


def _measure_deploys(metrics: Metrics, deploys: DeployService) -> None:
    """Deploy counters and gauges, fed by the deploy service (labels stay bounded)."""
    deploys.observers.append(
        lambda executor, step, outcome: metrics.deploy_finished(
            executor, step.stage, outcome.ending, outcome.duration_seconds
        )
    )
    metrics.deploys_queued.set_function(lambda: deploys.counts()[0])
    metrics.deploys_running.set_function(lambda: deploys.counts()[1])


def deploy_config(settings: ServerSettings) -> DeployConfig:
    """The deploy service's server-side settings."""
    return DeployConfig(
        public_url=settings.public_url,
        kube_host=settings.kube_host,
        kube_token=settings.kube_token,
        kube_ca=settings.kube_ca,
        passthrough=settings.deploy_env,
        lease_namespace=settings.pod_namespace if settings.leader_election else None,
    )


async def _deploys(app: web.Application) -> AsyncIterator[None]:
    """Stop deploys cleanly at the end (they start with leadership: see `_leadership`)."""
    yield
    await app[LEADERSHIP].stop_deploys()


async def _leadership(app: web.Application) -> AsyncIterator[None]:
    """Lead (alone) or campaign; step down first at the end, while the session is open."""
    app[LEADERSHIP].start(app[GITHUB], app[SESSION])
    yield
    await app[LEADERSHIP].close()


def _github(policy: RetryPolicy) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        # One session for the app's life (aiohttp: "don't create a session per request").
        async with aiohttp.ClientSession() as session:
            app[SESSION] = session
            app[GITHUB] = GitHubFactory(
                session,
                app_id=settings.app_id,
                private_key=settings.private_key,
                base_url=settings.github_url,
                requester=settings.requester,
                policy=policy,
                recorder=app[METRICS],
            )
            yield

    return context


async def _workers(app: web.Application) -> AsyncIterator[None]:
    queue = app[QUEUE]
    queue.start()
    yield
    await queue.close(drain_timeout=DRAIN_SECONDS)


def _leaders(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """`handler` on the leader; on a standby, the leader's answer to the same GET."""

    async def answer(request: web.Request) -> web.StreamResponse:
        replica = request.app[REPLICA]
        if not replica.leading:
            if FORWARDED_BY in request.headers:  # a stale view of who leads: never loop
                return web.Response(body=MISDIRECTED, status=421, content_type="application/json")
            proxied = await replica.from_leader(request.path_qs)
            if proxied is not None:
                return proxied
        return await handler(request)

    return answer


def _dispatcher(app: web.Application) -> Handler:
    async def handle(job: Job) -> None:
        if job.work is not None:  # not a delivery: work queued behind a PR's events
            await job.work()
            return
        event = sansio.Event(job.payload, event=job.event, delivery_id=job.delivery_id)
        gh = app[GITHUB].for_installation(int(job.payload["installation"]["id"]))
        try:
            await app[ROUTER].dispatch(event, gh, services=app[SERVICES])
        except PayloadError as exc:  # GitHub's payload lacks what we need: not our bug
            logger.warning("%s event not handled: %s", job.event, exc)

    return handle


def _observer(metrics: Metrics) -> Observer:
    def observe(job: Job, result: str, seconds: float | None) -> None:
        metrics.handled(job.event, result, seconds)

    return observe


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: settings loaded, the GitHub session open, and the queue not saturated."""
    app = request.app
    queue = app[QUEUE]
    problems = []
    if GITHUB not in app:
        problems.append("GitHub client not started")
    if queue.saturated:
        problems.append("queue saturated")
    body = {
        "status": "ready" if not problems else "not ready",
        "problems": problems,
        "role": app[REPLICA].role,  # a standby is ready: it forwards to the leader
        "queue_depth": queue.depth,
        "queue_running": queue.running,
        "queue_max": queue.maxsize,
    }
    return web.json_response(body, status=503 if problems else 200)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the app's own registry."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
