"""app.yaml asks for exactly the events hubbot routes, and for permissions that cover every
REST endpoint hubbot calls, and no more.

Which endpoints: every operation the GitHub double serves (`bot/sandbox/github`). hubbot's
end-to-end tests run it against the double, which answers 404 to anything it does not
serve, so what the double serves is a superset of what hubbot calls; a new endpoint in the
double fails `test_every_endpoint_the_double_serves_is_reviewed` until it is added below.

Which permission each endpoint needs: GitHub's REST description (`@octokit/openapi` 23) does
not say (its `x-github` holds only `enabledForGitHubApps`, `category` and the like), so the
table below is reviewed by hand against GitHub's docs, "Permissions required for GitHub
Apps" (https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps,
the same data as github/docs `src/github-apps/data/fpt-2022-11-28/
server-to-server-permissions.json`) and each endpoint's "Fine-grained access" section.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import pytest

from bot.register.manifest import MANIFEST_KEYS, packaged_manifest
from tests.conftest import CACHE, ROOT

OPENAPI_JSON = CACHE / "npm" / "openapi" / "generated" / "api.github.com.json"
WEBHOOK_SCHEMAS = CACHE / "npm" / "webhooks-schemas" / "schema.json"
MANIFEST = packaged_manifest()
DECLARED: dict[str, str] = MANIFEST["default_permissions"]
LEVELS = {"none": 0, "read": 1, "write": 2}

Need = tuple[str, str]  # (permission, level)
# Endpoint -> the permissions that each allow it (any one suffices). Where GitHub lists an
# endpoint under two permissions ("additional-permissions": true) both are given.
ENDPOINTS: dict[str, tuple[Need, ...]] = {
    # Checks
    "POST /repos/{owner}/{repo}/check-runs": (("checks", "write"),),
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}": (("checks", "write"),),
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}": (("checks", "read"),),
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations": (("checks", "read"),),
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs": (("checks", "read"),),
    # Contents
    "GET /repos/{owner}/{repo}/branches/{branch}": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/commits": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/commits/{ref}": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/compare/{basehead}": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/contents/{path}": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/git/blobs/{file_sha}": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/git/trees/{tree_sha}": (("contents", "read"),),
    "GET /repos/{owner}/{repo}/tarball/{ref}": (("contents", "read"),),
    # Deployments
    "GET /repos/{owner}/{repo}/deployments": (("deployments", "read"),),
    "POST /repos/{owner}/{repo}/deployments": (("deployments", "write"),),
    "GET /repos/{owner}/{repo}/deployments/{deployment_id}": (("deployments", "read"),),
    "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses": (("deployments", "read"),),
    "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses": (("deployments", "write"),),
    # Issues (comments and labels on a pull request are its issue's; either permission works)
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": (
        ("issues", "read"),
        ("pull_requests", "read"),
    ),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": (
        ("issues", "write"),
        ("pull_requests", "write"),
    ),
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}": (
        ("issues", "read"),
        ("pull_requests", "read"),
    ),
    "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}": (
        ("issues", "write"),
        ("pull_requests", "write"),
    ),
    "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}": (
        ("issues", "write"),
        ("pull_requests", "write"),
    ),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/labels": (
        ("issues", "write"),
        ("pull_requests", "write"),
    ),
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}": (
        ("issues", "write"),
        ("pull_requests", "write"),
    ),
    # Reactions on issue comments are listed under Issues only.
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": (("issues", "read"),),
    "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": (("issues", "write"),),
    "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions/{reaction_id}": (
        ("issues", "write"),
    ),
    # Pull requests
    "GET /repos/{owner}/{repo}/pulls": (("pull_requests", "read"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}": (
        ("pull_requests", "read"),
        ("contents", "read"),
    ),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/commits": (("pull_requests", "read"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/files": (("pull_requests", "read"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews": (("pull_requests", "read"),),
    "GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls": (("pull_requests", "read"),),
    # Metadata
    "GET /repos/{owner}/{repo}": (("metadata", "read"),),
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission": (("metadata", "read"),),
    # Members (an organisation permission): partners given as @org/team
    "GET /orgs/{org}/teams/{team_slug}/memberships/{username}": (("members", "read"),),
}
# Endpoints that need no permission of the installation, and why.
NO_PERMISSION: dict[str, str] = {
    "GET /app": "authenticated as the app (JWT)",
    "GET /app/installations": "authenticated as the app (JWT)",
    "POST /app/installations/{installation_id}/access_tokens": "authenticated as the app (JWT)",
    "GET /repos/{owner}/{repo}/installation": "authenticated as the app (JWT)",
    "POST /app-manifests/{code}/conversions": "unauthenticated: `hubbot register`",
    "GET /installation/repositories": "what any installation token can reach",
    "GET /users/{username}": "public profile data",
}
# Webhook event -> the permission an app needs to subscribe to it (GitHub's "Webhook events
# and payloads": "a GitHub App must have at least read-level access for ...").
EVENT_PERMISSIONS: dict[str, Need] = {
    "check_run": ("checks", "read"),
    "check_suite": ("checks", "read"),
    "issue_comment": ("issues", "read"),
    "pull_request": ("pull_requests", "read"),
    "push": ("contents", "read"),
}
# Delivered to every app without a subscription (and not subscribable).
ALWAYS_DELIVERED = frozenset(
    {
        "ping",
        "installation",
        "installation_repositories",
        "installation_target",
        "github_app_authorization",
    }
)
# Subscribed before their handler lands, so the app need not be registered twice. The test
# fails as soon as the routers handle one of them: then it belongs in the routed set.
PENDING_EVENTS: dict[str, str] = {}
# Declared above strict need, with the reason. The test fails if one becomes needed.
KEPT_ABOVE_NEED = {
    "pull_requests": "write is listed in issue 5; hubbot writes PR comments and labels "
    "through the issues API, which issues: write already covers",
}


@functools.cache
def openapi() -> dict[str, Any]:
    if not OPENAPI_JSON.is_file():
        pytest.skip("run tools/setup: .cache/npm/openapi is absent")
    data: dict[str, Any] = json.loads(OPENAPI_JSON.read_text())
    return data


def served_operations() -> dict[str, str]:
    """`METHOD /path` -> docs URL of every REST operation the double serves."""
    from bot.sandbox.github.http import operations

    return {key: op.doc for key, op in operations().items()}


def routed_events() -> set[str]:
    """Every event some handler of hubbot's merged router is registered for."""
    module = pytest.importorskip(
        "bot.handlers.router", reason="hubbot's routers (bot/handlers/router.py) are not here yet"
    )
    router = module.router
    return set(router._shallow_routes) | set(router._deep_routes)


def allows(granted: dict[str, str], need: Need) -> bool:
    permission, level = need
    return LEVELS[granted.get(permission, "none")] >= LEVELS[level]


def unmet(granted: dict[str, str]) -> list[str]:
    """Endpoints and events `granted` does not cover."""
    missing = [
        key for key, needs in ENDPOINTS.items() if not any(allows(granted, n) for n in needs)
    ]
    missing += [
        f"event {event}"
        for event in MANIFEST["default_events"]
        if not allows(granted, EVENT_PERMISSIONS[event])
    ]
    return missing


# ---- the file ----------------------------------------------------------------------------


def test_root_app_yaml_is_the_manifest_the_package_ships() -> None:
    packaged = resources.files("bot.register").joinpath("app.yaml").read_text(encoding="utf-8")
    assert (ROOT / "app.yaml").read_text(encoding="utf-8") == packaged


def test_manifest_is_private_with_placeholders_that_register_replaces() -> None:
    assert set(MANIFEST) <= MANIFEST_KEYS
    assert MANIFEST["public"] is False
    assert MANIFEST["hook_attributes"] == {
        "url": "https://hubbot.example.org/webhook",
        "active": True,
    }
    assert MANIFEST["redirect_url"].startswith("http://127.0.0.1:")
    assert len(MANIFEST["name"]) <= 34


# ---- events ------------------------------------------------------------------------------


def test_every_routed_event_is_subscribed_and_nothing_more() -> None:
    routed = routed_events() - ALWAYS_DELIVERED
    subscribed = set(MANIFEST["default_events"])
    assert routed - subscribed == set(), "routed but not subscribed in app.yaml"
    assert subscribed - routed == set(PENDING_EVENTS), "subscribed but handled by no router"


def test_subscribed_events_are_real_webhook_events_with_their_permission() -> None:
    if not WEBHOOK_SCHEMAS.is_file():
        pytest.skip("run tools/setup: .cache/npm/webhooks-schemas is absent")
    schema = json.loads(WEBHOOK_SCHEMAS.read_text())
    known = {ref["$ref"].rsplit("/", 1)[1].rsplit("_event", 1)[0] for ref in schema["oneOf"]}
    known = {name.replace("$event", "") for name in known}
    events = MANIFEST["default_events"]
    assert len(events) == len(set(events))
    assert set(events) <= known
    assert set(events) <= set(EVENT_PERMISSIONS), "add the event's permission to the table"
    assert not set(events) & ALWAYS_DELIVERED


# ---- permissions -------------------------------------------------------------------------


def test_permission_names_and_levels_are_githubs() -> None:
    schema = openapi()["components"]["schemas"]["app-permissions"]["properties"]
    for permission, level in DECLARED.items():
        assert permission in schema, permission
        assert level in schema[permission]["enum"], (permission, level)


def test_every_endpoint_the_double_serves_is_reviewed() -> None:
    served = set(served_operations())
    reviewed = set(ENDPOINTS) | set(NO_PERMISSION)
    assert not set(ENDPOINTS) & set(NO_PERMISSION)
    assert served - reviewed == set(), "review these endpoints' permissions in the table"
    assert reviewed - served == set(), "the double no longer serves these: drop them"


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_endpoint_is_allowed_by_a_declared_permission(endpoint: str) -> None:
    needs = ENDPOINTS[endpoint]
    doc = served_operations().get(endpoint, "")
    assert any(allows(DECLARED, need) for need in needs), f"{endpoint} needs {needs}: {doc}"


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_reviewed_endpoint_is_githubs_and_open_to_apps(endpoint: str) -> None:
    method, path = endpoint.split(" ", 1)
    operation = openapi()["paths"][path][method.lower()]
    assert operation["x-github"]["enabledForGitHubApps"] is True


@pytest.mark.parametrize("permission", sorted(DECLARED))
def test_declared_permission_is_no_more_than_hubbot_needs(permission: str) -> None:
    assert unmet(DECLARED) == []
    lowered = dict(DECLARED)
    lowered[permission] = "read" if DECLARED[permission] == "write" else "none"
    broken = unmet(lowered)
    if permission in KEPT_ABOVE_NEED:
        assert broken == [], f"{permission} is needed now: drop it from KEPT_ABOVE_NEED"
    else:
        assert broken, f"{permission}: {DECLARED[permission]} is more than hubbot needs"


def test_the_double_presents_the_manifests_permissions() -> None:
    from bot.sandbox.github.shapes import APP_PERMISSIONS

    assert APP_PERMISSIONS == DECLARED
