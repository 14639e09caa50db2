"""`async with KubeSandbox() as kube:` a Kubernetes API double on a loopback port.

Tests and `hubbot demo` point the real `kubernetes.aio` client at `kube.url` with
`kube.token`, or simply use `kube.configuration()`. They steer it with `kube.faults`
(inject errors, cut watches), `kube.pause()` / `kube.resume()` (hold the kubelet),
`kube.compact()` (expire watch history) and wait on its state with `kube.wait_for(...)`.
"""

from __future__ import annotations

import secrets as secrets_module
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from bot.sandbox.kube.app import Config, create_app
from bot.sandbox.kube.faults import Faults
from bot.sandbox.kube.kubelet import Kubelet
from bot.sandbox.kube.objects import JSON
from bot.sandbox.kube.store import Store


class KubeSandbox:
    """A Kubernetes API server double serving Jobs (run as local processes), Pods and Leases."""

    def __init__(
        self,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        namespaces: Iterable[str] | None = None,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        bookmark_seconds: float = 5.0,
        history: int = 10_000,
    ) -> None:
        self.token = token if token is not None else secrets_module.token_urlsafe(24)
        self._host, self._port = host, port
        self._config = Config(
            token=self.token,
            namespaces=frozenset(namespaces) if namespaces is not None else None,
            bookmark_seconds=bookmark_seconds,
        )
        self._secrets = dict(secrets or {})
        self._history = history
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.faults = Faults()

    async def __aenter__(self) -> KubeSandbox:
        self.store = Store(history=self._history)
        self.kubelet = Kubelet(self.store, secrets=self._secrets)
        app = create_app(self.store, self.kubelet, self.faults, self._config)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.store.end_watches()
        await self.kubelet.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- steering -------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold the kubelet: no pod starts, and no pod end is reported, until `resume()`."""
        self.kubelet.pause()

    def resume(self) -> None:
        """Release the kubelet."""
        self.kubelet.resume()

    def compact(self) -> None:
        """Drop the watch history: watches from an older resourceVersion get 410 Gone."""
        self.store.compact()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        """Wait until `predicate()` is true, re-checked on every change; TimeoutError if not."""
        await self.store.wait_for(predicate, seconds)

    # -- reading state --------------------------------------------------------------------

    def jobs(self, namespace: str | None = None) -> list[JSON]:
        """Every stored Job (copies)."""
        return list(self.store.items("jobs", namespace))

    def pods(self, namespace: str | None = None) -> list[JSON]:
        """Every stored Pod (copies)."""
        return list(self.store.items("pods", namespace))

    def leases(self, namespace: str | None = None) -> list[JSON]:
        """Every stored Lease (copies)."""
        return list(self.store.items("leases", namespace))

    def job(self, namespace: str, name: str) -> JSON | None:
        """One Job, or None."""
        return self.store.get("jobs", namespace, name)

    def running_processes(self) -> int:
        """How many container processes are alive."""
        return self.kubelet.running_processes()

    def configuration(self) -> Any:
        """A `kubernetes.aio.client.Configuration` for this double (imported lazily)."""
        from kubernetes.aio.client import Configuration

        return Configuration(
            host=self.url,
            api_key={"BearerToken": self.token},
            api_key_prefix={"BearerToken": "Bearer"},
        )
