"""Shared test fixtures: paths to the real 2i2c data and the example repository."""

from __future__ import annotations

import hashlib
import hmac
import http
import json
import uuid
from pathlib import Path
from typing import Any

import gidgethub
import pytest
from gidgethub import sansio

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config"
SHARED = ROOT.parent / "shared" / "fixtures"
SNAPSHOT_2I2C = SHARED / "2i2c-infrastructure"
PLAN_CASES_2I2C = SHARED / "2i2c-plan-cases.json"
CACHE = ROOT / ".cache"


@pytest.fixture
def snapshot_2i2c() -> Path:
    """The real 2i2c-org/infrastructure snapshot; skipped only when ../shared is absent."""
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return SNAPSHOT_2I2C


# --- GitHub App helpers (webhooks, a recording GitHub fake, app keys) -------------------------

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample(event: str, name: str) -> dict[str, Any]:
    """A recorded webhook payload from tests/samples (GitHub's own examples), as a fresh dict."""
    data: dict[str, Any] = json.loads((SAMPLES / event / f"{name}.json").read_text())
    return data


def sign(body: bytes, secret: str) -> str:
    """The X-Hub-Signature-256 value GitHub would send."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(
    event: str, body: bytes, secret: str | None, *, delivery: str | None = None, hook: str = "1"
) -> dict[str, str]:
    """The headers of a webhook delivery, signed with `secret` when given."""
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": hook,
        "User-Agent": "GitHub-Hookshot/test",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    """A throwaway RSA key, as a GitHub App's private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


class Answers(list[Any]):
    """Successive answers to one request, consumed in order (the last one repeats)."""

    def __init__(self, *answers: Any) -> None:
        super().__init__(answers)


class FakeGH:
    """A recording stand-in for a gidgethub client, keyed by `sansio.format_url(url, url_vars)`.

    `responses[(METHOD, url)]` is a value, an exception to raise, or `Answers(...)` of
    those. Every call is recorded in `calls`.
    """

    def __init__(self, responses: dict[tuple[str, str], Any] | None = None) -> None:
        self.responses: dict[tuple[str, str], Any] = dict(responses or {})
        self.calls: list[tuple[str, str, Any]] = []

    def _answer(self, method: str, url: str, url_vars: Any, data: Any = None) -> Any:
        full = sansio.format_url(url, url_vars)
        self.calls.append((method, full, data))
        try:
            answer = self.responses[(method, full)]
        except KeyError:
            raise gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND, f"{method} {full}") from None
        if isinstance(answer, Answers):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def urls(self, method: str | None = None) -> list[str]:
        """The URLs called, in order (of one method)."""
        return [u for m, u, _ in self.calls if method is None or m == method]

    async def getitem(self, url: str, url_vars: Any = None, **kwargs: Any) -> Any:
        return self._answer("GET", url, url_vars or {})

    async def getiter(self, url: str, url_vars: Any = None, **kwargs: Any) -> Any:
        for item in self._answer("GET", url, url_vars or {}):
            yield item

    async def post(self, url: str, url_vars: Any = None, *, data: Any, **kwargs: Any) -> Any:
        return self._answer("POST", url, url_vars or {}, data)

    async def patch(self, url: str, url_vars: Any = None, *, data: Any, **kwargs: Any) -> Any:
        return self._answer("PATCH", url, url_vars or {}, data)

    async def delete(self, url: str, url_vars: Any = None, **kwargs: Any) -> Any:
        return self._answer("DELETE", url, url_vars or {})

    async def download(self, url: str, *, max_bytes: int, accept: str = "*/*") -> bytes:
        data: bytes = self._answer("DOWNLOAD", url, {})
        return data


@pytest.fixture
def fake_gh() -> FakeGH:
    """An empty recording GitHub fake."""
    return FakeGH()


# ---- the GitHub double (bot/sandbox/github) -------------------------------------------
# Every request a test makes to the double is checked against GitHub's REST description;
# the `github_sandbox` fixture fails the test at teardown if the real API would have
# rejected one of them (or if a response drifted from the description).
from collections.abc import AsyncIterator  # noqa: E402
from typing import Any  # noqa: E402


@pytest.fixture(scope="session")
def openapi_checker() -> Any:
    """GitHub's REST description loaded once per session into openapi-core (~0.5 s)."""
    from bot.sandbox.github.openapi import OpenAPIChecker
    from tests.sandbox_support import OPENAPI_JSON

    if not OPENAPI_JSON.is_file():
        pytest.skip("run tools/setup: .cache/npm/openapi is absent")
    return OpenAPIChecker(OPENAPI_JSON)


@pytest.fixture(scope="session")
def sandbox_private_key() -> str:
    """One RSA app key for the session (generating one per test costs ~0.1 s each)."""
    from bot.sandbox.github.auth import generate_private_key

    return generate_private_key()


@pytest.fixture(scope="session")
def sandbox_repo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small infrastructure repository every sandbox test starts from (copied per test)."""
    from tests.sandbox_support import make_repo

    return make_repo(tmp_path_factory.mktemp("sandbox-template") / "infrastructure")


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[Any]:
    """A loopback server recording the webhooks the double sends (answers 202)."""
    from tests.sandbox_support import WebhookReceiver

    receiver = await WebhookReceiver().start()
    yield receiver
    await receiver.close()


@pytest.fixture
async def github_sandbox(
    tmp_path: Path,
    openapi_checker: Any,
    sandbox_private_key: str,
    sandbox_repo_template: Path,
    webhook_receiver: Any,
) -> AsyncIterator[Any]:
    """A running GitHub double over a fresh small repository, webhooks to `webhook_receiver`.

    Fails at teardown when any request or response broke GitHub's REST description; a test
    that sends invalid requests on purpose clears `sandbox.violations` itself.
    """
    from bot.sandbox.github import GitHubSandbox
    from tests.sandbox_support import copy_repo

    repo = copy_repo(sandbox_repo_template, tmp_path / "infrastructure")
    sandbox = GitHubSandbox(
        repo,
        app_id=31337,
        webhook_url=webhook_receiver.url,
        webhook_secret="sandbox-secret",
        private_key=sandbox_private_key,
        checker=openapi_checker,
    )
    async with sandbox:
        yield sandbox
        await sandbox.drain()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


@pytest.fixture
async def sandbox_ctl(github_sandbox: Any) -> AsyncIterator[Any]:
    """A control API client for `github_sandbox`."""
    import aiohttp

    from tests.sandbox_support import Control

    async with aiohttp.ClientSession() as session:
        yield Control(session, github_sandbox)
