"""The webhook route: signatures, bad requests, size, dedupe, queueing, health and metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gidgethub import routing, sansio
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.github.client import RetryPolicy
from bot.web.app import create_app
from bot.web.keys import QUEUE
from bot.web.settings import ServerSettings
from tests.conftest import sample, sign, webhook_headers

SECRET = "It's a Secret to Everybody"


class Recorder:
    """A router whose handlers record events and can be held until released."""

    def __init__(self) -> None:
        self.router = routing.Router()
        self.seen: list[sansio.Event] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False
        self.changed = asyncio.Condition()
        self.entered = 0
        self.router.add(self.handle, "pull_request", action="opened")
        self.router.add(self.handle, "pull_request", action="synchronize")
        self.router.add(self.handle, "push")

    async def handle(self, event: sansio.Event, gh: Any, *args: Any, **kwargs: Any) -> None:
        async with self.changed:
            self.entered += 1
            self.changed.notify_all()
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("handler broke")
        async with self.changed:
            self.seen.append(event)
            self.changed.notify_all()

    async def wait_for(self, count: int, *, entered: bool = False) -> None:
        """Wait until `count` events were handled (or, with `entered`, started)."""

        def reached() -> bool:
            return (self.entered if entered else len(self.seen)) >= count

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(reached), 5)


def settings(pem: str, **kw: Any) -> ServerSettings:
    base: dict[str, Any] = {
        "app_id": "1",
        "private_key": pem,
        "webhook_secret": SECRET,
        "github_url": "http://127.0.0.1:9",
    }
    base.update(kw)
    return ServerSettings(**base)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(aiohttp_client: Any, private_key_pem: str, recorder: Recorder) -> TestClient:
    app = create_app(settings(private_key_pem), router=recorder.router)
    return await aiohttp_client(app)


def pr_body(number: int = 1, action: str = "opened") -> bytes:
    data = sample("pull_request", action)
    data["number"] = data["pull_request"]["number"] = number
    return json.dumps(data).encode()


async def post(
    client: TestClient, body: bytes, event: str = "pull_request", **kw: Any
) -> tuple[int, dict[str, Any]]:
    headers = kw.pop("headers", None) or webhook_headers(event, body, SECRET, **kw)
    resp = await client.post("/webhook", data=body, headers=headers)
    return resp.status, await resp.json()


async def test_signed_delivery_is_accepted_and_handled(
    client: TestClient, recorder: Recorder
) -> None:
    status, answer = await post(client, pr_body(), delivery="d-1")
    assert (status, answer["message"]) == (202, "accepted")
    await recorder.wait_for(1)
    assert recorder.seen[0].delivery_id == "d-1"
    assert recorder.seen[0].data["action"] == "opened"


async def test_root_path_is_a_webhook_too(client: TestClient, recorder: Recorder) -> None:
    body = pr_body()
    resp = await client.post("/", data=body, headers=webhook_headers("pull_request", body, SECRET))
    assert resp.status == 202
    await recorder.wait_for(1)


def _sha1(body: bytes) -> str:
    return "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "sha256=" + "0" * 64,  # wrong value
        "SIGNATURE-WITH-WRONG-SECRET",  # replaced below by a signature with another secret
        "sha1-prefix",  # a valid SHA-1 signature in the SHA-256 header
        "md5=abc",
        "",
    ],
)
async def test_bad_signature_is_401(
    client: TestClient, recorder: Recorder, signature: str | None
) -> None:
    body = pr_body()
    headers = webhook_headers("pull_request", body, SECRET)
    if signature is None:
        del headers["X-Hub-Signature-256"]
    elif signature == "SIGNATURE-WITH-WRONG-SECRET":
        headers["X-Hub-Signature-256"] = sign(body, "another secret")
    elif signature == "sha1-prefix":
        headers["X-Hub-Signature-256"] = _sha1(body)
    else:
        headers["X-Hub-Signature-256"] = signature
    status, _ = await post(client, body, headers=headers)
    assert status == 401
    assert recorder.seen == []


async def test_sha1_header_alone_is_not_enough(client: TestClient) -> None:
    body = pr_body()
    headers = webhook_headers("pull_request", body, None)
    headers["X-Hub-Signature"] = _sha1(body)
    status, _ = await post(client, body, headers=headers)
    assert status == 401


async def test_tampered_body_is_401(client: TestClient) -> None:
    body = pr_body()
    headers = webhook_headers("pull_request", body, SECRET)
    status, _ = await post(client, body.replace(b"opened", b"closed"), headers=headers)
    assert status == 401


@pytest.mark.parametrize(
    ("body", "drop", "content_type"),
    [
        (b"{not json", None, "application/json"),
        (b"\xff\xfe\x00garbage", None, "application/json"),
        (b"[1, 2, 3]", None, "application/json"),
        (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", None, "application/json"),  # too deep
        (b'"a string"', None, "application/json"),
        (None, "X-GitHub-Event", "application/json"),
        (None, "X-GitHub-Delivery", "application/json"),
        (None, None, "text/plain"),
        (None, None, None),
    ],
)
async def test_malformed_delivery_is_400(
    client: TestClient,
    recorder: Recorder,
    body: bytes | None,
    drop: str | None,
    content_type: str | None,
) -> None:
    payload = body if body is not None else pr_body()
    headers = webhook_headers("pull_request", payload, SECRET)
    if drop:
        del headers[drop]
    if content_type is None:
        del headers["Content-Type"]
    else:
        headers["Content-Type"] = content_type
    resp = await client.post("/webhook", data=payload, headers=headers)
    assert resp.status == 400
    assert recorder.seen == []


async def test_oversized_body_is_413(
    aiohttp_client: Any, private_key_pem: str, recorder: Recorder
) -> None:
    app = create_app(settings(private_key_pem, max_webhook_bytes=10_000), router=recorder.router)
    client = await aiohttp_client(app)
    body = json.dumps({"pad": "x" * 20_000}).encode()
    status, _ = await post(client, body)
    assert status == 413

    async def chunks() -> Any:  # no Content-Length: the cap applies while reading
        for _ in range(4):
            yield b"x" * 5_000

    headers = webhook_headers("pull_request", b"", SECRET)
    resp = await client.post("/webhook", data=chunks(), headers=headers)
    assert resp.status == 413


async def test_default_cap_is_25_mb(
    aiohttp_client: Any, private_key_pem: str, recorder: Recorder
) -> None:
    client = await aiohttp_client(create_app(settings(private_key_pem), router=recorder.router))
    body = b'{"pad": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    headers = webhook_headers("pull_request", body, SECRET)
    resp = await client.post("/webhook", data=io.BytesIO(body), headers=headers)
    assert resp.status == 413


async def test_redelivery_is_processed_once(client: TestClient, recorder: Recorder) -> None:
    body = pr_body()
    first, _ = await post(client, body, delivery="same-guid")
    again, answer = await post(client, body, delivery="same-guid")
    assert (first, again) == (202, 202)
    assert answer["duplicate"] is True
    other_hook, _ = await post(client, body, delivery="same-guid", hook="2")
    assert other_hook == 202  # another hook's delivery is another delivery
    await recorder.wait_for(2)
    await client.app[QUEUE].join(5)
    assert [e.delivery_id for e in recorder.seen] == ["same-guid", "same-guid"]


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("ping", lambda: sample("ping", "ping")),  # no installation
        ("pull_request", lambda: sample("pull_request", "assigned")),  # unknown action
        ("pull_request", lambda: sample("pull_request", "closed")),  # not handled here
        ("star", lambda: {"action": "created", "installation": {"id": 1}}),  # unknown event
        ("pull_request", lambda: {**sample("pull_request", "opened"), "installation": None}),
        ("pull_request", lambda: {**sample("pull_request", "opened"), "action": {"a": 1}}),
        ("pull_request", lambda: {**sample("pull_request", "opened"), "action": ["opened"]}),
    ],
)
async def test_unhandled_events_are_202_and_ignored(
    client: TestClient, recorder: Recorder, event: str, payload: Any
) -> None:
    status, answer = await post(client, json.dumps(payload()).encode(), event=event)
    assert status == 202
    assert answer["message"].startswith("ignored")
    assert await client.app[QUEUE].join(1)
    assert recorder.seen == []


async def test_full_queue_answers_503_with_retry_after(
    aiohttp_client: Any, private_key_pem: str, recorder: Recorder
) -> None:
    app = create_app(settings(private_key_pem, queue_size=1, workers=1), router=recorder.router)
    client = await aiohttp_client(app)
    recorder.release.clear()
    assert (await post(client, pr_body(1)))[0] == 202  # running
    queue = client.app[QUEUE]
    await recorder.wait_for(1, entered=True)
    assert queue.running == 1
    assert (await post(client, pr_body(2)))[0] == 202  # waiting: the queue is now full
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = pr_body(3)
    resp = await client.post(
        "/webhook", data=body, headers=webhook_headers("pull_request", body, SECRET)
    )
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    # A newer re-plan of a waiting PR replaces it instead of being refused.
    assert (await post(client, pr_body(2, "synchronize")))[0] == 202
    recorder.release.set()
    await recorder.wait_for(2)
    assert await queue.join(5)
    assert [(e.data["number"], e.data["action"]) for e in recorder.seen] == [
        (1, "opened"),
        (2, "synchronize"),
    ]
    assert (await client.get("/readyz")).status == 200
    # The refused delivery was not remembered: GitHub's redelivery is processed.
    resp = await client.post(
        "/webhook", data=body, headers=webhook_headers("pull_request", body, SECRET)
    )
    assert resp.status == 202


async def test_failing_handler_is_logged_with_delivery_and_worker_survives(
    client: TestClient, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.fail_next = True
    with caplog.at_level(logging.INFO):
        await post(client, pr_body(1), delivery="boom-1")
        await post(client, pr_body(2), delivery="fine-2")
        await recorder.wait_for(1)
        await client.app[QUEUE].join(5)
    assert [e.delivery_id for e in recorder.seen] == ["fine-2"]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert failures[0].delivery_id == "boom-1"  # type: ignore[attr-defined]
    assert "handler broke" in (failures[0].exc_text or "")
    assert all(hasattr(r, "delivery_id") for r in caplog.records)


async def test_insecure_mode_accepts_unsigned(
    aiohttp_client: Any, private_key_pem: str, recorder: Recorder
) -> None:
    app = create_app(settings(private_key_pem, webhook_secret=None), router=recorder.router)
    client = await aiohttp_client(app)
    body = pr_body()
    resp = await client.post(
        "/webhook", data=body, headers=webhook_headers("pull_request", body, None)
    )
    assert resp.status == 202
    await recorder.wait_for(1)


async def test_health_and_readiness(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["queue_depth"] == 0


async def test_metrics_count_deliveries_with_bounded_labels(
    client: TestClient, recorder: Recorder
) -> None:
    await post(client, pr_body(4242), delivery="d-a")
    await post(client, pr_body(4242), delivery="d-a")  # duplicate
    bad = pr_body()
    await client.post("/webhook", data=bad, headers=webhook_headers("pull_request", bad, "nope"))
    odd = json.dumps({"installation": {"id": 1}}).encode()
    await post(client, odd, event="an_event_github_never_sends_with_a_long_name")
    await recorder.wait_for(1)
    await client.app[QUEUE].join(5)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()

    def value(name: str, **labels: str) -> float:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        braces = f"\\{{{inner}\\}}" if inner else ""
        match = re.search(rf"^{name}{braces} (\S+)$", text, re.M)
        assert match, f"{name}{{{inner}}} not in metrics"
        return float(match.group(1))

    assert value("hubbot_webhook_deliveries_total", event="pull_request", result="accepted") == 1
    assert value("hubbot_webhook_deliveries_total", event="pull_request", result="duplicate") == 1
    assert (
        value("hubbot_webhook_deliveries_total", event="pull_request", result="invalid_signature")
        == 1
    )
    assert value("hubbot_webhook_deliveries_total", event="other", result="ignored") == 1
    assert value("hubbot_handler_runs_total", event="pull_request", result="ok") == 1
    assert value("hubbot_handler_seconds_count", event="pull_request") == 1
    assert value("hubbot_queue_depth") == 0
    assert "4242" not in text and "d-a" not in text
    assert "an_event_github_never_sends" not in text
    sha = sample("pull_request", "opened")["pull_request"]["head"]["sha"]
    assert sha not in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["opened", "synchronize", "edited", "rerequested", "x"]),
        "installation": st.sampled_from([{"id": 1}, {"id": "1"}, None, [], {"id": True}]),
        "pull_request": json_values,
        "repository": json_values,
        "check_run": json_values,
        "number": json_values,
        "ref": json_values,
    },
)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    event=st.sampled_from(["pull_request", "push", "check_run", "check_suite", "ping", "zzz"]),
    payload=payloads,
)
async def test_signed_garbage_never_gets_a_500_nor_kills_a_worker(
    aiohttp_client: Any, private_key_pem: str, event: str, payload: dict[str, Any]
) -> None:
    policy = RetryPolicy(attempts=1, timeout=0.5)
    client = await aiohttp_client(create_app(settings(private_key_pem), policy=policy))
    body = json.dumps(payload).encode()
    status, _ = await post(client, body, event=event)
    assert status in (202, 400)
    queue = client.app[QUEUE]
    assert await queue.join(10)
    assert queue.running == 0 and all(not t.done() for t in queue._tasks)
    await client.close()
