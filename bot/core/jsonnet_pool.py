"""Rendering Jsonnet in worker processes that can be killed: time, memory and output bounded.

go-jsonnet is a blocking C call that holds the interpreter until it returns, so a
`while true` in a PR's Jsonnet can only be stopped by killing the process that
runs it. Each worker (`_jsonnet_worker.py`, started as a fresh interpreter, never
forked, because the Go runtime does not survive a fork) renders one job at a time
under a memory limit; a thread per worker feeds it jobs and waits for each
answer with the job's timeout, killing and replacing the worker when it runs over
or dies. With two workers, rendering also runs in parallel with the caller's YAML
loading and schema checks. Results are cached by job key, so rendering the same
file for the same hub again (a plan's base and head) costs nothing.

A file whose rendering ran out of time or memory for one release is not tried
again for the others: they get the same finding at once. Otherwise one endless
loop in a chart's values.jsonnet would cost the timeout once per hub (171 hubs
at 10 s each on 2i2c), from any pull request.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from cachetools import LRUCache

from bot.core.jsonnet import JsonnetJob, Renderer, RenderResult, parse_output
from bot.core.jsonnet_cache import DiskCache

WORKER_SCRIPT = Path(__file__).with_name("_jsonnet_worker.py")
MEMORY_LIMIT_BYTES = 512 << 20
# go-jsonnet allocates heavily (std.format is written in Jsonnet): collecting less often
# makes 2i2c's support chart render 1.3x faster (measured: 86 -> 66 ms), for ~100 MB per
# worker; GOMEMLIMIT makes the collector work harder rather than grow past 256 MiB.
WORKER_ENV = {"GOGC": "800", "GOMEMLIMIT": "256MiB"}
CACHE_SIZE = 4096
DOOMED_SIZE = 1024  # files remembered as running out of time or memory


class _WorkerGone(Exception):
    """The worker closed its output (it crashed, or ran out of memory)."""


class _Timeout(Exception):
    """The worker did not answer in time."""


class _Worker:
    """One worker process and a buffered reader of its answers."""

    def __init__(self, memory_limit: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER_SCRIPT), str(memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # Go's crash dumps: nothing for a partner there
            env={**os.environ, **WORKER_ENV},
            bufsize=0,
        )
        self._buffer = bytearray()

    def ask(self, request: bytes, timeout: float) -> tuple[dict[str, object], bytes]:
        """Send one request; the answer's header and payload, within `timeout` seconds."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(request)
        except (BrokenPipeError, ValueError) as exc:
            raise _WorkerGone from exc
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            self._fill(deadline)
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        try:
            header = json.loads(line)
            size = int(header["len"])
        except (ValueError, KeyError, TypeError) as exc:
            # Not our protocol (something else wrote to its stdout): treat it as dead, so
            # the caller gets a finding instead of a thread dying and render() waiting forever.
            raise _WorkerGone from exc
        while len(self._buffer) < size:
            self._fill(deadline)
        payload = bytes(self._buffer[:size])
        del self._buffer[:size]
        return header, payload

    def _fill(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise _Timeout
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise _WorkerGone
        self._buffer += chunk

    def stop(self) -> int | None:
        """Kill the process and reap it; its exit code."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()


class ProcessRenderer(Renderer):
    """Renders jobs in `workers` killable processes; results cached by job key."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        memory_limit: int = MEMORY_LIMIT_BYTES,
        cache: DiskCache | None = None,
    ):
        self._count = workers or min(2, os.cpu_count() or 1)
        self._disk = cache
        self._memory_limit = memory_limit
        self._queue: queue.SimpleQueue[JsonnetJob | None] = queue.SimpleQueue()
        self._results: LRUCache[str, RenderResult] = LRUCache(CACHE_SIZE)
        self._doomed: LRUCache[str, str] = LRUCache(DOOMED_SIZE)  # source key -> why
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def prefetch(self, jobs: Iterable[JsonnetJob]) -> None:
        """Queue `jobs` for rendering (each key once), taking what the disk cache has."""
        jobs = list(jobs)
        stored: dict[str, RenderResult] = {}
        if self._disk is not None:
            for job in jobs:
                data = self._disk.get(job.key)
                result = parse_output(job, data) if data is not None else None
                if result is not None and result.finding is None:
                    stored[job.key] = result
        with self._cond:
            if self._closed:
                raise RuntimeError("renderer is closed")
            for job in jobs:
                if job.key in self._pending or job.key in self._results:
                    continue
                if job.key in stored:
                    self._results[job.key] = stored[job.key]
                    continue
                self._pending.add(job.key)
                self._queue.put(job)
            if self._pending:
                self._start()
            self._cond.notify_all()

    def render(self, job: JsonnetJob) -> RenderResult:
        """The result of `job`, rendering it now if it was not prefetched."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: job.key in self._results or job.key not in self._pending
                )
                result = self._results.get(job.key)
                if result is not None:
                    return result
            self.prefetch([job])  # evicted, or never asked for

    def close(self) -> None:
        """Stop the workers and their threads."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def _start(self) -> None:
        missing = self._count - len(self._threads)
        for i in range(missing):
            thread = threading.Thread(
                target=self._serve, name=f"jsonnet-{len(self._threads) + i}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def start(self) -> None:
        """Start the workers now, so that their start-up overlaps the caller's own work."""
        with self._cond:
            if not self._closed:
                self._start()

    def _serve(self) -> None:
        worker = self._spawn()
        job_id = 0
        try:
            while (job := self._queue.get()) is not None:
                with self._cond:
                    doomed = self._doomed.get(job.source_key) if job.source_key else None
                if doomed is not None:
                    result, healthy = RenderResult(None, job.finding(doomed)), True
                elif (worker := worker or self._spawn()) is None:
                    message = "the Jsonnet worker process could not start"
                    result, healthy = RenderResult(None, job.finding(message)), False
                else:
                    job_id += 1
                    result, healthy = self._run(worker, job, job_id)
                if worker is not None and not healthy:
                    worker.stop()
                    worker = None
                with self._cond:
                    self._results[job.key] = result
                    self._pending.discard(job.key)
                    self._cond.notify_all()
        finally:
            if worker is not None:
                worker.stop()

    def _spawn(self) -> _Worker | None:
        try:
            return _Worker(self._memory_limit)
        except OSError:
            return None  # each job then gets a finding instead of a hang

    def _run(self, worker: _Worker, job: JsonnetJob, job_id: int) -> tuple[RenderResult, bool]:
        request = json.dumps(job.request(job_id)).encode() + b"\n"
        try:
            header, payload = worker.ask(request, job.timeout)
        except _Timeout:
            message = (
                f"rendering took longer than {job.timeout:g} s (an endless loop?); "
                "make it simpler, or raise jsonnet.timeout_seconds in hubbot.yaml"
            )
            return self._doom(job, message), False
        except _WorkerGone:
            code = worker.stop()
            message = (
                f"rendering stopped the Jsonnet process (exit code {code}); it probably "
                f"needed more than {self._memory_limit >> 20} MB of memory"
            )
            return self._doom(job, message), False
        if not header.get("ok"):
            return RenderResult(None, job.finding(str(header.get("error")))), True
        result = parse_output(job, payload)
        if self._disk is not None and result.finding is None:
            self._disk.put(job.key, payload)
        return result, True

    def _doom(self, job: JsonnetJob, message: str) -> RenderResult:
        """Remember that this file runs out of resources; its finding."""
        if job.source_key:
            with self._cond:
                self._doomed[job.source_key] = message
        return RenderResult(None, job.finding(message))


_default: ProcessRenderer | None = None
_default_lock = threading.Lock()


def default_renderer(*, cache_dir: Path | None = None) -> Renderer:
    """The process-wide renderer (workers start on first use and stop at exit).

    The first call decides whether rendered output is also kept in `cache_dir`.
    """
    global _default
    with _default_lock:
        if _default is None:
            disk = DiskCache(cache_dir) if cache_dir is not None else None
            _default = ProcessRenderer(cache=disk)
            atexit.register(_default.close)
        return _default
