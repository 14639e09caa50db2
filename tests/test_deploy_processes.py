"""`hubbot serve` and `hubbot sandbox` as real processes: a merge deploys; SIGKILL mid-deploy.

The bot is killed (no clean shutdown: its check run stays open, its deploy dies with it).
Started again, it requeues the accepted deploys on their Deployments, concludes the check
run the dead process left open, and every target of the merge ends deployed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.deploy_support import (
    COMMON,
    HELM,
    PUBLIC_URL,
    by_environment,
    deploy_runs,
    edited,
    example_repo,
    gate,
    hubbot_yaml,
    needs_tools,
    states,
)
from tests.test_pr_processes import eventually, free_port, spawn

pytest.importorskip("bot.sandbox.github.main", reason="the GitHub double's command")

SECRET = "deploy-process-secret"
UNI_A = {"uni-a/staging", "uni-a/r-staging", "uni-a/prod", "uni-a/r-prod"}


async def test_a_killed_bot_resumes_the_rollout_it_accepted(tmp_path: Path) -> None:
    needs_tools()
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(before_command=gate(gates), max_parallel_per_cluster="1")
    repo = example_repo(tmp_path, hubbot_yaml=config)
    key = tmp_path / "app.pem"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBOT_")}
    env["PATH"] = f"{HELM.parent}{os.pathsep}{env.get('PATH', '')}"
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
    bot_env = env | {
        "HUBBOT_WEBHOOK_SECRET": SECRET,
        "HUBBOT_PUBLIC_URL": PUBLIC_URL,
        "HUBBOT_GITHUB_URL": ready["api_url"],
        "HUBBOT_APP_ID": "77",
        "HUBBOT_PRIVATE_KEY": str(key),
    }
    serve = ("serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "DEBUG")
    logs = [tmp_path / "bot-1.log", tmp_path / "bot-2.log"]
    bot, _ = await spawn(*serve, env=bot_env, log=logs[0])
    control = ready["control_url"]
    try:
        async with aiohttp.ClientSession() as http:

            async def call(method: str, path: str, body: Any = None) -> Any:
                async with http.request(method, f"{control}{path}", json=body) as resp:
                    assert resp.status < 300, await resp.text()
                    return await resp.json()

            files = {COMMON: edited(COMMON, "processes")}
            await call("POST", "/branches", {"name": "p", "files": files})
            number = (await call("POST", "/pulls", {"head": "p"}))["number"]
            sha = (await call("POST", f"/pulls/{number}/merge", {"user": "octocat"}))["sha"]

            async def found() -> dict[str, Any]:
                return by_environment(await call("GET", "/deployments"), sha)

            async def one_running() -> bool:
                now = await found()
                return set(now) == UNI_A and any("in_progress" in states(d) for d in now.values())

            await eventually(one_running)
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
            (run,) = deploy_runs(await call("GET", f"/pulls/{number}"), sha)
            assert run["status"] != "completed"  # the killed process could not conclude it

            bot, _ = await spawn(*serve, env=bot_env, log=logs[1])
            (gates / "go").touch()

            async def all_deployed() -> bool:
                now = await found()
                return set(now) == UNI_A and all(states(d)[-1] == "success" for d in now.values())

            await eventually(all_deployed)
            view = await call("GET", f"/pulls/{number}")

            async def concluded() -> list[Any]:
                runs = deploy_runs(await call("GET", f"/pulls/{number}"), sha)
                return runs if all(r["status"] == "completed" for r in runs) else []

            runs = await eventually(concluded)
            assert sorted(r["conclusion"] for r in runs) == ["cancelled", "success"]
            now = await found()
            cut = [d for d in now.values() if states(d).count("in_progress") == 2]
            assert len(cut) == 1  # the one the kill interrupted was deployed again
            assert view["merged"] is True
    finally:
        bot.terminate()
        sandbox.terminate()
        code = await bot.wait()
        await sandbox.wait()
    assert code == 0
    text = "".join(log.read_text() for log in logs)
    assert "requeued 4 deploy(s)" in text
    for secret in (SECRET, "PRIVATE KEY", key.read_text().splitlines()[1], "ghs_"):
        assert secret not in text
