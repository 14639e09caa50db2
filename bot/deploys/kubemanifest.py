"""The deploy Job as plain data: names, labels, the template merge, and reading a Job back.

Pure functions (no client, no I/O), shared by the Kubernetes executor and the Lease lock.

How a deploy Job is made from `deploy.kubernetes.job_template` (a batch/v1 Job manifest):
- hubbot sets `metadata.name` (DNS-safe, one per job id), the namespace, its labels and
  annotations (added to the template's), `spec.backoffLimit: 0`,
  `spec.ttlSecondsAfterFinished`, `spec.activeDeadlineSeconds` and the pod's
  `restartPolicy: Never`; the template cannot override these;
- the deploy container is the one named `deploy`, else the first container. When it has
  neither `command` nor `args`, hubbot sets `command: ["/bin/sh", "-c",
  'eval "$HUBBOT_COMMAND"']`, so the image needs a POSIX shell and the deploy tools;
- every container and init container gets `HUBBOT_COMMAND`, `HUBBOT_REPO`, `HUBBOT_SHA`,
  `HUBBOT_CLUSTER`, `HUBBOT_HUB` (empty for a support release), `HUBBOT_TARGET`,
  `HUBBOT_JOB_ID` and `HUBBOT_SECRET_FILES` (the sops-encrypted values files of the release,
  space-separated, repository-relative), after the job's non-secret env.

The command must run in a checkout of the repository at `HUBBOT_SHA`, with the secret files
decrypted; the template provides both (2i2c's `deployer` decrypts with sops itself, given
cloud credentials). hubbot never puts a token or key in a Job spec: reference them from
Secrets. For example, an init container that clones into a shared `emptyDir`:

    spec:
      template:
        spec:
          serviceAccountName: deployer
          volumes: [{name: src, emptyDir: {}}]
          initContainers:
            - name: checkout
              image: alpine/git:2.45.2
              command: [sh, -c, 'git clone -q "$URL/$HUBBOT_REPO" /src &&
                                 git -C /src checkout -q "$HUBBOT_SHA"']
              env:
                - {name: GITHUB_TOKEN, valueFrom: {secretKeyRef: {name: checkout, key: token}}}
                - {name: URL, value: "https://x-access-token:$(GITHUB_TOKEN)@github.com"}
              volumeMounts: [{name: src, mountPath: /src}]
          containers:
            - name: deploy
              image: quay.io/2i2c/deployer:latest
              workingDir: /src
              volumeMounts: [{name: src, mountPath: /src}]
              envFrom: [{secretRef: {name: cloud-credentials}}]
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from bot.deploys.executor import DeployJob

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "hubbot"
PREFIX = "hubbot.dev/"
LABEL_REPO = PREFIX + "repo"
LABEL_CLUSTER = PREFIX + "cluster"
LABEL_HUB = PREFIX + "hub"
LABEL_SHA = PREFIX + "sha"
LABEL_JOB_ID = PREFIX + "job-id"
ANNOTATION_JOB = PREFIX + "deploy-job"  # the whole DeployJob as JSON, to rebuild it
ANNOTATION_STOPPED = PREFIX + "stopped"  # "cancel" or "timeout", set before hubbot deletes
ANNOTATION_REPORTED = PREFIX + "reported"  # the outcome, once a result was handed back
DEPLOY_CONTAINER = "deploy"
DEFAULT_COMMAND = ("/bin/sh", "-c", 'eval "$HUBBOT_COMMAND"')
# Fields hubbot owns: a template setting them is overridden, never merged.
OWNED_SPEC_FIELDS = ("backoffLimit", "ttlSecondsAfterFinished", "activeDeadlineSeconds")

_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")


class JobTemplateError(ValueError):
    """`deploy.kubernetes.job_template` cannot make a deploy Job; the message says why."""


def _digest(*parts: str, size: int = 10) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:size]


def label_value(text: str) -> str:
    """`text` as a Kubernetes label value (≤ 63 of `[A-Za-z0-9._-]`), unique per input.

    A valid value is kept as is; anything else is cleaned, cut, and suffixed with a hash
    of the original, so two different inputs never share a label value.
    """
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:52].strip("._-")
    return f"{cleaned}-{_digest(text)}" if cleaned else _digest(text)


def label_key(name: str) -> str:
    """A `hubbot.dev/` label key for a free-form name (≤ 63 characters after the prefix)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("._-")[:63].strip("._-")
    return PREFIX + (cleaned or _digest(name))


def dns_label(text: str) -> str:
    """Lowercase `[a-z0-9-]`, no leading/trailing or doubled dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def object_name(kind: str, readable: str, *unique: str) -> str:
    """A DNS-1123 name ≤ 63: `hubbot-<kind>-<readable>-<hash of unique>`."""
    head = f"hubbot-{kind}-"
    room = 63 - len(head) - 11
    middle = dns_label(readable)[:room].strip("-")
    return f"{head}{middle + '-' if middle else ''}{_digest(*unique)}"


def job_name(job: DeployJob) -> str:
    """The Job's name: readable target plus a hash of repo and job id (stable across restarts)."""
    return object_name("deploy", f"{job.cluster}-{job.hub or 'support'}", job.repo, job.id)


def lease_name(repo: str, cluster: str, hub: str | None) -> str:
    """The Lease name for one target of one repository."""
    return object_name("lock", f"{cluster}-{hub or 'support'}", repo, cluster, hub or "")


def repo_selector(repo: str | None) -> str:
    """A label selector for hubbot's Jobs (of one repository, when given)."""
    selector = f"{MANAGED_BY}={MANAGER}"
    return selector if repo is None else f"{selector},{LABEL_REPO}={label_value(repo)}"


def job_labels(job: DeployJob) -> dict[str, str]:
    """Labels identifying a deploy Job: manager, repo, target, SHA, job id and who asked."""
    labels = {label_key(k): label_value(v) for k, v in job.labels.items()}
    labels.update(
        {
            MANAGED_BY: MANAGER,
            LABEL_REPO: label_value(job.repo),
            LABEL_CLUSTER: label_value(job.cluster),
            LABEL_HUB: label_value(job.hub or ""),  # empty: the cluster's support release
            LABEL_SHA: label_value(job.sha),
            LABEL_JOB_ID: label_value(job.id),
        }
    )
    return labels


def job_env(job: DeployJob) -> list[dict[str, str]]:
    """The environment hubbot gives every container: the job's env, then `HUBBOT_*`."""
    env = dict(job.env)
    env.update(
        HUBBOT_COMMAND=job.command,
        HUBBOT_REPO=job.repo,
        HUBBOT_SHA=job.sha,
        HUBBOT_CLUSTER=job.cluster,
        HUBBOT_HUB=job.hub or "",
        HUBBOT_TARGET=job.target,
        HUBBOT_JOB_ID=job.id,
        HUBBOT_SECRET_FILES=" ".join(job.secret_files),
    )
    return [{"name": k, "value": v} for k, v in env.items()]


def encode_job(job: DeployJob) -> str:
    """The DeployJob as the JSON kept in the Job's annotation."""
    return json.dumps(
        {
            "v": 1,
            "id": job.id,
            "repo": job.repo,
            "cluster": job.cluster,
            "hub": job.hub,
            "sha": job.sha,
            "command": job.command,
            "timeout_seconds": job.timeout_seconds,
            "labels": dict(job.labels),
            "env": dict(job.env),
            "secret_files": list(job.secret_files),
        },
        sort_keys=True,
    )


def decode_job(annotations: Mapping[str, str] | None) -> DeployJob | None:
    """The DeployJob kept in a Job's annotations, or None if absent or malformed."""
    try:
        data = json.loads((annotations or {})[ANNOTATION_JOB])
        strings = ("id", "repo", "cluster", "sha", "command")
        if data.get("v") != 1 or not all(isinstance(data.get(k), str) for k in strings):
            return None
        if data["hub"] is not None and not isinstance(data["hub"], str):
            return None
        maps = (data.get("labels", {}), data.get("env", {}))
        if not all(
            isinstance(m, dict) and all(isinstance(v, str) for v in m.values()) for m in maps
        ):
            return None
        secret_files = data.get("secret_files", [])
        if not isinstance(secret_files, list) or not all(isinstance(f, str) for f in secret_files):
            return None
        return DeployJob(
            id=data["id"],
            repo=data["repo"],
            cluster=data["cluster"],
            hub=data["hub"],
            sha=data["sha"],
            command=data["command"],
            timeout_seconds=float(data["timeout_seconds"]),
            labels=maps[0],
            env=maps[1],
            secret_files=tuple(secret_files),
        )
    except (KeyError, TypeError, ValueError):
        return None


def deploy_container(containers: list[Any]) -> int:
    """Index of the deploy container: the one named `deploy`, else the first."""
    for i, c in enumerate(containers):
        if isinstance(c, Mapping) and c.get("name") == DEPLOY_CONTAINER:
            return i
    return 0


def build_job(
    job: DeployJob,
    template: Mapping[str, Any],
    *,
    namespace: str,
    ttl_seconds: int,
    deadline_seconds: int,
) -> dict[str, Any]:
    """The Job manifest for `job`: the template with hubbot's fields merged in (see module doc)."""
    manifest = copy.deepcopy(dict(template))
    if manifest.get("kind", "Job") != "Job" or manifest.get("apiVersion", "batch/v1") != "batch/v1":
        raise JobTemplateError("job_template must be a batch/v1 Job")
    manifest.update(apiVersion="batch/v1", kind="Job")
    labels = job_labels(job)
    meta = _mapping(manifest, "metadata")
    for key in ("name", "generateName", "namespace", "resourceVersion", "uid"):
        meta.pop(key, None)
    meta.update(name=job_name(job), namespace=namespace)
    meta["labels"] = {**_mapping(meta, "labels"), **labels}
    annotations = {ANNOTATION_JOB: encode_job(job), PREFIX + "target": job.target}
    meta["annotations"] = {**_mapping(meta, "annotations"), **annotations}
    spec = _mapping(manifest, "spec")
    spec.update(
        backoffLimit=0, ttlSecondsAfterFinished=ttl_seconds, activeDeadlineSeconds=deadline_seconds
    )
    pod_template = _mapping(spec, "template")
    pod_meta = _mapping(pod_template, "metadata")
    pod_meta["labels"] = {**_mapping(pod_meta, "labels"), **labels}
    pod = _mapping(pod_template, "spec")
    pod["restartPolicy"] = "Never"
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise JobTemplateError(
            "job_template: spec.template.spec.containers must list the deploy container"
        )
    inits = pod.get("initContainers") or []
    if not isinstance(inits, list):
        raise JobTemplateError("job_template: spec.template.spec.initContainers must be a list")
    for where, c in [
        *(("initContainers", c) for c in inits),
        *(("containers", c) for c in containers),
    ]:
        if not isinstance(c, dict) or not c.get("image"):
            raise JobTemplateError(f"job_template: every entry of {where} needs an image")
        env = [e for e in (c.get("env") or []) if not _is_hubbot_var(e)]
        c["env"] = [*env, *job_env(job)]
    deploy = containers[deploy_container(containers)]
    if "command" not in deploy and "args" not in deploy:
        deploy["command"] = list(DEFAULT_COMMAND)
    return manifest


def _mapping(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise JobTemplateError(f"job_template: {key} must be a mapping")
    return value


def _is_hubbot_var(entry: Any) -> bool:
    return isinstance(entry, dict) and str(entry.get("name", "")).startswith("HUBBOT_")
