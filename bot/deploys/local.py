"""The local executor: each deploy is a subprocess in a fresh checkout at the pinned SHA.

The command runs under a POSIX shell in its own process group, with a timeout,
its output captured and bounded (the tail is kept), and its working tree removed
afterwards. It gets a minimal environment: the bot's own secrets (webhook secret,
app key) are never passed on. Secret values files named by the job are decrypted
with sops inside the throwaway checkout, and every decrypted value is redacted
from the captured output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from bot.deploys.executor import MAX_LOG_BYTES, DeployJob, DeployResult, Executor, tail
from bot.deploys.secrets import SopsError, decrypt_in_place, redact

logger = logging.getLogger(__name__)

# Environment variables a deploy may see. Anything named HUBBOT_* never passes.
DEFAULT_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "KUBECONFIG",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "HELM_CACHE_HOME",
    "HELM_CONFIG_HOME",
    "HELM_DATA_HOME",
)


class Workspace(Protocol):
    """Where a job's checkout comes from: a folder holding the repository at a commit."""

    def checkout(self, repo: str, sha: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A temporary folder with the repository's files at `sha`, removed on exit."""
        ...


class GitWorkspace:
    """Checkouts from a local git repository, through `git archive` (symlinks kept)."""

    def __init__(self, repo_dir: str | os.PathLike[str]):
        self.repo_dir = os.fspath(repo_dir)

    @contextlib.asynccontextmanager
    async def checkout(self, repo: str, sha: str) -> AsyncIterator[Path]:
        """Extract `sha` into a temporary folder."""
        with tempfile.TemporaryDirectory(
            prefix="hubbot-checkout-", ignore_cleanup_errors=True
        ) as tmp:
            proc = await asyncio.create_subprocess_shell(
                f"git -C {_q(self.repo_dir)} archive --format=tar {_q(sha)} | tar -x -C {_q(tmp)}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            if proc.returncode != 0:
                raise CheckoutError(f"cannot check out {sha[:12]}: {err.decode().strip()}")
            yield Path(tmp)


class CheckoutError(RuntimeError):
    """The commit could not be checked out."""


class LocalExecutor(Executor):
    """Runs each job as a shell command in a fresh checkout."""

    name = "local"

    def __init__(
        self,
        workspace: Workspace,
        *,
        env: Mapping[str, str] | None = None,
        passthrough: Sequence[str] = DEFAULT_PASSTHROUGH,
        max_log_bytes: int = MAX_LOG_BYTES,
        kill_grace_seconds: float = 5.0,
    ):
        source = os.environ if env is None else env
        self.env = {
            k: v for k, v in source.items() if k in passthrough and not k.startswith("HUBBOT_")
        }
        self.workspace = workspace
        self.max_log_bytes = max_log_bytes
        self.kill_grace_seconds = kill_grace_seconds
        self._running: dict[str, asyncio.subprocess.Process] = {}
        self._cancelled: set[str] = set()

    async def run(self, job: DeployJob) -> DeployResult:
        """Check out, decrypt what the job needs, run the command, clean up."""
        started = time.monotonic()
        if job.id in self._cancelled:
            return DeployResult("cancelled", "cancelled before it started")
        try:
            async with self.workspace.checkout(job.repo, job.sha) as path:
                secrets = await decrypt_in_place(path, job.secret_files, env=self.env)
                result = await self._run_command(job, path)
        except (CheckoutError, SopsError) as exc:
            return DeployResult("error", str(exc), duration_seconds=time.monotonic() - started)
        log = redact(result.log, secrets)
        return DeployResult(result.outcome, result.detail, log, None, time.monotonic() - started)

    async def _run_command(self, job: DeployJob, cwd: Path) -> DeployResult:
        env = {**self.env, **job.env, "HUBBOT_SHA": job.sha, "HUBBOT_CLUSTER": job.cluster}
        env["HUBBOT_HUB"] = job.hub or ""
        if job.id in self._cancelled:  # cancelled while its checkout was being made
            return DeployResult("cancelled", "cancelled before it started")
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            job.command,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills helm's children
        )
        self._running[job.id] = proc
        if job.id in self._cancelled:  # cancelled while the process was being started
            await self._kill(proc)
        buffer = bytearray()
        assert proc.stdout is not None
        reader = asyncio.create_task(self._collect(proc.stdout, buffer))
        try:
            await asyncio.wait_for(proc.wait(), timeout=job.timeout_seconds)
        except TimeoutError:
            await self._kill(proc)
            await reader
            return DeployResult(
                "failure", f"timed out after {job.timeout_seconds:g} s", tail(bytes(buffer))
            )
        except asyncio.CancelledError:
            # The bot is stopping: never leave a deploy running in a checkout about to vanish.
            # Its Deployment stays in progress, and recovery reruns it after the restart.
            await self._kill(proc)
            reader.cancel()
            raise
        finally:
            self._running.pop(job.id, None)
        await reader
        log = tail(bytes(buffer), self.max_log_bytes)
        if job.id in self._cancelled:
            return DeployResult("cancelled", "cancelled while running", log)
        if proc.returncode == 0:
            return DeployResult("success", "exit code 0", log)
        return DeployResult("failure", f"exit code {proc.returncode}", log)

    async def _collect(self, stream: asyncio.StreamReader, buffer: bytearray) -> None:
        while chunk := await stream.read(65536):
            buffer.extend(chunk)
            if len(buffer) > 2 * self.max_log_bytes:
                del buffer[: len(buffer) - self.max_log_bytes]

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group, then SIGKILL after a grace period."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.kill_grace_seconds)
                return
            except TimeoutError:
                continue

    async def cancel(self, job_id: str) -> bool:
        """Kill a running job, or make a queued one end before it starts."""
        self._cancelled.add(job_id)
        proc = self._running.get(job_id)
        if proc is None:
            return False
        await self._kill(proc)
        return True


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)
