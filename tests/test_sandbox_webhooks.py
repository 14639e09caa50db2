"""Webhooks from the double: signed as GitHub signs them, shaped as GitHub's schemas say."""

from __future__ import annotations

import pytest
from gidgethub import ValidationFailure, sansio

from tests.sandbox_support import (
    example_payload,
    installation_client,
    repo_path,
    validate_webhook,
)

SECRET = "sandbox-secret"  # what the github_sandbox fixture configures


async def every_event(sandbox_ctl, github_sandbox) -> None:
    """Drive the double through every event and action it can send."""
    await sandbox_ctl.post("/ping")
    number = await sandbox_ctl.open_pull({"config/a.yaml": "a: 1\n"}, draft=True)
    await sandbox_ctl.post(f"/pulls/{number}/commits", {"files": {"config/b.yaml": "b: 1\n"}})
    await sandbox_ctl.post(f"/pulls/{number}/labels", {"add": ["deploy:staging"]})
    await sandbox_ctl.post(f"/pulls/{number}/labels", {"remove": ["deploy:staging"]})
    await sandbox_ctl.patch(f"/pulls/{number}", {"draft": False})
    await sandbox_ctl.patch(f"/pulls/{number}", {"title": "Renamed", "body": "why"})
    made = await sandbox_ctl.post(f"/pulls/{number}/comments", {"user": "alice", "body": "/plan"})
    await sandbox_ctl.patch(f"/comments/{made['id']}", {"body": "/deploy staging"})
    await sandbox_ctl.call("DELETE", f"/comments/{made['id']}")
    await sandbox_ctl.post(f"/pulls/{number}/reviews", {"user": "bob", "state": "APPROVED"})
    await sandbox_ctl.patch(f"/pulls/{number}", {"state": "closed"})
    await sandbox_ctl.patch(f"/pulls/{number}", {"state": "open"})
    # the app acting through the REST API sends events too (its own comment, a label)
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    await gh.post(f"{repo_path(github_sandbox)}/issues/{number}/comments", data={"body": "plan"})
    await gh.post(f"{repo_path(github_sandbox)}/issues/{number}/labels", data={"labels": ["x"]})
    head = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    run = await gh.post(
        f"{repo_path(github_sandbox)}/check-runs",
        data={"name": "hubbot/plan", "head_sha": head, "conclusion": "failure"},
    )
    await sandbox_ctl.post(f"/check-runs/{run['id']}/rerequest", {"user": "bob"})
    await sandbox_ctl.post(f"/pulls/{number}/merge", {"user": "bob"})
    fork = await sandbox_ctl.open_pull({"f.txt": "f"}, branch="patch-1", user="eve", fork=True)
    await sandbox_ctl.patch(f"/pulls/{fork}", {"state": "closed"})
    await github_sandbox.drain()


EXPECTED = {
    ("ping", None),
    ("push", None),
    ("pull_request", "opened"),
    ("pull_request", "synchronize"),
    ("pull_request", "labeled"),
    ("pull_request", "unlabeled"),
    ("pull_request", "ready_for_review"),
    ("pull_request", "edited"),
    ("pull_request", "closed"),
    ("pull_request", "reopened"),
    ("issue_comment", "created"),
    ("issue_comment", "edited"),
    ("issue_comment", "deleted"),
    ("pull_request_review", "submitted"),
    ("check_run", "rerequested"),
}


async def test_every_payload_validates_against_githubs_webhook_schemas(
    github_sandbox, sandbox_ctl, webhook_receiver
):
    await every_event(sandbox_ctl, github_sandbox)
    seen = set(webhook_receiver.events())
    assert seen == EXPECTED
    for received in webhook_receiver.received:
        validate_webhook(received.event, received.payload)


async def test_payload_keys_match_githubs_real_examples(
    github_sandbox, sandbox_ctl, webhook_receiver
):
    """Beyond the schemas: the same keys as GitHub's recorded examples, at the levels bots read."""
    await every_event(sandbox_ctl, github_sandbox)
    nested = ("pull_request", "comment", "issue", "review", "repository", "sender", "check_run")
    # Keys GitHub's examples carry that the double leaves out, and why.
    allowed_missing = {
        "enterprise",  # not on github.com organisations
        "performed_via_github_app",  # issue: only set for issues opened by apps
        "body_html",
        "body_text",  # review: only with a full media type
        "user_view_type",  # newer user field, not in the webhook schema
    }
    for received in webhook_receiver.received:
        action = received.payload.get("action")
        if received.event == "ping":
            continue  # GitHub's ping examples are for repository and organisation hooks, not apps
        try:
            example = example_payload(received.event, action)
        except KeyError:
            continue  # GitHub publishes no example for this action (e.g. issue_comment.deleted)
        ours = received.payload
        assert set(example) - set(ours) <= allowed_missing, (received.event, action)
        for key in nested:
            if isinstance(example.get(key), dict) and isinstance(ours.get(key), dict):
                missing = set(example[key]) - set(ours[key]) - allowed_missing
                assert not missing, (received.event, action, key, missing)


async def test_signature_verifies_with_gidgethub(sandbox_ctl, webhook_receiver):
    await sandbox_ctl.open_pull({"x": "x"})
    for received in webhook_receiver.received:
        event = sansio.Event.from_http(received.headers, received.body, secret=SECRET)
        assert event.delivery_id == received.headers["X-GitHub-Delivery"]
        with pytest.raises(ValidationFailure):
            sansio.Event.from_http(received.headers, received.body, secret="another-secret")


async def test_delivery_headers_are_githubs(github_sandbox, sandbox_ctl, webhook_receiver):
    import hashlib
    import hmac
    import uuid

    await sandbox_ctl.open_pull({"x": "x"})
    headers = webhook_receiver.received[-1].headers
    body = webhook_receiver.received[-1].body
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-GitHub-Event"] == "pull_request"
    uuid.UUID(headers["X-GitHub-Delivery"])
    assert headers["X-GitHub-Hook-ID"] == str(github_sandbox.state.app.hook_id)
    assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(github_sandbox.app_id)
    assert headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
    sha1 = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    assert headers["X-Hub-Signature"] == f"sha1={sha1}"
    payload = webhook_receiver.received[-1].payload
    assert payload["installation"]["id"] == github_sandbox.installation_id
    assert payload["repository"]["full_name"] == github_sandbox.state.full_name
    assert payload["sender"]["login"] == "alice"


async def test_push_payload_lists_commits_and_files(sandbox_ctl, webhook_receiver):
    await sandbox_ctl.post(
        "/push", {"branch": "main", "files": {"new.txt": "n", "README.md": None}}
    )
    push = webhook_receiver.received[-1].payload
    assert push["ref"] == "refs/heads/main" and not push["created"]
    assert push["head_commit"]["id"] == push["after"]
    assert push["head_commit"]["added"] == ["new.txt"]
    assert push["head_commit"]["removed"] == ["README.md"]
    assert isinstance(push["repository"]["pushed_at"], int)  # push events use epoch seconds


async def test_unsigned_without_a_secret(sandbox_ctl, webhook_receiver):
    await sandbox_ctl.post("/webhook", {"secret": None})
    await sandbox_ctl.post("/branches", {"name": "x"})
    assert "X-Hub-Signature-256" not in webhook_receiver.received[-1].headers


async def test_bot_acting_through_the_api_is_the_sender(
    github_sandbox, sandbox_ctl, webhook_receiver
):
    number = await sandbox_ctl.open_pull({"x": "x"})
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    await gh.post(f"{repo_path(github_sandbox)}/issues/{number}/comments", data={"body": "hi"})
    await github_sandbox.drain()
    created = webhook_receiver.received[-1].payload
    assert created["sender"]["login"] == "hubbot[bot]"
    assert created["comment"]["user"]["type"] == "Bot"
    assert created["comment"]["performed_via_github_app"]["slug"] == "hubbot"
