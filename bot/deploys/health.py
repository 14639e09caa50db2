"""Health checks after a hub deploys: a command, retried, each attempt under a timeout.

A check that fails and then passes on a retry is reported as flaky, not hidden:
the deploy succeeds, and the report says which attempt passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.deploys.executor import tail

MAX_HEALTH_LOG_BYTES = 4096


@dataclass(frozen=True, slots=True)
class HealthResult:
    """How a health check went."""

    ok: bool
    attempts: int  # attempts made
    detail: str
    log: str = ""

    @property
    def flaky(self) -> bool:
        """Whether it passed only after failing at least once."""
        return self.ok and self.attempts > 1


async def run_health_check(
    command: str,
    *,
    attempts: int,
    timeout_seconds: float,
    env: Mapping[str, str],
    backoff_seconds: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> HealthResult:
    """Run `command` until it passes or `attempts` are spent, backing off between tries."""
    failures: list[str] = []
    log = ""
    for attempt in range(1, attempts + 1):
        code, log = await _attempt(command, timeout_seconds=timeout_seconds, env=env)
        if code == 0:
            if failures:
                return HealthResult(
                    True,
                    attempt,
                    f"passed on attempt {attempt} of {attempts} (flaky: {'; '.join(failures)})",
                    log,
                )
            return HealthResult(True, attempt, "passed", log)
        failures.append(
            f"attempt {attempt}: timed out after {timeout_seconds:g} s"
            if code is None
            else f"attempt {attempt}: exit code {code}"
        )
        if attempt < attempts:
            await sleep(backoff_seconds * 2 ** (attempt - 1))
    return HealthResult(False, attempts, f"failed {attempts} times ({'; '.join(failures)})", log)


async def _attempt(
    command: str, *, timeout_seconds: float, env: Mapping[str, str]
) -> tuple[int | None, str]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_seconds)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return None, ""
    return proc.returncode, tail(out, MAX_HEALTH_LOG_BYTES)
