"""A bounded job queue that keeps order per key and lets a newer re-plan replace an older one.

Jobs of one key (a PR: repository and number; a push: repository and ref) run
one at a time, in arrival order. Different keys run in parallel on a fixed pool
of workers. A job may carry a `tag`: when a job arrives and an older job of the
same key and tag is still waiting, the older one is dropped (superseded), since
the newer one redoes the same work on fresher data. A full queue refuses new
jobs (`QueueFull`) instead of growing. A job that raises is logged with its
delivery id; the worker carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.web.logs import delivery_context, install_record_factory

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One unit of background work: a webhook delivery to handle."""

    key: str
    delivery_id: str
    event: str
    payload: Any = None
    tag: str | None = None
    enqueued_at: float = field(default_factory=time.monotonic)
    hook_id: str = ""  # X-GitHub-Hook-ID, so a job handed to another replica keeps its dedupe key
    # Work that is not a delivery (re-planning after a restart): run as is, never handed over.
    work: Callable[[], Awaitable[None]] | None = None


class QueueFull(Exception):
    """The queue holds `maxsize` waiting jobs already."""


class QueueClosed(Exception):
    """The queue is shutting down and takes no more jobs."""


Handler = Callable[[Job], Awaitable[None]]
Observer = Callable[[Job, str, float | None], None]


class JobQueue:
    """Per-key ordered, superseding, bounded job queue with a worker pool."""

    def __init__(
        self,
        handler: Handler,
        *,
        maxsize: int,
        workers: int,
        on_done: Observer | None = None,
    ) -> None:
        install_record_factory()  # so the failure log line carries the delivery id
        self._handler = handler
        self.maxsize = maxsize
        self._workers_wanted = workers
        self._on_done = on_done
        self._pending: dict[str, collections.deque[Job]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._scheduled: set[str] = set()  # keys sitting in _ready
        self._running: set[str] = set()
        self._depth = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()  # cleared by hold(): jobs wait, none starts
        self._open.set()
        self._closed = False

    @property
    def depth(self) -> int:
        """Jobs waiting (not running)."""
        return self._depth

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def saturated(self) -> bool:
        """Whether a new job without a job to supersede would be refused."""
        return self._depth >= self.maxsize

    def submit(self, job: Job) -> Job | None:
        """Queue `job`; returns the waiting job it superseded, if any. Raises QueueFull."""
        if self._closed:
            raise QueueClosed
        waiting = self._pending.get(job.key)
        superseded = None
        if job.tag is not None and waiting:
            for older in waiting:
                if older.tag == job.tag:
                    superseded = older
                    break
        if superseded is None and self._depth >= self.maxsize:
            raise QueueFull
        if superseded is not None and waiting is not None:
            waiting.remove(superseded)
            self._depth -= 1
            if self._on_done is not None:
                self._on_done(superseded, "superseded", None)
        self._pending.setdefault(job.key, collections.deque()).append(job)
        self._depth += 1
        self._idle.clear()
        self._schedule(job.key)
        return superseded

    def _schedule(self, key: str) -> None:
        if key in self._running or key in self._scheduled or not self._pending.get(key):
            return
        self._scheduled.add(key)
        self._ready.put_nowait(key)

    def start(self) -> None:
        """Start the workers (call inside the running loop)."""
        for n in range(self._workers_wanted):
            self._tasks.append(asyncio.create_task(self._work(), name=f"hubbot-worker-{n}"))

    def hold(self) -> None:
        """Start no job until `release()` (jobs still queue, in order)."""
        self._open.clear()

    def release(self) -> None:
        """Start jobs again after `hold()`."""
        self._open.set()

    async def _work(self) -> None:
        while True:
            await self._open.wait()
            key = await self._ready.get()
            await self._open.wait()  # held while this worker waited for a key
            self._scheduled.discard(key)
            waiting = self._pending.get(key)
            if not waiting:
                self._pending.pop(key, None)
                continue
            job = waiting.popleft()
            self._depth -= 1
            self._running.add(key)
            try:
                await self._run(job)
            finally:
                self._running.discard(key)
                if not self._pending.get(key):
                    self._pending.pop(key, None)
                self._schedule(key)
                if not self._depth and not self._running:
                    self._idle.set()

    async def _run(self, job: Job) -> None:
        started = time.monotonic()
        result = "ok"
        with delivery_context(job.delivery_id):
            try:
                await self._handler(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                result = "error"
                # The one place a handler's failure is logged: the job boundary.
                logger.exception("handling %s (delivery %s) failed", job.event, job.delivery_id)
        if self._on_done is not None:
            self._on_done(job, result, time.monotonic() - started)

    def hand_over(self) -> list[Job]:
        """Refuse new jobs and take out the waiting ones, oldest first; running ones carry on.

        A replica that stops leading passes these to the next leader instead of running them.
        """
        self._closed = True
        jobs = sorted((j for d in self._pending.values() for j in d), key=lambda j: j.enqueued_at)
        for waiting in self._pending.values():
            waiting.clear()
        self._depth = 0
        if not self._running:
            self._idle.set()
        if self._on_done is not None:
            for job in jobs:
                self._on_done(job, "handed_over", None)
        return jobs

    async def join(self, within: float | None = None) -> bool:
        """Wait until nothing is waiting or running; False if `within` seconds pass first."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    async def close(self, *, drain_timeout: float = 10.0) -> None:
        """Refuse new jobs, let queued work finish for up to `drain_timeout`, stop workers."""
        self._closed = True
        if not await self.join(drain_timeout):
            logger.warning(
                "stopping with %d queued and %d running jobs", self._depth, len(self._running)
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
