"""Plumbing of the control API: JSON bodies, typed fields, errors, waiting on webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.sandbox.github.http import ApiError, json_response
from bot.sandbox.github.state import Delivery

_REQUIRED = object()


@web.middleware
async def control_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Map ApiError and unknown control routes to JSON errors."""
    if not request.path.startswith("/_sandbox"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(
            {"message": exc.message, "errors": exc.errors or []}, status=exc.status
        )
    except web.HTTPNotFound:
        return json_response({"message": f"no control route {request.path}"}, status=404)
    except web.HTTPMethodNotAllowed as exc:
        return json_response(
            {"message": f"method not allowed: {request.method}"}, status=exc.status
        )


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object body of a control call ({} when empty; 400 otherwise)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def field(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _REQUIRED
) -> Any:
    """`body[name]` checked against `kind` (422), or `default` when absent (422 if required)."""
    if name not in body or body[name] is None:
        if default is _REQUIRED:
            raise ApiError(422, f'"{name}" is required')
        return default
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiError(422, f'"{name}" has the wrong type')
    return value


def files_of(body: dict[str, Any]) -> dict[str, str | None]:
    """The `files` mapping: path to content, or null to delete."""
    files: dict[str, str | None] = field(body, "files", dict, {})
    for path, content in files.items():
        if content is not None and not isinstance(content, str):
            raise ApiError(422, f'files["{path}"] must be a string, or null to delete')
    return files


async def settle(futures: list[asyncio.Future[Delivery]]) -> list[dict[str, Any]]:
    """Wait for deliveries to be answered; their summaries."""
    done = await asyncio.gather(*futures)
    return [d.summary() for d in done]


def since(request: web.Request) -> int:
    """The `?since=<index>` of a listing."""
    try:
        return max(0, int(request.query.get("since", "0")))
    except ValueError as exc:
        raise ApiError(422, "since is an index") from exc
