"""`python -m bot register` as a process against the GitHub double: exit codes and output."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.register_support import follow, post_form, read_form

TIMEOUT = 60


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", "register", "--port", "0", "--no-browser", *args]


def sandbox_args(sandbox: Any, out: Path) -> list[str]:
    api = sandbox.api_url
    return ["--github-url", f"{api}/_html", "--api-url", api, "--out-dir", str(out)]


class Register:
    """A running `hubbot register` and what it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, first: str) -> None:
        self.proc, self.url, self.first = proc, url, first

    async def finish(self) -> tuple[int, str, str]:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout=TIMEOUT)
        return self.proc.returncode or 0, self.first + out.decode(), err.decode()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def run_register() -> AsyncIterator[Any]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> Register:
        proc = await asyncio.create_subprocess_exec(
            *command(*args),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), timeout=TIMEOUT)).decode()
        match = re.search(r"Open (http://127\.0\.0\.1:\d+/) in your browser", first)
        assert match, first
        return Register(proc, match.group(1), first)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_org_registration_exits_0_with_next_steps_and_no_secret(
    github_sandbox: Any, browser: Any, run_register: Any, tmp_path: Path
) -> None:
    out = tmp_path / "creds"
    reg = await run_register(*sandbox_args(github_sandbox, out), "--org", "hubbot-sandbox")
    form = await read_form(browser, reg.url)
    assert "/organizations/hubbot-sandbox/settings/apps/new?state=" in form.action
    location = await post_form(browser, form)
    status, _ = await follow(browser, location)
    code, stdout, stderr = await reg.finish()
    assert (status, code, stderr) == (200, 0, "")
    assert f"{github_sandbox.api_url}/_html/apps/hubbot/installations/new" in stdout
    assert f"set -a; . {out / 'hubbot.env'}; set +a; hubbot serve" in stdout
    assert (out / "private-key.pem").read_text() == github_sandbox.private_key
    secret_code = parse_qs(urlsplit(location).query)["code"][0]
    for secret in (github_sandbox.private_key, "sandbox-secret", secret_code):
        assert secret not in stdout + stderr


async def test_an_unknown_code_exits_1_with_one_clear_line(
    github_sandbox: Any, browser: Any, run_register: Any, tmp_path: Path
) -> None:
    out = tmp_path / "creds"
    reg = await run_register(*sandbox_args(github_sandbox, out))
    form = await read_form(browser, reg.url)
    state = parse_qs(urlsplit(form.action).query)["state"][0]
    status, _ = await follow(browser, f"{reg.url}callback?code=0123456789abcdef&state={state}")
    code, _, stderr = await reg.finish()
    assert (status, code) == (502, 1)
    assert stderr.splitlines() == [
        "hubbot register: error: GitHub does not know this code: it was already used, it is "
        f"over an hour old, or it was issued by another GitHub than {github_sandbox.api_url}"
    ]
    assert not out.exists()


async def test_a_signal_before_github_calls_back_exits_1_and_writes_nothing(
    run_register: Any, tmp_path: Path
) -> None:
    out = tmp_path / "creds"
    reg = await run_register("--out-dir", str(out), "--org", "acme")
    reg.proc.send_signal(signal.SIGTERM)
    code, _, stderr = await reg.finish()
    assert code == 1
    assert stderr.strip() == "hubbot register: error: stopped; nothing was written"
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "not/an/org"], "--org 'not/an/org' is not a GitHub organisation name"),
        (["--github-url", "github.com"], "--github-url must be an http(s) URL"),
        (["--name", "x" * 35], "--name must be 1 to 34 printable characters"),
        (["--webhook-url", "ftp://x"], "--webhook-url must be an http(s) URL"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        command("--out-dir", str(tmp_path / "c"), *args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"hubbot register: error: {message}")
    assert not (tmp_path / "c").exists()


def test_existing_credentials_exit_2_and_stay_untouched(tmp_path: Path) -> None:
    (tmp_path / "private-key.pem").write_text("old key")
    result = subprocess.run(
        command("--out-dir", str(tmp_path)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "private-key.pem; pass --force" in result.stderr
    assert (tmp_path / "private-key.pem").read_text() == "old key"


def test_a_taken_port_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*command("--out-dir", str(tmp_path / "c")), "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
