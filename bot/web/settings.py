"""Server settings for `hubbot serve`: read once at start-up from the environment and flags.

Flags override the environment. Anything missing or invalid raises `SettingsError`
with one line that says what to fix; the command line prints it and exits 2.
The private key and webhook secret never appear in a message or a repr.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_GITHUB_URL = "https://api.github.com"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 4
DEFAULT_QUEUE_SIZE = 1000
# GitHub caps webhook payloads at 25 MB: https://docs.github.com/en/webhooks/webhook-events-and-payloads
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024

_APP_ID = re.compile(r"\A(?:[0-9]+|Iv[0-9A-Za-z._-]+)\Z")


class SettingsError(ValueError):
    """Settings are missing or invalid; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything `hubbot serve` needs, validated."""

    app_id: str
    private_key: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)
    github_url: str = DEFAULT_GITHUB_URL
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    queue_size: int = DEFAULT_QUEUE_SIZE
    request_timeout: float = 30.0
    max_webhook_bytes: int = MAX_WEBHOOK_BYTES
    requester: str = "hubbot"
    # Deploys (issue 4): links in Deployment statuses, the Kubernetes executor, extra env.
    public_url: str | None = None  # HUBBOT_PUBLIC_URL: this bot as GitHub users reach it
    kube_host: str | None = None  # HUBBOT_KUBE_HOST; None: the in-cluster service account
    kube_token: str | None = field(default=None, repr=False)  # HUBBOT_KUBE_TOKEN
    kube_ca: str | None = None  # HUBBOT_KUBE_CA: a CA bundle file for kube_host
    deploy_env: tuple[str, ...] = ()  # HUBBOT_DEPLOY_ENV: more variables a local deploy sees
    # Several replicas (one leads, the others forward): HUBBOT_LEADER_ELECTION and the pod's
    # downward-API facts. None of these matter when leader_election is off.
    leader_election: bool = False
    pod_name: str = ""  # HUBBOT_POD_NAME (default: the host name)
    pod_ip: str = ""  # HUBBOT_POD_IP: where the other replicas reach this one
    pod_namespace: str = ""  # HUBBOT_POD_NAMESPACE: where the leader (and hub) Leases live
    leader_lease_seconds: int = 15  # HUBBOT_LEADER_LEASE_SECONDS: a dead leader's term


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
) -> ServerSettings:
    """Settings from `env` (default: os.environ) with non-None `overrides` (flags) on top."""
    env = os.environ if env is None else env
    given = {k: v for k, v in (overrides or {}).items() if v is not None}

    def pick(key: str, var: str, default: str | None = None) -> str | None:
        if key in given:
            return str(given[key])
        value = env.get(var)
        return value if value not in (None, "") else default

    insecure = bool(given.get("insecure_no_webhook_secret", False))
    app_id = _app_id(pick("app_id", "HUBBOT_APP_ID"))
    private_key = _private_key(pick("private_key", "HUBBOT_PRIVATE_KEY"))
    secret = pick("webhook_secret", "HUBBOT_WEBHOOK_SECRET")
    if secret is None and not insecure:
        raise SettingsError(
            "HUBBOT_WEBHOOK_SECRET is not set; set it to the app's webhook secret "
            "(or pass --insecure-no-webhook-secret for local development only)"
        )
    settings = ServerSettings(
        app_id=app_id,
        private_key=private_key,
        webhook_secret=secret,
        github_url=_github_url(pick("github_url", "HUBBOT_GITHUB_URL", DEFAULT_GITHUB_URL)),
        host=pick("host", "HUBBOT_HOST", DEFAULT_HOST) or DEFAULT_HOST,
        port=_int("HUBBOT_PORT", pick("port", "HUBBOT_PORT"), DEFAULT_PORT, 0, 65535),
        workers=_int("HUBBOT_WORKERS", pick("workers", "HUBBOT_WORKERS"), DEFAULT_WORKERS, 1, 64),
        queue_size=_int(
            "HUBBOT_QUEUE_SIZE",
            pick("queue_size", "HUBBOT_QUEUE_SIZE"),
            DEFAULT_QUEUE_SIZE,
            1,
            10**5,
        ),
        public_url=_public_url(pick("public_url", "HUBBOT_PUBLIC_URL")),
        kube_host=_kube_host(pick("kube_host", "HUBBOT_KUBE_HOST")),
        kube_token=pick("kube_token", "HUBBOT_KUBE_TOKEN"),
        kube_ca=_kube_ca(pick("kube_ca", "HUBBOT_KUBE_CA")),
        deploy_env=_deploy_env(pick("deploy_env", "HUBBOT_DEPLOY_ENV")),
        **_replicas(pick),
    )
    if settings.leader_election:
        _check_election(settings, env)
    return settings


def _check_election(settings: ServerSettings, env: Mapping[str, str]) -> None:
    if settings.kube_host is None and not env.get("KUBERNETES_SERVICE_HOST"):
        raise SettingsError(
            "HUBBOT_LEADER_ELECTION needs the Kubernetes API: run in a cluster or set "
            "HUBBOT_KUBE_HOST"
        )
    if settings.port == 0:
        raise SettingsError("HUBBOT_LEADER_ELECTION needs a fixed HUBBOT_PORT (not 0)")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _replicas(pick: Callable[..., str | None]) -> dict[str, Any]:
    """The leader-election settings; with it on, where this pod is must be known."""
    flag = (pick("leader_election", "HUBBOT_LEADER_ELECTION") or "false").strip().lower()
    if flag not in _TRUE + _FALSE:
        raise SettingsError(f"HUBBOT_LEADER_ELECTION must be true or false, got {flag!r}")
    seconds = _int(
        "HUBBOT_LEADER_LEASE_SECONDS",
        pick("leader_lease_seconds", "HUBBOT_LEADER_LEASE_SECONDS"),
        15,
        3,
        300,
    )
    out: dict[str, Any] = {"leader_election": flag in _TRUE, "leader_lease_seconds": seconds}
    if not out["leader_election"]:
        return out
    ip = pick("pod_ip", "HUBBOT_POD_IP")
    if not ip:
        raise SettingsError(
            "HUBBOT_LEADER_ELECTION needs HUBBOT_POD_IP (status.podIP from the downward API), "
            "the address the other replicas forward webhooks to"
        )
    namespace = pick("pod_namespace", "HUBBOT_POD_NAMESPACE")
    if not namespace and SERVICE_ACCOUNT_NAMESPACE.is_file():
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    if not namespace:
        raise SettingsError("HUBBOT_LEADER_ELECTION needs HUBBOT_POD_NAMESPACE (the Lease's)")
    out.update(
        pod_name=pick("pod_name", "HUBBOT_POD_NAME") or socket.gethostname(),
        pod_ip=ip.strip(),
        pod_namespace=namespace.strip(),
    )
    return out


def _public_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"HUBBOT_PUBLIC_URL must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _kube_host(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"HUBBOT_KUBE_HOST must be the API server's URL, got {value!r}")
    return value.rstrip("/")


def _kube_ca(value: str | None) -> str | None:
    if value is not None and not Path(value).expanduser().is_file():
        raise SettingsError(f"HUBBOT_KUBE_CA: no such file: {value}")
    return value


_ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def _deploy_env(value: str | None) -> tuple[str, ...]:
    """Names of environment variables deploys may also see (comma or space separated)."""
    names = tuple(n for n in re.split(r"[,\s]+", value or "") if n)
    for name in names:
        if not _ENV_NAME.match(name):
            raise SettingsError(f"HUBBOT_DEPLOY_ENV: {name!r} is not a variable name")
        if name.startswith("HUBBOT_"):
            raise SettingsError(f"HUBBOT_DEPLOY_ENV: {name} is the bot's own; deploys never see it")
    return names


def _app_id(value: str | None) -> str:
    if value is None:
        raise SettingsError("HUBBOT_APP_ID is not set; set it to the GitHub App's id")
    value = value.strip()
    if not _APP_ID.match(value):
        raise SettingsError("HUBBOT_APP_ID must be the app's numeric id (or its Iv… client id)")
    return value


def _private_key(value: str | None) -> str:
    """The PEM text, from the value itself or from the file it names."""
    if value is None:
        raise SettingsError("HUBBOT_PRIVATE_KEY is not set; set it to the app's PEM or its path")
    if "-----BEGIN" in value:
        # .env files often carry the PEM on one line with literal "\n".
        pem = value.replace("\\n", "\n")
    else:
        path = Path(value).expanduser()
        try:
            pem = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise SettingsError(f"HUBBOT_PRIVATE_KEY: no such file: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise SettingsError(f"HUBBOT_PRIVATE_KEY: cannot read {path}: {reason}") from None
    _check_pem(pem)
    return pem


def _check_pem(pem: str) -> None:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SettingsError("HUBBOT_PRIVATE_KEY is not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise SettingsError("HUBBOT_PRIVATE_KEY must be an RSA key (GitHub Apps sign with RS256)")


def _github_url(value: str | None) -> str:
    url = (value or DEFAULT_GITHUB_URL).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"HUBBOT_GITHUB_URL must be an http(s) URL, got {value!r}")
    return url


def _int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {number}")
    return number
