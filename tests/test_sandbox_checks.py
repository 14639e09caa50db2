"""Check runs on the double follow GitHub's documented rules."""

from __future__ import annotations

import gidgethub
import pytest

from tests.sandbox_support import installation_client, repo_path, validate_webhook


def note(line: int, **extra):
    return {
        "path": "config/a.yaml",
        "start_line": line,
        "end_line": line,
        "annotation_level": "failure",
        "message": f"bad at {line}",
        **extra,
    }


@pytest.fixture
async def setup(github_sandbox, sandbox_ctl):
    number = await sandbox_ctl.open_pull({"config/a.yaml": "a: 1\n"})
    head = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    return gh, repo_path(github_sandbox), head, number


async def test_annotations_are_appended_across_updates(setup, sandbox_ctl):
    gh, repo, head, number = setup
    run = await gh.post(
        f"{repo}/check-runs",
        data={
            "name": "hubbot/plan",
            "head_sha": head,
            "status": "in_progress",
            "output": {
                "title": "Plan",
                "summary": "working",
                "annotations": [note(i) for i in range(1, 51)],
            },
        },
    )
    assert (run["status"], run["conclusion"], run["output"]["annotations_count"]) == (
        "in_progress",
        None,
        50,
    )
    done = await gh.patch(
        f"{repo}/check-runs/{run['id']}",
        data={
            "conclusion": "failure",
            "output": {"title": "Plan", "summary": "2 errors", "annotations": [note(51), note(52)]},
        },
    )
    assert (done["status"], done["conclusion"]) == ("completed", "failure")
    assert done["completed_at"] is not None
    assert done["output"]["annotations_count"] == 52
    listed = [a async for a in gh.getiter(f"{repo}/check-runs/{run['id']}/annotations?per_page=50")]
    assert [a["start_line"] for a in listed] == list(range(1, 53))
    view = await sandbox_ctl.get(f"/pulls/{number}")
    assert view["check_runs"][0]["output"]["summary"] == "2 errors"
    assert len(view["check_runs"][0]["annotations"]) == 52
    assert (await gh.getitem(f"{repo}/check-runs/{run['id']}"))["pull_requests"][0][
        "number"
    ] == number


# `in_schema`: whether GitHub's REST description alone rejects the body (so the OpenAPI
# checker flags it too); the others are rules GitHub documents in prose.
@pytest.mark.parametrize(
    ("body", "in_schema"),
    [
        ({"output": {"title": "t", "summary": "s", "annotations": [note(1)] * 51}}, True),
        ({"output": {"title": "t"}}, True),
        ({"output": {"summary": "s"}}, True),
        ({"conclusion": "bogus"}, True),
        ({"output": {"title": "t", "summary": "x" * 65536}}, True),
        ({"status": "completed"}, False),
        ({"completed_at": "2024-01-01T00:00:00Z"}, False),
        (
            {
                "output": {
                    "title": "t",
                    "summary": "s",
                    "annotations": [note(1, end_line=3, start_column=1, end_column=2)],
                }
            },
            False,
        ),
        ({"output": {"title": "t", "summary": "s", "annotations": [note(3, end_line=1)]}}, False),
        ({"conclusion": "stale"}, False),
        ({"head_sha": "f" * 40}, False),
    ],
    ids=[
        "51-annotations",
        "no-summary",
        "no-title",
        "bad-conclusion",
        "long-summary",
        "completed-no-conclusion",
        "completed-at-no-conclusion",
        "columns-across-lines",
        "end-before-start",
        "stale",
        "unknown-commit",
    ],
)
async def test_invalid_check_runs_are_422(setup, github_sandbox, body, in_schema):
    gh, repo, head, _ = setup
    data = {"name": "hubbot/plan", "head_sha": head, **body}
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.post(f"{repo}/check-runs", data=data)
    assert caught.value.status_code == 422
    assert bool(github_sandbox.violations) is in_schema, github_sandbox.violations
    github_sandbox.violations.clear()  # expected: this test sends invalid requests on purpose


async def test_update_rules(setup, github_sandbox):
    gh, repo, head, _ = setup
    run = await gh.post(f"{repo}/check-runs", data={"name": "hubbot/plan", "head_sha": head})
    assert run["status"] == "queued"
    url = f"{repo}/check-runs/{run['id']}"
    with pytest.raises(gidgethub.BadRequest):
        await gh.patch(url, data={"status": "completed"})
    github_sandbox.violations.clear()  # the description's anyOf rejects it as well
    titled = await gh.patch(url, data={"output": {"title": "Plan", "summary": "first"}})
    kept = await gh.patch(url, data={"output": {"summary": "second"}})
    assert (titled["output"]["title"], kept["output"]["title"]) == ("Plan", "Plan")
    assert kept["output"]["summary"] == "second"
    with pytest.raises(gidgethub.BadRequest):
        await gh.patch(f"{repo}/check-runs/999999", data={"status": "in_progress"})


async def test_list_for_ref_filters(setup):
    gh, repo, head, _ = setup
    for status in ("queued", "in_progress"):
        await gh.post(
            f"{repo}/check-runs", data={"name": "hubbot/plan", "head_sha": head, "status": status}
        )
    await gh.post(
        f"{repo}/check-runs",
        data={"name": "hubbot/deploy", "head_sha": head, "conclusion": "success"},
    )
    latest = await gh.getitem(f"{repo}/commits/{head}/check-runs")
    assert latest["total_count"] == 2
    assert {r["name"]: r["status"] for r in latest["check_runs"]} == {
        "hubbot/plan": "in_progress",
        "hubbot/deploy": "completed",
    }
    every = await gh.getitem(f"{repo}/commits/{head}/check-runs?filter=all")
    assert every["total_count"] == 3
    named = await gh.getitem(f"{repo}/commits/{head}/check-runs?check_name=hubbot/deploy")
    assert [r["conclusion"] for r in named["check_runs"]] == ["success"]
    by_branch = await gh.getitem(f"{repo}/commits/feature/check-runs?filter=all")
    assert by_branch["total_count"] == 3


async def test_rerun_sends_check_run_rerequested(
    setup, github_sandbox, sandbox_ctl, webhook_receiver
):
    """ "Re-run" on a completed run sends `check_run` rerequested; unknown 404, unfinished 422."""
    gh, repo, head, number = setup
    main = (await sandbox_ctl.get("/"))["default_branch"]
    await sandbox_ctl.call("POST", "/check-runs/999999/rerequest", {}, expect=404)
    await sandbox_ctl.call("POST", "/check-runs/nope/rerequest", {}, expect=404)
    pending = await gh.post(f"{repo}/check-runs", data={"name": "hubbot/plan", "head_sha": head})
    await sandbox_ctl.call("POST", f"/check-runs/{pending['id']}/rerequest", {}, expect=422)
    assert not [r for r in webhook_receiver.received if r.event == "check_run"]

    on_pr = await gh.patch(f"{repo}/check-runs/{pending['id']}", data={"conclusion": "failure"})
    tip = (await gh.getitem(f"{repo}/branches/{main}"))["commit"]["sha"]
    on_main = await gh.post(
        f"{repo}/check-runs",
        data={"name": "hubbot/deploy", "head_sha": tip, "conclusion": "success"},
    )
    for run, user, branch, pulls in (
        (on_pr, "carol", "feature", [number]),
        (on_main, "octocat", main, []),
    ):
        answer = await sandbox_ctl.post(f"/check-runs/{run['id']}/rerequest", {"user": user})
        assert answer["id"] == run["id"]
        assert [(d["event"], d["action"]) for d in answer["deliveries"]] == [
            ("check_run", "rerequested")
        ]
        received = webhook_receiver.received[-1]
        validate_webhook(received.event, received.payload)
        payload = received.payload
        assert payload["sender"]["login"] == user
        shape = payload["check_run"]
        assert (shape["id"], shape["name"], shape["head_sha"]) == (
            run["id"],
            run["name"],
            run["head_sha"],
        )
        assert shape["app"]["id"] == github_sandbox.app_id
        assert [p["number"] for p in shape["pull_requests"]] == pulls
        suite = shape["check_suite"]
        assert (suite["head_branch"], suite["head_sha"]) == (branch, run["head_sha"])
        assert suite["conclusion"] == run["conclusion"]
