"""The GitHub double's app factory and its in-process runner, `GitHubSandbox`.

async with GitHubSandbox(repo_dir, webhook_url=..., webhook_secret=...) as sb:
    gh = GitHubAPI(session, "me", base_url=sb.api_url)
    ...  # drive it through sb.control_url, read sb.requests / sb.deliveries
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from bot.sandbox.github import (
    control,
    control_io,
    control_records,
    rest_app,
    rest_checks,
    rest_deployments,
    rest_git,
    rest_issues,
    rest_pulls,
    rest_repos,
    rest_users,
    web_manifest,
)
from bot.sandbox.github.auth import TokenStore, generate_private_key, public_key_pem
from bot.sandbox.github.context import CONTEXT, Context
from bot.sandbox.github.gate import Gate
from bot.sandbox.github.gitrepo import GitRepo
from bot.sandbox.github.http import Checker
from bot.sandbox.github.shapes_git import GitShapes
from bot.sandbox.github.state import AppInfo, Delivery, RecordedRequest, State, now
from bot.sandbox.github.webhooks import DELIVERY_TIMEOUT, WebhookSender

DEFAULT_OWNER = "hubbot-sandbox"
DEFAULT_INSTALLATION_ID = 4242
MAX_BODY = 25 * 1024 * 1024  # GitHub's payload cap, also a sane request cap
REST_MODULES = (
    rest_app,
    rest_repos,
    rest_git,
    rest_pulls,
    rest_issues,
    rest_checks,
    rest_deployments,
    rest_users,
)


class SandboxError(Exception):
    """The double cannot serve this directory (not a git repository, no `main`)."""


def build_context(
    repo_dir: str | Path,
    *,
    owner: str = DEFAULT_OWNER,
    name: str | None = None,
    app_id: int = 1,
    app_slug: str = "hubbot",
    installation_id: int = DEFAULT_INSTALLATION_ID,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    private_key: str | None = None,
    rate_limit: int = 5000,
    checker: Checker | None = None,
    webhook_timeout: float = DELIVERY_TIMEOUT,
) -> Context:
    """Everything one double needs, checked: DIR must be a git repository with a `main` branch."""
    repo = GitRepo(repo_dir)
    if not Path(repo.path).is_dir() or repo.branch_sha("main") is None:
        raise SandboxError(f"{repo_dir} is not a git repository with a 'main' branch")
    pem = private_key or generate_private_key()
    app = AppInfo(
        id=app_id,
        slug=app_slug,
        name=app_slug,
        installation_id=installation_id,
        private_key_pem=pem,
        client_id="Iv1." + secrets.token_hex(8),
        client_secret=secrets.token_hex(20),
        webhook_secret=webhook_secret,
        webhook_url=webhook_url,
        hook_id=app_id * 1000 + 1,
        created_at=now(),
    )
    state = State(owner=owner, name=name or Path(repo.path).name, app=app)
    state.add_user(control.DEFAULT_USER, permission="write")
    tokens = TokenStore()
    gate = Gate(
        state, tokens, public_key=public_key_pem(pem), rate_limit=rate_limit, checker=checker
    )
    return Context(
        state=state,
        repo=repo,
        shapes=GitShapes(state, repo),
        tokens=tokens,
        hooks=WebhookSender(state, timeout=webhook_timeout),
        gate=gate,
    )


def create_app(context: Context) -> web.Application:
    """The aiohttp application of a double: REST routes, control API, webhook sender."""
    app = web.Application(
        middlewares=[control_io.control_errors, context.gate.middleware], client_max_size=MAX_BODY
    )
    app[CONTEXT] = context
    for module in REST_MODULES:
        app.add_routes(module.routes)
    app.add_routes(control.routes)
    app.add_routes(control_records.routes)
    app.add_routes(web_manifest.routes)
    app.cleanup_ctx.append(_webhook_sender)
    return app


async def _webhook_sender(app: web.Application) -> AsyncIterator[None]:
    context = app[CONTEXT]
    await context.hooks.start()
    yield
    context.gate.closing.set()
    await context.hooks.close()


class GitHubSandbox:
    """A running double on loopback, for tests and demos (an async context manager)."""

    def __init__(
        self,
        repo_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Any,
    ):
        self.context = build_context(repo_dir, **options)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> GitHubSandbox:
        """Listen (port 0 picks a free port) and start sending webhooks."""
        self._runner = web.AppRunner(
            create_app(self.context), access_log=None, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.context.state.base_url = f"http://{self.host}:{self.port}"
        return self

    async def close(self) -> None:
        """Stop serving and stop the webhook sender."""
        if self._runner is not None:
            self.context.gate.closing.set()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GitHubSandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- what tests and demos read -----------------------------------------------
    @property
    def state(self) -> State:
        """The double's whole memory."""
        return self.context.state

    @property
    def api_url(self) -> str:
        """The REST root to give clients as `base_url`."""
        return self.state.base_url

    @property
    def control_url(self) -> str:
        """The control API root (`<api_url>/_sandbox`)."""
        return f"{self.state.base_url}/_sandbox"

    @property
    def app_id(self) -> int:
        """The app's id (the JWT issuer)."""
        return self.state.app.id

    @property
    def installation_id(self) -> int:
        """The app's installation on the repository."""
        return self.state.app.installation_id

    @property
    def private_key(self) -> str:
        """The app's private key, PEM."""
        return self.state.app.private_key_pem

    @property
    def bot_login(self) -> str:
        """The app's bot user, `<slug>[bot]`."""
        return self.state.app.bot_login

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request answered, oldest first."""
        return self.state.requests

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook sent, oldest first."""
        return self.state.deliveries

    @property
    def violations(self) -> list[str]:
        """What the plugged-in checker found wrong with requests and responses."""
        return self.state.violations

    async def drain(self) -> None:
        """Wait until every queued webhook has been delivered."""
        await self.context.hooks.drain()
