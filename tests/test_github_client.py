"""The GitHub client against a scripted HTTP server: retries, rate limits, tokens, redirects."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import aiohttp
import gidgethub
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.github.client import (
    RETRY_SAFE,
    RETRY_SAFE_HEADER,
    AmbiguousWrite,
    GitHubClient,
    GitHubUnavailable,
    ResponseTooLarge,
    RetryPolicy,
    rate_limit_wait,
)
from bot.github.factory import GitHubFactory


class Script:
    """An HTTP server whose answers per path are scripted; it records every request."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = defaultdict(list)
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def on(self, path: str, *answers: Any) -> None:
        self.answers[path].extend(answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        script = self.answers[request.path]
        answer = script.pop(0) if len(script) > 1 else (script[0] if script else 404)
        if callable(answer):
            answer = await answer(request)
        if isinstance(answer, web.StreamResponse):
            return answer
        if isinstance(answer, int):
            return web.json_response({"message": f"status {answer}"}, status=answer)
        status, body, headers = answer
        return web.json_response(body, status=status, headers=headers)

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.requests]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.limits: dict[str, int] = {}

    def record_call(self, method: str, route: str, status: str) -> None:
        self.calls.append((method, route, status))

    def set_rate_limit(self, resource: str, remaining: int) -> None:
        self.limits[resource] = remaining


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
async def server(aiohttp_server: Any, script: Script) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    return await aiohttp_server(app)


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


class StaticTokens:
    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.invalidated: list[str | None] = []

    async def get(self, installation_id: int) -> str:
        return self.tokens[0]

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        self.invalidated.append(token)
        if len(self.tokens) > 1:
            self.tokens.pop(0)


def make_client(
    session: Any, server: TestServer, sleeps: Sleeps, recorder: Recorder | None = None, **kw: Any
) -> GitHubClient:
    policy = kw.pop("policy", RetryPolicy(attempts=3, timeout=2.0))
    return GitHubClient(
        session,
        "hubbot-test",
        base_url=str(server.make_url("")),
        installation_id=7,
        tokens=kw.pop("tokens", StaticTokens("tok-1")),
        policy=policy,
        recorder=recorder,
        sleep=sleeps,
        rand=lambda: 0.5,
        **kw,
    )


async def test_5xx_is_retried_with_growing_backoff(
    session: Any, server: TestServer, script: Script
) -> None:
    script.on("/repos/o/r", 502, 503, (200, {"id": 1}, {}))
    sleeps = Sleeps()
    recorder = Recorder()
    gh = make_client(session, server, sleeps, recorder)
    assert await gh.getitem("/repos/o/r") == {"id": 1}
    assert len(script.requests) == 3
    policy = gh.policy
    assert sleeps.waits == [policy.backoff(1, 0.5), policy.backoff(2, 0.5)]
    assert sleeps.waits[0] < sleeps.waits[1]
    assert recorder.calls == [
        ("GET", "/repos/{owner}/{repo}", "502"),
        ("GET", "/repos/{owner}/{repo}", "503"),
        ("GET", "/repos/{owner}/{repo}", "200"),
    ]


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
@pytest.mark.parametrize("rand", [0.0, 0.999])
def test_backoff_is_bounded_and_jittered(attempt: int, rand: float) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
    assert ceiling / 2 <= policy.backoff(attempt, rand) <= ceiling


async def test_persistent_5xx_raises_after_the_last_attempt(
    session: Any, server: TestServer, script: Script
) -> None:
    script.on("/repos/o/r", 500)
    gh = make_client(session, server, Sleeps())
    with pytest.raises(gidgethub.GitHubBroken):
        await gh.getitem("/repos/o/r")
    assert len(script.requests) == 3


async def test_timeouts_are_retried_then_reported(
    session: Any, server: TestServer, script: Script
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({})

    script.on("/slow", slow, (200, {"ok": True}, {}))
    script.on("/never", slow)
    policy = RetryPolicy(attempts=2, timeout=0.1)
    gh = make_client(session, server, Sleeps(), policy=policy)
    assert await gh.getitem("/slow") == {"ok": True}
    with pytest.raises(GitHubUnavailable, match="timed out"):
        await gh.getitem("/never")


async def test_unsafe_post_is_not_repeated_blindly(
    session: Any, server: TestServer, script: Script
) -> None:
    script.on("/repos/o/r/issues/1/comments", 502, (201, {"id": 5}, {}))
    gh = make_client(session, server, Sleeps())
    before = time.monotonic()
    with pytest.raises(AmbiguousWrite) as caught:
        await gh.post("/repos/o/r/issues/1/comments", data={"body": "x"})
    assert len(script.requests) == 1
    # It says when a copy GitHub is still working on will have landed: GitHub's 10 s limit.
    assert caught.value.settles_at is not None
    assert caught.value.settles_at >= before + gh.policy.late_write_seconds == before + 10


async def test_post_marked_safe_is_retried_and_the_mark_never_leaves(
    session: Any, server: TestServer, script: Script
) -> None:
    script.on("/repos/o/r/x", 502, (201, {"id": 5}, {}))
    gh = make_client(session, server, Sleeps())
    assert await gh.post("/repos/o/r/x", data={}, extra_headers=dict(RETRY_SAFE)) == {"id": 5}
    assert len(script.requests) == 2
    assert all(RETRY_SAFE_HEADER not in {k.lower() for k in h} for _, _, h in script.requests)


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (403, {"retry-after": "3"}, b"", 3.0),
        (429, {"retry-after": "0"}, b"", 0.0),
        (429, {}, b"", 60.0),
        (403, {}, b'{"message": "You have exceeded a secondary rate limit"}', 60.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, b"", 11.0),
        (403, {}, b'{"message": "Resource not accessible by integration"}', None),
        (404, {"retry-after": "3"}, b"", None),
    ],
)
def test_rate_limit_wait(
    status: int, headers: dict[str, str], body: bytes, expected: float | None
) -> None:
    assert rate_limit_wait(status, headers, body, now=1000.0) == expected


async def test_secondary_rate_limit_is_waited_out(
    session: Any, server: TestServer, script: Script
) -> None:
    limited = (403, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "7"})
    script.on("/repos/o/r/check-runs", limited, (201, {"id": 9}, {}))
    sleeps = Sleeps()
    gh = make_client(session, server, sleeps)
    # A rate-limited POST was not applied, so it is retried even though POST is unsafe.
    assert await gh.post("/repos/o/r/check-runs", data={}) == {"id": 9}
    assert sleeps.waits == [7.5]


async def test_too_long_a_rate_limit_wait_gives_up(
    session: Any, server: TestServer, script: Script
) -> None:
    reset = str(int(time.time()) + 3600)
    script.on(
        "/repos/o/r",
        (
            403,
            {"message": "API rate limit exceeded"},
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "5000", "X-RateLimit-Reset": reset},
        ),
    )
    sleeps = Sleeps()
    gh = make_client(session, server, sleeps)
    with pytest.raises(gidgethub.RateLimitExceeded):
        await gh.getitem("/repos/o/r")
    assert sleeps.waits == [] and len(script.requests) == 1


async def test_permission_403_is_not_retried(
    session: Any, server: TestServer, script: Script
) -> None:
    script.on("/repos/o/r", (403, {"message": "Resource not accessible by integration"}, {}))
    gh = make_client(session, server, Sleeps())
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem("/repos/o/r")
    assert len(script.requests) == 1


async def test_401_drops_the_token_and_retries_once(
    session: Any, server: TestServer, script: Script
) -> None:
    script.on("/repos/o/r", 401, (200, {"id": 1}, {}))
    tokens = StaticTokens("old-token", "new-token")
    gh = make_client(session, server, Sleeps(), tokens=tokens)
    assert await gh.getitem("/repos/o/r") == {"id": 1}
    assert [h["Authorization"] for _, _, h in script.requests] == [
        "token old-token",
        "token new-token",
    ]
    assert tokens.invalidated == ["old-token"]
    script.answers["/repos/o/r"] = [401]
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem("/repos/o/r")
    assert len(script.requests) == 4  # one retry only, never a loop


async def test_rate_limit_headers_feed_the_gauge(
    session: Any, server: TestServer, script: Script
) -> None:
    headers = {
        "X-RateLimit-Remaining": "4321",
        "X-RateLimit-Limit": "5000",
        "X-RateLimit-Reset": "1",
        "X-RateLimit-Resource": "core",
    }
    script.on("/repos/o/r/pulls/12", (200, {}, headers))
    recorder = Recorder()
    gh = make_client(session, server, Sleeps(), recorder)
    await gh.getitem("/repos/o/r/pulls/12")
    assert recorder.limits == {"core": 4321}
    assert recorder.calls == [("GET", "/repos/{owner}/{repo}/pulls/{number}", "200")]


async def test_etag_cache_sends_if_none_match_and_uses_304(
    session: Any, server: TestServer, script: Script
) -> None:
    async def etagged(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.json_response({"n": 1}, headers={"ETag": '"v1"'})

    script.on("/repos/o/r", etagged)
    gh = make_client(session, server, Sleeps(), cache={})
    assert await gh.getitem("/repos/o/r") == {"n": 1}
    assert await gh.getitem("/repos/o/r") == {"n": 1}
    assert script.requests[1][2].get("If-None-Match") == '"v1"'


async def test_download_follows_the_redirect_without_the_token(
    aiohttp_server: Any, session: Any, server: TestServer, script: Script
) -> None:
    codeload = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", codeload.handle)
    other = await aiohttp_server(app)
    target = str(other.make_url("/o/r/legacy.tar.gz/abc?token=SHORT-LIVED"))

    async def tarball(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": target})

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"\x1f\x8b tarball bytes", content_type="application/x-gzip")

    script.on("/repos/o/r/tarball/abc", tarball)
    codeload.on("/o/r/legacy.tar.gz/abc", blob)
    recorder = Recorder()
    gh = make_client(session, server, Sleeps(), recorder)
    data = await gh.download("/repos/o/r/tarball/abc", max_bytes=1000)
    assert data == b"\x1f\x8b tarball bytes"
    assert script.requests[0][2]["Authorization"] == "token tok-1"
    assert "Authorization" not in codeload.requests[0][2]
    assert recorder.calls == [
        ("GET", "/repos/{owner}/{repo}/tarball/{ref}", "302"),
        ("GET", "external", "200"),
    ]
    assert gh.calls == 2
    with pytest.raises(ResponseTooLarge):
        await gh.download("/repos/o/r/tarball/abc", max_bytes=5)


async def test_download_reports_errors(session: Any, server: TestServer, script: Script) -> None:
    script.on("/repos/o/r/tarball/nope", 404)
    gh = make_client(session, server, Sleeps())
    with pytest.raises(gidgethub.BadRequest):
        await gh.download("/repos/o/r/tarball/nope", max_bytes=1000)


async def test_factory_clients_fetch_and_cache_installation_tokens(
    session: Any, server: TestServer, script: Script, private_key_pem: str
) -> None:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    script.on(
        "/app/installations/7/access_tokens", (201, {"token": "ghs_abc", "expires_at": expires}, {})
    )
    script.on("/repos/o/r", (200, {"id": 1}, {}))
    factory = GitHubFactory(
        session, app_id="42", private_key=private_key_pem, base_url=str(server.make_url(""))
    )
    gh = factory.for_installation(7)
    await gh.getitem("/repos/o/r")
    await factory.for_installation(7).getitem("/repos/o/r")
    paths = script.paths()
    assert paths.count("/app/installations/7/access_tokens") == 1
    method, _, headers = script.requests[0]
    assert method == "POST"
    bearer = headers["Authorization"].removeprefix("bearer ")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    public = load_pem_private_key(private_key_pem.encode(), None).public_key()
    claims = jwt.decode(bearer, public, algorithms=["RS256"])  # type: ignore[arg-type]
    assert claims["iss"] == "42" and claims["exp"] - claims["iat"] <= 600
    assert [h["Authorization"] for m, p, h in script.requests if p == "/repos/o/r"] == [
        "token ghs_abc",
        "token ghs_abc",
    ]


def test_token_is_never_in_error_messages() -> None:
    exc = AmbiguousWrite("POST", "/repos/{owner}/{repo}/check-runs", "timed out")
    assert "token" not in str(exc).lower()
    assert json.dumps(str(exc))


async def test_credentials_never_leave_the_api_host(
    aiohttp_server: Any, session: Any, server: TestServer, script: Script
) -> None:
    elsewhere = Script()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", elsewhere.handle)
    other = await aiohttp_server(app)
    elsewhere.on("/repos/o/r", (200, {"id": 1}, {}))
    gh = make_client(session, server, Sleeps())
    # A payload naming another host (a forged delivery in insecure mode, say) gets no token.
    assert await gh.getitem(str(other.make_url("/repos/o/r"))) == {"id": 1}
    assert "Authorization" not in elsewhere.requests[0][2]
