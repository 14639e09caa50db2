"""Shared test fixtures: paths to the real 2i2c data and the example repository."""

from __future__ import annotations

from pathlib import Path

import pytest

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
