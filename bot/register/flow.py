"""One run of the manifest flow: its options, its CSRF `state`, and how it ended."""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bot.register.credentials import AppCredentials, WrittenFiles
from bot.register.manifest import fill_manifest, new_app_url

LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class RegisterOptions:
    """What `hubbot register` was asked for, validated."""

    manifest: Mapping[str, Any]
    github_url: str
    api_url: str
    out_dir: Path
    org: str | None = None
    webhook_url: str | None = None
    name: str | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class Registered:
    """GitHub created the app and its credentials are on disk."""

    credentials: AppCredentials
    files: WrittenFiles


@dataclass(frozen=True, slots=True)
class Failed:
    """The flow ended without credentials on disk; `reason` is one line, safe to print."""

    reason: str


Outcome = Registered | Failed


@dataclass(eq=False)
class Flow:
    """The state of one registration, shared by the local page and the callback."""

    options: RegisterOptions
    state: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    port: int = 0
    busy: bool = False
    # Made on the running loop: a Flow lives inside `hubbot register`'s event loop.
    outcome: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def local_url(self) -> str:
        """The page the user opens."""
        return f"http://{LOCAL_HOST}:{self.port}/"

    @property
    def redirect_url(self) -> str:
        """Where GitHub sends the browser back with the code."""
        return f"http://{LOCAL_HOST}:{self.port}/callback"

    @property
    def hosts(self) -> frozenset[str]:
        """`Host` headers the local server answers; others may be a DNS-rebinding page."""
        return frozenset({f"{LOCAL_HOST}:{self.port}", f"localhost:{self.port}"})

    def manifest(self) -> dict[str, Any]:
        """The manifest to post, pointing back at this server."""
        o = self.options
        return fill_manifest(
            o.manifest, redirect_url=self.redirect_url, webhook_url=o.webhook_url, name=o.name
        )

    def form_action(self) -> str:
        """GitHub's "new app" page with the `state` GitHub echoes back to the callback."""
        url = new_app_url(self.options.github_url, self.options.org)
        return f"{url}?{urlencode({'state': self.state})}"

    def state_matches(self, given: str | None) -> bool:
        """Whether a callback carries this flow's `state` (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.state.encode())

    def finish(self, outcome: Outcome) -> None:
        """Record how the flow ended (the first outcome wins)."""
        if not self.outcome.done():
            self.outcome.set_result(outcome)
