"""GitHub's HTTP manners: error bodies, headers, ETags, rate limits, pagination, auth, faults.

One middleware wraps every REST route: it injects faults, authenticates, checks the
request (against the shipped body schemas, and against the OpenAPI description when a
checker is plugged in), adds GitHub's headers, answers 304 on a matching ETag and
records the exchange.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol, TypeVar

import jsonschema
from aiohttp import web

from bot.sandbox.github.auth import (
    AuthError,
    TokenStore,
    looks_like_jwt,
    parse_authorization,
    verify_app_jwt,
)
from bot.sandbox.github.state import RecordedRequest, State, iso, now

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


# ---- the middleware ----------------------------------------------------------------
class Gate:
    """Authentication, rate limits, faults and recording shared by every REST route."""

    def __init__(
        self,
        state: State,
        tokens: TokenStore,
        *,
        public_key: str,
        rate_limit: int = 5000,
        checker: Checker | None = None,
    ):
        self.state = state
        self.tokens = tokens
        self.public_key = public_key
        self.rate_limit = rate_limit
        self.checker = checker
        self.closing = asyncio.Event()
        self._used: dict[str, tuple[int, int]] = {}  # identity -> (used, reset epoch)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run one REST request through faults, auth, checks, the handler and the recorder."""
        if request.path.startswith(("/_sandbox", "/_html/")):
            return await handler(request)  # the control API and the web pages: not the API
        started = time.perf_counter()
        request_id = _request_id()
        identity = "none"
        exchange = Exchange(
            method=request.method,
            path=request.path,
            query=request.query_string,
            request_headers=dict(request.headers),
            request_body=await request.read(),
        )
        if not isinstance(request.match_info.http_exception, web.HTTPException):
            exchange.template = request.match_info.route.resource.canonical  # type: ignore[union-attr]
            exchange.path_params = dict(request.match_info)
        response: web.StreamResponse | None
        try:
            response = await self._fault(request, request_id)
            if response is None:
                identity = self._authenticate(request)
                self._check_rate(identity)
                self._check_request(exchange)
                response = await handler(request)
        except ApiError as exc:
            response = exc.response(request)
        except web.HTTPNotFound:
            response = not_found().response(request)
        except web.HTTPMethodNotAllowed:
            response = not_found().response(request)
        response = self._finish(request, response, identity, request_id)
        duration = (time.perf_counter() - started) * 1000
        self._record(request, response.status, identity, duration)
        if isinstance(response, web.Response) and self.checker is not None:
            exchange.status = response.status
            exchange.response_headers = dict(response.headers)
            exchange.response_body = bytes(response.body or b"")  # type: ignore[arg-type]
            self._violations(self.checker.check_response(exchange))
        return response

    def _check_request(self, exchange: Exchange) -> None:
        if self.checker is not None:
            self._violations(self.checker.check_request(exchange))

    def _violations(self, found: list[str]) -> None:
        self.state.violations.extend(found)

    async def _fault(self, request: web.Request, request_id: str) -> web.Response | None:
        for fault in self.state.faults:
            if not fault.matches(request.method, request.path):
                continue
            fault.times -= 1
            if fault.delay_seconds > 0:
                try:
                    await asyncio.wait_for(self.closing.wait(), fault.delay_seconds)
                except TimeoutError:
                    pass
            if fault.status is None:
                return None
            return _fault_response(fault.status, fault.headers, fault.body, request_id)
        return None

    def _authenticate(self, request: web.Request) -> str:
        kind = getattr(request.match_info.handler, "github_auth", "token")
        credential = parse_authorization(request.headers.get("Authorization"))
        if kind == "none":
            return "none"
        if credential is None:
            raise ApiError(401, "Requires authentication" if kind == "token" else _JWT_MISSING)
        app = self.state.app
        if kind == "jwt":
            if not looks_like_jwt(credential):
                raise ApiError(401, "A JSON web token could not be decoded")
            try:
                verify_app_jwt(
                    credential, public_key=self.public_key, app_id=app.id, client_id=app.client_id
                )
            except AuthError as exc:
                raise ApiError(401, str(exc)) from exc
            return f"jwt:{app.id}"
        try:
            installation = self.tokens.check(credential, now())
        except AuthError as exc:
            raise ApiError(401, str(exc)) from exc
        return f"installation:{installation}"

    def _check_rate(self, identity: str) -> None:
        used, _ = self._window(identity)
        if used >= self.rate_limit:
            who = identity.split(":", 1)[-1]
            raise ApiError(
                403, f"API rate limit exceeded for installation ID {who}.", doc=RATE_LIMIT_DOCS
            )

    def _window(self, identity: str) -> tuple[int, int]:
        used, reset = self._used.get(identity, (0, 0))
        if reset <= time.time():
            used, reset = 0, int(time.time()) + 3600
            self._used[identity] = (used, reset)
        return used, reset

    def _finish(
        self, request: web.Request, response: web.StreamResponse, identity: str, request_id: str
    ) -> web.StreamResponse:
        if (
            request.method == "GET"
            and response.status == 200
            and isinstance(response, web.Response)
            and response.body is not None
        ):
            etag = 'W/"' + hashlib.sha256(bytes(response.body)).hexdigest() + '"'  # type: ignore[arg-type]
            response.headers["ETag"] = etag
            response.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
            if etag in _etags(request.headers.get("If-None-Match", "")):
                response = web.Response(status=304, headers={"ETag": etag})
        used, reset = self._window(identity)
        if response.status != 304:  # conditional hits are free on GitHub
            used += 1
            self._used[identity] = (used, reset)
        headers = response.headers
        headers["X-GitHub-Request-Id"] = request_id
        headers["X-GitHub-Media-Type"] = "github.v3; format=json"
        headers["X-GitHub-Api-Version-Selected"] = API_VERSION
        headers["X-RateLimit-Limit"] = str(self.rate_limit)
        headers["X-RateLimit-Remaining"] = str(max(0, self.rate_limit - used))
        headers["X-RateLimit-Reset"] = str(reset)
        headers["X-RateLimit-Used"] = str(used)
        headers["X-RateLimit-Resource"] = "core"
        headers.setdefault("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
        return response

    def _record(self, request: web.Request, status: int, identity: str, ms: float) -> None:
        self.state.requests.append(
            RecordedRequest(
                index=len(self.state.requests),
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=status,
                time=iso(now()),
                duration_ms=round(ms, 3),
                auth=identity,
            )
        )


_JWT_MISSING = "A JSON web token could not be decoded"


def _etags(header: str) -> set[str]:
    return {part.strip() for part in header.split(",") if part.strip()}


def _request_id() -> str:
    return ":".join(secrets.token_hex(n).upper() for n in (2, 2, 3, 3, 4))


def _fault_response(
    status: int, headers: dict[str, str], body: Any, request_id: str
) -> web.Response:
    extra = dict(headers)
    if body is None:
        if status in (403, 429):
            body = {
                "message": SECONDARY_MESSAGE.format(rid=request_id),
                "documentation_url": RATE_LIMIT_DOCS,
            }
            extra.setdefault("Retry-After", "1")
        else:
            body = {
                "message": "Server Error" if status >= 500 else "Injected fault",
                "documentation_url": DOCS,
            }
    if isinstance(body, str):
        return web.Response(text=body, status=status, headers=extra)
    return json_response(body, status=status, headers=extra)
