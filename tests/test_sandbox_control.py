"""The double's control API: people act on a real git repository and GitHub's events follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sandbox_support import git


def repo_dir(sandbox) -> Path:
    return Path(sandbox.context.repo.path)


async def test_info_describes_the_double(github_sandbox, sandbox_ctl):
    info = await sandbox_ctl.get("/")
    assert info["api_url"] == github_sandbox.api_url
    assert info["control_url"] == github_sandbox.control_url
    assert info["installation_id"] == github_sandbox.installation_id
    assert info["bot_login"] == "hubbot[bot]"
    assert info["repository"] == f"hubbot-sandbox/{repo_dir(github_sandbox).name}"


async def test_branch_is_a_real_commit_with_the_users_identity(github_sandbox, sandbox_ctl):
    await sandbox_ctl.post("/users", {"login": "alice", "permission": "write"})
    answer = await sandbox_ctl.post(
        "/branches",
        {
            "name": "feature/cpu",
            "files": {"config/clusters/alpha/prod.values.yaml": "cpu: 4\n", "README.md": None},
            "message": "More CPU",
            "user": "alice",
        },
        expect=201,
    )
    repo = repo_dir(github_sandbox)
    assert git(repo, "rev-parse", "feature/cpu") == answer["sha"]
    assert git(repo, "show", "feature/cpu:config/clusters/alpha/prod.values.yaml") == "cpu: 4"
    assert "README.md" not in git(repo, "ls-tree", "-r", "--name-only", "feature/cpu")
    assert git(repo, "log", "-1", "--format=%an|%s", "feature/cpu") == "alice|More CPU"
    # the user's working tree and index are untouched
    assert git(repo, "status", "--porcelain") == ""
    assert [d["event"] for d in answer["deliveries"]] == ["push"]
    assert answer["deliveries"][0]["status"] == 202


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "x", "from": "no-such-ref"}, 422),
        ({"name": "../evil"}, 422),
        ({"name": "x", "files": {"../outside": "x"}}, 422),
        ({"name": "x", "files": {"a": 1}}, 422),
        ({"files": {}}, 422),
    ],
)
async def test_bad_branch_requests_are_refused(sandbox_ctl, body, status):
    await sandbox_ctl.post("/branches", body, expect=status)


async def test_existing_branch_cannot_be_created_again(sandbox_ctl):
    await sandbox_ctl.post("/branches", {"name": "twice"})
    answer = await sandbox_ctl.post("/branches", {"name": "twice"}, expect=422)
    assert "already exists" in answer["errors"][0]["message"]


async def test_pull_opens_and_pushes_synchronize(github_sandbox, sandbox_ctl, webhook_receiver):
    number = await sandbox_ctl.open_pull({"a.txt": "a\n"})
    assert number == 1
    first = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    pushed = await sandbox_ctl.post(f"/pulls/{number}/commits", {"files": {"b.txt": "b\n"}})
    assert [(d["event"], d["action"]) for d in pushed["deliveries"]] == [
        ("push", None),
        ("pull_request", "synchronize"),
    ]
    sync = webhook_receiver.received[-1].payload
    assert (sync["before"], sync["after"]) == (first, pushed["sha"])
    assert sync["pull_request"]["head"]["sha"] == pushed["sha"]
    assert git(repo_dir(github_sandbox), "rev-parse", "refs/pull/1/head") == pushed["sha"]
    view = await sandbox_ctl.get(f"/pulls/{number}")
    assert view["head_shas"] == [first, pushed["sha"]]


async def test_pull_needs_commits_and_is_unique(sandbox_ctl):
    await sandbox_ctl.post("/branches", {"name": "empty"})
    answer = await sandbox_ctl.post("/pulls", {"head": "empty"}, expect=422)
    assert "No commits between main and empty" in answer["errors"][0]["message"]
    await sandbox_ctl.open_pull({"x": "x"}, branch="dup")
    again = await sandbox_ctl.post("/pulls", {"head": "dup"}, expect=422)
    assert "already exists" in again["errors"][0]["message"]
    await sandbox_ctl.post("/pulls", {"head": "missing"}, expect=422)


async def test_merge_makes_a_two_parent_commit_on_main(
    github_sandbox, sandbox_ctl, webhook_receiver
):
    number = await sandbox_ctl.open_pull({"config/new.yaml": "x: 1\n"})
    head = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    old_main = git(repo_dir(github_sandbox), "rev-parse", "main")
    merged = await sandbox_ctl.post(f"/pulls/{number}/merge", {"user": "bob"})
    repo = repo_dir(github_sandbox)
    assert git(repo, "rev-parse", "main") == merged["sha"]
    assert git(repo, "rev-list", "--parents", "-n1", "main").split()[1:] == [old_main, head]
    assert [(d["event"], d["action"]) for d in merged["deliveries"]] == [
        ("pull_request", "closed"),
        ("push", None),
    ]
    closed, push = (r.payload for r in webhook_receiver.received[-2:])
    assert closed["pull_request"]["merged"] is True
    assert closed["pull_request"]["merge_commit_sha"] == merged["sha"]
    assert closed["pull_request"]["merged_by"]["login"] == "bob"
    assert (push["ref"], push["before"], push["after"]) == (
        "refs/heads/main",
        old_main,
        merged["sha"],
    )
    view = await sandbox_ctl.get(f"/pulls/{number}")
    assert (view["state"], view["merged"], view["merge_commit_sha"]) == (
        "closed",
        True,
        merged["sha"],
    )
    await sandbox_ctl.post(f"/pulls/{number}/merge", expect=405)


async def test_merge_conflict_is_409_and_changes_nothing(github_sandbox, sandbox_ctl):
    path = "config/clusters/alpha/prod.values.yaml"
    number = await sandbox_ctl.open_pull({path: "cpu: 3\n"})
    await sandbox_ctl.post("/push", {"branch": "main", "files": {path: "cpu: 5\n"}})
    before = git(repo_dir(github_sandbox), "rev-parse", "main")
    answer = await sandbox_ctl.post(f"/pulls/{number}/merge", expect=409)
    assert path in answer["message"]
    assert git(repo_dir(github_sandbox), "rev-parse", "main") == before
    assert (await sandbox_ctl.get(f"/pulls/{number}"))["state"] == "open"


async def test_fork_pull_has_a_fork_head_repository(github_sandbox, sandbox_ctl, webhook_receiver):
    await sandbox_ctl.post("/users", {"login": "mallory", "permission": "none"})
    await sandbox_ctl.open_pull({"x.txt": "x"}, branch="patch-1", user="mallory", fork=True)
    opened = webhook_receiver.received[-1].payload
    head, base = opened["pull_request"]["head"], opened["pull_request"]["base"]
    assert head["repo"]["fork"] is True
    assert head["repo"]["full_name"] == f"mallory/{github_sandbox.state.name}"
    assert head["repo"]["full_name"] != base["repo"]["full_name"]
    assert head["label"] == "mallory:patch-1"
    assert opened["pull_request"]["author_association"] == "CONTRIBUTOR"


async def test_comments_as_users_and_bots_edit_and_delete(sandbox_ctl, webhook_receiver):
    number = await sandbox_ctl.open_pull({"x": "x"})
    await sandbox_ctl.post("/users", {"login": "ci-bot[bot]", "type": "Bot"})
    made = await sandbox_ctl.post(
        f"/pulls/{number}/comments", {"user": "ci-bot[bot]", "body": "hi"}
    )
    created = webhook_receiver.received[-1].payload
    assert created["comment"]["user"]["type"] == "Bot"
    assert created["issue"]["pull_request"]["url"].endswith(f"/pulls/{number}")
    await sandbox_ctl.patch(f"/comments/{made['id']}", {"body": "/plan"})
    edited = webhook_receiver.received[-1].payload
    assert (edited["action"], edited["changes"]["body"]["from"]) == ("edited", "hi")
    await sandbox_ctl.call("DELETE", f"/comments/{made['id']}?user=alice")
    deleted = webhook_receiver.received[-1].payload
    assert (deleted["action"], deleted["sender"]["login"]) == ("deleted", "alice")
    assert (await sandbox_ctl.get(f"/pulls/{number}"))["comments"] == []


async def test_labels_send_one_event_per_change(sandbox_ctl, webhook_receiver):
    number = await sandbox_ctl.open_pull({"x": "x"})
    answer = await sandbox_ctl.post(
        f"/pulls/{number}/labels", {"add": ["a", "b"], "remove": ["zz"]}
    )
    assert answer["labels"] == ["a", "b"]
    assert [d["action"] for d in answer["deliveries"]] == ["labeled", "labeled"]
    answer = await sandbox_ctl.post(f"/pulls/{number}/labels", {"add": ["a"], "remove": ["b"]})
    assert answer["labels"] == ["a"]
    assert [d["action"] for d in answer["deliveries"]] == ["unlabeled"]
    assert webhook_receiver.received[-1].payload["label"]["name"] == "b"


async def test_review_and_pull_state_changes(sandbox_ctl, webhook_receiver):
    number = await sandbox_ctl.open_pull({"x": "x"}, draft=True)
    review = await sandbox_ctl.post(
        f"/pulls/{number}/reviews", {"user": "bob", "state": "approved"}
    )
    assert review["deliveries"][0]["event"] == "pull_request_review"
    assert webhook_receiver.received[-1].payload["review"]["state"] == "approved"
    steps = [
        ({"draft": False}, ["ready_for_review"]),
        ({"title": "New", "body": "text"}, ["edited"]),
        ({"state": "closed"}, ["closed"]),
        ({"state": "open"}, ["reopened"]),
    ]
    for change, actions in steps:
        view = await sandbox_ctl.patch(f"/pulls/{number}", change)
        assert [d["action"] for d in view["deliveries"]] == actions
    edited = next(
        r.payload for r in webhook_receiver.received if r.payload.get("action") == "edited"
    )
    assert edited["changes"]["title"]["from"] == "Change feature"
    closed = [r.payload for r in webhook_receiver.received if r.payload.get("action") == "closed"]
    assert closed[-1]["pull_request"]["merged"] is False
    assert (await sandbox_ctl.get(f"/pulls/{number}"))["reviews"][0]["state"] == "APPROVED"


async def test_base_change_is_an_edit_with_the_old_base(sandbox_ctl, webhook_receiver):
    await sandbox_ctl.post("/branches", {"name": "release"})
    number = await sandbox_ctl.open_pull({"x": "x"})
    await sandbox_ctl.patch(f"/pulls/{number}", {"base": "release"})
    edited = webhook_receiver.received[-1].payload
    assert edited["changes"]["base"]["ref"]["from"] == "main"
    assert edited["pull_request"]["base"]["ref"] == "release"


async def test_deliveries_list_and_redelivery_keeps_the_id(sandbox_ctl, webhook_receiver):
    await sandbox_ctl.open_pull({"x": "x"})
    listed = await sandbox_ctl.get("/deliveries")
    assert [d["event"] for d in listed] == ["push", "pull_request"]
    assert all(d["status"] == 202 for d in listed)
    opened = listed[1]
    again = await sandbox_ctl.post("/redeliver", {"delivery": opened["id"]})
    assert again["id"] == opened["id"] and again["redelivery"] is True
    first, second = webhook_receiver.received[1], webhook_receiver.received[2]
    assert first.headers["X-GitHub-Delivery"] == second.headers["X-GitHub-Delivery"]
    assert first.body == second.body
    assert len(await sandbox_ctl.get("/deliveries?since=2")) == 1
    one = await sandbox_ctl.get("/deliveries/1")
    assert one["payload"]["action"] == "opened"
    await sandbox_ctl.post("/redeliver", {"delivery": "nope"}, expect=404)


async def test_receiver_answers_are_recorded(sandbox_ctl, webhook_receiver):
    webhook_receiver.status = 500
    answer = await sandbox_ctl.post("/branches", {"name": "x"})
    assert answer["deliveries"][0]["status"] == 500
    await sandbox_ctl.post("/webhook", {"url": "http://127.0.0.1:9/unreachable"})
    answer = await sandbox_ctl.post("/branches", {"name": "y"})
    assert answer["deliveries"][0]["status"] is None
    assert answer["deliveries"][0]["error"]


async def test_requests_are_recorded_without_tokens(github_sandbox, sandbox_ctl):
    from tests.sandbox_support import installation_client, repo_path

    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    await gh.getitem(repo_path(github_sandbox))
    records = await sandbox_ctl.get("/requests")
    assert [(r["method"], r["status"], r["auth"]) for r in records] == [
        ("POST", 201, "jwt:31337"),
        ("GET", 200, f"installation:{github_sandbox.installation_id}"),
    ]
    assert records[1]["path"] == repo_path(github_sandbox)
    assert gh.oauth_token not in str(records)
    assert len(await sandbox_ctl.get("/requests?since=1")) == 1


async def test_teams_and_unknown_routes(sandbox_ctl):
    team = await sandbox_ctl.post(
        "/teams", {"org": "hubbot-sandbox", "slug": "eng", "members": ["a"]}
    )
    assert team["members"] == {"a": "member"}
    await sandbox_ctl.get("/nothing-here", expect=404)
    await sandbox_ctl.get("/pulls/99", expect=404)
    await sandbox_ctl.post("/users", {"login": "x", "permission": "god"}, expect=422)
    await sandbox_ctl.call("POST", "/users", None, expect=422)
