"""The status page `GET /` and `/status.json`: sections, answers recorded, escaping, no secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot.handlers.context import Services
from bot.web.app import create_app
from bot.web.deliveries import DeliveryLog, describe
from bot.web.keys import DELIVERY_LOG, QUEUE
from bot.web.status import deploy_view, iso
from bot.web.status_html import CSP, STYLE, render
from tests.conftest import webhook_headers
from tests.status_support import (
    GH_TOKEN,
    KUBE_TOKEN,
    SECRET,
    FakeDeploys,
    Gate,
    pr_body,
    server_settings,
    snapshot,
)

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
def gate() -> Gate:
    return Gate()


async def make_client(
    aiohttp_client: Any, pem: str, gate: Gate, deploys: Any = None, **kw: Any
) -> TestClient:
    services = Services(app_id="1", deploys=deploys or FakeDeploys())
    app = create_app(server_settings(pem, **kw), router=gate.router, services=services)
    return await aiohttp_client(app)


@pytest.fixture
async def client(aiohttp_client: Any, private_key_pem: str, gate: Gate) -> TestClient:
    gate.open.set()
    return await make_client(aiohttp_client, private_key_pem, gate)


async def deliver(
    client: TestClient, body: bytes, *, delivery: str, secret: str | None = SECRET, **kw: Any
) -> int:
    headers = webhook_headers("pull_request", body, secret, delivery=delivery, **kw)
    resp = await client.post("/", data=body, headers=headers)
    return resp.status


async def page(client: TestClient, path: str = "/") -> str:
    resp = await client.get(path)
    assert resp.status == 200
    return await resp.text()


async def rows(client: TestClient) -> dict[str, list[dict[str, Any]]]:
    """Delivery rows of /status.json by delivery id (a duplicate has several)."""
    resp = await client.get("/status.json")
    assert resp.status == 200
    found: dict[str, list[dict[str, Any]]] = {}
    for row in (await resp.json())["deliveries"]:
        found.setdefault(row["delivery_id"], []).append(row)
    return found


async def test_page_has_every_section_with_its_data(client: TestClient) -> None:
    assert await deliver(client, pr_body(5), delivery="d-sections") == 202
    html = await page(client)
    for section in ("queue", "rollouts", "recent", "claims", "deliveries"):
        assert f'<section id="{section}">' in html
    for text in (
        "d-sections",
        "Codertocat/Hello-World",
        "utoronto/staging",
        "utoronto/r-prod",
        "PR #42",
        "#41",
        "@partner",
        "2026-01-02 03:04:05Z",
        "2026-01-02 07:04:05Z",
        "0123456",
        "12.5 s",
        "executor: local",
        "fedcba9",
        "1 of 4 done",
        "all 1 done",
        "2026-01-02 02:00:00Z",
        "of 4 workers",
    ):
        assert text in html, text
    assert re.search(r'class="pill busy">running</span>', html)
    assert re.search(r'class="pill bad">blocked</span>', html)
    assert re.search(r'class="pill busy">in progress</span>', html)
    assert re.search(r'class="pill bad">failure</span>', html)


async def test_headers_are_strict_and_the_style_hash_matches(client: TestClient) -> None:
    resp = await client.get("/")
    html = await resp.text()
    assert resp.content_type == "text/html"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    csp = resp.headers["Content-Security-Policy"]
    assert csp == CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert "script-src" not in directives and "unsafe" not in csp
    # The one <style> element is exactly what the policy's hash allows.
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert directives["style-src"] == f"'sha256-{digest}'"
    assert style == STYLE
    assert "<script" not in html and " style=" not in html
    json_resp = await client.get("/status.json")
    assert json_resp.headers["Cache-Control"] == "no-store"
    assert json_resp.headers["Content-Security-Policy"] == "default-src 'none'"


@pytest.mark.parametrize("path", ["/", "/status.json"])
async def test_read_only(client: TestClient, path: str) -> None:
    head = await client.head(path)
    assert head.status == 200
    for method in ("PUT", "DELETE", "PATCH"):
        assert (await client.request(method, path)).status == 405
    if path == "/status.json":
        assert (await client.post(path)).status == 405


async def test_post_root_is_still_the_webhook(client: TestClient) -> None:
    assert await deliver(client, pr_body(1), delivery="d-post") == 202
    assert await deliver(client, pr_body(1), delivery="d-unsigned", secret=None) == 401


async def test_every_answer_and_ending_is_recorded(
    aiohttp_client: Any, private_key_pem: str, gate: Gate
) -> None:
    client = await make_client(aiohttp_client, private_key_pem, gate, queue_size=1, workers=1)
    queue = client.server.app[QUEUE]
    assert await deliver(client, pr_body(1), delivery="d-run") == 202
    await gate.entered.wait()
    assert await deliver(client, pr_body(2), delivery="d-old") == 202
    assert await deliver(client, pr_body(2, "synchronize"), delivery="d-new") == 202
    assert await deliver(client, pr_body(3), delivery="d-full") == 503
    assert await deliver(client, pr_body(1), delivery="d-run") == 202  # redelivered
    assert await deliver(client, pr_body(1), delivery="d-forged", secret="another secret") == 401
    bad = await client.post("/", data=b"{", headers=webhook_headers("push", b"{", SECRET))
    assert bad.status == 400
    found = await rows(client)
    assert [r["handling"] for r in found["d-run"]] == ["", "running"]  # newest first
    assert [r["answer"] for r in found["d-run"]] == ["duplicate", "accepted"]
    assert found["d-old"][0]["handling"] == "superseded"
    assert found["d-new"][0]["handling"] == "queued"
    assert (found["d-full"][0]["status"], found["d-full"][0]["answer"]) == (503, "queue_full")
    forged = found["d-forged"][0]
    # A body whose signature failed is not read: its repository and action stay unknown.
    assert (forged["status"], forged["answer"], forged["repository"], forged["action"]) == (
        401,
        "invalid_signature",
        "",
        "",
    )
    gate.open.set()
    assert await queue.join(5)
    found = await rows(client)
    assert found["d-run"][1]["handling"] == "ok"
    assert found["d-run"][1]["seconds"] >= 0
    assert found["d-new"][0]["handling"] == "failed"
    row = found["d-new"][0]
    assert (row["event"], row["action"], row["repository"]) == (
        "pull_request",
        "synchronize",
        "Codertocat/Hello-World",
    )
    html = await page(client)
    assert "503 queue full" in html and "401 invalid signature" in html


async def test_hostile_names_render_as_text(
    aiohttp_client: Any, private_key_pem: str, gate: Gate
) -> None:
    gate.open.set()
    data = snapshot(hostile=HOSTILE)
    data["rollouts"][0]["waves"][0]["targets"][0]["state"] = "success" + HOSTILE
    client = await make_client(aiohttp_client, private_key_pem, gate, FakeDeploys(data))
    assert await deliver(client, pr_body(1, repo=HOSTILE), delivery=HOSTILE) == 202
    html = await page(client)
    assert "<script" not in html and "<img" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # repo, id, source, author
    assert '<span class="pill ">success&lt;script&gt;' in html  # an unknown state: no colour


async def test_no_secret_token_pem_or_payload_reaches_the_page(
    aiohttp_client: Any, private_key_pem: str, gate: Gate
) -> None:
    gate.open.set()
    leaky = snapshot()
    wave = leaky["rollouts"][0]["waves"][0]
    wave["targets"][1]["detail"] = f"helm said {GH_TOKEN} and {SECRET}"
    wave["targets"][2]["detail"] = private_key_pem
    wave["sources"].append(f"token {KUBE_TOKEN}")
    wave["payload"] = {"token": "never-whitelisted-field-value"}
    deploys = FakeDeploys(leaky)
    deploys.config = type(deploys.config)(kube_token=KUBE_TOKEN)
    client = await make_client(aiohttp_client, private_key_pem, gate, deploys)
    body = json.loads(pr_body(1))
    body["pull_request"]["title"] = "PAYLOAD-MARKER-title"
    data = json.dumps(body).encode()
    assert await deliver(client, data, delivery="d-secret") == 202
    assert await deliver(client, data, delivery="d-secret") == 202
    signature = webhook_headers("pull_request", data, SECRET)["X-Hub-Signature-256"]
    pem_lines = [ln for ln in private_key_pem.splitlines() if len(ln) >= 16]
    forbidden = [SECRET, GH_TOKEN, KUBE_TOKEN, signature, signature[7:], "GitHub-Hookshot"]
    forbidden += ["PAYLOAD-MARKER", "never-whitelisted", "BEGIN", *pem_lines]
    for path in ("/", "/status.json"):
        text = await page(client, path)
        assert "d-secret" in text and "[redacted]" in text
        leaked = [f for f in forbidden if f in text]
        assert not leaked, f"{path} shows {leaked}"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NotImplementedError(), "does not report its state yet"),
        (RuntimeError("boom " + SECRET), "could not be read"),
    ],
)
async def test_a_broken_deploy_service_still_shows_deliveries(
    aiohttp_client: Any,
    private_key_pem: str,
    gate: Gate,
    error: Exception,
    expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate.open.set()
    client = await make_client(aiohttp_client, private_key_pem, gate, FakeDeploys(error=error))
    assert await deliver(client, pr_body(1), delivery="d-still") == 202
    html = await page(client)
    assert "d-still" in html and html.count(expected) == 3  # rollouts, recent and claims
    assert SECRET not in html


def test_log_is_bounded_newest_first_and_forgets_evicted_entries() -> None:
    clock = iter(range(100))
    log = DeliveryLog(3, clock=lambda: float(next(clock)))
    for n in range(5):
        log.record(delivery_id=f"d{n}", event="push", status=202, answer="accepted")
    assert [d.delivery_id for d in log.recent()] == ["d4", "d3", "d2"]
    assert len(log) == 3 and len(log._queued) == 3
    log.handling("d0", "ok")  # evicted: nothing to update, nothing kept
    assert all(d.handling == "queued" for d in log.recent())
    log.handling("d3", "failed", 1.5)
    assert (log.recent()[1].handling, log.recent()[1].seconds) == ("failed", 1.5)
    with pytest.raises(ValueError, match="at least 1"):
        DeliveryLog(0)


async def test_app_log_is_bounded(client: TestClient) -> None:
    log = client.server.app[DELIVERY_LOG]
    for n in range(log.size + 5):
        await deliver(client, b"{", delivery=f"bad-{n}", secret="wrong")
    assert len(log) == log.size
    assert log.recent()[0].delivery_id == f"bad-{log.size + 4}"


def test_long_header_values_are_cut() -> None:
    log = DeliveryLog(2)
    entry = log.record(delivery_id="x" * 10_000, event="e" * 10_000, status=401, answer="a")
    assert len(entry.delivery_id) == 100 and len(entry.event) == 100


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (None, ("", "")),
        ([], ("", "")),
        ({"action": 5, "repository": "x"}, ("", "")),
        ({"action": "opened", "repository": {"full_name": "o/r"}}, ("opened", "o/r")),
    ],
)
def test_describe(payload: Any, expected: tuple[str, str]) -> None:
    assert describe(payload) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "rollouts",
        {"rollouts": "x", "claims": 5, "recovery": []},
        {"rollouts": [None, {"waves": [None, {"targets": [None, 5, {"seconds": True}]}]}]},
        {"claims": [{"pr": True, "since": "yesterday", "expires": 1e300}]},
        {"rollouts": [{"waves": [{"id": "7", "sha": None, "pr": "42", "sources": "s"}]}]},
    ],
)
def test_malformed_snapshots_render(raw: Any) -> None:
    from bot.web.status import _Cleaner

    view = deploy_view(raw, _Cleaner([]))
    data = {
        "generated_at": "now",
        "queue": {"depth": 0, "max": 1, "running": 0, "workers": 1},
        "deliveries": [],
        "deploys": view,
        "deploys_problem": "",
    }
    assert '<section id="rollouts">' in render(data)
    json.dumps(view)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "1970-01-01 00:00:00Z"),
        ("2026-01-02T03:04:05Z", "2026-01-02 03:04:05Z"),
        ("2026-01-02T05:04:05+02:00", "2026-01-02 03:04:05Z"),
        ("not a time", ""),
        (True, ""),
        (None, ""),
    ],
)
def test_iso(value: object, expected: str) -> None:
    assert iso(value) == expected
