"""hubbot's GitHub App manifest: read it, fill in the real URLs, and say where the form goes.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
Pure: no I/O beyond reading the manifest shipped in the package (`bot/register/app.yaml`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

# The manifest parameters GitHub documents (page above, "GitHub App Manifest parameters").
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)
GITHUB_API_URL = "https://api.github.com"
MAX_NAME_LENGTH = 34  # GitHub refuses longer app names
_ORG = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\Z")  # GitHub's login rules
_LEVELS = ("read", "write")


class ManifestError(ValueError):
    """A manifest, name, organisation or URL is unusable; the message is one line."""


def packaged_manifest() -> dict[str, Any]:
    """hubbot's own manifest, as shipped in the package."""
    text = resources.files("bot.register").joinpath("app.yaml").read_text(encoding="utf-8")
    return parse_manifest(text)


def parse_manifest(text: str) -> dict[str, Any]:
    """A manifest from YAML; raises ManifestError unless it has the shape GitHub expects."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"the manifest is not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError("the manifest must be a mapping")
    unknown = sorted(set(data) - MANIFEST_KEYS)
    if unknown:
        raise ManifestError(f"the manifest has unknown keys: {', '.join(map(str, unknown))}")
    hook = data.get("hook_attributes")
    if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
        raise ManifestError("the manifest needs hook_attributes.url")
    permissions = data.get("default_permissions")
    if not isinstance(permissions, dict) or not all(
        isinstance(k, str) and v in _LEVELS for k, v in permissions.items()
    ):
        raise ManifestError("default_permissions must map permission names to read or write")
    events = data.get("default_events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ManifestError("default_events must be a list of event names")
    for key in ("name", "url"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ManifestError(f"the manifest needs a {key}")
    return data


def fill_manifest(
    base: Mapping[str, Any],
    *,
    redirect_url: str,
    webhook_url: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The manifest to post: `base` with the real redirect URL, webhook and name.

    Without a webhook URL the webhook is registered inactive rather than pointed at the
    placeholder; the operator sets the URL in the app's settings once hubbot is reachable.
    """
    manifest = copy.deepcopy(dict(base))
    manifest["redirect_url"] = redirect_url
    if name is not None:
        manifest["name"] = name
    hook = dict(manifest.get("hook_attributes") or {})
    if webhook_url is not None:
        hook["url"] = webhook_url
        hook["active"] = True
        parts = urlsplit(webhook_url)
        manifest["url"] = f"{parts.scheme}://{parts.netloc}/"  # hubbot's status page
    else:
        hook["active"] = False
    manifest["hook_attributes"] = hook
    return manifest


def check_name(name: str) -> str:
    """An app name GitHub accepts (1 to 34 printable characters), stripped."""
    value = name.strip()
    if not value or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise ManifestError(f"--name must be 1 to {MAX_NAME_LENGTH} printable characters")
    return value


def check_org(org: str) -> str:
    """An organisation login as GitHub allows them (letters, digits, inner hyphens)."""
    if not _ORG.match(org) or org.endswith("-"):
        raise ManifestError(f"--org {org!r} is not a GitHub organisation name")
    return org


def check_url(value: str, option: str) -> str:
    """An absolute http(s) URL without a trailing slash; `option` names it in the error."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ManifestError(f"{option} must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ManifestError(f"{option} must not carry a query or fragment")
    return value.strip().rstrip("/")


def default_api_url(github_url: str) -> str:
    """The REST root of a GitHub host: api.github.com for github.com, `/api/v3` on Enterprise."""
    if urlsplit(github_url).hostname in ("github.com", "www.github.com"):
        return GITHUB_API_URL
    return github_url.rstrip("/") + "/api/v3"


def new_app_url(github_url: str, org: str | None) -> str:
    """Where the manifest form posts: GitHub's "new app" page, personal or organisation."""
    return f"{_owner_settings(github_url, org)}/apps/new"


def app_settings_url(github_url: str, org: str | None, slug: str) -> str:
    """The settings page of a registered app (webhook URL, keys, permissions)."""
    return f"{_owner_settings(github_url, org)}/apps/{quote(slug, safe='')}"


def _owner_settings(github_url: str, org: str | None) -> str:
    base = github_url.rstrip("/")
    if org is None:
        return f"{base}/settings"
    return f"{base}/organizations/{quote(org, safe='')}/settings"
