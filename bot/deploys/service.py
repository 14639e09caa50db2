"""The deploy service: every deploy hubbot runs goes through here, one `Rollout` per repository.

Handlers call it: a push to the default branch (`deploy_merge`), `/deploy staging` and
`/deploy <cluster>/<hub>` (`deploy_preview`), `/deploy <cluster>/<hub>@<sha>` (`redeploy`),
`/cancel` (`cancel_pr`), `/unlock` and a closed PR (`release_claims`). It keeps in memory
only what is running; GitHub's Deployments hold the rest, so `recover()` at start-up finds
accepted deploys again, and `claims()` derives staging claims from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import cachetools
from gidgethub.abc import GitHubAPI

from bot.core.planner import Plan
from bot.core.settings import Settings
from bot.deploys.claims import Claim, DeploymentRecord, derive_claims
from bot.deploys.executor import DeployJob, DeployResult, Executor
from bot.deploys.executors import build_executor, executor_settings
from bot.deploys.progress import Kind, Origin
from bot.deploys.repo import MAX_LOGS, DeployLog, RepoDeploys, health_environment
from bot.deploys.reporter import RETRY_SECONDS, THROTTLE_SECONDS, GitHubReporter
from bot.deploys.rollout import StepOutcome
from bot.deploys.schedule import Step, Wave
from bot.github.comments import CommentCache
from bot.github.deployments import DeploymentRef, Listed, newest_per_environment, set_status
from bot.github.repo_settings import SettingsCache
from bot.github.snapshot import RepoRef, SnapshotReader

if TYPE_CHECKING:  # the Kubernetes client is imported only when a Lease is used
    from bot.deploys.leased import Ended

logger = logging.getLogger(__name__)

CLAIMS_TTL_SECONDS = 30.0
PUSH_DEDUPE_SECONDS = 600.0  # a push recovery deployed is not deployed again by its late webhook
STOP_REASON = (
    "hubbot was stopped (restart or shutdown) before these deploys finished. Deploys it had "
    "accepted are resumed when it starts again, each on its existing Deployment."
)


class ClientFactory(Protocol):
    """What the service needs of `bot.github.factory.GitHubFactory`."""

    def for_installation(self, installation_id: int) -> Any:
        """A client acting as one installation."""

    def app_client(self) -> Any:
        """A client acting as the app (JWT)."""


ExecutorFactory = Callable[[RepoRef, Settings], Executor]


@dataclass(frozen=True, slots=True)
class DeployConfig:
    """Server-side deploy settings (never from a repository): links, Kubernetes access, env."""

    public_url: str | None = None  # the bot's own URL, for `log_url` links to `/deploys/{id}`
    kube_host: str | None = None  # the Kubernetes API server; None: in-cluster config
    kube_token: str | None = field(default=None, repr=False)
    kube_ca: str | None = None
    passthrough: tuple[str, ...] = ()  # extra environment variables a local deploy may see
    lease_seconds: int = 60  # how long a replica's hold on a hub outlives it
    # Set when replicas elect a leader: local deploys then also hold their hub's Lease here,
    # so a leader cut off mid-deploy and its successor never deploy one hub at once.
    lease_namespace: str | None = None
    throttle_seconds: float = THROTTLE_SECONDS  # between edits of a PR's deploy comment
    report_retry_seconds: tuple[float, ...] = RETRY_SECONDS  # before new tries of failed writes


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What a push to the default branch led to."""

    waves: list[Wave]
    plan: Plan | None
    why: str  # one line for logs and reports: "queued 5 targets", "errors block", ...


class DeployService:
    """Runs and reports deploys for every repository of the app's installations."""

    def __init__(
        self,
        config: DeployConfig | None = None,
        *,
        executor_factory: ExecutorFactory | None = None,
        snapshots: SnapshotReader | None = None,
        settings: SettingsCache | None = None,
        comments: CommentCache | None = None,
        app_id: str | None = None,
    ) -> None:
        self.config = config or DeployConfig()
        self.executor_factory = executor_factory
        self.snapshots = snapshots or SnapshotReader()
        self.settings_cache = settings or SettingsCache()
        self.comments = comments or CommentCache()
        self.app_id = app_id
        self.github: ClientFactory | None = None
        self.repos: dict[str, RepoDeploys] = {}
        self.logs: cachetools.LRUCache[str, DeployLog] = cachetools.LRUCache(MAX_LOGS)
        self.recovery: dict[str, Any] = {
            "state": "not started",
            "requeued": 0,
            "adopted": 0,
            "missed_pushes": 0,
        }
        self.started_at: datetime | None = None  # when this process began to lead (recovery)
        # (repo, pushed sha) -> who deployed it: start-up recovery, or a push webhook. A push
        # the recovery found missed whose webhook was only late is not deployed twice.
        self._pushes: cachetools.TTLCache[tuple[str, str], str] = cachetools.TTLCache(
            maxsize=1024, ttl=PUSH_DEDUPE_SECONDS
        )
        self._claims: cachetools.TTLCache[str, list[DeploymentRecord]] = cachetools.TTLCache(
            maxsize=256, ttl=CLAIMS_TTL_SECONDS
        )
        self.claim_views: dict[str, dict[str, Claim]] = {}
        # Bumped when a deploy is queued or a claim released: a read of GitHub's Deployments
        # begun before that may miss the newer Deployment, so it is read again.
        self._claim_changes: dict[str, int] = {}
        # Told of every step that ends: (executor name, step, outcome). Metrics listen here.
        self.observers: list[Callable[[str, Step, StepOutcome], None]] = []
        self._default_branches: dict[str, str] = {}
        self._bound = False
        self._recovered = asyncio.Event()
        self._retiring: set[asyncio.Task[None]] = set()

    def bind(
        self,
        *,
        snapshots: SnapshotReader,
        settings: SettingsCache,
        comments: CommentCache,
        app_id: str | None,
    ) -> None:
        """Share the app's caches (done once by `Services`), so snapshots are read once."""
        if self._bound:
            return
        self._bound = True
        self.snapshots, self.settings_cache, self.comments = snapshots, settings, comments
        self.app_id = app_id if self.app_id is None else self.app_id

    # -- deploy requests -------------------------------------------------------------------

    async def deploy_merge(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        before: str,
        after: str,
        default_branch: str,
        pr: int | None = None,
        labels: Sequence[str] = (),
        comments_url: str | None = None,
        source: str = "",
        actor: str = "",
        delivery: str = "",
        recovered: bool = False,
    ) -> list[Wave]:
        """Plan `before..after` on the default branch and roll it out (support, staging, prod).

        `recovered`: start-up recovery found this push missed. It deploys nothing when this
        process already handles the push; a late webhook of a push recovery deployed within
        `PUSH_DEDUPE_SECONDS` deploys nothing either (a later redelivery does).
        """
        from bot.deploys.merge import plan_merge

        key = (repo.full_name, after)
        seen = self._pushes.get(key)
        if seen is not None and (recovered or seen == "recovery"):
            if not recovered:
                del self._pushes[key]
            logger.info("push %s to %s: already handled (%s)", after[:7], repo.full_name, seen)
            return []
        self._pushes[key] = "recovery" if recovered else "push"
        self._default_branches[repo.full_name] = default_branch
        outcome = await plan_merge(
            self,
            gh,
            repo,
            before=before,
            after=after,
            pr=pr,
            labels=labels,
            comments_url=comments_url,
            source=source,
            actor=actor,
            delivery=delivery,
            default_branch=default_branch,
        )
        logger.info("push %s..%s to %s: %s", before[:7], after[:7], repo.full_name, outcome.why)
        return outcome.waves

    async def deploy_preview(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        pr: int,
        pr_author: str,
        head_sha: str,
        targets: Sequence[tuple[str, str]],
        actor: str,
        comments_url: str,
        settings: Settings | None = None,
        delivery: str = "",
    ) -> list[Wave]:
        """Deploy a PR's head (pinned) to staging hubs `(cluster, hub)`; they become its claims."""
        settings = settings or await self.default_settings(gh, repo)
        steps = [Step(cluster, hub, "staging") for cluster, hub in targets]
        ctx = self.context(gh, repo, settings)
        ctx.reporter.released.discard(pr)
        return await self.submit(
            ctx,
            steps,
            settings,
            kind="preview",
            sha=head_sha,
            actor=actor,
            pr=pr,
            pr_author=pr_author,
            comments_url=comments_url,
            source=f"/deploy by @{actor} on #{pr}",
            delivery=delivery,
        )

    async def redeploy(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        targets: Sequence[tuple[str, str]],
        sha: str,
        actor: str,
        pr: int | None,
        comments_url: str | None,
        settings: Settings | None = None,
        delivery: str = "",
    ) -> list[Wave]:
        """Deploy a default-branch commit to any hubs (redeploy or roll back)."""
        settings = settings or await self.default_settings(gh, repo)
        steps = [
            Step(c, h, "staging" if settings.is_staging(h) else "prod", reasons=("redeploy",))
            for c, h in targets
        ]
        return await self.submit(
            self.context(gh, repo, settings),
            steps,
            settings,
            kind="redeploy",
            sha=sha,
            actor=actor,
            pr=pr,
            comments_url=comments_url,
            source=f"/deploy …@{sha[:7]} by @{actor}" + (f" on #{pr}" if pr else ""),
            delivery=delivery,
        )

    async def submit(
        self,
        ctx: RepoDeploys,
        steps: Sequence[Step],
        settings: Settings,
        *,
        kind: Kind,
        sha: str,
        actor: str,
        pr: int | None = None,
        pr_author: str = "",
        comments_url: str | None = None,
        source: str = "",
        delivery: str = "",
        reuse: dict[str, tuple[DeploymentRef, str]] | None = None,
    ) -> list[Wave]:
        """Queue steps on the repository's rollout, reported under a new origin."""
        if not steps:
            return []
        origin = ctx.reporter.new_origin(
            kind=kind,
            sha=sha,
            actor=actor,
            pr=pr,
            pr_author=pr_author,
            comments_url=comments_url,
            source=source,
            delivery=delivery,
            asked=frozenset(s.key for s in steps),
        )
        ctx.reporter.expect(origin, reuse)  # no await until submit() has reported `queued`
        waves = await ctx.rollout.submit(steps, sha=sha, stream=origin.stream, source=source)
        ctx.forget_ended_waves()
        for wave in waves:
            ctx.wave_settings[wave.id] = settings
            ctx.wave_delivery[wave.id] = delivery
        self._claims.pop(ctx.repo.full_name, None)
        self.claims_changed(ctx.repo)
        self._note_claims(ctx.repo, steps, settings, kind=kind, pr=pr, pr_author=pr_author)
        return waves

    def claims_changed(self, repo: RepoRef) -> None:
        """A deploy was queued or a claim released: reads of claims begun before are stale."""
        self._claim_changes[repo.full_name] = self._claim_changes.get(repo.full_name, 0) + 1

    def _note_claims(
        self,
        repo: RepoRef,
        steps: Sequence[Step],
        settings: Settings,
        *,
        kind: Kind,
        pr: int | None,
        pr_author: str,
    ) -> None:
        """Keep the claims board current without a call: the newest deployment decides.

        A preview claims its staging hubs; a merge or redeploy names no PR, so its newer
        Deployment clears any claim on the hubs it deploys.
        """
        board = self.claim_views.setdefault(repo.full_name, {})
        now = datetime.now(UTC)
        for step in steps:
            if step.hub is None:
                continue
            env = step.key
            if kind == "preview" and pr is not None:
                hours = timedelta(hours=settings.deploy.claim_hours)
                board[env] = Claim(env, pr, pr_author, now, now + hours, 0)
            else:
                board.pop(env, None)

    def claims_board(self, repo: RepoRef) -> dict[str, Claim]:
        """The claims last seen on this repository, without a call (for the plan comment)."""
        now = datetime.now(UTC)
        board = self.claim_views.get(repo.full_name, {})
        return {env: c for env, c in board.items() if c.expires > now}

    # -- cancelling and claims -------------------------------------------------------------

    async def cancel_pr(
        self, repo: RepoRef, pr: int, *, actor: str, running: bool = True, merges: bool = False
    ) -> list[Step]:
        """Cancel the queued (and running) deploys a PR asked for; returns the steps hit.

        `merges`: the rollout of the PR's merge too (`/cancel` on a merged PR), but only its
        queued targets: a merge's running deploy is never killed mid-upgrade (a helm
        release left `pending-upgrade` blocks the next deploy), it finishes and reports.
        """
        ctx = self.repos.get(repo.full_name)
        if ctx is None:
            return []
        kinds = _cancellable(merges)
        waves = {
            w: o.kind
            for o in ctx.reporter.origins.values()
            if o.pr == pr and o.kind in kinds
            for w in o.targets.values()
        }
        reason = f"cancelled by @{actor}" if actor else "cancelled"
        for wave in waves:
            ctx.reporter.cancel_reasons[wave] = reason

        def match(step: Step, wave: Wave) -> bool:
            if wave.id not in waves:
                return False
            stop_running = running and waves[wave.id] != "merge"
            return stop_running or wave.state[step.key] == "queued"

        return await ctx.rollout.cancel(match, reason=reason)

    def started_by(self, repo: RepoRef, pr: int, *, merges: bool = False) -> set[str]:
        """Logins whose deploys for this PR (and its merge, with `merges`) are not done."""
        return {o.actor for o in self._unfinished(repo, pr, _cancellable(merges))}

    def merge_running(self, repo: RepoRef, pr: int) -> list[str]:
        """Targets of this PR's merge rollout deploying now (what `/cancel` leaves running)."""
        ctx = self.repos.get(repo.full_name)
        if ctx is None:
            return []
        return sorted(
            key
            for o in self._unfinished(repo, pr, frozenset({"merge"}))
            for key, w in o.targets.items()
            if (r := ctx.reporter.records.get((w, key))) is not None and r.state == "running"
        )

    def _unfinished(self, repo: RepoRef, pr: int, kinds: frozenset[str]) -> list[Origin]:
        ctx = self.repos.get(repo.full_name)
        if ctx is None:
            return []
        reporter = ctx.reporter
        return [
            o
            for o in reporter.origins.values()
            if o.pr == pr
            and o.kind in kinds
            and any(
                not r.done
                for r in (reporter.records.get((w, k)) for k, w in o.targets.items())
                if r
            )
        ]

    async def claims(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        environments: Iterable[str] | None = None,
        *,
        fresh: bool = False,
        settings: Settings | None = None,
    ) -> dict[str, Claim]:
        """Staging claims by environment (`cluster/hub`), derived from GitHub's Deployments."""
        settings = settings or await self.default_settings(gh, repo)
        hours = settings.deploy.claim_hours
        now = datetime.now(UTC)
        ctx = self.repos.get(repo.full_name)
        records = None if fresh else self._claims.get(repo.full_name)
        current, tries = True, 0
        while records is None:
            changes = self._claim_changes.get(repo.full_name, 0)
            if ctx is not None and fresh:
                await ctx.reporter.flush()  # our own queued previews and merges are on GitHub
            newest = await newest_per_environment(
                gh, repo.url, since=now - timedelta(hours=hours), state_of=lambda p: "pr" in p
            )
            tries += 1
            current = self._claim_changes.get(repo.full_name, 0) == changes
            if current or tries >= 3:  # else a deploy was queued meanwhile: read again
                records = [_record(item) for item in newest]
        claims = derive_claims(records, now=now, claim_hours=hours)
        if current:  # a stale read is answered, never kept: it would hide the newer state
            self._claims[repo.full_name] = records
            self.claim_views[repo.full_name] = claims
        if environments is None:
            return claims
        wanted = set(environments)
        return {env: claim for env, claim in claims.items() if env in wanted}

    async def release_claims(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        pr: int,
        environments: Iterable[str] | None,
        reason: str,
    ) -> list[Claim]:
        """Release a PR's claims (all, or on `environments`): its previews become `inactive`."""
        wanted = None if environments is None else set(environments)
        ctx = self.repos.get(repo.full_name)
        if ctx is not None and wanted is None:
            ctx.reporter.release(pr)
        held = await self.claims(gh, repo, wanted, fresh=True)
        released = [c for c in held.values() if c.pr == pr]
        for claim in released:
            ref = DeploymentRef(
                claim.deployment_id,
                f"{repo.url}/deployments/{claim.deployment_id}",
                claim.environment,
                "",
            )
            await set_status(gh, ref, "inactive", description=reason)
            self.claim_views.get(repo.full_name, {}).pop(claim.environment, None)
        self._claims.pop(repo.full_name, None)
        self.claims_changed(repo)
        return released

    # -- repositories, settings, executors -------------------------------------------------

    def context(self, gh: GitHubAPI, repo: RepoRef, settings: Settings) -> RepoDeploys:
        """The repository's deploy machinery, made on first use; fresh client and settings."""
        ctx = self.repos.get(repo.full_name)
        wanted = executor_settings(settings)
        if ctx is not None and executor_settings(ctx.settings) != wanted:
            if ctx.rollout.idle:  # the old executor's jobs are all done: retire it
                logger.info("%s: executor settings changed", repo.full_name)
                del self.repos[repo.full_name]
                self._retire(ctx)
                ctx = None
            else:
                logger.info("%s: executor settings changed; applied once idle", repo.full_name)
                settings = ctx.settings  # keep the running executor's settings until then
        if ctx is None:
            ctx = self._new_context(gh, repo, settings)
            self.repos[repo.full_name] = ctx
        ctx.use(gh, settings)
        return ctx

    def _retire(self, ctx: RepoDeploys) -> None:
        async def retire() -> None:
            await ctx.rollout.close()
            await ctx.reporter.flush()
            await ctx.executor.close()

        task = asyncio.get_running_loop().create_task(retire(), name="hubbot-retire-executor")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _new_context(self, gh: GitHubAPI, repo: RepoRef, settings: Settings) -> RepoDeploys:
        holder: dict[str, RepoDeploys] = {}
        executor = self._executor(
            repo,
            settings,
            lambda: holder["ctx"].gh,
            lambda job: _ended_meanwhile(holder["ctx"], job),
        )
        public = self.config.public_url
        reporter = GitHubReporter(
            gh,
            repo,
            comments=self.comments,
            app_id=self.app_id,
            log_url=(lambda a: f"{public}/deploys/{a}") if public else (lambda a: None),
            environment_url=lambda step: holder["ctx"].environment_url(step),
            on_finish=lambda a, step, outcome: self._finished(holder["ctx"], a, step, outcome),
            throttle_seconds=self.config.throttle_seconds,
            retry_delays=self.config.report_retry_seconds,
        )
        ctx = RepoDeploys(
            repo=repo,
            gh=gh,
            settings=settings,
            snapshots=self.snapshots,
            executor=executor,
            reporter=reporter,
            logs=self.logs,
            health_env=health_environment(extra=self.config.passthrough),
        )
        holder["ctx"] = ctx
        return ctx

    def _finished(self, ctx: RepoDeploys, attempt: str, step: Step, outcome: StepOutcome) -> None:
        ctx.keep_log(attempt, step, outcome)
        for observe in self.observers:
            try:
                observe(ctx.executor.name, step, outcome)
            except Exception:  # an observer (metrics) must never break reporting
                logger.exception("a deploy observer failed")

    def counts(self) -> tuple[int, int]:
        """(queued, running) steps over every repository, for the gauges."""
        queued = running = 0
        for ctx in self.repos.values():
            for wave in ctx.rollout.schedule.waves():
                for state in wave.state.values():
                    queued += state == "queued"
                    running += state == "running"
        return queued, running

    def _executor(
        self,
        repo: RepoRef,
        settings: Settings,
        gh: Callable[[], GitHubAPI],
        ended: Ended | None = None,
    ) -> Executor:
        if self.executor_factory is not None:
            return self.executor_factory(repo, settings)
        return build_executor(
            self.config, repo, settings, snapshots=self.snapshots, gh=gh, ended=ended
        )

    async def default_settings(self, gh: GitHubAPI, repo: RepoRef) -> Settings:
        """The settings on the repository's default branch (cached until a push)."""
        branch = self._default_branches.get(repo.full_name)
        if branch is None:
            data = await gh.getitem(repo.url)
            branch = self._default_branches[repo.full_name] = str(data["default_branch"])
        entry = await self.settings_cache.get(
            gh, repo=repo.full_name, repo_url=repo.url, default_branch=branch
        )
        return entry.settings

    def default_branch_is(self, repo: RepoRef, branch: str) -> None:
        """Remember a repository's default branch (from a payload), saving a lookup."""
        self._default_branches[repo.full_name] = branch

    # -- life cycle ------------------------------------------------------------------------

    def start(self, github: ClientFactory) -> None:
        """Use this client factory for work not tied to an event (recovery)."""
        self.github = github
        self.started_at = datetime.now(UTC)

    def merge_queued(self, repo: RepoRef, sha: str) -> bool:
        """Whether this process queued a merge deploy of `sha` (recovery requeued it, say)."""
        ctx = self.repos.get(repo.full_name)
        origins = ctx.reporter.origins.values() if ctx is not None else ()
        return any(o.kind == "merge" and o.sha == sha for o in origins)

    async def recover(self) -> None:
        """At start-up: requeue accepted deploys found in GitHub, adopt running Kubernetes Jobs."""
        from bot.deploys.recovery import recover_all

        try:
            await recover_all(self)
        finally:
            self._recovered.set()

    async def wait_recovered(self) -> None:
        """Wait until start-up recovery has ended (tests and benchmarks; wrap in a timeout)."""
        await self._recovered.wait()

    async def wait_idle(self) -> None:
        """Wait until every rollout is idle and every report written (wrap in a timeout)."""
        while True:
            for ctx in list(self.repos.values()):
                await ctx.rollout.wait_idle()
                await ctx.reporter.flush()
            if all(c.rollout.idle for c in self.repos.values()):
                return

    async def close(self, reason: str = STOP_REASON) -> None:
        """Stop: running local deploys are killed (recovery reruns them); checks are concluded."""
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for ctx in self.repos.values():
            await ctx.rollout.close()
            await ctx.reporter.close(reason)
            await ctx.executor.close()

    def snapshot(self) -> dict[str, Any]:
        """Rollouts and claims for the status page, as plain JSON data (never a secret).

        `{"executor": str, "recovery": {"state", "requeued", "adopted", "missed_pushes", "detail"},
          "rollouts": [{"repo", "waves": [{"id", "cluster", "stream", "sha", "pr", "actor",
                        "sources", "targets": [{"target", "stage", "state", "detail",
                        "seconds"}]}]}],
          "claims": [{"repo", "environment", "pr", "author", "since", "expires"}]}`
        """
        from bot.deploys.status import status_view

        return status_view(self)


async def _ended_meanwhile(ctx: RepoDeploys, job: DeployJob) -> DeployResult | None:
    from bot.deploys.recovery import ended_meanwhile

    return await ended_meanwhile(ctx, job)


def _record(item: Listed) -> DeploymentRecord:
    """The claim rules' view of a listed deployment."""
    return DeploymentRecord(
        id=item.ref.id,
        environment=item.ref.environment,
        sha=item.ref.sha,
        created_at=item.created_at,
        payload={"hubbot": dict(item.payload)},
        state=item.state,
    )


def _cancellable(merges: bool) -> frozenset[str]:
    """The origin kinds `/cancel` reaches: previews and redeploys, and merges if asked."""
    return frozenset({"preview", "redeploy", "merge"} if merges else {"preview", "redeploy"})
