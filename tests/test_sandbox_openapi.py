"""The OpenAPI checker: GitHub's REST description judges every request the double receives."""

from __future__ import annotations

import json

import pytest

from bot.sandbox.github.openapi import (
    extract_operations,
    fix_description,
    load_spec,
    served_operations,
)
from tests.sandbox_support import OPENAPI_JSON, installation_client, repo_path

OPERATIONS_JSON = OPENAPI_JSON.parents[4] / "bot" / "sandbox" / "github" / "operations.json"


def test_description_loads_quickly(openapi_checker):
    # Measured once per session; ~0.5 s with spec validation off (it takes ~37 s otherwise).
    print(f"OpenAPI description loaded in {openapi_checker.load_seconds:.2f} s")
    assert openapi_checker.load_seconds < 15


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/check-runs", {"name": "x", "head_sha": "HEAD", "status": "bogus"}, 422),
        ("POST", "/issues/1/comments", {"text": "no body field"}, 422),
        ("POST", "/issues/1/labels", {"labels": []}, 422),
        ("GET", "/pulls?state=bogus", None, 422),
        ("GET", "/pulls?per_page=many", None, 200),
        ("GET", "/nonsense", None, 404),
        ("PUT", "/pulls/1", {}, 404),
    ],
    ids=[
        "enum",
        "missing-field",
        "min-items",
        "query-enum",
        "query-type",
        "unknown-path",
        "unknown-method",
    ],
)
async def test_requests_the_real_api_rejects_are_flagged(
    github_sandbox, sandbox_ctl, method, path, body, status
):
    await sandbox_ctl.open_pull({"x": "x"})
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    if body is not None and "HEAD" in json.dumps(body):
        body["head_sha"] = github_sandbox.context.repo.branch_sha("main")
    async with sandbox_ctl.session.request(
        method,
        f"{github_sandbox.api_url}{repo_path(github_sandbox)}{path}",
        json=body,
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as resp:
        assert resp.status == status
    flagged = github_sandbox.violations
    assert len(flagged) == 1, flagged
    assert flagged[0].startswith(
        f"request {method} {repo_path(github_sandbox)}{path.split('?')[0]}"
    )
    flagged.clear()


async def test_main_endpoints_pass_request_and_response_checks(github_sandbox, sandbox_ctl):
    """The shapes the double answers validate against the description, endpoint by endpoint."""
    number = await sandbox_ctl.open_pull({"config/a.yaml": "a: 1\n"})
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    repo = repo_path(github_sandbox)
    head = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    await gh.getitem(repo)
    await gh.getitem(f"{repo}/pulls/{number}")
    await gh.getitem(f"{repo}/pulls?state=all")
    await gh.getitem(f"{repo}/pulls/{number}/files")
    await gh.getitem(f"{repo}/compare/main...{head}")
    await gh.getitem(f"{repo}/git/trees/{head}?recursive=1")
    await gh.getitem(f"{repo}/contents/config/a.yaml?ref={head}")
    await gh.getitem(f"{repo}/contents/config")
    await gh.getitem(f"{repo}/commits/{head}")
    await gh.getitem(f"{repo}/branches/main")
    made = await gh.post(f"{repo}/issues/{number}/comments", data={"body": "plan"})
    await gh.patch(f"{repo}/issues/comments/{made['id']}", data={"body": "plan 2"})
    await gh.post(f"{repo}/issues/comments/{made['id']}/reactions", data={"content": "eyes"})
    await gh.getitem(f"{repo}/issues/{number}/comments")
    run = await gh.post(
        f"{repo}/check-runs", data={"name": "p", "head_sha": head, "status": "in_progress"}
    )
    await gh.patch(
        f"{repo}/check-runs/{run['id']}",
        data={
            "conclusion": "success",
            "output": {
                "title": "t",
                "summary": "s",
                "annotations": [
                    {
                        "path": "config/a.yaml",
                        "start_line": 1,
                        "end_line": 1,
                        "annotation_level": "notice",
                        "message": "m",
                    }
                ],
            },
        },
    )
    await gh.getitem(f"{repo}/commits/{head}/check-runs")
    await gh.getitem(f"{repo}/check-runs/{run['id']}/annotations")
    dep = await gh.post(
        f"{repo}/deployments",
        data={"ref": head, "environment": "a/b", "auto_merge": False, "required_contexts": []},
    )
    await gh.post(f"{repo}/deployments/{dep['id']}/statuses", data={"state": "success"})
    await gh.getitem(f"{repo}/deployments/{dep['id']}/statuses")
    await gh.getitem(f"{repo}/collaborators/alice/permission")
    await gh.getitem("/users/alice")
    assert github_sandbox.violations == []
    checked = {r.path for r in github_sandbox.requests}
    assert len(checked) >= 20


async def test_responses_that_drift_are_flagged(github_sandbox, sandbox_ctl, monkeypatch):
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    shapes = github_sandbox.context.shapes
    original = shapes.full_repository

    def drifted(**kw):
        shape = original(**kw)
        del shape["default_branch"]  # a required field gone missing
        return shape

    monkeypatch.setattr(shapes, "full_repository", drifted)
    await gh.getitem(repo_path(github_sandbox))
    assert len(github_sandbox.violations) == 1
    assert "default_branch" in github_sandbox.violations[0]
    assert github_sandbox.violations[0].startswith("response 200 to GET")
    github_sandbox.violations.clear()


def test_operations_json_matches_the_description():
    """The body schemas shipped in the package are what the description says today."""
    if not OPENAPI_JSON.is_file():
        pytest.skip("run tools/setup")
    shipped = json.loads(OPERATIONS_JSON.read_text())
    fresh = extract_operations(load_spec(OPENAPI_JSON), served_operations())
    assert shipped == json.loads(json.dumps(fresh)), (
        "regenerate: python -m bot.sandbox.github.openapi " + str(OPENAPI_JSON)
    )
    assert len(shipped["operations"]) == len(served_operations()) >= 40


def test_description_fixes_are_targeted():
    spec = {
        "a": {
            "oneOf": [{"type": "array"}, {"type": "object"}],
            "discriminator": {"propertyName": "type", "mapping": {"array": "x"}},
        },
        "b": {"type": "string", "nullable": True, "enum": ["x"]},
        "c": {"nullable": True, "oneOf": [{"type": "object"}]},
        "d": {"type": "string", "enum": ["x"]},
        "e": {"allOf": [{"title": "Simple User"}, {"title": "Enterprise"}]},
    }
    assert fix_description(spec) == 4
    assert "allOf" not in spec["e"] and len(spec["e"]["anyOf"]) == 2
    assert "discriminator" not in spec["a"]
    assert spec["b"]["enum"] == ["x", None]
    assert spec["c"]["oneOf"][-1]["enum"] == [None]
    assert spec["d"]["enum"] == ["x"]
