"""The GitHub client: gidgethub's aiohttp client with retries, rate limits, tokens and metrics.

Each request to GitHub goes through `_send_with_retries`:
- 5xx answers, timeouts and dropped connections are retried with exponential
  backoff and jitter, but only when repeating the request is safe (GET, PATCH,
  PUT, DELETE, token requests, and POSTs the caller marks with `RETRY_SAFE`);
  an unsafe POST raises `AmbiguousWrite` so its caller can look before retrying;
- secondary rate limits (403/429 with `retry-after`, `x-ratelimit-remaining: 0`
  or GitHub's message) are waited out, up to a bounded wait, since GitHub did not
  apply the request (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api);
- a 401 with an installation token drops the cached token and retries once;
- a write to a resource (PATCH, PUT, DELETE, or a POST to `.../statuses`) whose earlier
  write timed out or failed waits until that one has landed or been dropped (`LateWrites`),
  so a late copy of an older edit can never overwrite a newer one.
Every attempt is counted by route template and status, and the remaining rate
limit is reported from the response headers.
"""

from __future__ import annotations

import asyncio
import functools
import http
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import aiohttp
import gidgethub
import gidgethub.aiohttp
from gidgethub import sansio
from gidgethub.abc import CACHE_TYPE
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bot.github.routes import route_template

# A request header the caller adds to say "repeating this POST is harmless";
# it is removed before the request leaves.
RETRY_SAFE_HEADER = "x-hubbot-retry-safe"
RETRY_SAFE = {RETRY_SAFE_HEADER: "1"}
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
MAX_JSON_BYTES = 64 * 1024 * 1024


class CallRecorder(Protocol):
    """Where the client reports each call (the web layer's metrics implement this)."""

    def record_call(self, method: str, route: str, status: str) -> None:
        """Count one request."""

    def set_rate_limit(self, resource: str, remaining: int) -> None:
        """Remember the remaining rate limit."""


class TokenSource(Protocol):
    """Installation tokens (see `bot.github.auth.InstallationTokens`)."""

    async def get(self, installation_id: int) -> str:
        """A valid token."""

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Drop a token GitHub refused."""


@runtime_checkable
class Downloader(Protocol):
    """A client that can fetch a binary body (tarballs); `GitHubClient` is one."""

    async def download(self, url: str, *, max_bytes: int, accept: str = "*/*") -> bytes:
        """GET a binary body."""


class AmbiguousWrite(gidgethub.GitHubException):
    """A write that is not safe to repeat failed in a way that leaves unknown whether it applied.

    `settles_at` (a `time.monotonic()` value, when known) is when the write, if GitHub is
    still working on it, will have landed or been dropped: a caller that repeated the write
    looks for a late copy after that.
    """

    def __init__(
        self, method: str, route: str, reason: str, *, settles_at: float | None = None
    ) -> None:
        self.method = method
        self.route = route
        self.settles_at = settles_at
        super().__init__(f"{method} {route}: {reason}; it may or may not have been applied")


class GitHubUnavailable(gidgethub.GitHubException):
    """GitHub did not answer (timeouts, dropped connections) after every retry."""

    def __init__(self, method: str, route: str, reason: str) -> None:
        super().__init__(f"{method} {route}: GitHub did not answer ({reason})")


class ResponseTooLarge(gidgethub.GitHubException):
    """A response body exceeded the allowed size."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: attempts, backoff, the longest rate-limit wait, and timeouts."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_rate_limit_wait: float = 90.0
    timeout: float = 30.0
    download_timeout: float = 120.0
    # GitHub ends any request it has worked on for 10 s ("Timeouts" in
    # https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api), so a
    # write we gave up on has landed or been dropped this long after we gave up.
    late_write_seconds: float = 10.0

    def backoff(self, attempt: int, rand: float) -> float:
        """The wait before retry number `attempt` (1-based): exponential, with equal jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + rand * ceiling / 2


# Writes whose order matters: a later one must land after an earlier one (edits of one
# resource; a Deployment's statuses, whose newest is its state). Creates are looked up instead.
_ORDERED_METHODS = frozenset({"PATCH", "PUT", "DELETE"})


def is_ordered_write(method: str, url: str) -> bool:
    """Whether a request edits a resource whose writes must land in order."""
    return method in _ORDERED_METHODS or (
        method == "POST" and URL(url).path.rstrip("/").endswith("/statuses")
    )


class LateWrites:
    """When each resource's timed-out (or failed) writes will have landed or been dropped.

    Shared by the clients of one app (`GitHubFactory`), since the reporter changes client
    with each event. Bounded: settled entries are dropped as new ones come.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        self.maxsize = maxsize
        self._until: dict[str, float] = {}

    def note(self, url: str, settles_at: float) -> None:
        """A write to `url` may still land until `settles_at` (a `time.monotonic()` value)."""
        now = time.monotonic()
        if len(self._until) >= self.maxsize:
            self._until = {u: t for u, t in self._until.items() if t > now}
            while len(self._until) >= self.maxsize:  # all pending: forget the oldest
                del self._until[next(iter(self._until))]
        key = URL(url).path
        self._until[key] = max(settles_at, self._until.get(key, 0.0))

    def pending(self, url: str) -> float:
        """Seconds until earlier writes to `url` have settled (0 when none is pending)."""
        key = URL(url).path
        left = self._until.get(key, 0.0) - time.monotonic()
        if left <= 0:
            self._until.pop(key, None)
            return 0.0
        return left


def rate_limit_wait(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float
) -> float | None:
    """Seconds to wait if this answer is a rate limit, else None (it is a real error)."""
    if status not in (403, 429):
        return None
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now) + 1.0
        except (KeyError, ValueError):
            return 60.0
    if status == 429 or b"rate limit" in body[:2048].lower():
        # GitHub: without headers, wait at least a minute before retrying.
        return 60.0
    return None


Sleep = Callable[[float], Awaitable[None]]


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> URL:
    return URL(url).origin()


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """A GitHub client for one installation (or for the app itself, when `tokens` is None)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        requester: str,
        *,
        base_url: str = sansio.DOMAIN,
        installation_id: int | None = None,
        tokens: TokenSource | None = None,
        cache: CACHE_TYPE | None = None,
        policy: RetryPolicy | None = None,
        recorder: CallRecorder | None = None,
        sleep: Sleep | None = None,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        late_writes: LateWrites | None = None,
    ) -> None:
        super().__init__(session, requester, cache=cache, base_url=base_url)
        self.late_writes = late_writes if late_writes is not None else LateWrites()
        self.installation_id = installation_id
        self._tokens = tokens
        self.policy = policy or RetryPolicy()
        self._recorder = recorder
        self._sleep = sleep or asyncio.sleep
        self._rand = rand
        self._clock = clock
        self._api_origin = _origin(base_url)
        self.calls = 0  # every HTTP request this client sent, redirects included

    async def sleep(self, seconds: float) -> None:
        """Wait (injectable, so tests never really sleep)."""
        await self._sleep(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        return await self._send_with_retries(method, url, headers, body)

    async def download(self, url: str, *, max_bytes: int, accept: str = "*/*") -> bytes:
        """GET a binary body (a tarball), following one redirect off the API host, size-capped.

        GitHub answers `/tarball/{ref}` with a 302 to codeload.github.com carrying a
        short-lived token in the query; the API's Authorization header is not sent
        to another host.
        """
        headers = sansio.create_headers(self.requester, accept=accept)
        full = sansio.format_url(url, {}, base_url=self.base_url)
        for _hop in range(3):
            status, resp_headers, data = await self._send_with_retries(
                "GET",
                full,
                headers,
                b"",
                follow=False,
                max_bytes=max_bytes,
                time_limit=self.policy.download_timeout,
            )
            if status in (301, 302, 303, 307, 308) and "location" in resp_headers:
                # Off the API host (codeload) the token is left behind by _send_with_retries.
                full = str(URL(full).join(URL(resp_headers["location"])))
                continue
            if status >= 300:
                sansio.decipher_response(status, resp_headers, data)  # raises the right error
            return data
        raise gidgethub.RedirectionException(http.HTTPStatus.LOOP_DETECTED, "too many redirects")

    async def _send_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        follow: bool = True,
        max_bytes: int = MAX_JSON_BYTES,
        time_limit: float | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        request_headers = dict(headers)
        safe = method in _IDEMPOTENT_METHODS or url.endswith("/access_tokens")
        safe = request_headers.pop(RETRY_SAFE_HEADER, None) is not None or safe
        off_host = _origin(url) != self._api_origin
        if off_host:
            # Credentials go to the API host only, whatever URL a payload or redirect names.
            request_headers.pop("authorization", None)
        use_token = (
            not off_host
            and "authorization" not in request_headers
            and self._tokens is not None
            and self.installation_id is not None
        )
        route = self._route(url)
        ordered = is_ordered_write(method, url)
        if ordered and (settling := self.late_writes.pending(url)) > 0:
            await self.sleep(settling)  # an earlier write may still land: this one comes after
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = None
            if use_token:
                assert self._tokens is not None and self.installation_id is not None
                token = await self._tokens.get(self.installation_id)
                request_headers["authorization"] = f"token {token}"
            try:
                status, resp_headers, data = await self._send(
                    method,
                    url,
                    request_headers,
                    body,
                    follow=follow,
                    max_bytes=max_bytes,
                    time_limit=time_limit or self.policy.timeout,
                )
            except (TimeoutError, aiohttp.ClientError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError) else "connection failed"
                self._record(method, route, "timeout" if "timed" in reason else "error")
                if ordered:
                    self.late_writes.note(url, time.monotonic() + self.policy.late_write_seconds)
                if not safe:
                    raise self._ambiguous(method, route, reason) from None
                if attempt >= self.policy.attempts:
                    raise GitHubUnavailable(method, route, reason) from None
                await self.sleep(self.policy.backoff(attempt, self._rand()))
                continue
            self._record(method, route, str(status))
            self._note_rate_limit(resp_headers)
            if status == 401 and token is not None and not refreshed:
                assert self._tokens is not None and self.installation_id is not None
                self._tokens.invalidate(self.installation_id, token)
                refreshed = True
                attempt -= 1  # a token refresh is not a failed attempt
                continue
            wait = rate_limit_wait(status, resp_headers, data, now=self._clock())
            if wait is not None:
                if attempt >= self.policy.attempts or wait > self.policy.max_rate_limit_wait:
                    return status, resp_headers, data
                await self.sleep(wait + self._rand())
                continue
            if status in _RETRY_STATUSES and ordered:  # a gateway's 5xx: it may still apply
                self.late_writes.note(url, time.monotonic() + self.policy.late_write_seconds)
            if status in _RETRY_STATUSES and attempt < self.policy.attempts:
                if not safe:
                    raise self._ambiguous(method, route, f"GitHub answered {status}")
                await self.sleep(self.policy.backoff(attempt, self._rand()))
                continue
            if status in _RETRY_STATUSES and not safe:
                raise self._ambiguous(method, route, f"GitHub answered {status}")
            return status, resp_headers, data

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        follow: bool,
        max_bytes: int,
        time_limit: float,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        self.calls += 1
        async with self._session.request(
            method,
            url,
            headers=headers,
            data=body,
            timeout=aiohttp.ClientTimeout(total=time_limit),
            allow_redirects=follow,
        ) as response:
            if response.content_length is not None and response.content_length > max_bytes:
                raise ResponseTooLarge(f"response of {response.content_length} bytes")
            chunks = []
            size = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise ResponseTooLarge(f"response over {max_bytes} bytes")
                chunks.append(chunk)
            return (
                response.status,
                CIMultiDictProxy(CIMultiDict(response.headers)),
                b"".join(chunks),
            )

    def _ambiguous(self, method: str, route: str, reason: str) -> AmbiguousWrite:
        settles_at = time.monotonic() + self.policy.late_write_seconds
        return AmbiguousWrite(method, route, reason, settles_at=settles_at)

    def _route(self, url: str) -> str:
        if _origin(url) != self._api_origin:
            return "external"
        return route_template(url)

    def _record(self, method: str, route: str, status: str) -> None:
        if self._recorder is not None:
            self._recorder.record_call(method, route, status)

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        remaining = headers.get("x-ratelimit-remaining")
        if self._recorder is None or remaining is None:
            return
        try:
            value = int(remaining)
        except ValueError:
            return
        self._recorder.set_rate_limit(headers.get("x-ratelimit-resource", "core"), value)


async def wait_for_late_writes(gh: object, settles_at: float) -> None:
    """Wait until an ambiguous write has landed or been dropped (see `AmbiguousWrite`)."""
    delay = settles_at - time.monotonic()
    if delay > 0:
        sleep = getattr(gh, "sleep", None)  # the client's own, injectable in tests
        await (sleep(delay) if sleep is not None else asyncio.sleep(delay))
