"""A tiny job controller and kubelet: each Job gets a Pod whose containers run as local processes.

What is real: one Pod per attempt (up to `backoffLimit` retries), with the labels, owner
reference, phases and container states of a real one; init containers first, then the
containers; `activeDeadlineSeconds` (the Job fails with `DeadlineExceeded` and its pods are
deleted); `ttlSecondsAfterFinished`; deleting a Job with Background or Foreground propagation
kills its processes; `$(VAR)` expansion; env from values, `secretKeyRef`, `envFrom.secretRef`
(Secrets given to `KubeSandbox(secrets=...)`) and `fieldRef`.

What is not: images are never pulled. A container's `command` + `args` run as a local
process (with `PATH` from the host, the pod's env, and a fresh temp dir, shared by the pod's
containers, as the working directory). A container with no `command` (one that relies on
its image's entrypoint) cannot run here: it ends with exit code 127 and its log says why.
Processes are killed with SIGKILL at once, with no grace period. A container whose env
cannot be built (a missing Secret) fails at once with exit code 127 and says why in its log,
where a real kubelet would keep it waiting in `CreateContainerConfigError`. Foreground
deletion removes the Job at once, like Background.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from bot.sandbox.kube.objects import JSON, now, rfc3339
from bot.sandbox.kube.store import Event, Store

NODE = "hubbot-sandbox-node"
MAX_LOG = 4 * 1024 * 1024  # per container: the oldest output is dropped past this
CANNOT_RUN = 127
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes a `$`."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(repl, text)


class ConfigError(Exception):
    """A container cannot be configured (a missing Secret, an unsupported env source)."""


class Kubelet:
    """Runs the double's Jobs; `pause()` holds every pod start and every pod end."""

    def __init__(self, store: Store, *, secrets: Mapping[str, Mapping[str, str]]) -> None:
        self.store = store
        self.secrets = secrets
        self.logs: dict[tuple[str, str, str], bytearray] = {}
        self._root = Path(tempfile.mkdtemp(prefix="hubbot-kube-"))
        self._go = asyncio.Event()
        self._go.set()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._procs: dict[tuple[str, str], set[asyncio.subprocess.Process]] = {}
        self._timers: list[asyncio.TimerHandle] = []
        self._closing = False
        store.listeners.append(self._on_event)

    @property
    def paused(self) -> bool:
        """Whether pods are held."""
        return not self._go.is_set()

    def pause(self) -> None:
        """Hold pod starts and the reporting of pod ends (running processes keep running)."""
        self._go.clear()

    def resume(self) -> None:
        """Let held pods start and finished ones report."""
        self._go.set()

    def running_processes(self) -> int:
        """How many container processes are alive now."""
        return sum(len(p) for p in self._procs.values())

    async def close(self) -> None:
        """Kill everything, let the pod tasks see their processes die, remove the temp dirs."""
        self._closing = True
        for timer in self._timers:
            timer.cancel()
        for procs in self._procs.values():
            for proc in procs:
                _kill(proc)
        self._go.set()
        tasks = list(self._tasks.values())
        if tasks:
            # Reaping the killed processes (not cancelling) closes their pipes cleanly.
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        shutil.rmtree(self._root, ignore_errors=True)

    # -- reacting to the store ------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        key = (event.namespace, event.obj["metadata"]["name"])
        if event.resource == "jobs" and event.type == "ADDED":
            task = asyncio.get_running_loop().create_task(self._run_job(*key))
            self._tasks[key] = task
            task.add_done_callback(lambda t: self._forget(key, t))
        elif event.resource == "pods" and event.type == "DELETED":
            for proc in self._procs.pop(key, set()):
                _kill(proc)
            for log_key in [k for k in self.logs if k[:2] == key]:
                del self.logs[log_key]

    def _forget(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def delete_job_pods(self, namespace: str, job: JSON) -> None:
        """Delete a Job's pods (Background/Foreground propagation); their processes die."""
        uid = job["metadata"]["uid"]
        # The job's task is not cancelled: it sees its processes die and its Job gone, and ends.
        for pod in self.store.items("pods", namespace):
            owners = pod["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                self.store.delete("pods", namespace, pod["metadata"]["name"])

    # -- the job controller ---------------------------------------------------------------

    async def _run_job(self, ns: str, name: str) -> None:
        job = self.store.get("jobs", ns, name)
        if job is None or job["spec"].get("suspend"):
            return
        await self._go.wait()
        job = self.store.get("jobs", ns, name)
        if job is None or self._closing:
            return
        started = now()
        if not self._set_job(ns, name, lambda s: s.update(_active_status(rfc3339(started)))):
            return
        deadline = job["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            loop = asyncio.get_running_loop()
            uid = job["metadata"]["uid"]
            self._timers.append(loop.call_later(deadline, self._deadline, ns, name, uid))
        failures, limit = 0, int(job["spec"].get("backoffLimit", 6))
        while not self._closing:
            pod_name = self._create_pod(ns, job)
            ok = await self._run_pod(ns, pod_name)
            await self._go.wait()
            if self._job_done(ns, name):
                return
            if ok:
                self._finish_job(ns, name, success=True)
                return
            failures += 1
            self._count_failure(ns, name)
            if failures > limit:
                self._finish_job(ns, name, success=False)
                return

    def _job_done(self, ns: str, name: str) -> bool:
        job = self.store.get("jobs", ns, name)
        return job is None or _terminal(job) is not None

    def _count_failure(self, ns: str, name: str) -> None:
        def apply(status: JSON) -> None:
            status["failed"] = status.get("failed", 0) + 1

        self._set_job(ns, name, apply)

    def _set_job(self, ns: str, name: str, change: Callable[[JSON], None]) -> bool:
        def apply(job: JSON) -> None:
            change(job.setdefault("status", {}))

        return self.store.mutate("jobs", ns, name, apply) is not None

    def _finish_job(self, ns: str, name: str, *, success: bool) -> None:
        at = rfc3339(now())
        if success:
            conds = [
                _cond(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    at,
                ),
                _cond(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    at,
                ),
            ]
            update: JSON = {"succeeded": 1, "completionTime": at}
        else:
            msg = "Job has reached the specified backoff limit"
            conds = [
                _cond("FailureTarget", "BackoffLimitExceeded", msg, at),
                _cond("Failed", "BackoffLimitExceeded", msg, at),
            ]
            update = {}
        self._set_job(ns, name, lambda s: s.update(active=0, ready=0, conditions=conds, **update))
        self._after_finish(ns, name)

    def _deadline(self, ns: str, name: str, uid: str) -> None:
        job = self.store.get("jobs", ns, name)
        if job is None or job["metadata"]["uid"] != uid or _terminal(job) is not None:
            return  # finished, or gone (a new Job of the same name has its own deadline)
        at = rfc3339(now())
        msg = "Job was active longer than specified deadline"
        conds = [
            _cond("FailureTarget", "DeadlineExceeded", msg, at),
            _cond("Failed", "DeadlineExceeded", msg, at),
        ]
        self._set_job(
            ns,
            name,
            lambda s: s.update(active=0, ready=0, conditions=conds, failed=s.get("failed", 0) + 1),
        )
        # The job controller deletes a failed Job's active pods.
        for pod in self.store.items("pods", ns):
            owned = any(o.get("uid") == uid for o in pod["metadata"].get("ownerReferences") or [])
            if owned and pod["status"].get("phase") in ("Pending", "Running"):
                self.store.delete("pods", ns, pod["metadata"]["name"])
        self._after_finish(ns, name)

    def _after_finish(self, ns: str, name: str) -> None:
        job = self.store.get("jobs", ns, name)
        ttl = job["spec"].get("ttlSecondsAfterFinished") if job else None
        if job is not None and ttl is not None:
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(ttl, self._expire, ns, job))

    def _expire(self, ns: str, job: JSON) -> None:
        current = self.store.get("jobs", ns, job["metadata"]["name"])
        if current is not None and current["metadata"]["uid"] == job["metadata"]["uid"]:
            self.store.delete("jobs", ns, job["metadata"]["name"])
            self.delete_job_pods(ns, job)

    # -- the kubelet ----------------------------------------------------------------------

    def _create_pod(self, ns: str, job: JSON) -> str:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        pod: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": f"{job['metadata']['name']}-",
                "labels": dict(template["metadata"].get("labels") or {}),
                "annotations": dict(template["metadata"].get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                **template["spec"],
                "nodeName": NODE,
                "serviceAccountName": template["spec"].get("serviceAccountName", "default"),
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        self.store.create("pods", ns, pod, "")
        return name

    async def _run_pod(self, ns: str, pod_name: str) -> bool:
        pod = self.store.get("pods", ns, pod_name)
        if pod is None:
            return False
        workdir = Path(tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self._root))
        spec = pod["spec"]
        inits = spec.get("initContainers") or []
        at = rfc3339(now())
        self._set_pod(ns, pod_name, _pod_running(pod, at))
        try:
            for c in inits:
                code = await self._run_container(ns, pod, c, workdir)
                self._set_container(ns, pod_name, "initContainerStatuses", c, code)
                if code != 0:
                    return self._end_pod(ns, pod_name, ok=False)
            if inits:
                self._set_pod(ns, pod_name, _pod_running(pod, rfc3339(now()), inits_done=True))
            codes = await asyncio.gather(
                *(self._run_container(ns, pod, c, workdir) for c in spec["containers"])
            )
            await self._go.wait()
            for c, code in zip(spec["containers"], codes, strict=True):
                self._set_container(ns, pod_name, "containerStatuses", c, code)
            return self._end_pod(ns, pod_name, ok=all(code == 0 for code in codes))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _set_pod(self, ns: str, name: str, status: JSON) -> None:
        def apply(pod: JSON) -> None:
            pod["status"].update(status)

        self.store.mutate("pods", ns, name, apply)

    def _set_container(self, ns: str, pod: str, field: str, c: JSON, code: int) -> None:
        def apply(obj: JSON) -> None:
            for status in obj["status"].get(field, []):
                if status["name"] == c["name"]:
                    running = status["state"].get("running", {})
                    status["ready"] = False
                    status["started"] = False
                    status["state"] = {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "startedAt": running.get("startedAt", rfc3339(now())),
                            "finishedAt": rfc3339(now()),
                            "containerID": status.get("containerID", ""),
                        }
                    }

        self.store.mutate("pods", ns, pod, apply)

    def _end_pod(self, ns: str, name: str, *, ok: bool) -> bool:
        self._set_pod(
            ns,
            name,
            {
                "phase": "Succeeded" if ok else "Failed",
                "conditions": _pod_conditions(rfc3339(now()), ready=False, reason="PodCompleted"),
            },
        )
        return ok

    async def _run_container(self, ns: str, pod: JSON, c: JSON, workdir: Path) -> int:
        pod_name = pod["metadata"]["name"]
        log = self.logs.setdefault((ns, pod_name, c["name"]), bytearray())
        try:
            env = self._env(ns, pod, c, workdir)
        except ConfigError as exc:
            log += f"hubbot kube sandbox: CreateContainerConfigError: {exc}\n".encode()
            return CANNOT_RUN
        argv = [expand(str(a), env) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
        if not c.get("command"):
            log += (
                f"hubbot kube sandbox: container {c['name']!r} has no command; the sandbox "
                f"cannot run the entrypoint of image {c.get('image')!r}\n"
            ).encode()
            return CANNOT_RUN
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log += f"hubbot kube sandbox: cannot run {argv[0]!r} locally: {exc.strerror}\n".encode()
            return CANNOT_RUN if isinstance(exc, FileNotFoundError) else 126
        procs = self._procs.setdefault((ns, pod_name), set())
        procs.add(proc)
        self.store.touch()  # wake waiters on running_processes()
        try:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(65536):
                log += chunk
                if len(log) > MAX_LOG:
                    del log[: len(log) - MAX_LOG]
            code = await proc.wait()
        finally:
            procs.discard(proc)
            _kill(proc)
            self.store.touch()
        return code if code >= 0 else 128 - code

    def _env(self, ns: str, pod: JSON, c: JSON, workdir: Path) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(workdir),
            "HOSTNAME": pod["metadata"]["name"],
        }
        for ref in c.get("envFrom") or []:
            secret = (ref.get("secretRef") or {}).get("name")
            if secret is None:
                raise ConfigError("only envFrom.secretRef is supported")
            if secret not in self.secrets and not ref["secretRef"].get("optional"):
                raise ConfigError(f'secret "{secret}" not found')
            env.update(self.secrets.get(secret, {}))
        for var in c.get("env") or []:
            value = self._env_value(ns, pod, var, env)
            if value is not None:
                env[var["name"]] = value
        return env

    def _env_value(self, ns: str, pod: JSON, var: JSON, env: Mapping[str, str]) -> str | None:
        if "valueFrom" not in var:
            return expand(str(var.get("value", "")), env)
        source = var["valueFrom"] or {}
        if ref := source.get("secretKeyRef"):
            secret = self.secrets.get(ref.get("name", ""))
            if secret is None or ref.get("key") not in secret:
                if ref.get("optional"):
                    return None
                what = "secret" if secret is None else f"key {ref.get('key')!r} in secret"
                raise ConfigError(f'{what} "{ref.get("name")}" not found')
            return secret[ref["key"]]
        if ref := source.get("fieldRef"):
            fields = {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": ns,
                "spec.nodeName": NODE,
                "status.podIP": "127.0.0.1",
            }
            if ref.get("fieldPath") in fields:
                return str(fields[ref["fieldPath"]])
        raise ConfigError(f"env {var['name']!r}: this valueFrom is not supported by the sandbox")


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _terminal(job: JSON) -> str | None:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _cond(kind: str, reason: str, message: str, at: str) -> JSON:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def _active_status(at: str) -> JSON:
    return {
        "startTime": at,
        "active": 1,
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    }


def _pod_conditions(at: str, *, ready: bool, reason: str | None = None) -> list[JSON]:
    conds = []
    for kind in (
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ):
        value = ready or kind in ("PodScheduled", "Initialized", "PodReadyToStartContainers")
        cond: JSON = {
            "type": kind,
            "status": "True" if value else "False",
            "lastProbeTime": None,
            "lastTransitionTime": at,
        }
        if not value and reason:
            cond["reason"] = reason
        conds.append(cond)
    return conds


def _pod_running(pod: JSON, at: str, *, inits_done: bool = False) -> JSON:
    def status(c: JSON, state: JSON) -> JSON:
        return {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "containerID": f"sandbox://{uuid.uuid4().hex[:12]}",
            "ready": "running" in state,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
        }

    inits = [] if inits_done else pod["spec"].get("initContainers") or []
    running = {"running": {"startedAt": at}}
    status_obj: JSON = {
        "phase": "Running",
        "startTime": at,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": _pod_conditions(at, ready=not inits),
        "containerStatuses": [
            status(c, running if not inits else {"waiting": {"reason": "PodInitializing"}})
            for c in pod["spec"]["containers"]
        ],
    }
    if inits:
        status_obj["initContainerStatuses"] = [status(c, running) for c in inits]
    elif inits_done:
        del status_obj["startTime"]  # keep the pod's start and the init containers' end states
    return status_obj
