"""GitHub's HTTP manners shared by the routes: error bodies, body schemas, pagination.

The request gate (auth, rate limits, faults, ETags, records) is in `gate.py`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol, TypeVar

import jsonschema
from aiohttp import web

DOCS = "https://docs.github.com/rest"
API_VERSION = "2022-11-28"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {rid}."
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Handler)


class ApiError(Exception):
    """An answer GitHub gives as a JSON error body (`message`, `documentation_url`, `status`)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        doc: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.doc = doc

    def response(self, request: web.Request | None = None) -> web.Response:
        """The JSON error response."""
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = self.doc or (_doc_url(request) if request else DOCS)
        body["status"] = str(self.status)
        return json_response(body, status=self.status, headers=self.headers)


def not_found(request: web.Request | None = None) -> ApiError:
    """GitHub's 404."""
    return ApiError(404, "Not Found")


def validation_failed(
    resource: str, field_name: str, message: str, code: str = "custom"
) -> ApiError:
    """GitHub's 422 "Validation Failed" with one error entry."""
    error = {"resource": resource, "code": code, "field": field_name, "message": message}
    return ApiError(422, "Validation Failed", errors=[error])


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response with GitHub's content type."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


# ---- route metadata ----------------------------------------------------------------
def auth_kind(kind: str) -> Callable[[F], F]:
    """Mark a handler's credential: "token" (default), "jwt" or "none"."""

    def mark(handler: F) -> F:
        handler.github_auth = kind  # type: ignore[attr-defined]
        return handler

    return mark


def operation_key(request: web.Request) -> str:
    """`METHOD /path/{template}` of the matched route, as in the OpenAPI description."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    return f"{request.method.upper()} {canonical}"


@dataclass(frozen=True)
class Operation:
    """What the double knows of one REST operation: its docs and request body schema."""

    doc: str
    body: dict[str, Any] | None
    body_required: bool


@functools.cache
def operations() -> dict[str, Operation]:
    """The body schemas extracted from GitHub's OpenAPI description (shipped in the package)."""
    text = resources.files("bot.sandbox.github").joinpath("operations.json").read_text()
    raw = json.loads(text)
    return {
        key: Operation(
            doc=v["doc"], body=v.get("body"), body_required=v.get("body_required", False)
        )
        for key, v in raw["operations"].items()
    }


def _doc_url(request: web.Request) -> str:
    op = operations().get(operation_key(request))
    return op.doc if op else DOCS


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as GitHub reads it: 400 on bad JSON, 422 against the endpoint's schema."""
    raw = await request.read()
    op = operations().get(operation_key(request))
    if not raw.strip():
        if op is not None and op.body_required:
            raise ApiError(400, "Problems parsing JSON")
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "Problems parsing JSON") from exc
    if op is not None and op.body is not None:
        _check_schema(data, op.body)
    if not isinstance(data, dict):
        # Only add-labels accepts a bare array; it is normalised by its handler.
        return {"__array__": data}
    return data


def _check_schema(data: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft4Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        detail = f'"{missing}" wasn\'t supplied.'
    else:
        where = "/".join(f"properties/{p}" if isinstance(p, str) else "items" for p in error.path)
        value = json.dumps(error.instance)
        detail = f"For '{where or 'body'}', {value} {_describe(error)}."
    raise ApiError(422, f"Invalid request.\n\n{detail}")


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        return f"is not a possible value ({', '.join(map(str, error.validator_value))})"
    if error.validator == "type":
        return f"is not {'an' if str(error.validator_value)[0] in 'aeiou' else 'a'} " + str(
            error.validator_value
        )
    return str(error.message).replace(json.dumps(error.instance), "").strip() or "is not valid"


# ---- pagination --------------------------------------------------------------------
def page_args(request: web.Request, *, default: int = 30, maximum: int = 100) -> tuple[int, int]:
    """`(page, per_page)` from the query: per_page capped at `maximum`, bad values defaulted."""

    def number(name: str, fallback: int) -> int:
        try:
            value = int(request.query.get(name, fallback))
        except ValueError:
            return fallback
        return value if value > 0 else fallback

    return number("page", 1), min(number("per_page", default), maximum)


def paginate(
    request: web.Request, items: Sequence[Any], *, default: int = 30, maximum: int = 100
) -> tuple[list[Any], dict[str, str]]:
    """One page of `items` and the `Link` header (next, last, first, prev) as GitHub sends it."""
    page, per_page = page_args(request, default=default, maximum=maximum)
    last = max(1, -(-len(items) // per_page))
    chunk = list(items[(page - 1) * per_page : page * per_page])
    links = []

    def url(n: int) -> str:
        return str(request.url.update_query(page=str(n), per_page=str(per_page)))

    if page < last:
        links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
    if page > 1:
        links += [f'<{url(1)}>; rel="first"', f'<{url(min(page - 1, last))}>; rel="prev"']
    return chunk, ({"Link": ", ".join(links)} if links else {})


# ---- checking hook -----------------------------------------------------------------
@dataclass
class Exchange:
    """One request and its response, for an outside checker (such as the OpenAPI one)."""

    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    template: str | None = None  # the matched route, as the description spells it
    path_params: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""


class Checker(Protocol):
    """Validates exchanges; returns human-readable violations (none when the request is fine)."""

    def check_request(self, exchange: Exchange) -> list[str]:
        """Violations of the request."""
        ...

    def check_response(self, exchange: Exchange) -> list[str]:
        """Violations of the response."""
        ...
