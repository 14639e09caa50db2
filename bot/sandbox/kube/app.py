"""The double's HTTP side: the real REST paths of batch/v1 Jobs, v1 Pods and their log,
coordination.k8s.io/v1 Leases, `/version/` and discovery, with Kubernetes' own semantics.

Paths, verbs and answers follow https://kubernetes.io/docs/reference/using-api/api-concepts/:
lists carry the collection's resourceVersion, `watch=true` streams newline-delimited events
(with BOOKMARKs on request, and an ERROR event with 410 Expired for a compacted starting
point), creates answer 409 AlreadyExists, updates with a stale resourceVersion answer 409
Conflict, and every error body is a `Status`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.sandbox.kube.admission import admit_job, admit_lease, check_body
from bot.sandbox.kube.faults import REASONS, Faults, Served
from bot.sandbox.kube.kubelet import Kubelet
from bot.sandbox.kube.objects import (
    JSON,
    ApiError,
    check_meta,
    invalid,
    merge_patch,
    parse_field_selector,
    parse_selector,
    selector_matches,
    status_object,
)
from bot.sandbox.kube.store import Event, Store

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-hubbot-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True, slots=True)
class Resource:
    """One served resource type."""

    plural: str
    kind: str
    api_version: str
    group: str
    admit: Callable[[JSON], JSON] | None  # None: clients may not create it
    unconditional_update: bool  # whether PUT without a resourceVersion is allowed
    fields: tuple[str, ...] = ("metadata.name", "metadata.namespace")


RESOURCES = {
    "jobs": Resource("jobs", "Job", "batch/v1", "batch", admit_job, True),
    "pods": Resource(
        "pods", "Pod", "v1", "", None, True, ("metadata.name", "metadata.namespace", "status.phase")
    ),
    "leases": Resource(
        "leases", "Lease", "coordination.k8s.io/v1", "coordination.k8s.io", admit_lease, False
    ),
}


@dataclass
class Config:
    """How the double behaves: the accepted token, known namespaces, bookmark cadence."""

    token: str | None
    namespaces: frozenset[str] | None  # None: every namespace exists
    bookmark_seconds: float = 5.0
    default_watch_seconds: float = 1800.0


STORE = web.AppKey("store", Store)
KUBELET = web.AppKey("kubelet", Kubelet)
FAULTS = web.AppKey("faults", Faults)
CONFIG = web.AppKey("config", Config)
PUBLIC = ("/version", "/version/", "/healthz", "/livez", "/readyz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_response(error: ApiError) -> web.Response:
    """An error as the API server sends it: a JSON `Status` with the matching HTTP code."""
    return web.json_response(error.status(), status=error.code)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, apply armed faults, map ApiError to a Status and record the request."""
    faults = request.app[FAULTS]
    watch = request.query.get("watch") in ("true", "1")
    status = 0
    try:
        if request.path not in PUBLIC:
            _authenticate(request)
        rule = faults.take(request.method, request.path, watch)
        if rule is not None and not rule.after:
            if rule.status == 0:
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            raise ApiError(rule.status, REASONS.get(rule.status, "InternalError"), rule.message)
        response = await handler(request)
        if rule is not None:  # served, but the client only learns of the fault
            if rule.status == 0:
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            raise ApiError(rule.status, REASONS.get(rule.status, "InternalError"), rule.message)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.code
        return status_response(exc)
    except web.HTTPException as exc:  # no such route or verb: answer as the API server does
        status = exc.status
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status, "BadRequest")
        message = "the server could not find the requested resource"
        return status_response(ApiError(exc.status, reason, message if status == 404 else reason))
    finally:
        faults.requests.append(
            Served(request.method, request.path, request.query_string, status, watch)
        )
        request.app[STORE].touch()  # tests may wait on the request log


def _authenticate(request: web.Request) -> None:
    token = request.app[CONFIG].token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise ApiError(401, "Unauthorized", "Unauthorized")


# ---- discovery ---------------------------------------------------------------------------


async def version(request: web.Request) -> web.Response:
    """GET /version/: the server's version."""
    return web.json_response(VERSION)


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz."""
    return web.Response(text="ok")


async def core_versions(request: web.Request) -> web.Response:
    """GET /api: the core group's versions."""
    host = request.host
    return web.json_response(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }
    )


async def groups(request: web.Request) -> web.Response:
    """GET /apis: the served API groups."""

    def group(name: str) -> JSON:
        gv = {"groupVersion": f"{name}/v1", "version": "v1"}
        return {"name": name, "versions": [gv], "preferredVersion": gv}

    return web.json_response(
        {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [group("batch"), group("coordination.k8s.io")],
        }
    )


# ---- resources ---------------------------------------------------------------------------


def _resource(request: web.Request) -> tuple[Resource, str]:
    return RESOURCES[request.match_info["resource"]], request.match_info["ns"]


async def collection(request: web.Request) -> web.StreamResponse:
    """GET (list or watch) and POST (create) on a namespaced collection."""
    res, ns = _resource(request)
    store = request.app[STORE]
    if request.method == "POST":
        if res.admit is None:
            raise ApiError(405, "MethodNotAllowed", f"the sandbox does not create {res.plural}")
        namespaces = request.app[CONFIG].namespaces
        if namespaces is not None and ns not in namespaces:
            raise ApiError(
                404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"}
            )
        obj = res.admit(check_body(await _json(request), res.kind, res.api_version, ns))
        return web.json_response(store.create(res.plural, ns, obj, res.group), status=201)
    labels = parse_selector(request.query.get("labelSelector"))
    fields = parse_field_selector(request.query.get("fieldSelector"), res.fields)

    def match(obj: JSON | None) -> bool:
        return (
            obj is not None
            and selector_matches(labels, obj["metadata"].get("labels") or {})
            and fields(obj)
        )

    if request.query.get("watch") in ("true", "1"):
        return await _watch(request, res, ns, match)
    items = [obj for obj in store.items(res.plural, ns) if match(obj)]
    return web.json_response(
        {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(store.rv)},
            "items": items,
        }
    )


async def item(request: web.Request) -> web.Response:
    """GET, PUT, PATCH and DELETE on one object."""
    res, ns = _resource(request)
    store = request.app[STORE]
    name = request.match_info["name"]
    current = store.require(res.plural, ns, name, res.group)
    if request.method == "GET":
        return web.json_response(current)
    if request.method == "DELETE":
        return await _delete(request, res, ns, current)
    if res.admit is None:
        raise ApiError(405, "MethodNotAllowed", f"the sandbox does not update {res.plural}")
    if request.method == "PATCH":
        kind = request.content_type
        if kind not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", f"the sandbox does not support {kind}")
        patch = await _json(request)
        if not isinstance(patch, dict) or not isinstance(patch.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        new = merge_patch(current, patch)
        rv = patch.get("metadata", {}).get("resourceVersion")
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise _conflict(res, name)
    else:
        new = check_body(await _json(request), res.kind, res.api_version, ns)
        if new["metadata"].get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
        rv = new["metadata"].get("resourceVersion")
        if rv is None and not res.unconditional_update:
            raise ApiError(
                422,
                "Invalid",
                f'{res.kind} "{name}" is invalid: '
                "metadata.resourceVersion: must be specified for an update",
            )
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise _conflict(res, name)
    if res.plural == "jobs" and new.get("spec", {}).get("template") != current["spec"]["template"]:
        raise ApiError(
            422, "Invalid", f'Job.batch "{name}" is invalid: spec.template: field is immutable'
        )
    if "status" in current:  # status is a subresource: writes to the object ignore it
        new["status"] = current["status"]
    if res.plural == "leases":
        admit_lease(new)
    elif causes := check_meta(new):
        raise invalid(f"{res.kind}.{res.group}", name, causes)
    return web.json_response(store.update(res.plural, ns, new))


def _conflict(res: Resource, name: str) -> ApiError:
    plural = f"{res.plural}.{res.group}" if res.group else res.plural
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": res.group, "kind": res.plural},
    )


async def _delete(request: web.Request, res: Resource, ns: str, current: JSON) -> web.Response:
    text = await request.text()
    try:
        options = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        raise ApiError(400, "BadRequest", "the DeleteOptions body is not valid JSON") from None
    if not isinstance(options, dict):
        raise ApiError(400, "BadRequest", "the DeleteOptions body must be an object")
    pre = options.get("preconditions") or {}
    meta = current["metadata"]
    if ("uid" in pre and pre["uid"] != meta["uid"]) or (
        "resourceVersion" in pre and pre["resourceVersion"] != meta["resourceVersion"]
    ):
        raise _conflict(res, meta["name"])
    policy = request.query.get("propagationPolicy") or options.get("propagationPolicy")
    if policy is None:
        # batch/v1 Jobs still default to orphaning their pods when deleted through the API.
        policy = "Orphan" if res.plural == "jobs" else "Background"
    if policy not in ("Orphan", "Background", "Foreground"):
        raise ApiError(400, "BadRequest", f"unsupported propagationPolicy {policy!r}")
    request.app[STORE].delete(res.plural, ns, meta["name"])
    if res.plural == "jobs" and policy != "Orphan":
        request.app[KUBELET].delete_job_pods(ns, current)
    details = {"name": meta["name"], "group": res.group, "kind": res.plural, "uid": meta["uid"]}
    return web.json_response(status_object(200, "", "", details))


async def pod_log(request: web.Request) -> web.Response:
    """GET .../pods/{name}/log: a container's output (tailLines and limitBytes honoured)."""
    ns, name = request.match_info["ns"], request.match_info["name"]
    pod = request.app[STORE].require("pods", ns, name, "")
    names = [c["name"] for c in pod["spec"]["containers"]]
    inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
    container = request.query.get("container")
    if container is None:
        if len(names) != 1:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod "
                f"{name}, choose one of: [{' '.join(names)}]",
            )
        container = names[0]
    if container not in names + inits:
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
    data = request.app[KUBELET].logs.get((ns, name, container))
    if data is None:
        raise ApiError(
            400,
            "BadRequest",
            f'container "{container}" in pod "{name}" is waiting to start: PodInitializing',
        )
    out = bytes(data)
    if "tailLines" in request.query:
        lines = out.splitlines(keepends=True)
        out = b"".join(lines[-_int(request, "tailLines") :]) if _int(request, "tailLines") else b""
    if "limitBytes" in request.query:
        out = out[: _int(request, "limitBytes")]
    return web.Response(body=out, content_type="text/plain", charset="utf-8")


def _int(request: web.Request, key: str) -> int:
    try:
        value = int(request.query[key])
    except ValueError:
        raise ApiError(400, "BadRequest", f"{key} must be an integer") from None
    if value < 0:
        raise ApiError(400, "BadRequest", f"{key} must be non-negative")
    return value


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None


# ---- watch -------------------------------------------------------------------------------


class _Dropped(Exception):
    """A fault cut the stream."""


async def _watch(
    request: web.Request, res: Resource, ns: str, match: Callable[[JSON | None], bool]
) -> web.StreamResponse:
    store, config = request.app[STORE], request.app[CONFIG]
    since_text = request.query.get("resourceVersion")
    try:
        since = int(since_text) if since_text and since_text != "0" else None
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid resourceVersion {since_text!r}") from None
    given = _int(request, "timeoutSeconds") if "timeoutSeconds" in request.query else 0
    timeout = float(given or config.default_watch_seconds)
    bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    drop = request.app[FAULTS].take_drop(request.path)
    sent = 0

    async def send(kind: str, obj: JSON) -> None:
        nonlocal sent
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
        await response.write(line.encode())
        sent += 1
        if drop is not None and sent >= drop.after_events:
            raise _Dropped

    try:
        backlog, queue = store.subscribe(since)
    except ApiError as exc:  # a real server answers 200 and sends the error as an event
        await response.prepare(request)
        await send("ERROR", exc.status())
        return response
    bookmark = {"kind": res.kind, "apiVersion": res.api_version, "metadata": {}}
    try:
        await response.prepare(request)
        if drop is not None and drop.after_events == 0:
            raise _Dropped
        if since is None:
            for obj in store.items(res.plural, ns):
                if match(obj):
                    await send("ADDED", obj)
        for old in backlog:
            await _send_event(old, res, ns, match, send)
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                async with asyncio.timeout(min(left, config.bookmark_seconds)):
                    event = await queue.get()
            except TimeoutError:
                if bookmarks:
                    bookmark["metadata"] = {"resourceVersion": str(store.rv)}
                    await send("BOOKMARK", bookmark)
                continue
            if event is None:  # the double is shutting down
                break
            await _send_event(event, res, ns, match, send)
    except _Dropped:
        assert request.transport is not None
        request.transport.close()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        store.unsubscribe(queue)
    return response


async def _send_event(
    event: Event,
    res: Resource,
    ns: str,
    match: Callable[[JSON | None], bool],
    send: Callable[[str, JSON], Awaitable[None]],
) -> None:
    if event.resource != res.plural or event.namespace != ns:
        return
    now, was = match(event.obj), match(event.before)
    if event.type == "DELETED":
        if was:
            await send("DELETED", event.obj)
    elif now and was:
        await send("MODIFIED", event.obj)
    elif now:
        await send("ADDED", event.obj)
    elif was:  # the object left the selection: watchers see it go
        await send("DELETED", event.obj)


def create_app(store: Store, kubelet: Kubelet, faults: Faults, config: Config) -> web.Application:
    """The double's aiohttp application."""
    app = web.Application(middlewares=[api_middleware])
    app[STORE], app[KUBELET], app[FAULTS], app[CONFIG] = store, kubelet, faults, config
    r = app.router
    for path in ("/version", "/version/"):
        r.add_get(path, version)
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, healthz)
    for path in ("/api", "/api/"):
        r.add_get(path, core_versions)
    for path in ("/apis", "/apis/"):
        r.add_get(path, groups)
    prefixes = {
        "jobs": "/apis/batch/v1",
        "pods": "/api/v1",
        "leases": "/apis/coordination.k8s.io/v1",
    }
    for plural, prefix in prefixes.items():
        base = prefix + "/namespaces/{ns}/{resource:" + plural + "}"
        r.add_route("GET", base, collection)
        r.add_route("POST", base, collection)
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            r.add_route(method, base + "/{name}", item)
    r.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", pod_log)
    return app
