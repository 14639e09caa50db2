"""Helpers for tests that drive the GitHub double: a small repository, a webhook receiver,
clients for the control API and the REST API, and GitHub's real webhook examples and schemas."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import jwt
from aiohttp import web
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI
from multidict import CIMultiDict

from bot.sandbox.github import GitHubSandbox

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
OPENAPI_JSON = CACHE / "npm" / "openapi" / "generated" / "api.github.com.json"
WEBHOOK_SCHEMA = CACHE / "npm" / "webhooks-schemas" / "schema.json"
WEBHOOK_EXAMPLES = CACHE / "npm" / "webhooks-examples" / "api.github.com" / "index.json"

DEFAULT_FILES: dict[str, str] = {
    "README.md": "# infrastructure\n",
    "config/clusters/alpha/cluster.yaml": "name: alpha\nprovider: gcp\n",
    "config/clusters/alpha/staging.values.yaml": "jupyterhub:\n  singleuser:\n    cpu: 1\n",
    "config/clusters/alpha/prod.values.yaml": "jupyterhub:\n  singleuser:\n    cpu: 2\n",
}


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return stdout, stripped."""
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def copy_repo(template: Path, path: Path) -> Path:
    """A copy of a repository made by `make_repo` (cheaper than a new one: no git calls)."""
    shutil.copytree(template, path, symlinks=True)
    return path


def make_repo(path: Path, files: Mapping[str, str] = DEFAULT_FILES, *, link: bool = True) -> Path:
    """A git repository at `path` with one commit of `files` on `main` (and a symlink)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if link:
        os.symlink("config/clusters/alpha/cluster.yaml", path / "cluster-link.yaml")
    git(path, "add", "-A")
    git(path, "-c", "user.name=Init", "-c", "user.email=init@example.com", "commit", "-qm", "init")
    return path


@dataclass
class Received:
    """One webhook as the receiver saw it."""

    headers: CIMultiDict[str]  # case-insensitive, as gidgethub expects
    body: bytes

    @property
    def event(self) -> str:
        """`X-GitHub-Event`."""
        return self.headers["X-GitHub-Event"]

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body."""
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class WebhookReceiver:
    """A tiny aiohttp server standing in for the bot: records deliveries, answers `status`."""

    status: int = 202
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> WebhookReceiver:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/webhook"
        return self

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(CIMultiDict(request.headers), await request.read()))
        return web.Response(status=self.status)

    def events(self) -> list[tuple[str, str | None]]:
        """`(event, action)` of everything received, in order."""
        return [(r.event, r.payload.get("action")) for r in self.received]


class Control:
    """A client for the double's control API that fails loudly on unexpected statuses."""

    def __init__(self, session: aiohttp.ClientSession, sandbox: GitHubSandbox):
        self.session = session
        self.base = sandbox.control_url

    async def call(
        self, method: str, path: str, body: Any = None, *, expect: int | None = None
    ) -> Any:
        """Call the control API; assert the status when `expect` is given; return the JSON."""
        async with self.session.request(method, self.base + path, json=body) as resp:
            data = await resp.json()
            if expect is not None:
                assert resp.status == expect, (resp.status, data)
            elif resp.status >= 400:
                raise AssertionError(f"{method} {path} -> {resp.status}: {data}")
            return data

    async def get(self, path: str, **kw: Any) -> Any:
        """GET on the control API."""
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        """POST on the control API."""
        return await self.call("POST", path, body or {}, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        """PATCH on the control API."""
        return await self.call("PATCH", path, body or {}, **kw)

    async def open_pull(
        self,
        files: Mapping[str, str | None],
        *,
        branch: str = "feature",
        user: str = "alice",
        **extra: Any,
    ) -> int:
        """Create `branch` with `files` and open a pull request from it; returns its number."""
        await self.post("/branches", {"name": branch, "files": dict(files), "user": user})
        answer = await self.post(
            "/pulls", {"head": branch, "title": f"Change {branch}", "user": user, **extra}
        )
        number: int = answer["number"]
        return number


async def installation_client(
    session: aiohttp.ClientSession, sandbox: GitHubSandbox, **kw: Any
) -> GitHubAPI:
    """A gidgethub client authenticated as the app's installation, as the bot builds one."""
    app_client = GitHubAPI(session, "hubbot-tests", base_url=sandbox.api_url)
    token = await apps.get_installation_access_token(
        app_client,
        installation_id=str(sandbox.installation_id),
        app_id=str(sandbox.app_id),
        private_key=sandbox.private_key,
    )
    return GitHubAPI(
        session, "hubbot-tests", oauth_token=token["token"], base_url=sandbox.api_url, **kw
    )


def app_jwt(
    sandbox: GitHubSandbox,
    *,
    key: str | None = None,
    iss: str | None = None,
    iat: int = -60,
    exp: int = 540,
    alg: str = "RS256",
) -> str:
    """An app JWT; `iat` and `exp` are seconds from now."""
    now = int(time.time())
    claims = {
        "iat": now + iat,
        "exp": now + exp,
        "iss": str(sandbox.app_id) if iss is None else iss,
    }
    secret = (
        "a-shared-secret-that-is-long-enough-for-hs256"
        if alg == "HS256"
        else (key or sandbox.private_key)
    )
    return jwt.encode(claims, secret, algorithm=alg)


def repo_path(sandbox: GitHubSandbox) -> str:
    """`/repos/{owner}/{name}` of the double's repository."""
    return f"/repos/{sandbox.state.full_name}"


@cache
def webhook_schema() -> dict[str, Any]:
    """GitHub's webhook JSON schemas (`@octokit/webhooks-schemas`)."""
    data: dict[str, Any] = json.loads(WEBHOOK_SCHEMA.read_text())
    return data


@cache
def _webhook_validator(name: str) -> jsonschema.Draft7Validator:
    definitions = webhook_schema()["definitions"]
    assert name in definitions, f"no webhook schema for {name}"
    schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def validate_webhook(event: str, payload: dict[str, Any]) -> None:
    """Validate a payload against the schema of its event and action (jsonschema, draft 7)."""
    action = payload.get("action")
    validator = _webhook_validator(f"{event}${action}" if action else f"{event}$event")
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is not None:
        raise error


@cache
def _examples() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(WEBHOOK_EXAMPLES.read_text())
    return data


def example_payload(event: str, action: str | None = None, **changes: Any) -> dict[str, Any]:
    """A copy of GitHub's first real example for an event (and action), with top-level changes.

    For tests that post webhooks straight to the bot: start from GitHub's payload and adapt
    ids and refs, rather than hand-typing dicts.
    """
    for entry in _examples():
        if entry["name"] != event:
            continue
        for example in entry["examples"]:
            if action is None or example.get("action") == action:
                payload = copy.deepcopy(example)
                payload.update(changes)
                return payload
    raise KeyError(f"no example for {event}.{action}")
