"""Lease-guarded executors as the deploy service builds them: server credentials, hub Leases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.core.settings import Settings
from bot.deploys.executor import Executor
from bot.deploys.kubernetes import KubernetesExecutor, kube_configuration
from bot.deploys.leased import Ended, LeasedExecutor
from bot.deploys.leases import LeaseLock
from bot.github.snapshot import RepoRef

if TYPE_CHECKING:
    from bot.deploys.service import DeployConfig


def kubernetes_executor(
    config: DeployConfig, repo: RepoRef, settings: Settings, *, ended: Ended | None = None
) -> LeasedExecutor:
    """A `KubernetesExecutor` for one repository, each job under its hub's Lease.

    Raises `KubeConfigError` (no API server configured) or `JobTemplateError` (a bad
    `job_template`); the caller reports them on the deploys they stop.
    """
    configuration = kube_configuration(
        host=config.kube_host, token=config.kube_token, ca_file=config.kube_ca
    )
    kube = settings.deploy.kubernetes
    executor = KubernetesExecutor(configuration, kube, repo=repo.full_name)
    lock = LeaseLock(
        configuration,
        namespace=kube.namespace,
        repo=repo.full_name,
        duration_seconds=config.lease_seconds,
    )
    return LeasedExecutor(executor, lock, adopt_wait=config.lease_seconds + 5.0, ended=ended)


def leased_local(
    config: DeployConfig,
    repo: RepoRef,
    local: Executor,
    namespace: str,
    *,
    ended: Ended | None = None,
) -> LeasedExecutor:
    """The local executor under per-hub Leases in `namespace` (when replicas elect a leader)."""
    configuration = kube_configuration(
        host=config.kube_host, token=config.kube_token, ca_file=config.kube_ca
    )
    lock = LeaseLock(
        configuration,
        namespace=namespace,
        repo=repo.full_name,
        duration_seconds=config.lease_seconds,
    )
    return LeasedExecutor(local, lock, adopt_wait=config.lease_seconds + 5.0, ended=ended)
