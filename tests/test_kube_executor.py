"""The Kubernetes executor against the API double, through the real `kubernetes.aio` client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bot.core.settings import KubernetesSettings
from bot.deploys.executor import MAX_LOG_BYTES, DeployJob
from bot.deploys.kubeapi import RBAC_RULES, describe
from bot.deploys.kubemanifest import (
    ANNOTATION_REPORTED,
    LABEL_JOB_ID,
    LABEL_REPO,
    MANAGED_BY,
    build_job,
    job_name,
    label_value,
)
from bot.deploys.kubernetes import (
    KubeConfigError,
    KubernetesExecutor,
    RetryPolicy,
    kube_configuration,
)
from bot.deploys.leases import LeaseLock
from bot.sandbox.kube import KubeSandbox
from bot.sandbox.kube.admission import admit_job

NS = "hubbot"
REPO = "2i2c-org/infrastructure"
TEMPLATE = {
    "spec": {"template": {"spec": {"containers": [{"name": "deploy", "image": "alpine:3.20"}]}}}
}
JOBS = r"/apis/batch/v1/namespaces/hubbot/jobs$"


def make_job(command: str = "echo ok", **kw: Any) -> DeployJob:
    fields: dict[str, Any] = {
        "id": "rollout-7-c1-staging",
        "repo": REPO,
        "cluster": "c1",
        "hub": "staging",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "command": command,
        "timeout_seconds": 30.0,
        "labels": {"delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
    }
    fields.update(kw)
    return DeployJob(**fields)


def make_executor(kube: KubeSandbox, **kw: Any) -> KubernetesExecutor:
    settings = KubernetesSettings(namespace=NS, job_template=TEMPLATE)
    retry = RetryPolicy(attempts=4, base_seconds=0.01, max_seconds=0.05)
    return KubernetesExecutor(kube.configuration(), settings, repo=REPO, retry=retry, **kw)


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def executor(kube: KubeSandbox) -> AsyncIterator[KubernetesExecutor]:
    ex = make_executor(kube)
    yield ex
    await ex.close()


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a task as a dying process would, and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---- outcomes --------------------------------------------------------------------------


async def test_success_reports_the_log_and_labels_the_job(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    job = make_job('echo "deploying $HUBBOT_TARGET at $HUBBOT_SHA"; echo "cmd=$HUBBOT_COMMAND"')
    result = await executor.run(job)
    assert (result.outcome, result.detail) == ("success", "exit code 0")
    assert result.log == f"deploying c1/staging at {job.sha}\ncmd={job.command}\n"
    assert result.duration_seconds > 0
    (stored,) = kube.jobs(NS)
    meta = stored["metadata"]
    assert meta["name"] == job_name(job)
    assert meta["labels"][MANAGED_BY] == "hubbot"
    assert meta["labels"][LABEL_REPO] == label_value(REPO)
    assert meta["labels"]["hubbot.dev/delivery"] == job.labels["delivery"]
    assert meta["annotations"][ANNOTATION_REPORTED] == "success"
    assert stored["spec"]["backoffLimit"] == 0
    assert stored["spec"]["activeDeadlineSeconds"] == 30 + executor.deadline_grace_seconds
    assert stored["spec"]["ttlSecondsAfterFinished"] == 3600


async def test_failure_reports_the_exit_code_and_output(executor: KubernetesExecutor) -> None:
    result = await executor.run(make_job("echo 'Error: UPGRADE FAILED' >&2; exit 3"))
    assert (result.outcome, result.detail) == ("failure", "exit code 3")
    assert "UPGRADE FAILED" in result.log


async def test_timeout_keeps_the_log_and_deletes_the_job(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    result = await executor.run(make_job("echo started; exec sleep 30", timeout_seconds=0.5))
    assert (result.outcome, result.detail) == ("failure", "timed out after 0.5 s")
    assert result.log == "started\n"
    await kube.wait_for(lambda: not kube.jobs() and kube.running_processes() == 0)


async def test_deadline_exceeded_while_no_bot_watched_is_a_timeout(kube: KubeSandbox) -> None:
    first = make_executor(kube, deadline_grace_seconds=0)
    job = make_job("exec sleep 30", timeout_seconds=1)
    task = asyncio.create_task(first.run(job))
    await kube.wait_for(lambda: kube.running_processes() == 1)
    await stop(task)
    await first.close()
    # Kubernetes enforces activeDeadlineSeconds on its own.
    await kube.wait_for(lambda: kube.running_processes() == 0 and not kube.pods(NS))
    second = make_executor(kube)
    (recovered,) = await second.recover()
    result = await second.watch(recovered)
    await second.close()
    assert (result.outcome, result.detail) == ("failure", "timed out after 1 s")


async def test_the_log_is_a_bounded_tail(executor: KubernetesExecutor) -> None:
    result = await executor.run(make_job("seq 1 40000; echo last-line"))
    assert result.ok
    assert len(result.log.encode()) <= MAX_LOG_BYTES + 100
    assert result.log.startswith("[... earlier output cut ...]")
    assert result.log.endswith("40000\nlast-line\n")


async def test_check_reads_the_server_version(executor: KubernetesExecutor) -> None:
    assert await executor.check() == "v1.31.0-hubbot-sandbox"


# ---- cancel ----------------------------------------------------------------------------


async def test_cancel_deletes_the_job_and_kills_the_process(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    job = make_job("exec sleep 30")
    task = asyncio.create_task(executor.run(job))
    await kube.wait_for(lambda: kube.running_processes() == 1)
    assert await executor.cancel(job.id) is True
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "cancelled"
    await kube.wait_for(
        lambda: kube.running_processes() == 0 and not kube.jobs() and not kube.pods()
    )
    assert kube.faults.count("DELETE", JOBS[:-1] + "/") == 1


async def test_cancel_from_another_replica_is_reported_as_cancelled(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    job = make_job("exec sleep 30")
    task = asyncio.create_task(executor.run(job))
    await kube.wait_for(lambda: kube.running_processes() == 1)
    other = make_executor(kube)
    assert await other.cancel(job.id) is True
    await other.close()
    assert (await asyncio.wait_for(task, 5)).outcome == "cancelled"


async def test_cancel_before_run_and_of_unknown_jobs(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    assert await executor.cancel("never-started") is False
    result = await executor.run(make_job(id="never-started"))
    assert result.outcome == "cancelled" and kube.jobs() == []


async def test_cancel_while_the_create_is_in_flight(kube: KubeSandbox) -> None:
    slow_retry = RetryPolicy(attempts=3, base_seconds=1.0, max_seconds=1.0)
    ex = KubernetesExecutor(
        kube.configuration(),
        KubernetesSettings(namespace=NS, job_template=TEMPLATE),
        repo=REPO,
        retry=slow_retry,
    )
    kube.faults.fail(503, method="POST", path=JOBS)
    job = make_job("exec sleep 30")
    task = asyncio.create_task(ex.run(job))
    await kube.wait_for(lambda: kube.faults.count("POST", JOBS, status=503) == 1)
    assert await ex.cancel(job.id) is True  # run() is backing off before its retry
    assert (await asyncio.wait_for(task, 5)).outcome == "cancelled"
    await kube.wait_for(lambda: not kube.jobs() and kube.running_processes() == 0)
    await ex.close()


# ---- faults ----------------------------------------------------------------------------


async def test_watch_disconnects_reconnect_and_get_the_right_result(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    kube.pause()
    kube.faults.drop_watch(after_events=0, times=3)
    kube.faults.fail(500, method="GET", watch=True, times=1)
    kube.faults.fail(410, method="GET", watch=True, times=1)
    task = asyncio.create_task(executor.run(make_job("echo fine; exit 2")))
    await kube.wait_for(lambda: kube.faults.count("GET", JOBS) == 5)  # the faulty watches
    kube.resume()
    result = await asyncio.wait_for(task, 10)
    assert (result.outcome, result.detail, result.log) == ("failure", "exit code 2", "fine\n")
    assert kube.faults.count("POST", JOBS) == 1


async def test_cut_stream_mid_job_still_reports(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    kube.faults.drop_watch(after_events=1, times=5)
    result = await executor.run(make_job("echo a; echo b"))
    assert result.ok and result.log == "a\nb\n"


@pytest.mark.parametrize("status", [500, 503, 429, 0])
async def test_transient_errors_are_retried(
    kube: KubeSandbox, executor: KubernetesExecutor, status: int
) -> None:
    kube.faults.fail(status, method="POST", path=JOBS, times=2)
    kube.faults.fail(status, method="GET", path="/jobs/", times=2)
    kube.faults.fail(status, method="GET", path="/log$", times=2)
    result = await executor.run(make_job())
    assert result.ok and result.log == "ok\n"
    assert kube.faults.count("POST", JOBS) == 3
    assert len(kube.jobs()) == 1


async def test_a_create_whose_answer_was_lost_is_adopted(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    kube.faults.fail(503, method="POST", path=JOBS, after=True)
    result = await executor.run(make_job())
    assert result.ok
    assert kube.faults.count("POST", JOBS, status=409) == 1
    assert len(kube.jobs()) == 1 and len(kube.pods()) == 1


async def test_a_job_left_by_an_earlier_process_is_adopted_not_duplicated(
    kube: KubeSandbox,
) -> None:
    kube.pause()
    first = make_executor(kube)
    job = make_job("echo once")
    task = asyncio.create_task(first.run(job))
    await kube.wait_for(lambda: len(kube.jobs()) == 1)
    await stop(task)
    await first.close()
    second = make_executor(kube)
    kube.resume()
    result = await second.run(job)
    await second.close()
    assert result.ok and result.log == "once\n"
    assert len(kube.pods()) == 1


async def test_a_foreign_job_with_the_same_name_is_an_error(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    job = make_job()
    other = build_job(
        make_job(command="something else"),
        TEMPLATE,
        namespace=NS,
        ttl_seconds=60,
        deadline_seconds=60,
    )
    other["metadata"]["name"] = job_name(job)
    kube.store.create("jobs", NS, admit_job(other), "batch")
    result = await executor.run(job)
    assert result.outcome == "error" and "exists for another deploy" in result.detail


@pytest.mark.parametrize(("status", "times", "posts"), [(403, 1, 1), (422, 1, 1), (500, 10, 4)])
async def test_api_errors_are_reported_clearly(
    kube: KubeSandbox, executor: KubernetesExecutor, status: int, times: int, posts: int
) -> None:
    kube.faults.fail(status, method="POST", path=JOBS, times=times, message="not today")
    result = await executor.run(make_job())
    assert result.outcome == "error"
    assert f"create Job {job_name(make_job())}: {status}" in result.detail
    assert result.detail.endswith(": not today")
    assert kube.faults.count("POST", JOBS) == posts


async def test_a_job_deleted_by_someone_else_is_an_error(
    kube: KubeSandbox, executor: KubernetesExecutor
) -> None:
    kube.pause()
    job = make_job()
    task = asyncio.create_task(executor.run(job))
    await kube.wait_for(lambda: len(kube.jobs()) == 1)
    kube.store.delete("jobs", NS, job_name(job))
    result = await asyncio.wait_for(task, 5)
    assert result.outcome == "error" and "deleted before it finished" in result.detail


async def test_no_token_reaches_logs_or_results(
    kube: KubeSandbox, executor: KubernetesExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kube.faults.fail(500, times=3)
    kube.faults.fail(403, method="POST", message="forbidden")
    result = await executor.run(make_job())
    assert kube.token not in caplog.text and kube.token not in repr(result)


def test_connection_errors_are_described_without_request_headers() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": "Bearer s3cret"}))
    info = aiohttp.RequestInfo(URL("https://k8s"), "GET", headers, URL("https://k8s"))
    exc = aiohttp.ClientResponseError(info, (), status=502, message="bad gateway")
    assert "s3cret" in repr(exc)  # why describe() exists
    assert "s3cret" not in describe(exc) and "bad gateway" in describe(exc)


# ---- restart ---------------------------------------------------------------------------


async def test_restart_mid_deploy_resumes_and_reports_the_real_result(
    kube: KubeSandbox, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    job = make_job(
        'echo "waiting"; read word < "$GATE"; echo "got $word"; exit 4',
        env={"GATE": str(gate)},
        secret_files=("config/clusters/c1/enc-staging.secret.values.yaml",),
    )
    first = make_executor(kube)
    task = asyncio.create_task(first.run(job))
    await kube.wait_for(lambda: kube.running_processes() == 1)
    await stop(task)  # the bot dies mid-deploy...
    await first.close()  # ...without cancelling anything
    assert kube.running_processes() == 1  # the deploy itself goes on

    second = make_executor(kube)
    assert await second.recover() == [job]
    watching = asyncio.create_task(second.watch(job))
    await asyncio.to_thread(gate.write_text, "go\n")
    result = await asyncio.wait_for(watching, 10)
    assert (result.outcome, result.detail) == ("failure", "exit code 4")
    assert result.log == "waiting\ngot go\n"
    assert kube.faults.count("POST", JOBS) == 1  # watch created nothing
    assert await second.recover() == []  # reported: not recovered again
    await second.close()


async def test_recover_finds_unreported_finished_jobs_of_this_repo_only(
    kube: KubeSandbox,
) -> None:
    for job in (make_job(id="mine"), make_job(id="theirs", repo="someone/else")):
        manifest = build_job(job, TEMPLATE, namespace=NS, ttl_seconds=60, deadline_seconds=60)
        kube.store.create("jobs", NS, admit_job(manifest), "batch")
    await kube.wait_for(
        lambda: (
            len(kube.pods()) == 2 and all(p["status"]["phase"] == "Succeeded" for p in kube.pods())
        )
    )
    ex = make_executor(kube)
    (found,) = await ex.recover()
    assert found.id == "mine" and found.repo == REPO
    result = await ex.watch(found)
    assert result.ok and result.log == "ok\n"
    assert await ex.recover() == []
    await ex.close()


async def test_recover_skips_jobs_it_cannot_read(
    kube: KubeSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = build_job(make_job(), TEMPLATE, namespace=NS, ttl_seconds=60, deadline_seconds=60)
    manifest["metadata"]["annotations"]["hubbot.dev/deploy-job"] = "{broken"
    kube.pause()
    kube.store.create("jobs", NS, admit_job(manifest), "batch")
    ex = make_executor(kube)
    assert await ex.recover() == []
    await ex.close()
    assert "no readable hubbot annotation" in caplog.text
    assert kube.jobs()[0]["metadata"]["labels"][LABEL_JOB_ID] == make_job().id


# ---- RBAC ------------------------------------------------------------------------------


def rbac_of(method: str, path: str, watch: bool) -> tuple[str, str, str] | None:
    """The (group, resource, verb) an API server authorizes a request as."""
    parts = path.strip("/").split("/")
    if parts[0] not in ("api", "apis") or "namespaces" not in parts:
        return None
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]
    resource = "/".join([rest[0], *rest[2:]])
    named = len(rest) > 1
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if method == "GET":
        verb = "get" if named else ("watch" if watch else "list")
    else:
        verb = verbs[method]
    return group, resource, verb


async def test_the_executor_and_leases_use_exactly_the_declared_rbac(kube: KubeSandbox) -> None:
    ex = make_executor(kube)
    await ex.check()
    assert (await ex.run(make_job())).ok
    assert (await ex.run(make_job("exec sleep 30", id="slow", timeout_seconds=0.2))).detail
    task = asyncio.create_task(ex.run(make_job("exec sleep 30", id="cancelled")))
    await kube.wait_for(lambda: kube.running_processes() == 1)
    await ex.cancel("cancelled")
    await task
    await ex.recover()
    lock = LeaseLock(kube.configuration(), namespace=NS, repo=REPO, identity="a")
    async with lock.hold("c1", "staging"):
        pass
    async with lock.hold("c1", "staging"):  # take the released lease: an update
        pass
    await lock.close()
    await ex.close()
    used = {rbac_of(r.method, r.path, r.watch) for r in kube.faults.requests} - {None}
    declared = {(g, res, v) for g, res, verbs in RBAC_RULES for v in verbs}
    assert used == declared


# ---- configuration ---------------------------------------------------------------------


def test_explicit_configuration_carries_host_and_token() -> None:
    configuration = kube_configuration(host="https://k8s.example:6443/", token="t0k")
    assert configuration.host == "https://k8s.example:6443"
    assert configuration.api_key == {"BearerToken": "t0k"}
    assert "t0k" not in configuration.to_debug_report()


def test_in_cluster_configuration_outside_a_cluster_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="not running in a cluster"):
        kube_configuration()
