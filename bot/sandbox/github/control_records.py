"""Control API records and levers: deliveries, requests, deployments, faults, tokens, codes."""

from __future__ import annotations

import json
import re
import secrets

from aiohttp import web

from bot.sandbox.github import payloads
from bot.sandbox.github.context import ctx
from bot.sandbox.github.control_io import field, read_body, since
from bot.sandbox.github.http import ApiError, json_response
from bot.sandbox.github.state import Fault, now
from bot.sandbox.github.views import deployment_view

routes = web.RouteTableDef()


# ---- webhooks ----------------------------------------------------------------------
@routes.get("/_sandbox/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    """Webhooks sent, oldest first (`?since=<index>`)."""
    found = ctx(request).state.deliveries[since(request) :]
    return json_response([d.summary() for d in found])


@routes.get("/_sandbox/deliveries/{index}")
async def delivery(request: web.Request) -> web.Response:
    """One delivery by index, with its payload."""
    found = ctx(request).state.deliveries
    index = request.match_info["index"]
    if not index.isdigit() or int(index) >= len(found):
        raise ApiError(404, f"no delivery {index}")
    item = found[int(index)]
    return json_response({**item.summary(), "payload": json.loads(item.payload)})


@routes.post("/_sandbox/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    """Send a delivery again with the same `X-GitHub-Delivery`."""
    c = ctx(request)
    guid = field(await read_body(request), "delivery", str)
    try:
        again = await c.hooks.redeliver(guid)
    except KeyError as exc:
        raise ApiError(404, f"no delivery {guid}") from exc
    return json_response(again.summary())


@routes.post("/_sandbox/ping")
async def ping(request: web.Request) -> web.Response:
    """Send a `ping` event, as GitHub does when an app's webhook is set up."""
    c = ctx(request)
    sent = await c.hooks.send("ping", payloads.ping(c.shapes))
    return json_response(sent.summary())


@routes.post("/_sandbox/webhook")
async def set_webhook(request: web.Request) -> web.Response:
    """Change where webhooks go (`url`) and how they are signed (`secret`)."""
    c = ctx(request)
    body = await read_body(request)
    if "url" in body:
        c.state.app.webhook_url = field(body, "url", str, None)
    if "secret" in body:
        c.state.app.webhook_secret = field(body, "secret", str, None)
    return json_response({"url": c.state.app.webhook_url})


# ---- records -----------------------------------------------------------------------
@routes.get("/_sandbox/deployments")
async def deployments(request: web.Request) -> web.Response:
    """Every deployment with its statuses, oldest first."""
    c = ctx(request)
    return json_response([deployment_view(d) for d in c.state.deployments.values()])


@routes.get("/_sandbox/requests")
async def requests(request: web.Request) -> web.Response:
    """Every REST request the double answered, oldest first (`?since=<index>`)."""
    found = ctx(request).state.requests[since(request) :]
    return json_response([r.to_dict() for r in found])


@routes.get("/_sandbox/violations")
async def violations(request: web.Request) -> web.Response:
    """Requests the OpenAPI checker (when plugged in) found the real API would reject."""
    return json_response(ctx(request).state.violations)


# ---- faults, tokens, app manifests -------------------------------------------------
@routes.post("/_sandbox/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Fail the next `times` requests matching `method` and `path` (a regex)."""
    c = ctx(request)
    body = await read_body(request)
    try:
        pattern = re.compile(field(body, "path", str, ".*"))
    except re.error as exc:
        raise ApiError(422, f"path is not a regular expression: {exc}") from exc
    status = field(body, "status", int, None)
    delay = field(body, "delay_seconds", (int, float), 0)
    if status is None and not delay:
        raise ApiError(422, "a fault needs a status, a delay_seconds, or both")
    headers = field(body, "headers", dict, {})
    skip = field(body, "skip", int, 0)
    if skip < 0:
        raise ApiError(422, "skip must be 0 or more")
    fault = Fault(
        id=c.state.next_id(),
        method=field(body, "method", str, "*").upper(),
        path=pattern,
        status=status,
        times=field(body, "times", int, 1),
        delay_seconds=float(delay),
        headers={str(k): str(v) for k, v in headers.items()},
        body=body.get("body"),
        skip=skip,
    )
    c.state.faults.append(fault)
    return json_response(fault.to_dict(), status=201)


@routes.get("/_sandbox/faults")
async def list_faults(request: web.Request) -> web.Response:
    """Faults with their remaining counts."""
    return json_response([f.to_dict() for f in ctx(request).state.faults])


@routes.delete("/_sandbox/faults")
async def clear_faults(request: web.Request) -> web.Response:
    """Remove every fault."""
    state = ctx(request).state
    count = len(state.faults)
    state.faults.clear()
    return json_response({"cleared": count})


@routes.post("/_sandbox/tokens/expire")
async def expire_tokens(request: web.Request) -> web.Response:
    """Expire every installation token now (the next call with one answers 401)."""
    return json_response({"expired": ctx(request).tokens.expire_all()})


@routes.post("/_sandbox/app-manifests")
async def mint_manifest_code(request: web.Request) -> web.Response:
    """A one-time code for `POST /app-manifests/{code}/conversions` (optional `manifest`)."""
    c = ctx(request)
    body = await read_body(request)
    code = secrets.token_hex(10)
    c.state.manifest_codes[code] = (now(), field(body, "manifest", dict, {}))
    return json_response({"code": code}, status=201)
