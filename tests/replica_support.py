"""Helpers for the replica tests: bots electing a leader through the Kubernetes API double.

Each `Node` is a real app (`create_app`) on its own loopback socket, with leader election
on, its Lease in the `KubeSandbox`, and the GitHub double behind it. `Service` stands in
for the Kubernetes Service in front of the pods: GitHub's webhooks reach it, and it relays
each one to the next replica in turn (or to the one a test pins).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bot.web.app import create_app
from bot.web.election import Election
from bot.web.keys import LEADERSHIP, QUEUE, REPLICA, SERVICES
from bot.web.leadership import Leadership
from bot.web.replica import Replica
from bot.web.settings import ServerSettings
from tests.e2e_support import FAST, SECRET, Stack

NAMESPACE = "hubbot"
PUBLIC_URL = "http://hubbot.test"


@dataclass
class Node:
    """One replica: its app, runner and URL."""

    name: str
    app: web.Application
    runner: web.AppRunner
    url: str

    @property
    def replica(self) -> Replica:
        return self.app[REPLICA]

    @property
    def election(self) -> Election:
        election = self.app[REPLICA].election
        assert election is not None
        return election

    @property
    def leadership(self) -> Leadership:
        return self.app[LEADERSHIP]

    @property
    def leading(self) -> bool:
        return self.replica.leading

    async def stop(self) -> None:
        """The SIGTERM path: step down while still serving, then shut down."""
        await self.leadership.step_down()
        await self.runner.cleanup()


async def start_node(
    sandbox: Any, kube: Any, name: str, *, lease_seconds: int = 3, **server: Any
) -> Node:
    """A replica with leader election on, listening on a port it knows before it starts."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server.setdefault("public_url", PUBLIC_URL)
    settings = ServerSettings(
        app_id=str(sandbox.app_id),
        private_key=sandbox.private_key,
        webhook_secret=SECRET,
        github_url=sandbox.api_url,
        host="127.0.0.1",
        port=port,
        workers=2,
        leader_election=True,
        pod_name=name,
        pod_ip="127.0.0.1",
        pod_namespace=NAMESPACE,
        kube_host=kube.url,
        kube_token=kube.token,
        leader_lease_seconds=lease_seconds,
        **server,
    )
    app = create_app(settings, policy=FAST)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return Node(name, app, runner, f"http://127.0.0.1:{port}")


async def until(check: Any, within: float = 30.0, step: float = 0.01) -> float:
    """Wait for a (sync) condition; returns the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(step)
    return time.monotonic() - started


async def leader_of(*nodes: Node, within: float = 30.0) -> Node:
    """The node that leads, once one does and every other knows it."""
    await until(lambda: any(n.leading for n in nodes), within)
    (leader,) = [n for n in nodes if n.leading]
    others = [n for n in nodes if n is not leader]
    await until(lambda: all(n.election.leader_url == leader.url for n in others), within)
    await asyncio.wait_for(leader.app[SERVICES].deploys.wait_recovered(), within)
    return leader


def stack_on(sandbox: Any, service: Service, leader: Node, http: aiohttp.ClientSession) -> Stack:
    """The tests' view: webhooks through the Service, waiting on the leader's queue."""
    return Stack(sandbox, service.url, leader.app, http, [])


@dataclass
class Service:
    """A Service in front of the replicas: relays each webhook to the next target in turn."""

    targets: list[str] = field(default_factory=list)
    pinned: str | None = None
    sent: list[str] = field(default_factory=list)  # the target of each relayed delivery
    url: str = ""
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    async def start(self) -> Service:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post("/webhook", self._relay)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = aiohttp.ClientSession()
        return self

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _pick(self) -> str:
        if self.pinned is not None:
            return self.pinned
        return self.targets[next(self._turn) % len(self.targets)]

    async def _relay(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        skip = {"host", "content-length"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        target = self._pick()
        self.sent.append(target)
        try:
            async with self._http.post(f"{target}/webhook", data=body, headers=headers) as resp:
                answer = await resp.read()
                return web.Response(status=resp.status, body=answer, headers=_kept(resp))
        except aiohttp.ClientError:
            return web.Response(status=502, text="no endpoint answered")


def _kept(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "retry-after")}


async def settle(*nodes: Node, within: float = 60.0) -> None:
    """Wait until every node's queue is idle."""
    for node in nodes:
        assert await node.app[QUEUE].join(within), f"{node.name} did not finish in time"
