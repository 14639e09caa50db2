"""Reporting a repository's rollout on GitHub: Deployments, one progress comment per PR, checks.

Implements `rollout.Reporter`. Every transition updates memory at once (so the driver
never waits on GitHub) and queues the GitHub writes behind it, in order per target:
create the Deployment and its `queued` status, then `in_progress`, then how it ended.
A target coalesced into a newer wave gets `inactive` "superseded by the deploy of <sha7>"
and a new Deployment at the newer SHA. Each origin (a merge, a preview, a redeploy) has
a `hubbot/deploy` check run on its commit, concluded with a summary table when its last
target ends, and never left in progress: `close()` concludes the open ones, saying why.
The PR's comment (marker `<!-- hubbot:deploy -->`) is edited at most every 2 s, and
always once more after the last change. Logs never go into comments, only links to them.
A write that GitHub fails (5xx, no answer) is tried again a few times, later: a lost
final status would leave a Deployment `in_progress` for good (and a restart would deploy
it again), a lost conclusion a check run open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import gidgethub
from gidgethub.abc import GitHubAPI

from bot.deploys import progress
from bot.deploys.executor import DeployJob
from bot.deploys.progress import DEPLOY_CHECK, DEPLOY_MARKER, Origin, TargetRecord
from bot.deploys.rollout import StepOutcome
from bot.deploys.schedule import Step, Wave
from bot.github.checks import CheckRun, complete_check, now_iso, start_check
from bot.github.client import AmbiguousWrite, GitHubUnavailable
from bot.github.comments import CommentCache, upsert_comment
from bot.github.deployments import DeploymentRef, create_deployment, environment_of, set_status
from bot.github.snapshot import RepoRef

logger = logging.getLogger(__name__)

THROTTLE_SECONDS = 2.0
KEEP_ORIGINS = 50  # finished origins kept in memory for the comment and the status page
# Waits before each new try of a write GitHub failed (each try has the client's own retries).
RETRY_SECONDS = (2.0, 10.0, 30.0)
# Failures worth trying again later: GitHub's 5xx, no answer, a write that may not have landed.
TRANSIENT = (
    gidgethub.GitHubBroken,
    GitHubUnavailable,
    AmbiguousWrite,
    aiohttp.ClientError,
    TimeoutError,
)


class Throttled:
    """Runs `write` after each `poke()`, at most once per `interval`, always after the last poke."""

    def __init__(
        self,
        write: Callable[[], Awaitable[None]],
        interval: float,
        retry_delays: Sequence[float] = (),
    ) -> None:
        self.write, self.interval = write, interval
        self.retry_delays = tuple(retry_delays)  # after a transient failure, write again
        self._dirty = False
        self._last = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self.writes = 0

    def poke(self) -> None:
        """Something changed: write it soon."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="hubbot-throttled-write")

    async def _run(self) -> None:
        failures = 0
        while self._dirty:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty = False
            self._last = time.monotonic()
            try:
                await self.write()
                self.writes += 1
                failures = 0
            except TRANSIENT as exc:
                if failures >= len(self.retry_delays):
                    logger.error("updating the deploy comment failed for good: %s", exc)
                    continue
                delay = self.retry_delays[failures]
                failures += 1
                logger.warning("updating the deploy comment failed (%s); again in %g s", exc, delay)
                self._dirty = True
                self._last = time.monotonic() + delay - self.interval  # the next wait is `delay`
            except Exception:  # a boundary: a failed comment edit never stops deploys
                logger.exception("updating the deploy comment failed")

    async def flush(self) -> None:
        """Wait until every change so far is written."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])


class GitHubReporter:
    """A repository's rollout as GitHub shows it."""

    def __init__(
        self,
        gh: GitHubAPI,
        repo: RepoRef,
        *,
        comments: CommentCache,
        app_id: str | None = None,
        log_url: Callable[[str], str | None] = lambda attempt: None,
        environment_url: Callable[[Step], str | None] = lambda step: None,
        on_finish: Callable[[str, Step, StepOutcome], None] = lambda attempt, step, outcome: None,
        throttle_seconds: float = THROTTLE_SECONDS,
        writes: int = 8,
        retry_delays: Sequence[float] = RETRY_SECONDS,
    ) -> None:
        self.gh = gh  # replaced by the service with each fresh client
        self.repo = repo
        self.comments = comments
        self.app_id = app_id
        self.log_url = log_url
        self.environment_url = environment_url
        self.on_finish = on_finish
        self.throttle_seconds = throttle_seconds
        self.retry_delays = tuple(retry_delays)
        self.origins: dict[int, Origin] = {}
        self.records: dict[tuple[int, str], TargetRecord] = {}
        self.deployments: dict[str, DeploymentRef] = {}  # attempt -> its Deployment
        self.reused: dict[int, dict[str, tuple[DeploymentRef, str]]] = {}  # origin -> key -> dep
        self.released: set[int] = set()  # PRs whose previews no longer hold claims
        self.cancel_reasons: dict[int, str] = {}  # wave id -> why it was cancelled
        self._pending: Origin | None = None
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: dict[int, Throttled] = {}
        self._checks: dict[int, CheckRun] = {}  # origin id -> its check run
        self._sem = asyncio.Semaphore(writes)
        self._ids = iter(range(1, 1 << 62))

    # -- what the service tells it ---------------------------------------------------------

    def new_origin(self, **fields: Any) -> Origin:
        """A new origin, to pass to `expect()` just before its steps are submitted."""
        origin = Origin(id=next(self._ids), **fields)
        self.origins[origin.id] = origin
        return origin

    def expect(
        self, origin: Origin, reuse: dict[str, tuple[DeploymentRef, str]] | None = None
    ) -> None:
        """The next `queued()` call is this origin's (optionally reusing existing Deployments)."""
        self._pending = origin
        if reuse:
            self.reused[origin.id] = reuse
        self._then(f"origin:{origin.id}", lambda: self._create_check(origin))

    def adopt(self, step: Step, deployment: DeploymentRef, origin: Origin, attempt: str) -> None:
        """A job found running after a restart: report it on its existing Deployment."""
        origin.targets[step.key] = step.wave
        record = self._record(step, origin, attempt)
        record.state, record.started = "running", time.monotonic()
        record.note = "resumed after hubbot restarted: following its Kubernetes Job"
        self.deployments[attempt] = deployment
        self._then(f"origin:{origin.id}", lambda: self._create_check(origin))
        self._status(record)
        self._changed(origin)

    def release(self, pr: int) -> None:
        """A PR's previews no longer hold claims: ones still running end `inactive`."""
        self.released.add(pr)

    # -- rollout.Reporter ------------------------------------------------------------------

    async def queued(self, waves: list[Wave]) -> None:
        """Steps were accepted: one Deployment each (superseding older SHAs of the same wave)."""
        origin, self._pending = self._pending, None
        touched: set[int] = set()
        for wave in waves:
            for key, step in wave.steps.items():
                if wave.state[key] != "queued":
                    continue
                if origin is not None and key in origin.asked:
                    origin.targets[key] = wave.id
                old = self.records.get((wave.id, key))
                if old is not None and old.sha == wave.sha:
                    if origin is not None and key in origin.targets:
                        old.origin = origin.id
                    continue
                owner = origin if origin is not None and key in origin.targets else None
                if owner is None and old is not None:
                    owner = self.origins.get(old.origin)
                if owner is None:
                    continue
                if old is not None:
                    old.state, old.detail = (
                        "superseded",
                        f"superseded by the deploy of {wave.sha[:7]}",
                    )
                    self._status(old)
                    touched.add(old.origin)
                record = self._record(step, owner, uuid.uuid4().hex)
                self._create(record, owner)
                touched.add(owner.id)
        for origin_id in touched:
            if origin_id in self.origins:
                self._changed(self.origins[origin_id])

    async def started(self, step: Step, job: DeployJob) -> None:
        """A job started: `in_progress`, with its log link and the hub's URL."""
        record = self.records.get((step.wave, step.key))
        if record is None:
            return
        record.state, record.started = "running", time.monotonic()
        record.environment_url = self.environment_url(step)
        record.log_url = self.log_url(record.attempt)
        self._status(record)
        self._changed_record(record)

    async def finished(self, step: Step, outcome: StepOutcome) -> None:
        """A step ended: its final status; the origin's check concludes when all of it has."""
        record = self.records.get((step.wave, step.key))
        if record is None:
            return
        record.state, record.ended = outcome.ending, time.monotonic()
        record.detail = outcome.detail
        if outcome.ending == "cancelled" and step.wave in self.cancel_reasons:
            record.detail = self.cancel_reasons[step.wave]
        if outcome.ending in ("success", "failure", "error") or outcome.result is not None:
            record.seconds = outcome.duration_seconds
            record.log_url = self.log_url(record.attempt)
        record.note = ""
        self.on_finish(record.attempt, step, outcome)
        self._status(record)
        origin = self.origins.get(record.origin)
        if origin is not None and origin.kind == "preview" and origin.pr in self.released:
            self._released_status(record)
        self._changed_record(record)

    # -- attempts and the GitHub writes behind them ----------------------------------------

    def attempt_of(self, step: Step) -> str | None:
        """The attempt id of a step's current record (ties job, Deployment and log)."""
        record = self.records.get((step.wave, step.key))
        return record.attempt if record is not None else None

    def _record(self, step: Step, origin: Origin, attempt: str) -> TargetRecord:
        record = TargetRecord(
            key=step.key,
            cluster=step.cluster,
            hub=step.hub,
            stage=step.stage,
            sha=step.sha,
            wave=step.wave,
            attempt=attempt,
            origin=origin.id,
        )
        self.records[(step.wave, step.key)] = record
        return record

    def _create(self, record: TargetRecord, origin: Origin) -> None:
        reuse = self.reused.get(origin.id, {}).get(record.key)
        if reuse is not None and reuse[0].sha == record.sha:
            deployment, before = reuse
            self.deployments[record.attempt] = deployment
            record.note = (
                "interrupted by a hubbot restart; deploying again"
                if before == "in_progress"
                else "requeued after hubbot restarted"
            )
            self._status(record)
            return

        async def create() -> None:
            self.deployments[record.attempt] = await create_deployment(
                self.gh,
                self.repo.url,
                sha=record.sha,
                environment=environment_of(record.cluster, record.hub),
                production=record.stage == "prod",
                transient=origin.kind == "preview",
                payload=self.payload(record, origin),
                description=f"{progress.heading(origin)}"[:140],
            )

        self._then(record.attempt, create)
        self._status(record)

    def payload(self, record: TargetRecord, origin: Origin) -> dict[str, Any]:
        """The Deployment's `payload["hubbot"]`: what recovery and claims read back."""
        payload: dict[str, Any] = {
            "kind": origin.kind,
            "stage": record.stage,
            "cluster": record.cluster,
            "hub": record.hub,
            "actor": origin.actor,
            "source": origin.source[:200],
            "wave": record.wave,
            "attempt": record.attempt,
        }
        if origin.kind == "preview":  # only a preview claims its hub (see claims.py)
            payload.update(pr=origin.pr, pr_author=origin.pr_author)
        elif origin.pr is not None:
            payload["requested_in"] = origin.pr
        return payload

    def _status(self, record: TargetRecord) -> None:
        """Queue the Deployment status for the record's state as of now."""
        state, description = progress.deployment_status(record)
        env_url, log_url = record.environment_url, record.log_url

        async def post() -> None:
            deployment = self.deployments.get(record.attempt)
            if deployment is None:
                return  # creating it failed (logged); nothing to attach a status to
            await set_status(
                self.gh,
                deployment,
                state,  # type: ignore[arg-type]
                description=description,
                environment_url=env_url,
                log_url=log_url,
            )

        self._then(record.attempt, post)

    def _released_status(self, record: TargetRecord) -> None:
        async def post() -> None:
            deployment = self.deployments.get(record.attempt)
            if deployment is not None:
                await set_status(self.gh, deployment, "inactive", description="claim released")

        self._then(record.attempt, post)

    def _then(self, chain: str, op: Callable[[], Awaitable[None]]) -> None:
        """Run `op` after the chain's earlier ops (each target's writes stay in order)."""
        before = self._chains.get(chain)

        async def run() -> None:
            if before is not None and not before.done():
                await asyncio.wait([before])
            for delay in (*self.retry_delays, None):
                try:
                    async with self._sem:
                        await op()
                    return
                except TRANSIENT as exc:
                    if delay is None:
                        logger.error("reporting a deploy to GitHub failed (%s): %s", chain, exc)
                        return
                    logger.warning(
                        "reporting a deploy to GitHub failed (%s): %s; again in %g s",
                        chain,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                except Exception:  # a boundary: a reporting failure never stops deploys
                    logger.exception("reporting a deploy to GitHub failed (%s)", chain)
                    return

        task = asyncio.create_task(run(), name=f"hubbot-report {chain}")
        self._chains[chain] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(chain, t))

    def _done(self, chain: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._chains.get(chain) is task:
            del self._chains[chain]

    # -- origins: the comment and the check run --------------------------------------------

    def _changed_record(self, record: TargetRecord) -> None:
        for origin in list(self.origins.values()):
            if origin.targets.get(record.key) == record.wave:
                self._changed(origin)

    def _changed(self, origin: Origin) -> None:
        records = progress.by_key(self.records, origin)
        if not origin.closed and records and all(r.state in progress.FINAL for r in records):
            origin.closed = True
            self._then(f"origin:{origin.id}", lambda: self._conclude(origin))
        elif not (origin.closed or origin.running) and any(r.state == "running" for r in records):
            origin.running = True
            self._then(f"origin:{origin.id}", lambda: self._check_running(origin))
        self._poke(origin)

    def _poke(self, origin: Origin) -> None:
        if origin.pr is None or origin.comments_url is None:
            return
        writer = self._writers.get(origin.pr)
        if writer is None:
            pr, url = origin.pr, origin.comments_url
            writer = Throttled(
                lambda: self._write_comment(pr, url), self.throttle_seconds, self.retry_delays
            )
            self._writers[pr] = writer
        writer.poke()

    def comment_body(self, pr: int, footer: str = "") -> str:
        """The PR's deploy comment as it stands."""
        sections = [
            (o, progress.by_key(self.records, o)) for o in self.origins.values() if o.pr == pr
        ]
        return progress.comment([(o, rs) for o, rs in sections if rs], footer)

    async def _write_comment(self, pr: int, comments_url: str, footer: str = "") -> None:
        await upsert_comment(
            self.gh,
            comments_url=comments_url,
            key=(self.repo.full_name, pr, DEPLOY_MARKER),
            body=self.comment_body(pr, footer),
            cache=self.comments,
            app_id=self.app_id,
        )

    async def _create_check(self, origin: Origin) -> None:
        if origin.id not in self._checks:
            self._checks[origin.id] = await start_check(
                self.gh,
                repo_url=self.repo.url,
                head_sha=origin.sha,
                name=DEPLOY_CHECK,
                status="queued",
            )

    async def _check_running(self, origin: Origin) -> None:
        run = self._checks.get(origin.id)
        if run is not None and not origin.closed:
            await self.gh.patch(run.url, data={"status": "in_progress", "started_at": now_iso()})

    async def _conclude(self, origin: Origin) -> None:
        records = progress.by_key(self.records, origin)
        if origin.kind == "preview" and origin.pr is not None:
            await self._note_if_behind(origin)
            self._poke(origin)
        if origin.id not in self._checks:
            await self._create_check(origin)  # creating it failed, every try: once more
        run = self._checks[origin.id]
        title, summary = progress.check_output(origin, records)
        conclusion = progress.conclusion(records)
        await complete_check(
            self.gh,
            run,
            conclusion=conclusion,
            title=title,
            summary=summary,
        )
        self._prune()

    async def _note_if_behind(self, origin: Origin) -> None:
        """A preview whose PR moved on while it deployed says so."""
        try:
            pull = await self.gh.getitem(f"{self.repo.url}/pulls/{origin.pr}")
        except gidgethub.GitHubException:
            return
        head = str((pull.get("head") or {}).get("sha") or "")
        if head and head != origin.sha:
            origin.note = (
                f"⚠️ The PR has moved on since this preview was asked for (its head is now "
                f"`{head[:7]}`): this preview is behind. Comment `/deploy staging` again to "
                "preview the new head."
            )

    def _prune(self) -> None:
        done = [o for o in self.origins.values() if o.closed]
        for origin in done[: max(0, len(done) - KEEP_ORIGINS)]:
            del self.origins[origin.id]
            self._checks.pop(origin.id, None)
            self.reused.pop(origin.id, None)
        live = {(w, k) for o in self.origins.values() for k, w in o.targets.items()}
        for key in [k for k, r in self.records.items() if k not in live and r.done]:
            record = self.records.pop(key)
            self.deployments.pop(record.attempt, None)

    # -- the end ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every GitHub write queued so far is done (tests, benchmarks, shutdown)."""
        while self._tasks or any(not w._task.done() for w in self._writers.values() if w._task):
            if self._tasks:
                await asyncio.wait(list(self._tasks))
            for writer in list(self._writers.values()):
                await writer.flush()

    async def close(self, reason: str, *, grace: float = 5.0) -> None:
        """Shutting down: finish queued writes, then conclude every open check run.

        Each phase is bounded by `grace` seconds, so a pod's termination grace period
        (30 s by default, with the queue's drain before this) is enough.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        open_ones = [o for o in self.origins.values() if not o.closed and o.id in self._checks]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._stop_all(open_ones, reason)

    async def _stop_all(self, origins: list[Origin], reason: str) -> None:
        """Conclude the origins' check runs, then say why once in each PR's comment."""
        await asyncio.gather(
            *(self._stop_check(o, reason) for o in origins), return_exceptions=True
        )
        prs = {o.pr: o.comments_url for o in origins if o.pr is not None and o.comments_url}
        await asyncio.gather(
            *(self._write_comment(pr, url, f"⏸️ {reason}") for pr, url in prs.items()),
            return_exceptions=True,
        )

    async def _stop_check(self, origin: Origin, reason: str) -> None:
        origin.closed = True
        title, summary = progress.check_output(origin, progress.by_key(self.records, origin))
        await complete_check(
            self.gh,
            self._checks[origin.id],
            conclusion="cancelled",
            title=f"hubbot stopped: {title}",
            summary=f"{reason}\n\n{summary}",
        )
