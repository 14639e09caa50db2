"""The status page over a real deploy: the bot, the GitHub double, helm and sops.

A merge rolls out to uni-a while one prod deploy is held open (its command waits on
a FIFO), so the page shows the DeployService's real snapshot mid-rollout: the wave
with each target's state, the recent deploy "in progress", the deliveries that
started it. Then it is released and the page shows the deploy done. Neither the
page nor its JSON ever holds a token, the webhook secret, the private key, a
decrypted value or a deploy's log link (the attempt id is the log page's key).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE
from tests.deploy_support import (
    COMMON,
    deployments,
    edited,
    merge_change,
    needs_tools,
    running,
    tools_path,
)
from tests.e2e_support import SECRET, Stack

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

EXAMPLE_COMMAND = (
    "command: python3 deploy.py {cluster} {hub} --namespace {namespace} --mode template"
)


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    return fifo


@pytest.fixture
async def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any, gate: Path
) -> AsyncIterator[Stack]:
    settings = (EXAMPLE / "hubbot.yaml").read_text()
    assert EXAMPLE_COMMAND in settings
    # The `prod` hub's deploy waits until the test writes to the FIFO and closes it.
    command = EXAMPLE_COMMAND.removeprefix("command: ")
    held = f"command: '{command} && case {{hub}} in prod) cat {gate} >/dev/null;; esac'"
    needs_tools()
    tools_path(monkeypatch)
    config = settings.replace(EXAMPLE_COMMAND, held)
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        try:
            yield stack
        finally:
            release(gate)


def open_gate(fifo: Path) -> None:
    """Wait until the held deploy reads the FIFO (it may still be rendering), then let it go."""
    with open(fifo, "w"):
        pass


def release(fifo: Path) -> None:
    """Free whatever waits on the FIFO: a deploy reading it, or `open_gate` writing to it."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets a waiting writer's open return
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ... and a waiting reader's
    finally:
        os.close(reader)


async def status(stack: Stack) -> dict[str, Any]:
    async with stack.http.get(f"{stack.bot_url}/status.json") as resp:
        assert resp.status == 200
        data: dict[str, Any] = await resp.json()
        return data


async def until(
    stack: Stack, reached: Callable[[dict[str, Any]], bool], within: float = 60
) -> dict[str, Any]:
    """The first status data for which `reached` holds (polled), or fail after `within` s."""
    deadline = time.monotonic() + within
    while True:
        data = await status(stack)
        if reached(data):
            return data
        ended = [
            r for r in (data["deploys"] or {}).get("recent", []) if r["state"] != "in progress"
        ]
        assert not ended, f"a deploy ended before the condition held: {ended}"
        assert time.monotonic() < deadline, f"status never reached the condition: {data}"
        await asyncio.sleep(0.05)


def targets(data: dict[str, Any]) -> dict[str, str]:
    """Target -> state over every wave in the snapshot."""
    deploys = data["deploys"] or {"rollouts": []}
    return {
        t["target"]: t["state"]
        for r in deploys["rollouts"]
        for w in r["waves"]
        for t in w["targets"]
    }


async def test_the_page_follows_a_real_rollout_without_leaking(stack: Stack, gate: Path) -> None:
    files = {COMMON: edited(COMMON, "status page")}
    number, sha = await merge_change(stack, files, branch="status-page", wait=False)

    data = await until(stack, lambda d: targets(d).get("uni-a/prod") == "running")
    found = targets(data)
    assert found["uni-a/staging"] == found["uni-a/r-staging"] == "success"
    (rollout,) = data["deploys"]["rollouts"]
    (wave,) = rollout["waves"]
    assert (wave["cluster"], wave["sha"], rollout["executor"]) == ("uni-a", sha, "local")
    (recent,) = data["deploys"]["recent"]
    assert (recent["kind"], recent["pr"], recent["state"]) == ("merge", number, "in progress")
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for delivery in data["deliveries"]:  # newest first: keep the newest of each kind
        events.setdefault((delivery["event"], delivery["action"]), delivery)
    push = events[("push", "")]  # the merge's push: handled (the rollout runs on its own)
    assert (push["status"], push["answer"], push["handling"]) == (202, "accepted", "ok")
    assert push["repository"] == "hubbot-sandbox/repo" and push["seconds"] >= 0
    assert events[("pull_request", "closed")]["answer"] == "accepted"

    async with stack.http.get(f"{stack.bot_url}/") as resp:
        mid = await resp.text()
    assert "uni-a/prod" in mid and 'class="pill busy">running<' in mid
    assert 'class="pill busy">in progress<' in mid

    await asyncio.wait_for(asyncio.to_thread(open_gate, gate), 30)
    await stack.deployed()
    done = await status(stack)
    assert targets(done) == {}
    assert done["deploys"]["recent"][0]["state"] == "success"
    async with stack.http.get(f"{stack.bot_url}/") as resp:
        after = await resp.text()
    assert "No rollout in progress." in after

    # Nothing secret on any of the pages, at any time.
    attempts = {
        m
        for d in await deployments(stack)
        for s in d["statuses"]
        for m in re.findall(r"/deploys/([0-9a-f]{32})", s.get("log_url") or "")
    }
    assert attempts  # the deploys did leave log links on GitHub
    pem_lines = [ln for ln in stack.sandbox.private_key.splitlines() if len(ln) >= 16]
    forbidden = [SECRET, *stack.tokens, *attempts, *pem_lines, "FAKE-", "/deploys/"]
    assert stack.tokens
    for text in (mid, after, str(data), str(done)):
        leaked = [f for f in forbidden if f in text]
        assert not leaked, leaked
