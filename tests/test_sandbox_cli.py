"""`hubbot sandbox` as a process: one JSON line when ready, a 0600 key, a working API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys

import aiohttp
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI

from tests.sandbox_support import ROOT, make_repo


def command(repo, key, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bot",
        "sandbox",
        "--repo",
        str(repo),
        "--port",
        "0",
        "--webhook-url",
        "http://127.0.0.1:9/webhook",
        "--webhook-secret",
        "s3cret",
        "--app-id",
        "123",
        "--private-key-out",
        str(key),
        *extra,
    ]


async def test_cli_serves_and_stops_cleanly(tmp_path):
    repo = make_repo(tmp_path / "infra")
    key = tmp_path / "keys" / "app.pem"
    proc = await asyncio.create_subprocess_exec(
        *command(repo, key, "--owner", "acme", "--name", "infrastructure"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        ready = json.loads(line)
        assert set(ready) == {"api_url", "control_url", "installation_id"}
        assert ready["control_url"] == ready["api_url"] + "/_sandbox"
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        async with aiohttp.ClientSession() as session:
            app = GitHubAPI(session, "cli-test", base_url=ready["api_url"])
            token = await apps.get_installation_access_token(
                app,
                installation_id=str(ready["installation_id"]),
                app_id="123",
                private_key=key.read_text(),
            )
            gh = GitHubAPI(
                session, "cli-test", oauth_token=token["token"], base_url=ready["api_url"]
            )
            repo_shape = await gh.getitem("/repos/acme/infrastructure")
            assert repo_shape["default_branch"] == "main"
            async with session.get(ready["control_url"] + "/") as resp:
                assert (await resp.json())["repository"] == "acme/infrastructure"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    assert code == 0


def test_cli_refuses_a_folder_that_is_not_a_repository(tmp_path):
    result = subprocess.run(
        command(tmp_path, tmp_path / "k.pem"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"hubbot sandbox: error: {tmp_path} is not a git repository with a 'main' branch"
    ]
    assert not (tmp_path / "k.pem").exists()
