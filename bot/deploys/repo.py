"""One repository's deploy machinery: its executor, its `Rollout`, its reporter, and `prepare`.

`prepare(step)` turns a schedule step into a `DeployJob`: the repository model at the
step's SHA (the snapshot is cached by SHA), the release (`jobs.release_for`), the
command template rendered for it (`jobs.render`) under the settings the step was
submitted with (the default branch's, never a PR's), and a job id unique to the attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import cachetools
from gidgethub.abc import GitHubAPI

from bot.core.model import Repository, load_repository
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.deploys.executor import DeployJob, Executor
from bot.deploys.health import HealthResult, run_health_check
from bot.deploys.jobs import Release, job_id, release_for, render
from bot.deploys.local import DEFAULT_PASSTHROUGH, LocalExecutor
from bot.deploys.reporter import GitHubReporter
from bot.deploys.rollout import Rollout, StepOutcome
from bot.deploys.schedule import Step
from bot.deploys.secrets import scrub
from bot.deploys.workspace import SnapshotWorkspace
from bot.github.snapshot import RepoRef, SnapshotReader

logger = logging.getLogger(__name__)

ExecutorFactory = Callable[[RepoRef, Settings, Callable[[], GitHubAPI]], Executor]
MAX_LOGS = 200  # deploy logs kept for `GET /deploys/{attempt}`, newest last


@dataclass(frozen=True, slots=True)
class DeployLog:
    """A finished deploy's report for its log page, without secrets."""

    repo: str
    target: str
    sha: str
    outcome: str
    detail: str
    log: str
    health: str = ""

    @classmethod
    def of(cls, repo: str, step: Step, outcome: StepOutcome) -> DeployLog | None:
        """A finished step's log, scrubbed of credential-shaped text (None: nothing ran).

        The local executor already redacted every value of the secrets it decrypted; a
        Kubernetes Job decrypts in its own pod, so for its log the shapes are the only guard.
        """
        result, health = outcome.result, outcome.health
        if result is None:
            return None
        return cls(
            repo=repo,
            target=step.key,
            sha=step.sha,
            outcome=outcome.ending,
            detail=scrub(outcome.detail),
            log=scrub(result.log),
            health=scrub(f"health check {health.detail}\n{health.log}") if health else "",
        )


def deploy_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment deploys start from: the bot's interpreter first on PATH, no HUBBOT_*."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    folder = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in (folder, env.get("PATH", "")) if p)
    return {k: v for k, v in env.items() if not k.startswith("HUBBOT_")}


# What a health check may see of the bot's environment: enough to run curl, no credentials.
HEALTH_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
)


def health_environment(
    base: Mapping[str, str] | None = None, extra: tuple[str, ...] = ()
) -> dict[str, str]:
    """The minimal environment a health check runs with, plus what the operator passes on."""
    env = deploy_environment(base)
    allowed = {*HEALTH_PASSTHROUGH, *extra}
    return {k: v for k, v in env.items() if k in allowed}


def local_executor(
    snapshots: SnapshotReader,
    repo: RepoRef,
    gh: Callable[[], GitHubAPI],
    passthrough: tuple[str, ...],
) -> LocalExecutor:
    """The local executor for a repository, checking out from its snapshots."""

    async def load(_repo: str, sha: str) -> Snapshot:
        return await snapshots.at_commit(gh(), repo, sha)

    return LocalExecutor(
        SnapshotWorkspace(load),
        env=deploy_environment(),
        passthrough=(*DEFAULT_PASSTHROUGH, *passthrough),
    )


@dataclass(slots=True)
class RepoDeploys:
    """Everything deploy-related of one repository, kept while the process runs."""

    repo: RepoRef
    gh: GitHubAPI
    settings: Settings  # the default branch's, as last seen
    snapshots: SnapshotReader
    executor: Executor
    reporter: GitHubReporter
    logs: cachetools.LRUCache[str, DeployLog]
    rollout: Rollout = field(init=False)
    wave_settings: dict[int, Settings] = field(default_factory=dict)
    wave_delivery: dict[int, str] = field(default_factory=dict)
    releases: dict[tuple[int, str], Release] = field(default_factory=dict)
    health_env: dict[str, str] = field(default_factory=health_environment)

    def __post_init__(self) -> None:
        deploy = self.settings.deploy
        self.rollout = Rollout(
            executor=self.executor,
            prepare=self.prepare,
            reporter=self.reporter,
            max_parallel=deploy.max_parallel,
            max_parallel_per_cluster=deploy.max_parallel_per_cluster,
            health_check=self.health_check,
        )

    def use(self, gh: GitHubAPI, settings: Settings | None = None) -> None:
        """A fresher client (and default-branch settings) from the latest event."""
        self.gh = gh
        self.reporter.gh = gh
        if settings is not None:
            self.settings = settings
            self.rollout.set_caps(
                max_parallel=settings.deploy.max_parallel,
                max_parallel_per_cluster=settings.deploy.max_parallel_per_cluster,
            )

    def forget_ended_waves(self) -> None:
        """Drop what was kept for waves the schedule no longer holds (memory stays bounded)."""
        live = {wave.id for wave in self.rollout.schedule.waves()}
        for kept in (self.wave_settings, self.wave_delivery):
            for wave in [w for w in kept if w not in live]:
                del kept[wave]

    def settings_for(self, step: Step) -> Settings:
        """The settings a step was submitted with."""
        return self.wave_settings.get(step.wave, self.settings)

    async def prepare(self, step: Step) -> DeployJob | None:
        """The job for a step; None when its release no longer exists at its SHA."""
        settings = self.settings_for(step)
        snapshot = await self.snapshots.at_commit(self.gh, self.repo, step.sha)
        model = await _model(snapshot, settings)
        release = release_for(model, step.cluster, step.hub)
        if release is None:
            return None
        deploy = settings.deploy
        template = deploy.command if step.hub is not None else deploy.support_command
        command = render(template, release, sha=step.sha, settings=settings)
        self.releases[(step.wave, step.key)] = release
        attempt = self.reporter.attempt_of(step) or uuid.uuid4().hex
        labels = {
            "attempt": attempt,
            "wave": str(step.wave),
            "stage": step.stage,
            "delivery": self.wave_delivery.get(step.wave, ""),
        }
        return DeployJob(
            id=job_id([step.cluster, step.hub or "support", step.sha[:8], attempt[:12]]),
            repo=self.repo.full_name,
            cluster=step.cluster,
            hub=step.hub,
            sha=step.sha,
            command=command,
            timeout_seconds=deploy.timeout_seconds,
            labels=labels,
            secret_files=release.secret_files if deploy.decrypt_secrets else (),
        )

    def environment_url(self, step: Step) -> str | None:
        """`https://<domain>` of a hub, once its release is known."""
        release = self.releases.get((step.wave, step.key))
        return f"https://{release.domain}" if release and release.domain and step.hub else None

    async def health_check(self, step: Step, job: DeployJob) -> HealthResult | None:
        """The hub's health check, when the settings have one."""
        settings = self.settings_for(step)
        release = self.releases.get((step.wave, step.key))
        template = settings.deploy.health_check
        if not template or step.hub is None or release is None:
            return None
        command = render(template, release, sha=job.sha, settings=settings)
        return await run_health_check(
            command,
            attempts=settings.deploy.health_check_attempts,
            timeout_seconds=settings.deploy.health_check_timeout_seconds,
            env=self.health_env,
        )

    def keep_log(self, attempt: str, step: Step, outcome: StepOutcome) -> None:
        """Keep a finished deploy's log for its log page (`GET /deploys/{attempt}`)."""
        self.releases.pop((step.wave, step.key), None)
        entry = DeployLog.of(self.repo.full_name, step, outcome)
        if entry is not None:
            self.logs[attempt] = entry


async def _model(snapshot: Snapshot, settings: Settings) -> Repository:
    """The repository model of a snapshot under settings, computed once per pair."""
    memo = snapshot.memo("hubbot-deploy-model")
    cached = memo.get(id(settings))
    if cached is not None and cached[0] is settings:
        return cached[1]  # type: ignore[no-any-return]
    model = await asyncio.to_thread(load_repository, snapshot, settings)
    memo[id(settings)] = (settings, model)
    return model
