"""`POST /webhook` (and `/`): verify, deduplicate, queue, and answer 202 before any GitHub call.

Every expected failure has its own answer, mapped here at the boundary:
401 for a missing or wrong `X-Hub-Signature-256`, 400 for missing GitHub
headers, a wrong content type or a body that is not a JSON object, 413 over the
size cap, 503 (with `Retry-After`) when the queue is full. Anything else is a
bug: 500, logged once.
"""

from __future__ import annotations

import functools
import json
import logging
import urllib.parse
from typing import Any

import gidgethub
from aiohttp import web
from gidgethub import sansio

from bot.handlers.router import coalesce_tag, job_key
from bot.web.keys import DELIVERIES, DELIVERY_LOG, METRICS, QUEUE, REPLICA, ROUTER, SETTINGS
from bot.web.logs import delivery_context
from bot.web.queue import Job, QueueClosed, QueueFull
from bot.web.replica import Incoming

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "30"
_REQUIRED = ("x-github-event", "x-github-delivery")
_CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")
# The parsed payload once its signature checked out (or checks are off), for the delivery log.
_VERIFIED = web.RequestKey("verified_payload", dict[str, Any])


@functools.lru_cache(maxsize=64)
def _body(message: str, duplicate: bool) -> bytes:
    answer: dict[str, Any] = {"message": message}
    if duplicate:
        answer["duplicate"] = True
    return json.dumps(answer).encode()


def _answer(status: int, message: str, *, duplicate: bool = False) -> web.Response:
    # The few possible bodies are rendered once: acks stay cheap under load.
    return web.Response(
        body=_body(message, duplicate), status=status, content_type="application/json"
    )


def _decode(content_type: str, body: bytes) -> Any:
    """The payload of a JSON or form-encoded delivery; ValueError/KeyError if malformed."""
    if content_type == "application/x-www-form-urlencoded":
        return json.loads(urllib.parse.parse_qs(body.decode("utf-8"))["payload"][0])
    return json.loads(body)


async def receive(request: web.Request) -> web.Response:
    """Handle one webhook delivery."""
    delivery = request.headers.get("x-github-delivery", "-")[:100]
    event_name = request.headers.get("x-github-event")
    with delivery_context(delivery):
        response, result = await _receive(request, event_name)
    request.app[METRICS].delivery(event_name, result)
    request.app[DELIVERY_LOG].record(
        delivery_id=delivery,
        event=event_name,
        status=response.status,
        answer=result,
        payload=request.get(_VERIFIED),
    )
    return response


async def _receive(request: web.Request, event_name: str | None) -> tuple[web.Response, str]:
    app = request.app
    settings = app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_webhook_bytes:
        return _answer(413, "payload too large"), "too_large"
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _answer(413, "payload too large"), "too_large"
    headers = {k.lower(): v for k, v in request.headers.items()}
    received = dict(headers)  # as GitHub sent them, for forwarding to the leader
    # Only SHA-256 counts: gidgethub would fall back to the SHA-1 header.
    signature = headers.pop("x-hub-signature-256", None)
    headers.pop("x-hub-signature", None)
    secret = settings.webhook_secret
    if secret is not None:
        if not signature:
            return _answer(401, "missing X-Hub-Signature-256"), "invalid_signature"
        if not signature.startswith("sha256="):
            return _answer(401, "X-Hub-Signature-256 must be sha256=<hex>"), "invalid_signature"
        try:
            sansio.validate_event(body, signature=signature, secret=secret)  # constant time
        except gidgethub.ValidationFailure:
            return _answer(401, "signature does not match"), "invalid_signature"
    missing = [h for h in _REQUIRED if not headers.get(h)]
    if missing:
        return _answer(400, f"missing header(s): {', '.join(missing)}"), "bad_request"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _CONTENT_TYPES:
        return _answer(400, "content type must be application/json"), "bad_request"
    try:
        data = _decode(content_type, body)
    except (ValueError, KeyError, IndexError):  # UnicodeDecodeError is a ValueError
        return _answer(400, "body is not valid JSON"), "bad_request"
    except RecursionError:  # json's decoder recurses once per level of nesting
        return _answer(400, "body is nested too deeply"), "bad_request"
    if not isinstance(data, dict):
        return _answer(400, "body must be a JSON object"), "bad_request"
    request[_VERIFIED] = data
    incoming = Incoming(body, received, data)
    replica = app[REPLICA]
    if not replica.leading:  # a standby: the leader decides (see bot.web.replica)
        return await replica.receive(incoming)
    return route(app, incoming)


def route(app: web.Application, incoming: Incoming) -> tuple[web.Response, str]:
    """The leader's handling of a verified delivery: dedupe, then the queue."""
    event = sansio.Event(incoming.data, event=incoming.event, delivery_id=incoming.delivery_id)
    replica = app[REPLICA]
    handover = replica.is_handover(incoming)
    seen = app[DELIVERIES]
    dedupe_key = (incoming.hook_id, event.delivery_id)
    # A stepping-down leader's handover was deduplicated there; only our own record counts.
    if dedupe_key in seen or (not handover and dedupe_key in replica.forwarded):
        logger.info("delivery %s of %s seen before: not processed again", *dedupe_key[::-1])
        answer = _answer(202, "duplicate delivery: already processed", duplicate=True)
        return answer, "duplicate"
    installation = event.data.get("installation")
    if not isinstance(installation, dict) or not isinstance(installation.get("id"), int):
        logger.debug("%s event without an installation: ignored", event.event)
        return _answer(202, "ignored: no installation in the payload"), "ignored"
    try:
        handlers = app[ROUTER].fetch(event)
    except TypeError:  # the router looks `action` up in a dict: an object there is no action
        handlers = frozenset()
    if not handlers:
        logger.debug("no handler for %s/%s: ignored", event.event, event.data.get("action"))
        return _answer(202, "ignored: nothing handles this event"), "ignored"
    job = Job(
        key=job_key(event),
        delivery_id=event.delivery_id,
        event=event.event,
        payload=event.data,
        tag=coalesce_tag(event),
        hook_id=incoming.hook_id,
    )
    try:
        superseded = app[QUEUE].submit(job)
    except (QueueFull, QueueClosed):
        logger.warning("queue full: %s refused with 503", event.event)
        response = _answer(503, "busy: the queue is full, retry later")
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response, "queue_full"
    seen[dedupe_key] = True
    if superseded is not None:
        logger.info("superseded queued delivery %s", superseded.delivery_id)
    return _answer(202, "accepted"), "accepted"
