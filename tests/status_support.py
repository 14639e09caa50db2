"""Shared by the status page tests: a router to drive the queue and a fake deploy snapshot."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gidgethub import routing, sansio

from bot.deploys.service import DeployService
from bot.web.settings import ServerSettings
from tests.conftest import sample

SECRET = "status-page-webhook-secret-0xC0FFEE"
KUBE_TOKEN = "kube-token-that-must-never-show-1234567890"
GH_TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0" * 2


class Gate:
    """A router whose `pull_request` handlers wait at a gate; `synchronize` fails."""

    def __init__(self) -> None:
        self.router = routing.Router()
        self.open = asyncio.Event()
        self.entered = asyncio.Event()
        self.router.add(self.handle, "pull_request", action="opened")
        self.router.add(self.handle, "pull_request", action="synchronize")

    async def handle(self, event: sansio.Event, gh: Any, *args: Any, **kwargs: Any) -> None:
        self.entered.set()
        await self.open.wait()
        if event.data["action"] == "synchronize":
            raise RuntimeError("handler broke")


class FakeDeploys(DeployService):
    """A deploy service that reports a fixed snapshot (or raises `error`)."""

    def __init__(self, data: Any = None, error: Exception | None = None) -> None:
        super().__init__()
        self.data = snapshot() if data is None else data
        self.error = error

    def snapshot(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.data  # type: ignore[no-any-return]


def snapshot(*, hostile: str = "") -> dict[str, Any]:
    """A deploy snapshot in `DeployService.snapshot()`'s documented shape."""
    return {
        "executor": "local",
        "recovery": {"state": "done", "requeued": 1, "adopted": 0, "detail": ""},
        "rollouts": [
            {
                "repo": "2i2c-org/infrastructure",
                "executor": "local",
                "waves": [
                    {
                        "id": 7,
                        "cluster": "utoronto",
                        "stream": "main",
                        "sha": "0123456789abcdef0123456789abcdef01234567",
                        "pr": 42,
                        "actor": "octocat",
                        "sources": ["push of 0123456 (PR #42)" + hostile],
                        "targets": [
                            target("utoronto/support", "support", "success", 12.5),
                            target("utoronto/staging", "staging", "running"),
                            target("utoronto/prod", "prod", "queued"),
                            target("utoronto/r-prod", "prod", "blocked"),
                        ],
                    }
                ],
            }
        ],
        "recent": [
            {
                "repo": "2i2c-org/infrastructure",
                "kind": "merge",
                "sha": "0123456789abcdef0123456789abcdef01234567",
                "pr": 42,
                "actor": "octocat",
                "heading": "Deploy of `0123456` (merge of #42), asked by @octocat",
                "progress": "1 of 4 done",
                "state": "in progress",
                "created": "2026-01-02T03:00:00Z",
            },
            {
                "repo": "2i2c-org/infrastructure",
                "kind": "preview",
                "sha": "fedcba9876543210fedcba9876543210fedcba98",
                "pr": 41,
                "actor": "partner",
                "heading": "Staging preview of `fedcba9`, asked by @partner",
                "progress": "all 1 done",
                "state": "failure",
                "created": "2026-01-02T02:00:00Z",
            },
        ],
        "claims": [
            {
                "repo": "2i2c-org/infrastructure",
                "environment": "utoronto/staging",
                "pr": 41,
                "author": "partner" + hostile,
                "since": "2026-01-02T03:04:05Z",
                "expires": "2026-01-02T07:04:05+00:00",
            }
        ],
    }


def target(name: str, stage: str, state: str, seconds: float | None = None) -> dict[str, Any]:
    """One target row of a wave."""
    return {"target": name, "stage": stage, "state": state, "detail": "", "seconds": seconds}


def server_settings(pem: str, **kw: Any) -> ServerSettings:
    """Settings for a test app (GitHub unreachable: handlers are fakes)."""
    base: dict[str, Any] = {
        "app_id": "1",
        "private_key": pem,
        "webhook_secret": SECRET,
        "github_url": "http://127.0.0.1:9",
    }
    return ServerSettings(**(base | kw))


def pr_body(number: int, action: str = "opened", repo: str | None = None) -> bytes:
    """A GitHub `pull_request` example payload for PR `number`."""
    data = sample("pull_request", action)
    data["number"] = data["pull_request"]["number"] = number
    if repo is not None:
        data["repository"]["full_name"] = repo
    return json.dumps(data).encode()
