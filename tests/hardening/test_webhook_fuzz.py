"""Webhook fuzzing: signed garbage against the real app and its real handlers.

`tests/test_web_webhook.py` fuzzes payload shapes with a handful of keys against a GitHub
that does not answer. Here the deliveries are GitHub's real examples of every event and
action hubbot routes (read from the router, so new handlers are fuzzed too), mutated
(keys deleted, values of other types, huge strings, deep nesting), plus bodies that are not
payloads at all (JSON arrays and scalars, non-JSON bytes, UTF-16, form-encoded, nesting past
the parser's limit) and odd headers. Every body is validly signed, so it reaches the
parsers. A stub GitHub issues tokens and answers everything else 404 or 5xx at random, so
the handlers run as far as they can.

Properties: never a 500 (only 202, 400 or 413); no task dies unseen on the loop; every job
that failed, failed because GitHub did (never a TypeError on a payload); the process's
traced memory peak per delivery stays under a bound.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import random
import tracemalloc
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import gidgethub
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from bot.github.auth import TokenError
from bot.github.client import RetryPolicy
from bot.github.snapshot import SnapshotError
from bot.handlers.router import router as hubbot_router
from bot.web.app import create_app
from bot.web.keys import DELIVERIES, METRICS, QUEUE
from bot.web.settings import ServerSettings
from tests.conftest import SAMPLES, sign
from tests.hardening.support import LoopWatch, fuzz_settings, handler_errors
from tests.sandbox_support import WEBHOOK_EXAMPLES

SECRET = "fuzz-webhook-secret"
# Traced peak per delivery, above what was allocated before it: a fixed allowance plus a
# multiple of the body (the read buffer, the decoded text, the parsed payload; a
# form-encoded body is also unquoted: about ten times its size in all, measured).
MEMORY_BASE = 16 << 20
MEMORY_PER_BODY_BYTE = 12
OK_STATUSES = {202, 400, 413}
# Why a job may fail: GitHub failed (our stub answers 404 and 5xx), never a bug.
GITHUB_FAILURES = (gidgethub.GitHubException, TokenError, SnapshotError)


def routes() -> list[tuple[str, str | None]]:
    """(event, action) of every handler registered on hubbot's router (action None: any)."""
    found: list[tuple[str, str | None]] = [(e, None) for e in hubbot_router._shallow_routes]
    for event, keys in hubbot_router._deep_routes.items():
        for key, values in keys.items():
            assert key == "action", f"{event} is routed on {key}: teach the fuzzer"
            found += [(event, action) for action in values]
    return sorted(found, key=lambda r: (r[0], r[1] or ""))


@cache
def examples() -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    """GitHub's real webhook examples (and tests/samples) for every routed event and action."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    if WEBHOOK_EXAMPLES.is_file():
        for entry in json.loads(WEBHOOK_EXAMPLES.read_text()):
            recorded += [(entry["name"], e) for e in entry["examples"]]
    for path in sorted(SAMPLES.glob("*/*.json")):
        recorded.append((path.parent.name, json.loads(path.read_text())))
    found: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for event, action in routes():
        same_event = [p for name, p in recorded if name == event]
        exact = [p for p in same_event if action is None or p.get("action") == action]
        # No example of this action: GitHub's shape for another one, with the action set.
        chosen = exact or [{**p, "action": action} for p in same_event]
        if chosen:
            found[(event, action)] = chosen
    return found


def with_installation(payload: dict[str, Any]) -> dict[str, Any]:
    """GitHub's examples of app events carry an installation; make sure this one does."""
    payload = copy.deepcopy(payload)
    if not isinstance(payload.get("installation"), dict):
        payload["installation"] = {"id": 4242, "node_id": "MDIz"}
    return payload


# ---- strategies --------------------------------------------------------------------------
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["", "../../etc/passwd", "refs/heads/main", "a" * 5000, "\u0000", "🚀"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    """A list nested `depth` deep."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def paths_of(payload: Any, limit: int = 400) -> list[tuple[Any, ...]]:
    """Paths to values in a payload (breadth first, at most `limit`)."""
    found: list[tuple[Any, ...]] = []
    queue: list[tuple[tuple[Any, ...], Any]] = [((), payload)]
    while queue and len(found) < limit:
        path, node = queue.pop(0)
        if isinstance(node, dict | list):
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                found.append((*path, key))
                queue.append(((*path, key), child))
    return found


@st.composite
def mutated_example(draw: Any) -> tuple[str, dict[str, Any], str]:
    """A routed event's real payload with a few random mutations; (event, payload, what)."""
    choices = examples()
    route = draw(st.sampled_from(sorted(choices, key=lambda r: (r[0], r[1] or ""))))
    payload = with_installation(draw(st.sampled_from(choices[route])))
    done = []
    for _ in range(draw(st.integers(0, 5))):
        paths = paths_of(payload)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        how = draw(st.sampled_from(["delete", "replace", "type", "huge", "deep"]))
        if how == "delete":
            del parent[path[-1]]
        elif how == "replace":
            parent[path[-1]] = draw(json_values)
        elif how == "type":  # numbers where objects belong, objects where strings do, ...
            old = parent[path[-1]]
            others = [1, "1", True, None, [], {}, 1.5, [old]]
            parent[path[-1]] = draw(st.sampled_from([o for o in others if o != old] or [None]))
        elif how == "huge":
            parent[path[-1]] = "x" * draw(st.sampled_from([10_000, 1_000_000, 4_000_000]))
        else:
            parent[path[-1]] = nested(draw(st.sampled_from([10, 200, 900])))
        done.append(f"{how} {'.'.join(map(str, path))[:80]}")
    return route[0], payload, "; ".join(done) or "unchanged"


class Delivery:
    """Headers and a validly signed body, with a short repr (bodies run to megabytes)."""

    def __init__(self, headers: dict[str, str], body: bytes, what: str) -> None:
        self.headers, self.body, self.what = headers, body, what

    def __repr__(self) -> str:
        shown = {k: v[:80] for k, v in self.headers.items() if k != "X-Hub-Signature-256"}
        return f"Delivery({self.what}; {shown}; body {self.body[:120]!r}…)"


@st.composite
def deliveries(draw: Any) -> Delivery:
    """Headers, a validly signed body, and a description of both."""
    event, payload, what = draw(mutated_example())
    body = json.dumps(payload).encode()
    content_type = "application/json"
    shape = draw(
        st.sampled_from(
            ["json"] * 6
            + ["array", "scalar", "bytes", "utf-16", "bom", "form", "form-garbage", "too-deep"]
        )
    )
    if shape == "array":
        body = json.dumps([payload]).encode()
    elif shape == "scalar":
        body = json.dumps(draw(json_leaves)).encode()
    elif shape == "bytes":
        body = draw(st.binary(max_size=300))
    elif shape == "utf-16":
        body = json.dumps(payload).encode("utf-16")
    elif shape == "bom":
        body = b"\xef\xbb\xbf" + body
    elif shape == "form":
        content_type = "application/x-www-form-urlencoded"
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    elif shape == "form-garbage":
        content_type = "application/x-www-form-urlencoded"
        body = draw(st.sampled_from([b"payload=%ff%fe", b"payload", b"&&==", b"payload=[1]"]))
    elif shape == "too-deep":
        depth = draw(st.sampled_from([1_000, 100_000]))
        body = b'{"installation": {"id": 1}, "x": ' + b"[" * depth + b"]" * depth + b"}"
    # Printable Latin-1: what an HTTP client can put in a header at all.
    header_text = st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=["Cc"]),
        max_size=60,
    )
    headers = {
        "Content-Type": draw(
            st.sampled_from([content_type] * 5 + ["application/json; charset=utf-8", "text/x"])
        ),
        "X-GitHub-Event": draw(st.sampled_from([event] * 8 + ["", "ping", "zzz"]) | header_text),
        "X-GitHub-Delivery": draw(st.just(str(uuid.uuid4())) | header_text),
        "X-GitHub-Hook-ID": draw(st.sampled_from(["1", "", "9" * 40]) | header_text),
        "User-Agent": "GitHub-Hookshot/fuzz",
        "X-Hub-Signature-256": sign(body, SECRET),
    }
    return Delivery(headers, body, f"{shape} {event}: {what} ({len(body):,} bytes)")


# ---- the stub GitHub and the app ---------------------------------------------------------
class StubGitHub:
    """Issues installation tokens; answers check-run and comment calls as GitHub does half the
    time (so handlers get past them), and everything else 404, 500 or 502 at random."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        """One answer."""
        self.requests += 1
        await request.read()
        if request.method == "POST" and request.path.endswith("/access_tokens"):
            expires = "2099-01-01T00:00:00Z"
            return web.json_response({"token": "ghs_stub", "expires_at": expires}, status=201)
        if self.rng.random() < 0.5:
            answer = self._success(request)
            if answer is not None:
                return answer
        status = self.rng.choice([404, 404, 500, 502])
        return web.json_response({"message": "stub says no"}, status=status)

    def _success(self, request: web.Request) -> web.Response | None:
        url = str(request.url.with_query(None))
        if request.method == "POST" and request.path.endswith(("/check-runs", "/comments")):
            return web.json_response({"id": 7, "url": f"{url}/7", "body": ""}, status=201)
        if request.method == "PATCH":
            return web.json_response({"id": 7, "url": url})
        if request.method == "GET" and request.path.endswith("/comments"):
            return web.json_response([])
        return None


@dataclass
class Fuzzed:
    """The app under test, its client, and the stub GitHub it talks to."""

    client: TestClient
    stub: StubGitHub
    github_url: str

    async def post(self, delivery: Delivery) -> int:
        """Send a delivery, its GitHub URLs pointing at the stub, signed again; the status."""
        body = delivery.body
        for real, ours in (
            (b"https://api.github.com", self.github_url.encode()),
            (b"https%3A%2F%2Fapi.github.com", urllib.parse.quote(self.github_url, "").encode()),
        ):
            body = body.replace(real, ours)
        headers = {**delivery.headers, "X-Hub-Signature-256": sign(body, SECRET)}
        # Every example starts afresh: Hypothesis replays deliveries while it shrinks.
        self.client.app[DELIVERIES].clear()
        self.stub.rng.seed(body)
        resp = await self.client.post("/webhook", data=io.BytesIO(body), headers=headers)
        return resp.status


@pytest.fixture
async def fuzzed(aiohttp_client: Any, private_key_pem: str) -> AsyncIterator[Fuzzed]:
    """The real app with the real router, talking to the stub GitHub."""
    stub = StubGitHub()
    github = web.Application()
    github.router.add_route("*", "/{tail:.*}", stub.handle)
    server = TestServer(github)
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    settings = ServerSettings(
        app_id="1", private_key=private_key_pem, webhook_secret=SECRET, github_url=url, workers=2
    )
    policy = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002, timeout=2.0)
    client = await aiohttp_client(create_app(settings, policy=policy))
    yield Fuzzed(client, stub, url)
    await server.close()


@fuzz_settings(150)
@given(delivery=deliveries())
async def test_signed_fuzz_never_gets_a_500_nor_breaks_a_job(
    fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture, delivery: Delivery
) -> None:
    watch = LoopWatch().install()
    failed_before = handler_errors(fuzzed.client.app[METRICS])
    tracemalloc.start()
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            status = await fuzzed.post(delivery)
            assert status in OK_STATUSES, f"{status} for {delivery.what}"
            assert await fuzzed.client.app[QUEUE].join(30), f"job did not end: {delivery.what}"
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        watch.uninstall()
    assert not watch.errors, f"{delivery.what}: {watch.describe()}"
    broken = [
        r
        for r in caplog.records
        if r.name.startswith("bot.")
        and r.exc_info
        and not isinstance(r.exc_info[1], GITHUB_FAILURES)
    ]
    assert not broken, f"{delivery.what}: {broken[0].exc_info!r}"
    # The metrics count exactly the jobs that failed (each logged once, at the boundary).
    failed = [r for r in caplog.records if r.name == "bot.web.queue" and r.exc_info]
    assert handler_errors(fuzzed.client.app[METRICS]) - failed_before == len(failed)
    growth, bound = peak - before, MEMORY_BASE + MEMORY_PER_BODY_BYTE * len(delivery.body)
    assert growth < bound, f"{delivery.what}: peak {growth >> 20} MB, over {bound >> 20} MB"


async def test_every_routed_event_has_real_examples() -> None:
    """The fuzzer covers every (event, action) hubbot routes, from GitHub's own payloads."""
    missing = [r for r in routes() if r not in examples()]
    assert not missing, f"no GitHub example for {missing}"


async def test_failures_are_counted_and_the_workers_survive(fuzzed: Fuzzed) -> None:
    """After the stub's 404s and 5xx fail real plans, the metrics say so; workers live on."""
    payload = with_installation(examples()[("pull_request", "opened")][0])
    for n in range(3):
        payload["number"] = payload["pull_request"]["number"] = n + 1
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
        }
        assert await fuzzed.post(Delivery(headers, json.dumps(payload).encode(), "opened")) == 202
    queue = fuzzed.client.app[QUEUE]
    assert await queue.join(30)
    assert handler_errors(fuzzed.client.app[METRICS]) == 3  # the stub never lets a plan finish
    assert fuzzed.stub.requests > 3  # the plans reached the stub, not the real GitHub
    assert queue.running == 0 and all(not t.done() for t in queue._tasks)
