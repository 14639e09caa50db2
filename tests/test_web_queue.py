"""The job queue: order per key, parallel keys, supersession, bounds, failures, shutdown."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from bot.web.queue import Job, JobQueue, QueueClosed, QueueFull


class Work:
    """A handler that records start/end per job and waits on a per-key gate."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.done: list[tuple[str, str, float | None]] = []
        self.active = 0
        self.max_active = 0
        self.changed = asyncio.Condition()
        self.starts = 0

    async def __call__(self, job: Job) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.log.append(("start", job.delivery_id))
        async with self.changed:
            self.starts += 1
            self.changed.notify_all()
        try:
            await self.gates[job.key].wait()
            if job.payload == "raise":
                raise ValueError("boom")
        finally:
            self.active -= 1
            self.log.append(("end", job.delivery_id))

    def observe(self, job: Job, result: str, seconds: float | None) -> None:
        self.done.append((job.delivery_id, result, seconds))


def job(key: str, delivery: str, tag: str | None = "replan", payload: object = None) -> Job:
    return Job(key=key, delivery_id=delivery, event="pull_request", tag=tag, payload=payload)


@pytest.fixture
async def work() -> Work:
    return Work()


async def started(q: JobQueue, work: Work, n: int) -> None:
    async with work.changed:
        await asyncio.wait_for(work.changed.wait_for(lambda: work.starts >= n), 5)


async def test_one_key_runs_in_order_one_at_a_time(work: Work) -> None:
    q = JobQueue(work, maxsize=10, workers=4, on_done=work.observe)
    q.start()
    for n in range(3):
        q.submit(job("repo#1", f"d{n}", tag=None))
    work.gates["repo#1"].set()
    assert await q.join(5)
    assert work.log == [(k, f"d{n}") for n in range(3) for k in ("start", "end")]
    assert work.max_active == 1
    await q.close()


async def test_different_keys_run_in_parallel_up_to_the_worker_count(work: Work) -> None:
    q = JobQueue(work, maxsize=10, workers=2)
    q.start()
    for n in range(3):
        q.submit(job(f"repo#{n}", f"d{n}"))
    await started(q, work, 2)
    assert work.active == 2 and q.depth == 1
    for n in range(3):
        work.gates[f"repo#{n}"].set()
    assert await q.join(5)
    assert work.max_active == 2
    await q.close()


async def test_newer_replan_supersedes_a_waiting_one_but_not_the_running_one(work: Work) -> None:
    q = JobQueue(work, maxsize=10, workers=1, on_done=work.observe)
    q.start()
    q.submit(job("repo#1", "sync-1"))
    await started(q, work, 1)  # sync-1 is running
    assert q.submit(job("repo#1", "sync-2")) is None
    q.submit(job("repo#1", "comment", tag=None))  # not a re-plan: keeps its place
    superseded = q.submit(job("repo#1", "sync-3"))
    assert superseded is not None and superseded.delivery_id == "sync-2"
    assert q.depth == 2
    work.gates["repo#1"].set()
    assert await q.join(5)
    assert [d for kind, d in work.log if kind == "start"] == ["sync-1", "comment", "sync-3"]
    assert ("sync-2", "superseded", None) in work.done
    await q.close()


async def test_full_queue_refuses_but_supersession_still_fits(work: Work) -> None:
    q = JobQueue(work, maxsize=2, workers=1)
    q.start()
    q.submit(job("a", "a1"))
    await started(q, work, 1)
    q.submit(job("b", "b1"))
    q.submit(job("c", "c1"))
    assert q.saturated
    with pytest.raises(QueueFull):
        q.submit(job("d", "d1"))
    with pytest.raises(QueueFull):
        q.submit(job("b", "b-untagged", tag=None))
    assert q.submit(job("b", "b2")) is not None  # replaces b1: no growth
    assert q.depth == 2
    for key in "abc":
        work.gates[key].set()
    assert await q.join(5)
    await q.close()


async def test_a_failing_job_is_reported_and_the_worker_continues(
    work: Work, caplog: pytest.LogCaptureFixture
) -> None:
    q = JobQueue(work, maxsize=10, workers=1, on_done=work.observe)
    q.start()
    work.gates["k"].set()
    q.submit(job("k", "bad", tag=None, payload="raise"))
    q.submit(job("k", "good", tag=None))
    assert await q.join(5)
    assert [(d, r) for d, r, _ in work.done] == [("bad", "error"), ("good", "ok")]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].delivery_id == "bad"  # type: ignore[attr-defined]
    await q.close()


async def test_close_drains_then_refuses(work: Work) -> None:
    q = JobQueue(work, maxsize=10, workers=1)
    q.start()
    work.gates["k"].set()
    q.submit(job("k", "last", tag=None))
    await q.close(drain_timeout=5)
    assert ("end", "last") in work.log
    with pytest.raises(QueueClosed):
        q.submit(job("k", "late"))


async def test_close_gives_up_on_a_stuck_job(work: Work) -> None:
    q = JobQueue(work, maxsize=10, workers=1)
    q.start()
    q.submit(job("stuck", "s"))
    await started(q, work, 1)
    await q.close(drain_timeout=0.05)
    assert work.log == [("start", "s"), ("end", "s")]  # cancelled, with its cleanup run
