"""`hubbot serve` and `hubbot sandbox` as real processes on loopback, talking over HTTP only."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import EXAMPLE, ROOT, webhook_headers
from tests.test_pr_e2e import MARKER, STAGING, STAGING_TEXT, fresh_repo

pytest.importorskip("bot.sandbox.github.main", reason="the GitHub double's command")
pytest.importorskip("bot.core.semantic", reason="the core planner")

SECRET = "process-webhook-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def spawn(*args: str, env: dict[str, str], log: Path) -> tuple[Any, dict[str, Any]]:
    """Start `python -m bot ARGS`, stderr to `log`; returns it and its JSON ready line."""
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=handle,
        )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        await proc.wait()
        raise AssertionError(f"{args[0]} did not start: {log.read_text()}")
    return proc, json.loads(line)


async def eventually(check: Any, within: float = 90.0) -> Any:
    """Poll an HTTP-visible condition until it holds (processes share no memory to wait on)."""
    deadline = asyncio.get_running_loop().time() + within
    for _ in range(100_000):
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


async def test_serve_and_sandbox_as_processes(tmp_path: Path) -> None:
    if not EXAMPLE.is_dir():
        pytest.skip("config/ (the example repository) is absent")
    repo = fresh_repo(EXAMPLE, tmp_path / "repo")
    key = tmp_path / "app.pem"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBOT_")}
    sandbox, ready = await spawn(
        "sandbox",
        "--repo",
        str(repo),
        "--webhook-url",
        f"http://127.0.0.1:{port}/webhook",
        "--webhook-secret",
        SECRET,
        "--app-id",
        "77",
        "--private-key-out",
        str(key),
        env=env,
        log=tmp_path / "sandbox.log",
    )
    bot_log = tmp_path / "bot.log"
    bot, bot_ready = await spawn(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--github-url",
        ready["api_url"],
        "--app-id",
        "77",
        "--private-key",
        str(key),
        "--log-level",
        "DEBUG",
        env=env | {"HUBBOT_WEBHOOK_SECRET": SECRET},
        log=bot_log,
    )
    control = ready["control_url"]
    try:
        async with aiohttp.ClientSession() as http:

            async def call(method: str, path: str, body: Any = None) -> Any:
                async with http.request(method, f"{control}{path}", json=body) as resp:
                    assert resp.status < 300, await resp.text()
                    return await resp.json()

            bad = STAGING_TEXT + "nfs:\n  enabled: maybe\n"
            await call("POST", "/branches", {"name": "edit", "files": {STAGING: bad}})
            number = (await call("POST", "/pulls", {"head": "edit"}))["number"]

            async def planned() -> Any:
                view = await call("GET", f"/pulls/{number}")
                runs = [r for r in view["check_runs"] if r["head_sha"] == view["head"]["sha"]]
                done = runs and all(r["status"] == "completed" for r in runs) and view["comments"]
                return view if done else None

            view = await eventually(planned)
            assert view["comments"][0]["body"].startswith(MARKER)
            (run,) = [r for r in view["check_runs"] if r["head_sha"] == view["head"]["sha"]]
            assert run["conclusion"] == "failure"
            assert (STAGING, 7) in {(a["path"], a["start_line"]) for a in run["annotations"]}

            body = json.dumps({"zen": "hi"}).encode()
            headers = webhook_headers("ping", body, "not-the-secret")
            async with http.post(f"{bot_ready['url']}/webhook", data=body, headers=headers) as r:
                assert r.status == 401
            async with http.get(f"{bot_ready['url']}/metrics") as r:
                metrics = await r.text()
            assert re.search(r'hubbot_github_api_calls_total\{.*status="201"\}', metrics)
    finally:
        bot.terminate()
        sandbox.terminate()
        bot_code = await asyncio.wait_for(bot.wait(), 30)
        await asyncio.wait_for(sandbox.wait(), 30)
    assert bot_code == 0
    log = bot_log.read_text()
    assert "[delivery=" in log and "Traceback" not in log
    for secret in (SECRET, "PRIVATE KEY", key.read_text().splitlines()[1], "ghs_"):
        assert secret not in log
