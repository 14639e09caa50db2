"""The Kubernetes executor: one batch/v1 Job per deploy target, through `kubernetes.aio`.

`run(job)` creates the Job (see `kubemanifest` for what goes in it), watches it to its end
and reports the tail of its pod's log. The Job, not this process, holds the state: it is
found again by label after a restart (`recover()`), and `watch(job)` resumes without
creating anything. Cancelling the task that awaits `run()` leaves the Job running (a
shutting-down replica must not abort a helm upgrade); `cancel(job_id)` deletes it.

Kubernetes API surface used (the bot's Role needs exactly this, `kubeapi.RBAC_RULES`):
- batch/v1 jobs: create, get, list, watch, patch, delete;
- v1 pods: list; v1 pods/log: get;
- coordination.k8s.io/v1 leases: get, create, update (see `leases.py`);
- `/version/` (readiness check; open to every authenticated client by default).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import time
from typing import Any

from kubernetes.aio import client, watch
from kubernetes.aio.client.exceptions import ApiException

from bot.core.settings import KubernetesSettings
from bot.deploys.executor import MAX_LOG_BYTES, DeployJob, DeployResult, Executor, Outcome, tail
from bot.deploys.kubeapi import (
    CONNECTION_ERRORS,
    RETRYABLE,
    KubeApiError,
    KubeConfigError,
    RetryPolicy,
    api_error,
    call,
    check_job_template,
    describe,
    kube_configuration,
)
from bot.deploys.kubemanifest import (
    ANNOTATION_REPORTED,
    ANNOTATION_STOPPED,
    LABEL_JOB_ID,
    MANAGED_BY,
    MANAGER,
    build_job,
    decode_job,
    deploy_container,
    job_name,
    label_value,
    repo_selector,
)

__all__ = [
    "KubeApiError",
    "KubeConfigError",
    "KubernetesExecutor",
    "RetryPolicy",
    "check_job_template",
    "kube_configuration",
]
logger = logging.getLogger(__name__)
CUT = "[... earlier output cut ...]\n"  # as executor.tail() marks it


def _terminal(obj: client.V1Job) -> client.V1JobCondition | None:
    for cond in (obj.status.conditions if obj.status else None) or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond
    return None


def _annotations(obj: client.V1Job) -> dict[str, str]:
    return dict((obj.metadata.annotations if obj.metadata else None) or {})


class _Deleted(Exception):
    """The watched Job was deleted; carries its last state."""

    def __init__(self, obj: client.V1Job) -> None:
        self.obj = obj


class KubernetesExecutor(Executor):
    """Runs each deploy as a Kubernetes Job and survives restarts by finding Jobs by label."""

    name = "kubernetes"

    def __init__(
        self,
        configuration: client.Configuration,
        settings: KubernetesSettings,
        *,
        repo: str | None = None,
        retry: RetryPolicy | None = None,
        watch_seconds: int = 240,
        deadline_grace_seconds: int = 30,
        log_tail_lines: int = 2000,
    ) -> None:
        check_job_template(settings)
        self.settings = settings
        self.namespace = settings.namespace
        self.repo = repo
        self.retry = retry or RetryPolicy()
        self.watch_seconds = watch_seconds
        self.deadline_grace_seconds = deadline_grace_seconds
        self.log_tail_lines = log_tail_lines
        self._api = client.ApiClient(configuration)
        self._batch = client.BatchV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self._active: dict[str, str] = {}  # job id -> Job name, for jobs this process follows
        self._cancelled: set[str] = set()

    async def close(self) -> None:
        """Close the API client (Jobs keep running; a new executor can recover them)."""
        await self._api.close()  # type: ignore[no-untyped-call]

    async def check(self) -> str:
        """The API server's version (GET /version/), as a readiness check."""
        info = await call("GET /version/", client.VersionApi(self._api).get_code, self.retry)
        return str(info.git_version)

    # -- the Executor interface ------------------------------------------------------------

    async def run(self, job: DeployJob) -> DeployResult:
        """Create the Job (or adopt one of the same name from an earlier process), watch it."""
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            return DeployResult("cancelled", "cancelled before it started")
        started = time.monotonic()
        self._active[job.id] = job_name(job)
        try:
            await self._create(job)
            if job.id in self._cancelled:  # cancelled while the create was in flight
                await self._stop(job_name(job), "cancel")
        except KubeApiError as exc:
            self._active.pop(job.id, None)
            self._cancelled.discard(job.id)
            logger.error("deploy %s of %s: %s", job.id, job.target, exc, extra=_extra(job))
            return DeployResult("error", str(exc))
        return await self._watch(job, started)

    async def watch(self, job: DeployJob) -> DeployResult:
        """Follow an existing Job (created by `run` here or by an earlier process) to its end."""
        return await self._watch(job, None)

    async def _watch(self, job: DeployJob, started: float | None) -> DeployResult:
        name = job_name(job)
        self._active[job.id] = name
        try:
            result = await self._follow(job, name, started)
            if started is not None:  # timed here: Kubernetes timestamps have 1 s resolution
                result = dataclasses.replace(result, duration_seconds=time.monotonic() - started)
        except KubeApiError as exc:
            result = DeployResult("error", f"lost track of Job {name}: {exc}")
        finally:
            self._active.pop(job.id, None)
            self._cancelled.discard(job.id)
        logger.info(
            "deploy %s of %s: %s (%s)",
            job.id,
            job.target,
            result.outcome,
            result.detail,
            extra=_extra(job),
        )
        return result

    async def cancel(self, job_id: str) -> bool:
        """Delete the job's Kubernetes Job (any replica may call this); True if one was running.

        A job not created yet is refused when its `run()` comes. API failures are logged and
        give False: the Job may still be running.
        """
        self._cancelled.add(job_id)
        selector = f"{MANAGED_BY}={MANAGER},{LABEL_JOB_ID}={label_value(job_id)}"
        stopped = False
        try:
            jobs = await call(
                "list Jobs to cancel",
                lambda: self._batch.list_namespaced_job(self.namespace, label_selector=selector),
                self.retry,
            )
            for obj in jobs.items:
                if _terminal(obj) is None and obj.metadata and obj.metadata.name:
                    await self._stop(obj.metadata.name, "cancel")
                    stopped = True
        except KubeApiError as exc:
            logger.error("cancel %s: %s", job_id, exc)
            return False
        return stopped or job_id in self._active

    async def recover(self) -> list[DeployJob]:
        """hubbot's Jobs (of this repo) not finished, or finished with no result handed back."""
        jobs = await call(
            "list hubbot Jobs",
            lambda: self._batch.list_namespaced_job(
                self.namespace, label_selector=repo_selector(self.repo)
            ),
            self.retry,
        )
        found = []
        for obj in jobs.items:
            annotations = _annotations(obj)
            if _terminal(obj) is not None and ANNOTATION_REPORTED in annotations:
                continue
            if obj.metadata and obj.metadata.deletion_timestamp is not None:
                continue
            job = decode_job(annotations)
            if job is None or job_name(job) != (obj.metadata.name if obj.metadata else None):
                logger.warning(
                    "Job %s has no readable hubbot annotation; skipped",
                    obj.metadata.name if obj.metadata else "?",
                )
                continue
            found.append(job)
        return found

    # -- creating ---------------------------------------------------------------------------

    async def _create(self, job: DeployJob) -> None:
        name = job_name(job)
        deadline = math.ceil(job.timeout_seconds) + self.deadline_grace_seconds
        manifest = build_job(
            job,
            self.settings.job_template,
            namespace=self.namespace,
            ttl_seconds=self.settings.ttl_seconds_after_finished,
            deadline_seconds=deadline,
        )
        body = client.V1Job.from_dict(manifest)
        assert body is not None  # checked at construction; a manifest is never None
        try:
            await call(
                f"create Job {name}",
                lambda: self._batch.create_namespaced_job(self.namespace, body),
                self.retry,
            )
            logger.info(
                "deploy %s of %s: created Job %s", job.id, job.target, name, extra=_extra(job)
            )
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            existing = await self._get(name)
            if existing is None or decode_job(_annotations(existing)) != job:
                raise KubeApiError(
                    f"create Job {name}",
                    409,
                    "Conflict",
                    "a Job of that name exists for another deploy",
                ) from None
            # Ours from before a restart, or a create whose answer was lost: adopt it.
            logger.info(
                "deploy %s of %s: adopted existing Job %s",
                job.id,
                job.target,
                name,
                extra=_extra(job),
            )

    async def _get(self, name: str) -> client.V1Job | None:
        try:
            return await call(
                f"get Job {name}",
                lambda: self._batch.read_namespaced_job(name, self.namespace),
                self.retry,
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    # -- following --------------------------------------------------------------------------

    async def _follow(self, job: DeployJob, name: str, started: float | None) -> DeployResult:
        """GET, then watch from its resourceVersion; after any disconnect or 410, again."""
        failures = 0
        while True:
            obj = await self._get(name)
            if obj is None:
                return self._vanished(job, name, None)
            if _terminal(obj) is not None:
                return await self._result(job, obj)
            left = self._time_left(job, obj, started)
            if left <= 0:
                return await self._time_out(job, obj)
            watch_began = time.monotonic()
            rv = obj.metadata.resource_version if obj.metadata else None
            try:
                async with asyncio.timeout(left):
                    final = await self._stream(name, rv)
            except TimeoutError:
                continue  # the next turn times the job out
            except _Deleted as gone:
                return self._vanished(job, name, gone.obj)
            if final is not None:
                return await self._result(job, final)
            # A stream that ends at once, again and again, must not spin: back off.
            failures = failures + 1 if time.monotonic() - watch_began < 1.0 else 0
            if failures > 1:
                await asyncio.sleep(self.retry.delay(min(failures - 2, 5)))

    async def _stream(self, name: str, rv: str | None) -> client.V1Job | None:
        """Watch one Job; its final state, or None when the stream ended early (reconnect)."""
        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            async for event in w.stream(  # type: ignore[no-untyped-call]
                self._batch.list_namespaced_job,
                self.namespace,
                field_selector=f"metadata.name={name}",
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=self.watch_seconds,
                _request_timeout=float(self.watch_seconds + 30),
            ):
                obj = event["object"]
                if event["type"] == "DELETED":
                    raise _Deleted(obj)
                if event["type"] != "BOOKMARK" and _terminal(obj) is not None:
                    return obj  # type: ignore[no-any-return]
            return None
        except ApiException as exc:
            if exc.status != 410 and exc.status not in RETRYABLE:
                raise api_error(f"watch Job {name}", exc) from None
            logger.info("watch Job %s: %s %s; re-reading it", name, exc.status, exc.reason)
            return None
        except CONNECTION_ERRORS as exc:
            logger.info("watch Job %s: %s; reconnecting", name, describe(exc))
            return None
        finally:
            await w.close()  # type: ignore[no-untyped-call]

    def _time_left(self, job: DeployJob, obj: client.V1Job, started: float | None) -> float:
        if started is not None:  # created here: the local clock is finer than the API's 1 s
            return job.timeout_seconds - (time.monotonic() - started)
        created = obj.metadata.creation_timestamp if obj.metadata else None
        if created is None:
            return job.timeout_seconds
        elapsed = (dt.datetime.now(dt.UTC) - created).total_seconds()
        return job.timeout_seconds - elapsed

    async def _time_out(self, job: DeployJob, obj: client.V1Job) -> DeployResult:
        name = obj.metadata.name if obj.metadata else job_name(job)
        log, _, waiting = await self._pod_report(obj)
        await self._stop(str(name), "timeout")
        detail = f"timed out after {job.timeout_seconds:g} s" + (f" ({waiting})" if waiting else "")
        return DeployResult("failure", detail, log, duration_seconds=job.timeout_seconds)

    def _vanished(self, job: DeployJob, name: str, obj: client.V1Job | None) -> DeployResult:
        why = _annotations(obj).get(ANNOTATION_STOPPED) if obj is not None else None
        if why == "cancel" or job.id in self._cancelled:
            return DeployResult("cancelled", "cancelled")
        if why == "timeout":
            return DeployResult("failure", f"timed out after {job.timeout_seconds:g} s")
        return DeployResult("error", f"Job {name} was deleted before it finished")

    async def _stop(self, name: str, why: str) -> None:
        """Mark why, then delete the Job and (Background propagation) its pods."""
        patch = {"metadata": {"annotations": {ANNOTATION_STOPPED: why}}}
        try:
            await call(
                f"annotate Job {name}",
                lambda: self._batch.patch_namespaced_job(
                    name, self.namespace, patch, _content_type="application/merge-patch+json"
                ),
                self.retry,
            )
            await call(
                f"delete Job {name}",
                lambda: self._batch.delete_namespaced_job_without_preload_content(
                    name, self.namespace, propagation_policy="Background"
                ),
                self.retry,
            )
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    # -- reporting --------------------------------------------------------------------------

    async def _result(self, job: DeployJob, obj: client.V1Job) -> DeployResult:
        cond = _terminal(obj)
        assert cond is not None
        log, exit_detail, _ = await self._pod_report(obj)
        status = obj.status
        start = (status.start_time if status else None) or (
            obj.metadata.creation_timestamp if obj.metadata else None
        )
        end = (status.completion_time if status else None) or cond.last_transition_time
        duration = (end - start).total_seconds() if start and end else 0.0
        outcome: Outcome = "failure"
        if cond.type == "Complete":
            outcome, detail = "success", exit_detail or "completed"
        elif cond.reason == "DeadlineExceeded":
            detail = f"timed out after {job.timeout_seconds:g} s"
        elif cond.reason == "BackoffLimitExceeded":
            detail = exit_detail or f"failed: {cond.message}"
        else:
            detail = f"{cond.reason}: {cond.message}"
        result = DeployResult(outcome, detail, log, duration_seconds=max(0.0, duration))
        await self._mark_reported(obj, outcome)
        return result

    async def _mark_reported(self, obj: client.V1Job, outcome: str) -> None:
        name = str(obj.metadata.name if obj.metadata else "")
        patch = {"metadata": {"annotations": {ANNOTATION_REPORTED: outcome}}}
        try:
            await call(
                f"annotate Job {name}",
                lambda: self._batch.patch_namespaced_job(
                    name, self.namespace, patch, _content_type="application/merge-patch+json"
                ),
                self.retry,
            )
        except KubeApiError as exc:  # the result stands; a restart may report it again
            logger.warning("could not mark Job %s reported: %s", name, exc)

    async def _pod_report(self, obj: client.V1Job) -> tuple[str, str, str]:
        """(log tail, "exit code N" detail, waiting reason) of the Job's newest pod."""
        selector = obj.spec.selector.match_labels if obj.spec and obj.spec.selector else None
        if not selector:
            return "", "", ""
        text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        try:
            pods = await call(
                "list the Job's pods",
                lambda: self._core.list_namespaced_pod(self.namespace, label_selector=text),
                self.retry,
            )
        except KubeApiError as exc:
            return f"(pod log unavailable: {exc})", "", ""
        if not pods.items:
            return "(no pod log: the Job has no pod)", "", ""
        pod = max(
            pods.items,
            key=lambda p: (
                (p.metadata.creation_timestamp if p.metadata else None)
                or dt.datetime.min.replace(tzinfo=dt.UTC)
            ),
        )
        container, detail, waiting = _pod_state(pod)
        log = await self._log(str(pod.metadata.name if pod.metadata else ""), container)
        return log, detail, waiting

    async def _log(self, pod: str, container: str) -> str:
        async def read() -> bytes:
            # tailLines bounds what the kubelet sends; limitBytes guards against huge lines.
            response = await self._core.read_namespaced_pod_log_without_preload_content(
                pod,
                self.namespace,
                container=container,
                tail_lines=self.log_tail_lines,
                limit_bytes=4 * MAX_LOG_BYTES,
            )
            try:
                if response.status >= 400:
                    raise ApiException(
                        status=response.status,
                        reason=response.reason,
                        body=(await response.read()).decode("utf-8", "replace"),
                    )
                return await response.read()
            finally:
                response.release()

        try:
            data = await call(f"read log of pod {pod}", read, self.retry)
        except KubeApiError as exc:
            return f"(pod log unavailable: {exc})"
        text = tail(data)
        if data.count(b"\n") >= self.log_tail_lines and not text.startswith(CUT):
            text = CUT + text  # the kubelet sent only the last lines
        return text


def _extra(job: DeployJob) -> dict[str, str]:
    """Log record fields: the delivery that asked for this deploy.

    Named apart from `delivery_id`, which the web layer's record factory already sets on
    every record (logging refuses an `extra` key that overwrites a record attribute).
    """
    return {"deploy_delivery": job.labels.get("delivery", "-")}


def _pod_state(pod: Any) -> tuple[str, str, str]:
    """(container whose log to read, "exit code N" detail, waiting reason) for a pod."""
    spec = pod.spec
    containers = [c.name for c in spec.containers] if spec else []
    name = containers[deploy_container([{"name": n} for n in containers])] if containers else ""
    status = pod.status
    for init in (status.init_container_statuses if status else None) or []:
        term = init.state.terminated if init.state else None
        if term is not None and term.exit_code != 0:
            return init.name, f"init container {init.name} exited with code {term.exit_code}", ""
        if (
            init.state
            and init.state.waiting
            and init.state.waiting.reason not in (None, "PodInitializing")
        ):
            w = init.state.waiting
            return (
                init.name,
                "",
                f"init container {init.name} waiting: {w.reason}: {w.message or ''}".strip(),
            )
    for cs in (status.container_statuses if status else None) or []:
        if cs.name != name or cs.state is None:
            continue
        if cs.state.terminated is not None:
            return name, f"exit code {cs.state.terminated.exit_code}", ""
        if cs.state.waiting is not None and cs.state.waiting.reason != "PodInitializing":
            w = cs.state.waiting
            return name, "", f"pod waiting: {w.reason}: {w.message or ''}".strip()
    return name, "", ""
