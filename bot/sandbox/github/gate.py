"""The gate every REST request passes: faults, authentication, rate limits, checks, records.

One aiohttp middleware wraps the REST routes: it injects faults, authenticates, checks
the request (against the OpenAPI description when a checker is plugged in), adds
GitHub's headers, answers 304 on a matching ETag and records the exchange.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Any

from aiohttp import web

from bot.sandbox.github.auth import (
    AuthError,
    TokenStore,
    looks_like_jwt,
    parse_authorization,
    verify_app_jwt,
)
from bot.sandbox.github.http import (
    API_VERSION,
    DOCS,
    RATE_LIMIT_DOCS,
    SECONDARY_MESSAGE,
    ApiError,
    Checker,
    Exchange,
    Handler,
    json_response,
    not_found,
)
from bot.sandbox.github.state import RecordedRequest, State, iso, now


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
            if fault.skip > 0:
                fault.skip -= 1
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
