"""The executor interface: how one deploy target runs, wherever it runs.

An executor takes a `DeployJob` (one target of a rollout, pinned to a SHA, with its
command already rendered) and returns a `DeployResult`. The rollout driver never
knows whether the job ran as a local subprocess or as a Kubernetes Job.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["success", "failure", "error", "cancelled"]

# A deploy's log as kept for reports: the tail, so a chatty helm cannot eat memory.
MAX_LOG_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeployJob:
    """One target to deploy: a hub (or a cluster's support release) at a pinned commit."""

    id: str  # stable and unique per attempt, safe as a Kubernetes name suffix ([a-z0-9-])
    repo: str  # "owner/name"
    cluster: str
    hub: str | None  # None for the cluster's support release
    sha: str
    command: str  # the rendered command template, run by a POSIX shell
    timeout_seconds: float
    labels: Mapping[str, str] = field(default_factory=dict)  # who asked: delivery, PR, rollout
    env: Mapping[str, str] = field(default_factory=dict)  # non-secret environment
    # sops-encrypted files (repository paths) the local executor decrypts in its checkout
    secret_files: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """`cluster/hub`, or `cluster/support` for a support release."""
        return f"{self.cluster}/{self.hub or 'support'}"


@dataclass(frozen=True, slots=True)
class DeployResult:
    """How a job ended."""

    outcome: Outcome
    detail: str  # one line for people: "exit code 1", "timed out after 1800 s", ...
    log: str = ""  # the tail of the output, at most MAX_LOG_BYTES, secrets never included
    log_url: str | None = None
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the deploy succeeded."""
        return self.outcome == "success"


def tail(text: bytes | str, limit: int = MAX_LOG_BYTES) -> str:
    """The last `limit` bytes of a log, decoded leniently, with a note when cut."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) <= limit:
        return data.decode("utf-8", "replace")
    return "[... earlier output cut ...]\n" + data[-limit:].decode("utf-8", "replace")


class Executor(abc.ABC):
    """Runs deploy jobs. Implementations: `local` (subprocess) and `kubernetes` (Jobs)."""

    name: str = "executor"

    @abc.abstractmethod
    async def run(self, job: DeployJob) -> DeployResult:
        """Run `job` to completion (or timeout, or cancel) and report how it ended."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> bool:
        """Stop a queued or running job; True if something was stopped."""

    async def recover(self) -> list[DeployJob]:
        """Jobs still in flight from an earlier process (found by label), to resume watching.

        The default (local subprocesses die with the process) has none.
        """
        return []

    async def watch(self, job: DeployJob) -> DeployResult:
        """Wait for a recovered job to end, without starting it again."""
        raise NotImplementedError(f"{self.name} executor cannot resume jobs")

    async def close(self) -> None:  # noqa: B027 - optional hook with nothing to do by default
        """Release clients and connections."""
