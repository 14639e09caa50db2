"""The pull-request handler through the router, on a git repository served by the recording fake.

The planner is a tiny stand-in here (the real one is exercised end to end): it reports
the changed paths, and an error at the line of any `bad:` value.
"""

from __future__ import annotations

import http
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gidgethub
import pytest
from gidgethub import sansio

from bot.core.findings import Finding, error
from bot.core.settings import Settings
from bot.core.snapshot import Snapshot
from bot.github.snapshot import RepoRef
from bot.handlers.context import PlanOutcome, Services
from bot.handlers.planning import MARKER
from bot.handlers.router import coalesce_tag, job_key, router
from tests.conftest import Answers, sample
from tests.test_github_snapshot import World, git, rev

REPO = RepoRef("octo", "infra", "https://api.github.com/repos/octo/infra")
COMMENTS = f"{REPO.url}/issues/7/comments"
CHECKS = f"{REPO.url}/check-runs"
RUN_URL = f"{CHECKS}/11"


class StandInPlanner:
    """Records what it was asked; plans by listing changed paths."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False

    def __call__(
        self,
        base: Snapshot,
        head: Snapshot,
        settings: Settings,
        labels: Sequence[str],
        extra: Sequence[Finding],
        **shown: object,  # claims and the PR number, for the comment
    ) -> PlanOutcome:
        if self.fail:
            raise ValueError("planner bug with a secret-looking detail ghs_abc")
        changed = sorted(
            p
            for p in set(base.paths()) | set(head.paths())
            if not (base.exists(p) and head.exists(p) and base.blob_id(p) == head.blob_id(p))
        )
        findings = list(extra)
        for path in changed:
            if head.exists(path):
                for n, line in enumerate(head.read(path).decode().splitlines(), 1):
                    if line.startswith("bad:"):
                        findings.append(error(path, n, "stand-in", "bad value"))
        self.calls.append(
            {"changed": changed, "labels": list(labels), "settings": settings, "extra": list(extra)}
        )
        body = f"{MARKER}\nchanged: {', '.join(changed) or 'nothing'}\nlabels: {list(labels)}"
        title = "errors" if findings else ("nothing will deploy" if not changed else "ok")
        return PlanOutcome(tuple(findings), body, title, body.removeprefix(MARKER))


class Repo(World):
    """The fake GitHub of one repository with one PR (#7)."""

    def __init__(self, tmp_path: Path, files: dict[str, str]) -> None:
        super().__init__(tmp_path, files)
        self.gh.responses[("POST", CHECKS)] = {"id": 11, "url": RUN_URL}
        self.gh.responses[("PATCH", RUN_URL)] = {}
        self.gh.responses[("GET", COMMENTS + "?per_page=100")] = []
        self.gh.responses[("POST", COMMENTS)] = {"id": 5, "url": f"{REPO.url}/issues/comments/5"}
        self.gh.responses[("PATCH", f"{REPO.url}/issues/comments/5")] = {}
        self.main = rev(self.repo, "HEAD")
        git(self.repo, "checkout", "-qb", "feature")

    patches = True  # GitHub's compare sends them; the sandbox may not

    def event(self, action: str, head: str, **changes: Any) -> sansio.Event:
        data = sample("pull_request", "synchronize" if action == "edited" else action)
        data["action"] = action
        data["number"] = 7
        pr = data["pull_request"]
        pr.update(number=7, state="open", comments_url=COMMENTS, labels=[])
        pr["base"].update(ref="main", sha=self.main)
        pr["head"].update(ref="feature", sha=head)
        repo = data["repository"]
        repo.update(
            url=REPO.url, name="infra", full_name="octo/infra", default_branch="main", id=99
        )
        repo["owner"]["login"] = "octo"
        data["installation"] = {"id": 5}
        for key, value in changes.items():
            if key in ("labels", "state"):
                pr[key] = value
            else:
                data[key] = value
        self.compare(self.main, head, patches=self.patches)
        return sansio.Event(data, event="pull_request", delivery_id=f"d-{action}-{head[:6]}")

    def checks(self) -> list[dict[str, Any]]:
        return [d for m, u, d in self.gh.calls if u.startswith(CHECKS)]

    def comment_bodies(self) -> list[str]:
        return [
            d["body"] for m, u, d in self.gh.calls if m in ("POST", "PATCH") and "comments" in u
        ]


FILES = {f"config/clusters/c1/hub{n}.values.yaml": f"n: {n}\n" for n in range(6)}


@pytest.fixture
def planner() -> StandInPlanner:
    return StandInPlanner()


@pytest.fixture
def services(planner: StandInPlanner) -> Services:
    return Services(app_id="42", plan=planner)


@pytest.mark.parametrize(("patches", "calls"), [(True, 6), (False, 7)])
async def test_opened_plans_comments_and_checks_within_budget(
    tmp_path: Path, services: Services, planner: StandInPlanner, patches: bool, calls: int
) -> None:
    world = Repo(tmp_path, FILES)
    world.patches = patches
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 1\nbad: true\n"})
    await router.dispatch(world.event("opened", head), world.gh, services=services)
    paths = [(m, u.split("/octo/infra")[-1].split("?")[0]) for m, u, _ in world.gh.calls]
    assert paths[0] == ("POST", "/check-runs")  # feedback first
    # + the token request: 7 cold with GitHub's patches, 8 when the blob must be fetched.
    assert len(world.gh.calls) == calls
    assert planner.calls[0]["changed"] == ["config/clusters/c1/hub1.values.yaml"]
    assert world.comment_bodies() == [
        f"{MARKER}\nchanged: config/clusters/c1/hub1.values.yaml\nlabels: []"
    ]
    final = world.checks()[-1]
    assert (final["status"], final["conclusion"]) == ("completed", "failure")
    assert final["output"]["annotations"] == [
        {
            "path": "config/clusters/c1/hub1.values.yaml",
            "start_line": 2,
            "end_line": 2,
            "annotation_level": "failure",
            "title": "stand-in",
            "message": "bad value",
        }
    ]


@pytest.mark.parametrize(("patches", "calls"), [(True, 4), (False, 5)])
async def test_a_second_push_updates_in_place_within_the_warm_budget(
    tmp_path: Path, services: Services, patches: bool, calls: int
) -> None:
    world = Repo(tmp_path, FILES)
    world.patches = patches
    first = world.push({f"config/clusters/c1/hub{n}.values.yaml": f"n: {n}{n}\n" for n in range(4)})
    await router.dispatch(world.event("opened", first), world.gh, services=services)
    world.gh.calls.clear()
    second = world.push({"config/clusters/c1/hub5.values.yaml": "n: 55\n"})
    await router.dispatch(world.event("synchronize", second), world.gh, services=services)
    assert len(world.gh.calls) == calls
    assert [m for m, u, _ in world.gh.calls if "comments" in u] == ["PATCH"]
    assert world.checks()[-1]["conclusion"] == "success"


async def test_a_pr_that_stops_touching_config_says_nothing_will_deploy(
    tmp_path: Path, services: Services
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 100\n"})
    await router.dispatch(world.event("opened", head), world.gh, services=services)
    back = world.push({"config/clusters/c1/hub1.values.yaml": "n: 1\n"})
    await router.dispatch(world.event("synchronize", back), world.gh, services=services)
    assert world.comment_bodies()[-1] == f"{MARKER}\nchanged: nothing\nlabels: []"


async def test_labels_reach_the_planner(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    labels = [{"name": "deployer:skip-deploy"}]
    await router.dispatch(world.event("labeled", head, labels=labels), world.gh, services=services)
    assert planner.calls[0]["labels"] == ["deployer:skip-deploy"]


@pytest.mark.parametrize(
    ("action", "changes", "plans"),
    [
        ("edited", {"changes": {"title": {"from": "old"}}}, False),
        ("edited", {"changes": {"base": {"ref": {"from": "develop"}}}}, True),
        ("labeled", {"state": "closed"}, False),
        ("reopened", {}, True),
        ("ready_for_review", {}, True),
        ("unlabeled", {}, True),
    ],
)
async def test_which_events_replan(
    tmp_path: Path,
    services: Services,
    planner: StandInPlanner,
    action: str,
    changes: dict[str, Any],
    plans: bool,
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    await router.dispatch(world.event(action, head, **changes), world.gh, services=services)
    assert bool(planner.calls) is plans
    assert bool(world.gh.calls) is plans


async def test_settings_come_from_the_default_branch_not_the_pr(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    world = Repo(tmp_path, {**FILES, "hubbot.yaml": "staging_hub_pattern: '^stg-'\n"})
    head = world.push({"hubbot.yaml": "staging_hub_pattern: '^evil-'\n"})
    await router.dispatch(world.event("opened", head), world.gh, services=services)
    assert planner.calls[0]["settings"].staging_hub_pattern == "^stg-"
    assert not any("/contents/" in u for u in world.gh.urls())  # read from the base tarball


async def test_a_broken_settings_file_is_a_finding_on_every_pr(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    world = Repo(tmp_path, {**FILES, "hubbot.yaml": "no_such_key: 1\n"})
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    await router.dispatch(world.event("opened", head), world.gh, services=services)
    extra = planner.calls[0]["extra"]
    assert [(f.path, f.line, f.severity) for f in extra] == [("hubbot.yaml", 1, "error")]
    assert world.checks()[-1]["conclusion"] == "failure"


async def test_settings_are_read_once_and_dropped_by_a_push_to_main(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    event = world.event("opened", head)
    event.data["pull_request"]["base"]["ref"] = "develop"  # not the default branch: ask the API
    contents = f"{REPO.url}/contents/hubbot.yaml?ref=main"
    world.gh.responses[("GET", contents)] = {
        "type": "file",
        "encoding": "base64",
        "content": "c3RhZ2luZ19odWJfcGF0dGVybjogeAo=",
    }
    await router.dispatch(event, world.gh, services=services)
    await router.dispatch(event, world.gh, services=services)
    assert world.gh.urls().count(contents) == 1
    assert planner.calls[1]["settings"].staging_hub_pattern == "x"
    push = sample("push", "push")
    push["ref"] = "refs/heads/main"
    push["after"] = "2" * 40
    push["repository"].update(full_name="octo/infra", default_branch="main")
    await router.dispatch(
        sansio.Event(push, event="push", delivery_id="p"), world.gh, services=services
    )
    await router.dispatch(event, world.gh, services=services)
    assert world.gh.urls().count(contents) == 2
    # main is known to be at a newer commit than this PR's merge base: ask, don't guess.
    services.settings.invalidate("octo/infra", "3" * 40)
    await router.dispatch(world.event("synchronize", head), world.gh, services=services)
    assert world.gh.urls().count(contents) == 3


async def test_a_github_failure_mid_way_concludes_the_check_with_the_reason(
    tmp_path: Path, services: Services
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    event = world.event("opened", head)
    world.gh.responses[("GET", f"{REPO.url}/compare/{world.main}...{head}")] = (
        gidgethub.GitHubBroken(http.HTTPStatus.BAD_GATEWAY)
    )
    with pytest.raises(gidgethub.GitHubBroken):
        await router.dispatch(event, world.gh, services=services)
    final = world.checks()[-1]
    assert (final["status"], final["conclusion"]) == ("completed", "failure")
    assert "GitHub answered 502 Bad Gateway" in final["output"]["summary"]


async def test_a_check_github_will_not_create_at_first_still_gets_the_plan_out(
    tmp_path: Path, services: Services
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    created = world.gh.responses[("POST", CHECKS)]
    world.gh.responses[("POST", CHECKS)] = Answers(
        gidgethub.GitHubBroken(http.HTTPStatus.BAD_GATEWAY), created
    )
    await router.dispatch(world.event("opened", head), world.gh, services=services)
    # the comment went out, and the run was created again at the end and concluded
    assert any(u.endswith("/comments") for u in world.gh.urls("POST"))
    final = world.checks()[-1]
    assert (final["status"], final["conclusion"]) == ("completed", "success")
    assert [m for m, u, _ in world.gh.calls if u == CHECKS] == ["POST", "POST"]


async def test_a_planner_bug_concludes_the_check_without_leaking_the_message(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    planner.fail = True
    with pytest.raises(ValueError):
        await router.dispatch(world.event("opened", head), world.gh, services=services)
    summary = world.checks()[-1]["output"]["summary"]
    assert "internal error (ValueError)" in summary and "ghs_abc" not in summary


async def test_rerun_of_our_check_replans_its_pr(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    pr_event = world.event("synchronize", head)
    data = sample("check_run", "rerequested")
    pr_url = f"{REPO.url}/pulls/7"
    data["check_run"].update(
        name="hubbot/plan", app={"id": 42}, pull_requests=[{"number": 7, "url": pr_url}]
    )
    data["repository"] = pr_event.data["repository"]
    world.gh.responses[("GET", pr_url)] = pr_event.data["pull_request"]
    event = sansio.Event(data, event="check_run", delivery_id="rerun")
    await router.dispatch(event, world.gh, services=services)
    assert len(planner.calls) == 1
    data["check_run"]["app"] = {"id": 7}  # another app's check: not ours to re-run
    await router.dispatch(event, world.gh, services=services)
    assert len(planner.calls) == 1


@pytest.mark.parametrize(
    ("event", "data", "key", "tag"),
    [
        (
            "pull_request",
            {"action": "synchronize", "number": 7, "repository": {"id": 9}},
            "9#7",
            "replan",
        ),
        ("pull_request", {"action": "closed", "number": 7, "repository": {"id": 9}}, "9#7", None),
        (
            "issue_comment",
            {"action": "created", "issue": {"number": 7}, "repository": {"id": 9}},
            "9#7",
            None,
        ),
        ("push", {"ref": "refs/heads/main", "repository": {"id": 9}}, "9@refs/heads/main", None),
        (
            "check_run",
            {
                "action": "rerequested",
                "check_run": {"pull_requests": [{"number": 3}]},
                "repository": {"id": 9},
            },
            "9#3",
            "replan",
        ),
        (
            "check_run",
            {
                "action": "rerequested",
                "check_run": {"name": "hubbot/deploy", "pull_requests": []},
                "repository": {"id": 9},
            },
            "9:check_run",
            None,
        ),
        ("pull_request", {"number": "x", "repository": "odd"}, "-:pull_request", None),
        ("star", [], "-:star", None),
    ],
)
def test_job_keys_and_tags(event: str, data: Any, key: str, tag: str | None) -> None:
    e = sansio.Event(data, event=event, delivery_id="d")
    assert job_key(e) == key
    assert coalesce_tag(e) == tag


async def test_a_shutdown_mid_plan_still_concludes_the_check(
    tmp_path: Path, services: Services, planner: StandInPlanner
) -> None:
    import asyncio
    import threading

    world = Repo(tmp_path, FILES)
    head = world.push({"config/clusters/c1/hub1.values.yaml": "n: 2\n"})
    entered, release = threading.Event(), threading.Event()
    plan = services.plan

    def slow_plan(*args: Any, **kwargs: Any) -> PlanOutcome:
        entered.set()
        release.wait(10)
        return plan(*args, **kwargs)

    services.plan = slow_plan
    task = asyncio.create_task(
        router.dispatch(world.event("opened", head), world.gh, services=services)
    )
    assert await asyncio.to_thread(entered.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    final = world.checks()[-1]
    assert (final["status"], final["conclusion"]) == ("completed", "failure")
    assert "stopped" in final["output"]["summary"]


@pytest.mark.parametrize("repository", [7, "octo/infra", ["octo"], None])
async def test_a_push_without_a_repository_object_is_a_payload_error(repository: Any) -> None:
    from bot.handlers.context import PayloadError

    push = {**sample("push", "push"), "repository": repository}
    with pytest.raises(PayloadError):
        await router.dispatch(
            sansio.Event(push, event="push", delivery_id="p"), object(), services=Services()
        )
