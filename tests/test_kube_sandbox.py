"""The Kubernetes API double, driven by the real `kubernetes.aio` client over loopback.

These tests keep the double honest: complete objects that the client's strict models accept
(and no invented fields), Kubernetes' status codes and Status bodies, watch semantics, and
a kubelet that really runs, kills and times out processes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes.aio import client, watch
from kubernetes.aio.client.exceptions import ApiException

from bot.deploys.kubeapi import dropped_fields
from bot.sandbox.kube import KubeSandbox
from bot.sandbox.kube.objects import ApiError, parse_selector, selector_matches

NS = "hubbot"


@pytest.fixture
async def kube() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox(
        secrets={"checkout": {"token": "s3cret-token"}}, bookmark_seconds=0.05
    ) as sandbox:
        yield sandbox


@pytest.fixture
async def api(kube: KubeSandbox) -> AsyncIterator[client.ApiClient]:
    api_client = client.ApiClient(kube.configuration())
    yield api_client
    await api_client.close()


def job_body(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "alpine:3.20"}
    if script:
        container["command"] = ["/bin/sh", "-c", script]
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "test"}},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}, **spec},
    }


def finished(kube: KubeSandbox, name: str) -> bool:
    job = kube.job(NS, name)
    conds = (job or {}).get("status", {}).get("conditions") or []
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds)


def condition(kube: KubeSandbox, name: str) -> tuple[str, str]:
    job = kube.job(NS, name)
    assert job is not None
    cond = next(c for c in job["status"]["conditions"] if c["type"] in ("Complete", "Failed"))
    return cond["type"], cond["reason"]


async def raw(kube: KubeSandbox, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {kube.token}", **kw.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, kube.url + path, headers=headers, **kw) as resp,
    ):
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


def assert_complete(model: Any, data: dict[str, Any]) -> None:
    """The client's strict model accepts `data`, and the double sent no field it lacks."""
    parsed = model.from_dict(data)
    assert dropped_fields(data, json.loads(parsed.to_json()), "") == []


# ---- discovery and auth ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/version", "/version/"])
async def test_version_is_served_with_and_without_slash(kube: KubeSandbox, path: str) -> None:
    status, body = await raw(kube, "GET", path, headers={"Authorization": ""})
    assert status == 200
    assert_complete(client.VersionInfo, body)


async def test_discovery_documents_parse(api: client.ApiClient) -> None:
    versions = await client.CoreApi(api).get_api_versions()
    assert versions.versions == ["v1"]
    groups = await client.ApisApi(api).get_api_versions()
    assert {g.name for g in groups.groups} == {"batch", "coordination.k8s.io"}


@pytest.mark.parametrize("header", ["", "Bearer wrong", "Basic abc"])
async def test_a_bad_token_gets_401_status(kube: KubeSandbox, header: str) -> None:
    status, body = await raw(
        kube, "GET", f"/apis/batch/v1/namespaces/{NS}/jobs", headers={"Authorization": header}
    )
    assert status == 401
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)


# ---- jobs, pods, logs --------------------------------------------------------------------


async def test_a_job_runs_and_every_object_is_complete(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    created = await batch.create_namespaced_job(NS, job_body("ok", "echo hello; echo $HOSTNAME"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.spec.selector.match_labels == {
        "batch.kubernetes.io/controller-uid": created.metadata.uid
    }
    await kube.wait_for(lambda: finished(kube, "ok"))
    job = await batch.read_namespaced_job("ok", NS)
    assert int(job.metadata.resource_version) > int(created.metadata.resource_version)
    assert [c.type for c in job.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    assert (job.status.succeeded, job.status.active) == (1, 0)
    pods = await core.list_namespaced_pod(NS, label_selector="batch.kubernetes.io/job-name=ok")
    (pod,) = pods.items
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert pod.metadata.owner_references[0].uid == created.metadata.uid
    log = await core.read_namespaced_pod_log(pod.metadata.name, NS)
    assert log == f"hello\n{pod.metadata.name}\n"
    for path, model in [
        (f"/apis/batch/v1/namespaces/{NS}/jobs/ok", client.V1Job),
        (f"/apis/batch/v1/namespaces/{NS}/jobs", client.V1JobList),
        (f"/api/v1/namespaces/{NS}/pods", client.V1PodList),
        (f"/api/v1/namespaces/{NS}/pods/{pod.metadata.name}", client.V1Pod),
        (f"/apis/batch/v1/namespaces/{NS}/jobs/nope", client.V1Status),
    ]:
        _, body = await raw(kube, "GET", path)
        assert_complete(model, body)


async def test_duplicate_create_is_409_already_exists(api: client.ApiClient) -> None:
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, job_body("dup", "true"))
    with pytest.raises(ApiException) as err:
        await batch.create_namespaced_job(NS, job_body("dup", "true"))
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["details"] == {"name": "dup", "group": "batch", "kind": "jobs"}


async def test_missing_job_is_404_not_found(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as err:
        await client.BatchV1Api(api).read_namespaced_job("ghost", NS)
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'jobs.batch "ghost" not found'


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["metadata"]["labels"].update(x="v" * 64), "metadata.labels"),
        (lambda b: b["metadata"]["labels"].update({"bad key!": "v"}), "metadata.labels"),
        (lambda b: b["metadata"].update(name="j" * 64), "metadata.name"),
        (lambda b: b["metadata"].update(name="Upper"), "metadata.name"),
        (lambda b: b["spec"]["template"]["spec"].update(restartPolicy="Always"), "restartPolicy"),
        (lambda b: b["spec"]["template"]["spec"]["containers"][0].pop("image"), "image"),
        (lambda b: b["spec"].update(activeDeadlineSeconds=0), "activeDeadlineSeconds"),
    ],
)
async def test_invalid_jobs_get_422(kube: KubeSandbox, change: Any, field: str) -> None:
    body = job_body("valid-name", "true")
    change(body)
    code, status = await raw(kube, "POST", f"/apis/batch/v1/namespaces/{NS}/jobs", json=body)
    assert (code, status["reason"]) == (422, "Invalid")
    assert any(field in cause["field"] for cause in status["details"]["causes"])
    assert kube.jobs() == []


async def test_unknown_namespace_is_404_when_namespaces_are_declared() -> None:
    async with KubeSandbox(namespaces=["hubbot"]) as kube:
        status, body = await raw(
            kube, "POST", "/apis/batch/v1/namespaces/other/jobs", json=job_body("x", "true")
        )
    assert status == 404 and body["message"] == 'namespaces "other" not found'


async def test_failure_sets_backoff_limit_exceeded_and_retries_up_to_the_limit(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    body = job_body("bad", "echo oops; exit 3")
    body["spec"]["backoffLimit"] = 1
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    await kube.wait_for(lambda: finished(kube, "bad"))
    assert condition(kube, "bad") == ("Failed", "BackoffLimitExceeded")
    pods = kube.pods(NS)
    assert len(pods) == 2  # the first attempt and one retry
    assert {
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods
    } == {3}
    assert kube.job(NS, "bad")["status"]["failed"] == 2  # type: ignore[index]


async def test_deadline_kills_the_process_and_deletes_the_pod(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    await client.BatchV1Api(api).create_namespaced_job(
        NS, job_body("slow", "sleep 30", activeDeadlineSeconds=1)
    )
    await kube.wait_for(lambda: kube.running_processes() == 1)
    await kube.wait_for(lambda: finished(kube, "slow"))
    assert condition(kube, "slow") == ("Failed", "DeadlineExceeded")
    await kube.wait_for(lambda: kube.running_processes() == 0 and not kube.pods(NS))


@pytest.mark.parametrize(
    ("policy", "survives"),
    [(None, True), ("Orphan", True), ("Background", False), ("Foreground", False)],
)
async def test_delete_propagation(
    kube: KubeSandbox, api: client.ApiClient, policy: str | None, survives: bool
) -> None:
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, job_body("victim", "sleep 30"))
    await kube.wait_for(lambda: kube.running_processes() == 1)
    response = await batch.delete_namespaced_job_without_preload_content(
        "victim", NS, propagation_policy=policy
    )
    assert response.status == 200
    response.release()
    assert kube.job(NS, "victim") is None
    if survives:  # batch/v1 Jobs orphan their pods unless told otherwise
        assert len(kube.pods(NS)) == 1 and kube.running_processes() == 1
    else:
        await kube.wait_for(lambda: kube.running_processes() == 0 and not kube.pods(NS))


async def test_env_secrets_and_var_expansion(kube: KubeSandbox, api: client.ApiClient) -> None:
    body = job_body("env", 'echo "$GREETING $(POD)" \'$$(POD)\' "$TOKEN"')
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "GREETING", "value": "hi-$(POD)"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "checkout", "key": "token"}}},
    ]
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    await kube.wait_for(lambda: finished(kube, "env"))
    (pod,) = kube.pods(NS)
    name = pod["metadata"]["name"]
    log = await client.CoreV1Api(api).read_namespaced_pod_log(name, NS)
    assert log == f"hi-{name} {name} $(POD) s3cret-token\n"


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"name": "main", "image": "deployer:1"}, "has no command; the sandbox cannot run"),
        ({"name": "main", "image": "x", "command": ["/no/such/binary"]}, "cannot run"),
        (
            {
                "name": "main",
                "image": "x",
                "command": ["true"],
                "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            },
            'CreateContainerConfigError: secret "nope" not found',
        ),
    ],
)
async def test_what_cannot_run_locally_says_so(
    kube: KubeSandbox, api: client.ApiClient, container: dict[str, Any], expected: str
) -> None:
    body = job_body("odd", "")
    body["spec"]["template"]["spec"]["containers"] = [container]
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    await kube.wait_for(lambda: finished(kube, "odd"))
    assert condition(kube, "odd") == ("Failed", "BackoffLimitExceeded")
    (pod,) = kube.pods(NS)
    log = await client.CoreV1Api(api).read_namespaced_pod_log(pod["metadata"]["name"], NS)
    assert expected in log


async def test_init_containers_run_first_and_share_the_working_directory(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    body = job_body("init", "cat checkout.txt")
    body["spec"]["template"]["spec"]["initContainers"] = [
        {
            "name": "checkout",
            "image": "git",
            "command": ["sh", "-c", "echo $X > checkout.txt"],
            "env": [{"name": "X", "value": "cloned"}],
        }
    ]
    await client.BatchV1Api(api).create_namespaced_job(NS, body)
    await kube.wait_for(lambda: finished(kube, "init"))
    (pod,) = kube.pods(NS)
    core = client.CoreV1Api(api)
    assert await core.read_namespaced_pod_log(pod["metadata"]["name"], NS, container="main") == (
        "cloned\n"
    )
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


async def test_log_tail_and_limit(kube: KubeSandbox, api: client.ApiClient) -> None:
    await client.BatchV1Api(api).create_namespaced_job(NS, job_body("log", "seq 1 100"))
    await kube.wait_for(lambda: finished(kube, "log"))
    name = kube.pods(NS)[0]["metadata"]["name"]
    core = client.CoreV1Api(api)
    assert await core.read_namespaced_pod_log(name, NS, tail_lines=2) == "99\n100\n"
    assert await core.read_namespaced_pod_log(name, NS, limit_bytes=4) == "1\n2\n"


async def test_pause_holds_pods_until_resume(kube: KubeSandbox, api: client.ApiClient) -> None:
    kube.pause()
    await client.BatchV1Api(api).create_namespaced_job(NS, job_body("held", "true"))
    await kube.wait_for(lambda: kube.job(NS, "held") is not None)
    assert kube.pods(NS) == [] and not finished(kube, "held")
    kube.resume()
    await kube.wait_for(lambda: finished(kube, "held"))
    assert condition(kube, "held")[0] == "Complete"


async def test_ttl_after_finished_deletes_the_job(kube: KubeSandbox, api: client.ApiClient) -> None:
    await client.BatchV1Api(api).create_namespaced_job(
        NS, job_body("short", "true", ttlSecondsAfterFinished=0)
    )
    await kube.wait_for(lambda: finished(kube, "short"))
    await kube.wait_for(lambda: kube.job(NS, "short") is None and not kube.pods(NS))


# ---- watch ------------------------------------------------------------------------------


async def test_watch_streams_events_after_a_resource_version(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    batch = client.BatchV1Api(api)
    before = await batch.list_namespaced_job(NS)
    kube.pause()
    await batch.create_namespaced_job(NS, job_body("w", "true"))
    kube.resume()
    seen: list[tuple[str, int]] = []
    w = watch.Watch()
    async for event in w.stream(
        batch.list_namespaced_job,
        NS,
        label_selector="app=test",
        resource_version=before.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        if event["type"] == "BOOKMARK":
            continue
        seen.append((event["type"], int(event["object"].metadata.resource_version)))
        if event["object"].status.conditions:
            break
    await w.close()
    assert seen[0][0] == "ADDED" and all(t == "MODIFIED" for t, _ in seen[1:])
    assert [rv for _, rv in seen] == sorted({rv for _, rv in seen})


async def test_watch_sends_bookmarks_when_asked(kube: KubeSandbox, api: client.ApiClient) -> None:
    batch = client.BatchV1Api(api)
    w = watch.Watch()
    async for event in w.stream(
        batch.list_namespaced_job, NS, allow_watch_bookmarks=True, timeout_seconds=5
    ):
        assert event["type"] == "BOOKMARK"
        assert w.resource_version == str(kube.store.rv)
        break
    await w.close()


async def test_compacted_history_gives_410_expired(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    batch = client.BatchV1Api(api)
    old = (await batch.list_namespaced_job(NS)).metadata.resource_version
    await batch.create_namespaced_job(NS, job_body("c", "true"))
    kube.compact()
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        async for _ in w.stream(
            batch.list_namespaced_job, NS, resource_version=old, timeout_seconds=5
        ):
            pass
    assert err.value.status == 410


async def test_watch_drop_cuts_the_stream(kube: KubeSandbox, api: client.ApiClient) -> None:
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(NS, job_body("a", "true"))
    await batch.create_namespaced_job(NS, job_body("b", "true"))
    kube.faults.drop_watch(after_events=1)
    w = watch.Watch()
    events = []
    with pytest.raises(aiohttp.ClientPayloadError):
        async for event in w.stream(batch.list_namespaced_job, NS, timeout_seconds=5):
            events.append(event)
    assert len(events) == 1


async def test_selector_leaving_objects_are_deleted_for_watchers(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    batch = client.BatchV1Api(api)
    kube.pause()
    await batch.create_namespaced_job(NS, job_body("m", "true"))
    rv = str(kube.store.rv)
    await batch.patch_namespaced_job(
        "m",
        NS,
        {"metadata": {"labels": {"app": "other"}}},
        _content_type="application/merge-patch+json",
    )
    w = watch.Watch()
    async for event in w.stream(
        batch.list_namespaced_job,
        NS,
        label_selector="app=test",
        resource_version=rv,
        timeout_seconds=5,
    ):
        assert event["type"] == "DELETED"
        break
    await w.close()


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1,b!=2", {"a": "1", "b": "3"}, True),
        ("a in (1, 2),!c", {"a": "2"}, True),
        ("a notin (1,2)", {"a": "1"}, False),
        ("a", {}, False),
        ("a!=1", {}, True),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(parse_selector(selector), labels) is expected


@pytest.mark.parametrize("selector", ["a=(", "=b", "a in (1", "a b"])
def test_bad_selectors_are_400(selector: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_selector(selector)
    assert err.value.code == 400


async def test_unsupported_field_selector_is_400(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as err:
        await client.BatchV1Api(api).list_namespaced_job(NS, field_selector="spec.foo=1")
    assert err.value.status == 400


# ---- leases -----------------------------------------------------------------------------


def lease_body(name: str, holder: str, rv: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {
        "metadata": meta,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "renewTime": "2024-01-01T00:00:00.123456Z",
        },
    }


async def test_lease_optimistic_concurrency(kube: KubeSandbox, api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    created = await leases.create_namespaced_lease(NS, lease_body("l", "a"))
    rv = created.metadata.resource_version
    updated = await leases.replace_namespaced_lease("l", NS, lease_body("l", "b", rv))
    assert int(updated.metadata.resource_version) > int(rv)
    assert updated.metadata.uid == created.metadata.uid
    assert updated.spec.renew_time.microsecond == 123456
    with pytest.raises(ApiException) as stale:
        await leases.replace_namespaced_lease("l", NS, lease_body("l", "c", rv))
    assert stale.value.status == 409 and json.loads(stale.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as unconditional:
        await leases.replace_namespaced_lease("l", NS, lease_body("l", "c"))
    assert unconditional.value.status == 422
    with pytest.raises(ApiException) as precondition:
        await leases.delete_namespaced_lease(
            "l", NS, body={"preconditions": {"resourceVersion": rv}}
        )
    assert precondition.value.status == 409
    assert (await leases.read_namespaced_lease("l", NS)).spec.holder_identity == "b"
    _, body = await raw(kube, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/l")
    assert_complete(client.V1Lease, body)
    await leases.delete_namespaced_lease("l", NS)
    assert kube.leases(NS) == []


# ---- bad input -------------------------------------------------------------------------


JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


@pytest.mark.parametrize(
    ("method", "path", "kw", "status"),
    [
        ("POST", JOBS, {"data": b"{not json"}, 400),
        ("POST", JOBS, {"json": [1, 2]}, 400),
        ("POST", JOBS, {"json": {"kind": "Pod", "metadata": {"name": "x"}}}, 400),
        ("POST", JOBS, {"json": {"metadata": "x"}}, 400),
        ("POST", JOBS, {"json": {"metadata": {"name": "x"}}}, 422),
        ("POST", JOBS, {"json": {"metadata": {"name": "x"}, "spec": {"template": 5}}}, 422),
        ("POST", JOBS, {"json": {"metadata": {"name": "x", "labels": ["a"]}, "spec": {}}}, 422),
        ("POST", JOBS, {"json": {"metadata": {"name": "x", "namespace": "other"}}}, 400),
        ("POST", LEASES, {"json": {"metadata": {"name": "l"}, "spec": "x"}}, 422),
        ("POST", LEASES, {"json": {"metadata": {"name": "l"}, "spec": {"renewTime": "x"}}}, 422),
        ("POST", LEASES, {"json": {"metadata": {"name": "l", "annotations": {"a": 1}}}}, 422),
        ("POST", f"/api/v1/namespaces/{NS}/pods", {"json": {"metadata": {"name": "p"}}}, 405),
        ("GET", JOBS + "?watch=true&resourceVersion=abc", {}, 400),
        ("GET", JOBS + "?watch=true&timeoutSeconds=soon", {}, 400),
        ("GET", JOBS + "?labelSelector=a%20in%20(", {}, 400),
        ("GET", "/apis/batch/v1/namespaces/x/cronjobs", {}, 404),
        ("DELETE", JOBS + "/nope", {}, 404),
    ],
)
async def test_bad_requests_get_a_status_never_a_500(
    kube: KubeSandbox, method: str, path: str, kw: dict[str, Any], status: int
) -> None:
    code, body = await raw(kube, method, path, **kw)
    assert code == status
    assert body["kind"] == "Status" and body["code"] == status


async def test_bad_patches_and_deletes_on_an_existing_job(kube: KubeSandbox) -> None:
    kube.pause()
    await raw(kube, "POST", JOBS, json=job_body("j", "true"))
    merge = {"Content-Type": "application/merge-patch+json"}
    cases = [
        ("PATCH", {"data": b"[1]", "headers": merge}, 400),
        ("PATCH", {"data": b'{"metadata": 3}', "headers": merge}, 400),
        ("PATCH", {"json": [{"op": "add"}]}, 415),  # aiohttp sends application/json
        (
            "PATCH",
            {"data": b'{"spec": {"template": {"spec": {"hostname": "x"}}}}', "headers": merge},
            422,
        ),
        ("PUT", {"json": {"metadata": {"name": "other"}}}, 400),
        ("DELETE", {"data": b"{bad"}, 400),
        ("DELETE", {"json": {"preconditions": {"uid": "wrong"}}}, 409),
        ("DELETE", {"json": {"propagationPolicy": "Sideways"}}, 400),
    ]
    for method, kw, status in cases:
        code, body = await raw(kube, method, f"{JOBS}/j", **kw)
        assert (method, code, body["kind"]) == (method, status, "Status")
    assert kube.job(NS, "j") is not None


# ---- faults -----------------------------------------------------------------------------


async def test_injected_errors_hit_the_next_matching_requests(
    kube: KubeSandbox, api: client.ApiClient
) -> None:
    batch = client.BatchV1Api(api)
    kube.faults.fail(500, method="GET", path="/jobs$", times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            await batch.list_namespaced_job(NS)
        assert err.value.status == 500 and json.loads(err.value.body)["reason"] == "InternalError"
    await batch.list_namespaced_job(NS)
    assert kube.faults.count("GET", "/jobs$", status=500) == 2
    assert kube.faults.count("GET", "/jobs$", status=200) == 1


async def test_fault_after_the_write_still_writes(kube: KubeSandbox, api: client.ApiClient) -> None:
    kube.faults.fail(503, method="POST", path="/jobs$", after=True)
    with pytest.raises(ApiException):
        await client.BatchV1Api(api).create_namespaced_job(NS, job_body("lost", "true"))
    assert kube.job(NS, "lost") is not None


async def test_dropped_connection(kube: KubeSandbox, api: client.ApiClient) -> None:
    kube.faults.fail(0, method="GET", times=2)  # aiohttp itself retries an idempotent GET once
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.BatchV1Api(api).list_namespaced_job(NS)
    assert kube.faults.count("GET", "/jobs$", status=0) == 2
