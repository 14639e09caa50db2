"""The re-run handler's decisions against a recording fake: what is redeployed, what is said."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from gidgethub import sansio

from bot.deploys.schedule import Step
from bot.handlers.context import PayloadError, Services
from bot.handlers.deploy_rerun import step_of
from bot.handlers.router import router
from tests.conftest import FakeGH

REPO = "https://api.github.test/repos/org/infra"
SHA = "a" * 40
OLD = "b" * 40
PULLS = f"{REPO}/commits/{SHA}/pulls"
COMMENTS = f"{REPO}/issues/5/comments"
LISTING = f"{REPO}/deployments?sha={SHA}&per_page=100"


def payload(**run: Any) -> dict[str, Any]:
    """A `check_run` rerequested payload (only what the handler reads), changed by `run`."""
    check_run = {"id": 77, "name": "hubbot/deploy", "head_sha": SHA, "app": {"id": 42}, **run}
    return {
        "action": "rerequested",
        "check_run": check_run,
        "repository": {
            "name": "infra",
            "owner": {"login": "org"},
            "url": REPO,
            "default_branch": "main",
        },
        "sender": {"login": "eng"},
    }


def deployment(ident: int, env: str, state: str, *, kind: str = "merge", sha: str = SHA) -> Any:
    """A listed deployment (newest first in the listing) and its newest status."""
    cluster, hub = env.split("/")
    stage = "support" if hub == "support" else "prod" if "prod" in hub else "staging"
    item = {
        "id": ident,
        "url": f"{REPO}/deployments/{ident}",
        "environment": env,
        "sha": sha,
        "created_at": "2026-01-01T00:00:00Z",
        "payload": {
            "hubbot": {
                "kind": kind,
                "cluster": cluster,
                "hub": None if hub == "support" else hub,
                "stage": stage,
            }
        },
    }
    return item, [{"state": state}]


class Submitted:
    """Stands in for the deploy service's settings, context and submit."""

    def __init__(self, services: Services) -> None:
        self.calls: list[tuple[list[Step], dict[str, Any]]] = []
        deploys = services.deploys

        async def default_settings(gh: Any, repo: Any) -> Any:
            return "settings"

        async def submit(ctx: Any, steps: Any, settings: Any, **kw: Any) -> list[Any]:
            self.calls.append((list(steps), kw))
            return []

        deploys.default_settings = default_settings  # type: ignore[method-assign]
        deploys.context = lambda gh, repo, settings: "ctx"  # type: ignore[method-assign,assignment,return-value]
        deploys.submit = submit  # type: ignore[method-assign]


def world(*, role: str = "write", head: str = SHA, merged: bool = True, listed=()) -> FakeGH:
    """A fake GitHub with a merged PR #5 (or none), a role, main's head and deployments."""
    pulls = [
        {
            "number": 5,
            "merged_at": "2026-01-01T00:00:00Z",
            "base": {"ref": "main"},
            "merge_commit_sha": SHA,
            "comments_url": COMMENTS,
        }
    ]
    responses: dict[tuple[str, str], Any] = {
        ("GET", PULLS): pulls if merged else [],
        ("GET", f"{REPO}/collaborators/eng/permission"): {"role_name": role},
        ("GET", f"{REPO}/branches/main"): {"commit": {"sha": head}},
        ("GET", LISTING): [item for item, _ in listed],
        ("POST", COMMENTS): {"id": 1},
    }
    for item, statuses in listed:
        responses[("GET", f"{item['url']}/statuses?per_page=1")] = statuses
    return FakeGH(responses)


async def dispatch(gh: FakeGH, data: dict[str, Any], services: Services) -> None:
    await router.dispatch(
        sansio.Event(data, event="check_run", delivery_id="d1"), gh, services=services
    )


async def test_redeploys_the_newest_failures_of_the_commit_support_included() -> None:
    services = Services(app_id="42")
    submitted = Submitted(services)
    listed = [
        deployment(9, "c1/support", "error"),  # cancelled or errored support release
        deployment(8, "c1/staging", "success", kind="redeploy"),  # re-run since: fine now
        deployment(7, "c1/r-staging", "failure", kind="preview"),  # a preview: not ours here
        deployment(6, "c1/prod", "in_progress"),  # still deploying
        deployment(5, "c1/r-prod", "failure"),  # blocked by the staging gate
        deployment(4, "c1/staging", "failure"),  # older than the redeploy: hidden
        deployment(3, "c1/r-staging", "success"),  # the merge's, under the preview
    ]
    gh = world(listed=listed)
    await dispatch(gh, payload(), services)
    ((steps, kw),) = submitted.calls
    assert steps == [
        Step("c1", "r-prod", "prod", reasons=("re-run",)),
        Step("c1", None, "support", reasons=("re-run",)),
    ]
    assert (kw["kind"], kw["sha"], kw["actor"], kw["pr"]) == ("redeploy", SHA, "eng", 5)
    assert kw["comments_url"] == COMMENTS and kw["delivery"] == "d1"
    # One listing, one status read per environment (its newest non-preview Deployment).
    reads = [u for u in gh.urls("GET") if u.endswith("/statuses?per_page=1")]
    assert sorted(reads) == sorted(
        f"{REPO}/deployments/{i}/statuses?per_page=1" for i in (9, 8, 6, 5, 3)
    )
    assert gh.urls("POST") == []  # queued: the progress comment says the rest


@pytest.mark.parametrize(
    ("gh_world", "said"),
    [
        ({"role": "triage"}, "@eng has `triage`"),
        ({"role": "read"}, "@eng has `read`"),
        ({"head": OLD}, f"no longer the head of `main` (now `{OLD[:7]}`)"),
        ({"listed": [deployment(3, "c1/prod", "success")]}, "nothing to re-run"),
        ({"listed": [deployment(3, "c1/prod", "queued")]}, "`c1/prod` still deploying"),
        ({"listed": [deployment(3, "c1/prod", "failure", kind="preview")]}, "deployed nothing"),
        ({"listed": []}, "deployed nothing at `aaaaaaa`"),
    ],
    ids=["triage", "read", "moved-on", "all-succeeded", "in-flight", "previews-only", "none"],
)
async def test_refusals_and_nothing_to_rerun_are_said_on_the_merged_pr(
    gh_world: dict[str, Any], said: str
) -> None:
    services = Services(app_id="42")
    submitted = Submitted(services)
    gh = world(**gh_world)
    await dispatch(gh, payload(), services)
    assert submitted.calls == []
    ((_, url, data),) = [c for c in gh.calls if c[0] == "POST"]
    assert url == COMMENTS
    assert data["body"].startswith("<!-- hubbot:deploy-rerun d1 -->\n@eng ")
    assert said in data["body"] and "nothing was deployed" in data["body"].lower()


async def test_without_a_merged_pr_the_answer_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = Services(app_id="42")
    Submitted(services)
    gh = world(role="read", merged=False)
    with caplog.at_level(logging.WARNING, logger="bot.handlers.deploy_rerun"):
        await dispatch(gh, payload(), services)
    assert gh.urls("POST") == []
    assert any("@eng has `read`" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "run",
    [{"name": "hubbot/plan"}, {"app": {"id": 7}}, {"app": None}],
    ids=["plan-check", "another-app", "no-app"],
)
async def test_other_checks_are_not_ours(run: dict[str, Any]) -> None:
    services = Services(app_id="42")
    gh = world()
    data = payload(**run)
    data["check_run"]["pull_requests"] = []
    await dispatch(gh, data, services)
    assert gh.calls == []


@pytest.mark.parametrize(
    "change",
    [
        {"check_run": "nope"},
        {"check_run": {"name": "hubbot/deploy", "app": {"id": 42}}},
        {"sender": None},
        {"check_run": {"name": "hubbot/deploy", "app": {"id": 42}, "id": 1, "head_sha": "abc"}},
    ],
    ids=["not-an-object", "no-head-sha", "no-sender", "short-sha"],
)
async def test_bad_payloads_are_payload_errors(change: dict[str, Any]) -> None:
    gh = world()
    data = {**payload(), **change}
    with pytest.raises(PayloadError):
        await dispatch(gh, data, Services(app_id="42"))
    assert gh.calls == []


@pytest.mark.parametrize(
    ("hubbot", "step"),
    [
        ({"cluster": "c", "hub": None, "stage": "support"}, Step("c", None, "support")),
        ({"cluster": "c", "hub": "h", "stage": "prod"}, Step("c", "h", "prod")),
        ({"cluster": "c", "hub": None, "stage": "prod"}, None),
        ({"cluster": "c", "hub": "h", "stage": "support"}, None),
        ({"cluster": "c", "hub": "h", "stage": "dev"}, None),
        ({"cluster": "", "hub": "h", "stage": "prod"}, None),
        ({"cluster": "c", "hub": 3, "stage": "prod"}, None),
        ({}, None),
    ],
)
def test_step_of_a_deployment_payload(hubbot: dict[str, Any], step: Step | None) -> None:
    found = step_of(hubbot)
    if step is None:
        assert found is None
    else:
        assert found is not None
        assert (found.cluster, found.hub, found.stage) == (step.cluster, step.hub, step.stage)


async def test_targets_this_process_is_deploying_are_spared_before_github_knows() -> None:
    """A re-run right after another: its Deployments may not be on GitHub yet."""
    from types import SimpleNamespace

    services = Services(app_id="42")
    Submitted(services)
    record = SimpleNamespace(key="c1/prod", sha=SHA, done=False)
    reporter = SimpleNamespace(records={(1, "c1/prod"): record})
    services.deploys.repos["org/infra"] = SimpleNamespace(reporter=reporter)  # type: ignore[assignment]
    gh = world(listed=[deployment(3, "c1/prod", "failure")])
    await dispatch(gh, payload(), services)
    assert not [u for u in gh.urls("GET") if u.endswith("/statuses?per_page=1")]
    ((_, _url, data),) = [c for c in gh.calls if c[0] == "POST"]
    assert "`c1/prod` still deploying" in data["body"]
