"""The local executor: real subprocesses in real checkouts, with real sops."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.deploys.executor import DeployJob
from bot.deploys.local import GitWorkspace, LocalExecutor

VENV_BIN = str(Path(sys.executable).parent)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "hello.txt").write_text("hello from the checkout\n")
    (root / "link.txt").symlink_to("hello.txt")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "init")
    return root, git(root, "rev-parse", "HEAD")


def job(sha: str, command: str, **kw: object) -> DeployJob:
    fields: dict[str, object] = {
        "id": "j1",
        "repo": "o/r",
        "cluster": "c",
        "hub": "staging",
        "sha": sha,
        "command": command,
        "timeout_seconds": 30,
    }
    fields.update(kw)
    return DeployJob(**fields)  # type: ignore[arg-type]


def executor(repo: Path, **env: str) -> LocalExecutor:
    base = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/")}
    return LocalExecutor(GitWorkspace(repo), env={**base, **env}, kill_grace_seconds=1)


async def test_success_runs_in_a_checkout_at_the_sha(repo: tuple[Path, str]) -> None:
    root, sha = repo
    result = await executor(root).run(job(sha, "cat hello.txt link.txt; echo $HUBBOT_HUB; pwd"))
    assert result.ok, result
    lines = result.log.splitlines()
    assert lines[:3] == ["hello from the checkout"] * 2 + ["staging"]
    assert not Path(lines[3]).exists(), "the checkout is removed afterwards"


async def test_failure_reports_the_exit_code(repo: tuple[Path, str]) -> None:
    root, sha = repo
    result = await executor(root).run(job(sha, "echo broken >&2; exit 3"))
    assert (result.outcome, result.detail) == ("failure", "exit code 3")
    assert "broken" in result.log


async def test_unknown_sha_is_an_error(repo: tuple[Path, str]) -> None:
    root, _ = repo
    result = await executor(root).run(job("0" * 40, "true"))
    assert result.outcome == "error" and "cannot check out" in result.detail


async def test_timeout_kills_the_whole_process_group(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    root, sha = repo
    pid_file = tmp_path / "orphan.pid"
    command = f"sleep 60 & echo $! > {pid_file}; sleep 30"
    result = await executor(root).run(job(sha, command, timeout_seconds=0.5))
    assert result.outcome == "failure" and "timed out" in result.detail
    orphan = int(pid_file.read_text())
    async with asyncio.timeout(10):
        while alive(orphan):
            await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


async def test_cancel_stops_a_running_job(repo: tuple[Path, str], tmp_path: Path) -> None:
    root, sha = repo
    started = tmp_path / "started"
    ex = executor(root)
    task = asyncio.create_task(ex.run(job(sha, f"touch {started}; sleep 30")))
    async with asyncio.timeout(10):
        while not started.exists():
            await asyncio.sleep(0.02)
    assert await ex.cancel("j1")
    result = await asyncio.wait_for(task, 10)
    assert result.outcome == "cancelled"


async def test_cancel_before_start(repo: tuple[Path, str]) -> None:
    root, sha = repo
    ex = executor(root)
    assert not await ex.cancel("j1")
    assert (await ex.run(job(sha, "true"))).outcome == "cancelled"


async def test_bot_secrets_never_reach_the_command(repo: tuple[Path, str]) -> None:
    root, sha = repo
    ex = executor(root, HUBBOT_WEBHOOK_SECRET="s3cret-webhook", AWS_SECRET_ACCESS_KEY="nope")
    result = await ex.run(job(sha, "env"))
    assert "s3cret-webhook" not in result.log
    assert "AWS_SECRET_ACCESS_KEY" not in result.log


async def test_output_is_bounded(repo: tuple[Path, str]) -> None:
    root, sha = repo
    ex = LocalExecutor(GitWorkspace(root), env={"PATH": os.environ["PATH"]}, max_log_bytes=1000)
    result = await ex.run(job(sha, "yes line | head -n 100000; echo last"))
    assert result.ok and len(result.log) < 70_000
    assert result.log.rstrip().endswith("last")


@pytest.fixture
def age_key(tmp_path: Path) -> tuple[Path, str]:
    pyrage = pytest.importorskip("pyrage")
    identity = pyrage.x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(str(identity) + "\n")
    return key_file, str(identity.to_public())


async def test_secret_files_are_decrypted_and_redacted(
    repo: tuple[Path, str], age_key: tuple[Path, str]
) -> None:
    if shutil.which("sops", path=f"{VENV_BIN}:{os.environ['PATH']}") is None:
        pytest.skip("sops is not installed")
    root, _ = repo
    key_file, recipient = age_key
    secret = root / "enc-hub.secret.values.yaml"
    secret.write_text("hub:\n  password: hunter2-very-secret\n")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [
            "sops",
            "--disable-version-check",
            "--encrypt",
            "--age",
            recipient,
            "--in-place",
            str(secret),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    assert "hunter2" not in secret.read_text()
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "secret")
    sha = git(root, "rev-parse", "HEAD")
    ex = executor(root, SOPS_AGE_KEY_FILE=str(key_file))
    result = await ex.run(
        job(sha, "cat enc-hub.secret.values.yaml", secret_files=("enc-hub.secret.values.yaml",))
    )
    assert result.ok, result
    assert "password: [redacted]" in result.log
    assert "hunter2" not in result.log
    # without the key: a clear error, and no plaintext anywhere
    bad = await executor(root).run(job(sha, "true", secret_files=("enc-hub.secret.values.yaml",)))
    assert bad.outcome == "error" and "could not decrypt enc-hub.secret.values.yaml" in bad.detail
