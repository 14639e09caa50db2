"""What the double's API server does to an object before storing it: defaults and validation.

Only the rules a deploy bot can trip over are checked, but those are checked as the real
server does (https://kubernetes.io/docs/concepts/workloads/controllers/job/): names, labels,
annotations, a Job's restartPolicy and containers, a Lease's spec.
"""

from __future__ import annotations

import uuid
from typing import Any

from bot.sandbox.kube.objects import (
    DNS_LABEL,
    JSON,
    ApiError,
    check_meta,
    check_name,
    invalid,
    micro_time,
    parse_time,
)


def check_body(body: Any, kind: str, api_version: str, namespace: str) -> JSON:
    """The request body as an object of `kind`, or a 400 explaining why not."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", f"the body of a {kind} request must be a JSON object")
    if body.get("kind", kind) != kind or body.get("apiVersion", api_version) != api_version:
        raise ApiError(
            400,
            "BadRequest",
            f"expected {api_version}, Kind={kind}, got "
            f"{body.get('apiVersion')}, Kind={body.get('kind')}",
        )
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ApiError(400, "BadRequest", "metadata must be an object")
    if meta and meta.get("namespace") not in (None, "", namespace):
        raise ApiError(
            400, "BadRequest", "the namespace of the provided object does not match the request"
        )
    body["kind"], body["apiVersion"] = kind, api_version
    body.setdefault("metadata", {})
    for server_set in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
        body["metadata"].pop(server_set, None)
    if not body["metadata"].get("name") and body["metadata"].get("generateName"):
        body["metadata"]["name"] = body["metadata"]["generateName"] + uuid.uuid4().hex[:5]
    return body


def admit_job(job: JSON) -> JSON:
    """Default and validate a batch/v1 Job, as the API server does on create."""
    name = job["metadata"].get("name", "")
    causes: list[tuple[str, str]] = []
    # A Job's name becomes the value of its pods' job-name label, so it must fit one.
    if why := check_name(name, max_len=63):
        causes.append(("metadata.name", why))
    causes += check_meta(job)
    spec = job.get("spec")
    if not isinstance(spec, dict):
        raise invalid("Job.batch", name, [("spec", "Required value")])
    template = spec.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        raise invalid("Job.batch", name, [("spec.template.spec", "Required value")])
    pod_spec = template["spec"]
    causes += check_meta(template, "spec.template.metadata")
    if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{pod_spec.get("restartPolicy", "Always")}": '
                'supported values: "OnFailure", "Never"',
            )
        )
    causes += _check_containers(pod_spec)
    for key in ("backoffLimit", "ttlSecondsAfterFinished"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            causes.append((f"spec.{key}", "must be greater than or equal to 0"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
        causes.append(("spec.activeDeadlineSeconds", "must be greater than 0"))
    if causes:
        raise invalid("Job.batch", name, causes)
    _default_job(job)
    return job


def _check_containers(pod_spec: JSON) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [("spec.template.spec.containers", "Required value")]
    seen: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, c in enumerate(pod_spec.get(field) or []):
            where = f"spec.template.spec.{field}[{i}]"
            cname = c.get("name", "") if isinstance(c, dict) else ""
            if not DNS_LABEL.match(cname) or len(cname) > 63:
                causes.append((f"{where}.name", f"Invalid value: {cname!r}: must be a DNS label"))
            elif cname in seen:
                causes.append((f"{where}.name", f'Duplicate value: "{cname}"'))
            seen.add(cname)
            if not isinstance(c, dict) or not c.get("image"):
                causes.append((f"{where}.image", "Required value"))
            for j, env in enumerate((c.get("env") or []) if isinstance(c, dict) else []):
                if not isinstance(env, dict) or not env.get("name"):
                    causes.append((f"{where}.env[{j}].name", "Required value"))
    return causes


def _default_job(job: JSON) -> None:
    uid = str(uuid.uuid4())
    job["metadata"]["uid"] = uid  # the store keeps it: the selector names the Job's own uid
    job["metadata"].setdefault("labels", {})
    job["metadata"]["generation"] = 1
    spec = job["spec"]
    for key, value in (
        ("backoffLimit", 6),
        ("completions", 1),
        ("parallelism", 1),
        ("completionMode", "NonIndexed"),
        ("suspend", False),
        ("manualSelector", False),
        ("podReplacementPolicy", "TerminatingOrFailed"),
    ):
        spec.setdefault(key, value)
    name = job["metadata"]["name"]
    generated = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    template = spec["template"]
    template.setdefault("metadata", {})
    template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), **generated}
    pod_spec = template["spec"]
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("securityContext", {})
    for c in [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
        image = str(c["image"])
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    job["status"] = {}


def admit_lease(lease: JSON) -> JSON:
    """Validate a coordination.k8s.io/v1 Lease."""
    name = lease["metadata"].get("name", "")
    causes: list[tuple[str, str]] = []
    if why := check_name(name):
        causes.append(("metadata.name", why))
    causes += check_meta(lease)
    spec = lease.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise invalid("Lease.coordination.k8s.io", name, [("spec", "must be an object")])
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        causes.append(("spec.leaseDurationSeconds", "must be greater than 0"))
    for key in ("acquireTime", "renewTime"):
        if spec.get(key) is not None:
            try:  # a MicroTime: stored in the server's own format, as a real one does
                spec[key] = micro_time(parse_time(str(spec[key])))
            except ValueError:
                causes.append((f"spec.{key}", f"invalid MicroTime {spec[key]!r}"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        causes.append(("spec.leaseTransitions", "must be greater than or equal to 0"))
    if causes:
        raise invalid("Lease.coordination.k8s.io", name, causes)
    return lease
