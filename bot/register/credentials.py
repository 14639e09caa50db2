"""The app's credentials as GitHub hands them back, and the files `hubbot register` writes.

Every file is created with mode 0600 in a folder created 0700, and never replaces an
existing file unless asked to (`force`). The private key and webhook secret never
appear in a repr or a message.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRIVATE_KEY = "private-key.pem"  # the key names the Helm chart's Secret uses
WEBHOOK_SECRET = "webhook-secret"
ENV_FILE = "hubbot.env"
APP_FILE = "app.json"
FILE_NAMES = (PRIVATE_KEY, WEBHOOK_SECRET, ENV_FILE, APP_FILE)


class ConversionError(ValueError):
    """GitHub's answer to the code conversion lacks what hubbot needs."""


class CredentialsError(OSError):
    """The credentials cannot be written where asked; the message is one line."""


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """What `POST /app-manifests/{code}/conversions` answers, minus the OAuth client secret."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str | None
    client_id: str | None
    pem: str = field(repr=False)
    webhook_secret: str | None = field(repr=False)

    @classmethod
    def from_conversion(cls, data: Any) -> AppCredentials:
        """Read the conversion's JSON; raises ConversionError when a needed field is missing."""
        if not isinstance(data, Mapping):
            raise ConversionError("GitHub's answer is not a JSON object")
        app_id, pem = data.get("id"), data.get("pem")
        if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id <= 0:
            raise ConversionError("GitHub's answer has no app id")
        if not isinstance(pem, str) or "PRIVATE KEY-----" not in pem:
            raise ConversionError("GitHub's answer has no private key")
        slug, html_url = data.get("slug"), data.get("html_url")
        if not isinstance(slug, str) or not slug or not isinstance(html_url, str):
            raise ConversionError("GitHub's answer has no app slug or page")
        secret = data.get("webhook_secret")
        owner = data.get("owner")
        client_id = data.get("client_id")
        return cls(
            id=app_id,
            slug=slug,
            name=str(data.get("name") or slug),
            html_url=html_url.rstrip("/"),
            owner=str(owner["login"]) if isinstance(owner, Mapping) and "login" in owner else None,
            client_id=client_id if isinstance(client_id, str) else None,
            pem=pem,
            webhook_secret=secret if isinstance(secret, str) and secret else None,
        )


@dataclass(frozen=True, slots=True)
class WrittenFiles:
    """Absolute paths of what was written; `webhook_secret` is None when GitHub issued none."""

    private_key: Path
    webhook_secret: Path | None
    env: Path
    app: Path


def check_out_dir(out_dir: Path, *, force: bool) -> None:
    """Refuse before anything happens when the folder is unusable or would lose files."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CredentialsError(f"{out_dir} exists and is not a folder")
    if force:
        return
    taken = [name for name in FILE_NAMES if os.path.lexists(out_dir / name)]
    if taken:
        raise CredentialsError(
            f"{out_dir} already holds {', '.join(taken)}; pass --force to replace them "
            "or choose another --out-dir"
        )


def write_credentials(
    creds: AppCredentials, out_dir: Path, *, api_url: str, force: bool = False
) -> WrittenFiles:
    """Write the key, the webhook secret, `hubbot.env` and `app.json`, each 0600."""
    out_dir = out_dir.absolute()
    check_out_dir(out_dir, force=force)
    _make_private_dir(out_dir)
    key = out_dir / PRIVATE_KEY
    secret = out_dir / WEBHOOK_SECRET if creds.webhook_secret is not None else None
    env, app = out_dir / ENV_FILE, out_dir / APP_FILE
    _write_private(key, creds.pem, force=force)
    if secret is not None and creds.webhook_secret is not None:
        # Exactly the secret, no final newline: signatures are computed over these bytes.
        _write_private(secret, creds.webhook_secret, force=force)
    _write_private(env, env_text(creds, key_path=key, api_url=api_url), force=force)
    _write_private(
        app, json.dumps(app_summary(creds, api_url=api_url), indent=2) + "\n", force=force
    )
    return WrittenFiles(private_key=key, webhook_secret=secret, env=env, app=app)


def env_text(creds: AppCredentials, *, key_path: Path, api_url: str) -> str:
    """`hubbot.env`: the settings `hubbot serve` reads, in a form `sh` can source."""
    values = {
        "HUBBOT_APP_ID": str(creds.id),
        "HUBBOT_PRIVATE_KEY": str(key_path),
        "HUBBOT_GITHUB_URL": api_url,
    }
    if creds.webhook_secret is not None:
        values["HUBBOT_WEBHOOK_SECRET"] = creds.webhook_secret
    lines = [
        f"# hubbot settings for the GitHub App {creds.slug} (id {creds.id}), "
        "written by `hubbot register`.",
        "# Secret: keep this file mode 0600. Load it with: set -a; . ./hubbot.env; set +a",
    ]
    lines += [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def app_summary(creds: AppCredentials, *, api_url: str) -> dict[str, Any]:
    """The app's public facts, for `app.json` (no key, no secret)."""
    return {
        "id": creds.id,
        "slug": creds.slug,
        "name": creds.name,
        "owner": creds.owner,
        "client_id": creds.client_id,
        "html_url": creds.html_url,
        "api_url": api_url,
    }


def _make_private_dir(path: Path) -> None:
    if path.is_dir():
        return
    try:
        path.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise CredentialsError(f"cannot create {path}: {exc.strerror}") from None
    # A folder of secrets made in a working copy must never be committed by accident.
    (path / ".gitignore").write_text("*\n", encoding="utf-8")


def _write_private(path: Path, text: str, *, force: bool) -> None:
    # O_NOFOLLOW: a symlink planted at the target never redirects the write elsewhere.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CredentialsError(f"{path} already exists; pass --force to replace it") from None
    except OSError as exc:
        raise CredentialsError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a replaced file keeps its old mode otherwise
        handle.write(text)
