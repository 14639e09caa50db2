"""Deploy on merge, end to end: the bot deploys the example with real helm and sops.

A merged PR's change rolls out per cluster: support first, then staging, then prod, each
target with a GitHub Deployment (environment, production/transient flags, statuses in
order, environment_url, log_url), one progress comment on the PR and a `hubbot/deploy`
check run on the merge commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import (
    COMMON,
    PUBLIC_URL,
    SUPPORT,
    by_environment,
    deploy_comments,
    deploy_runs,
    deployments,
    edited,
    eventually,
    gate,
    hubbot_yaml,
    merge_change,
    needs_tools,
    running,
    states,
    target_records,
    tools_path,
)
from tests.e2e_support import Stack

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")


@pytest.fixture
async def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> AsyncIterator[Stack]:
    needs_tools()
    tools_path(monkeypatch)
    async with running(tmp_path, openapi_checker) as stack:
        yield stack


UNI_A = {
    "uni-a/support": ("support", "", False),
    "uni-a/staging": ("staging", "https://staging.uni-a.example.org", False),
    "uni-a/r-staging": ("staging", "https://r-staging.uni-a.example.org", False),
    "uni-a/prod": ("prod", "https://jupyter.uni-a.example.org", True),
    "uni-a/r-prod": ("prod", "https://r.uni-a.example.org", True),
}


async def test_a_merge_deploys_support_then_staging_then_prod(stack: Stack) -> None:
    files = {COMMON: edited(COMMON, "merge"), SUPPORT: edited(SUPPORT, "merge")}
    number, sha = await merge_change(stack, files, branch="uni-a-change")

    found = by_environment(await deployments(stack), sha)
    assert set(found) == set(UNI_A)
    for env, (stage, url, prod) in UNI_A.items():
        d = found[env]
        assert d["ref"] == sha and d["sha"] == sha
        assert d["production_environment"] is prod
        assert d["transient_environment"] is False
        assert d["payload"]["hubbot"]["stage"] == stage
        assert "pr" not in d["payload"]["hubbot"]  # a merge claims nothing
        assert states(d) == ["queued", "in_progress", "success"], (env, d["statuses"])
        final = d["statuses"][-1]
        assert (final["environment_url"] or "") == url
        assert final["log_url"].startswith(f"{PUBLIC_URL}/deploys/")
        assert len(final["description"]) <= 140 and final["description"].startswith("deployed")

    # Order, from the bot's own records (GitHub's status ids follow the order in which
    # concurrent writes happened to land, not the order of the deploys): support ends before
    # staging starts, staging before prod.
    records = await target_records(stack, sha)
    assert set(records) == set(UNI_A)
    staging = ["uni-a/staging", "uni-a/r-staging"]
    prod = ["uni-a/prod", "uni-a/r-prod"]
    assert all(records["uni-a/support"].ended < records[e].started for e in staging + prod)
    assert max(records[e].ended for e in staging) < min(records[e].started for e in prod)

    view = await stack.pull(number)
    (body,) = deploy_comments(view)
    assert f"merge of #{number}" in body and "all 5 done" in body
    for env in UNI_A:
        assert f"`{env}`" in body
    assert body.count("✅ deployed") == 5
    (run,) = deploy_runs(view, sha)
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert "uni-a/r-prod" in run["output"]["summary"]

    # The log link serves the deploy's (redacted) log.
    log_url = found["uni-a/staging"]["statuses"][-1]["log_url"]
    async with stack.http.get(log_url.replace(PUBLIC_URL, stack.bot_url)) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "rendered" in text and "Secret/hub" in text
    assert "FAKE-" not in text  # deploy.py never prints decrypted values


async def test_a_failing_staging_deploy_blocks_only_its_own_clusters_prod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    # On main: the hub command fails for uni-a/staging only (exact names, never substrings:
    # uni-a/r-staging must deploy).
    config = hubbot_yaml(before_command="test {cluster}/{hub} != uni-a/staging &&")
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        text = (tmp_path / "repo" / "deploy.py").read_text() + "\n# redeploys every hub\n"
        number, sha = await merge_change(stack, {"deploy.py": text}, branch="everything")
        found = by_environment(await deployments(stack), sha)
        endings = {env: states(d)[-1] for env, d in found.items()}
        assert endings == {
            "uni-a/staging": "failure",
            "uni-a/r-staging": "success",
            "uni-a/prod": "failure",
            "uni-a/r-prod": "failure",
            "ocean-lab/staging": "success",
            "ocean-lab/prod": "success",
            "ocean-lab/dask": "success",
            "city-college/staging": "success",
            "city-college/prod": "success",
        }
        blocked = found["uni-a/prod"]["statuses"]
        assert [s["state"] for s in blocked] == ["queued", "failure"]  # never started
        assert blocked[-1]["description"].startswith("not deployed: staging failed on uni-a")
        assert found["uni-a/staging"]["statuses"][-1]["description"].startswith("failed")
        view = await stack.pull(number)
        (body,) = deploy_comments(view)
        assert body.count("⛔ not deployed") == 2 and body.count("❌ failed") == 1
        (run,) = deploy_runs(view, sha)
        assert run["conclusion"] == "failure"
        assert "2 not deployed" not in run["output"]["title"]  # 3: a failure and two blocked
        assert "3 not deployed" in run["output"]["title"]
        # The metrics count the same endings, by stage, executor and ending.
        async with stack.http.get(f"{stack.bot_url}/metrics") as resp:
            metrics = await resp.text()
        assert 'hubbot_deploys_total{ending="failure",executor="local",stage="staging"} 1.0' in (
            metrics
        )
        assert 'hubbot_deploys_total{ending="blocked",executor="local",stage="prod"} 2.0' in metrics
        assert 'hubbot_deploys_total{ending="success",executor="local",stage="prod"} 3.0' in metrics
        assert "hubbot_deploy_seconds_count" in metrics
        assert "hubbot_deploys_running 0.0" in metrics


async def test_three_quick_merges_lose_nothing_and_coalesce_visibly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(before_command=gate(gates))
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        staging = "config/clusters/uni-a/staging.values.yaml"
        ocean = "config/clusters/ocean-lab/staging.values.yaml"
        _, sha1 = await merge_change(
            stack, {staging: edited(staging, "one")}, branch="one", wait=False
        )

        async def first_running() -> bool:
            d = by_environment(await deployments(stack), sha1).get("uni-a/staging")
            return d is not None and "in_progress" in states(d)

        await eventually(first_running)  # merge 1 holds uni-a's lane, waiting at the gate
        _, sha2 = await merge_change(
            stack, {COMMON: edited(COMMON, "two")}, branch="two", wait=False
        )
        await stack.settle()
        files = {SUPPORT: edited(SUPPORT, "three", 7), ocean: edited(ocean, "three")}
        _, sha3 = await merge_change(stack, files, branch="three", wait=False)
        await stack.settle()
        (gates / "go").touch()
        await stack.deployed()

        everything = await deployments(stack)
        at1, at2, at3 = (by_environment(everything, sha) for sha in (sha1, sha2, sha3))
        # (GitHub's auto_inactive then marks it inactive, once sha3 deployed the same hub.)
        assert {e: states(d)[:3] for e, d in at1.items()} == {
            "uni-a/staging": ["queued", "in_progress", "success"]
        }
        # Merge 2's wave waited behind merge 1 and took merge 3 in: its Deployments at sha2
        # were superseded, visibly, and everything deployed once, at sha3.
        assert set(at2) == {"uni-a/staging", "uni-a/r-staging", "uni-a/prod", "uni-a/r-prod"}
        for d in at2.values():
            assert states(d) == ["queued", "inactive"]
            assert d["statuses"][-1]["description"] == f"superseded by the deploy of {sha3[:7]}"
        assert {e: states(d) for e, d in at3.items()} == {
            env: ["queued", "in_progress", "success"]
            for env in [*at2, "uni-a/support", "ocean-lab/staging"]
        }
        # Order per hub is kept: uni-a/staging at sha1, then (only) at sha3.
        uni_staging = [d["sha"] for d in everything if d["environment"] == "uni-a/staging"]
        assert uni_staging == [sha1, sha2, sha3]
        started = [
            (d["sha"], s["id"])
            for d in everything
            if d["environment"] == "uni-a/staging"
            for s in d["statuses"]
            if s["state"] == "in_progress"
        ]
        assert [sha for sha, _ in sorted(started, key=lambda x: x[1])] == [sha1, sha3]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("deployer:skip-deploy", set()),
        ("deployer:skip-deploy-hubs", {"uni-a/support"}),
    ],
)
async def test_skip_labels_on_the_merged_pr(stack: Stack, label: str, expected: set[str]) -> None:
    files = {COMMON: edited(COMMON, label), SUPPORT: edited(SUPPORT, label)}
    number, sha = await merge_change(stack, files, branch="skip", labels=[label])
    found = by_environment(await deployments(stack), sha)
    assert set(found) == expected
    view = await stack.pull(number)
    (run,) = deploy_runs(view, sha)
    if not expected:
        assert run["conclusion"] == "skipped"
        (body,) = deploy_comments(view)
        assert label in body and "`uni-a/prod`" in body
    else:
        assert run["conclusion"] == "success"


async def test_errors_on_the_default_branch_deploy_nothing(stack: Stack) -> None:
    bad = edited(COMMON, "broken") + "nfs:\n  enabled: maybe\n"
    number, sha = await merge_change(stack, {COMMON: bad}, branch="broken")
    assert by_environment(await deployments(stack), sha) == {}
    view = await stack.pull(number)
    (run,) = deploy_runs(view, sha)
    assert run["conclusion"] == "failure" and "Not deployed" in run["output"]["title"]
    assert any(a["path"] == COMMON for a in run["annotations"])
    (body,) = deploy_comments(view)
    assert "deploys nothing" in body and COMMON in body


async def test_pushes_elsewhere_deploy_nothing(stack: Stack) -> None:
    before = len(await deployments(stack))
    await stack.control(
        "POST", "/branches", {"name": "feature", "files": {COMMON: edited(COMMON, "x")}}
    )
    await stack.control(
        "POST", "/push", {"branch": "feature", "files": {SUPPORT: edited(SUPPORT, "y")}}
    )
    await stack.deployed()
    assert len(await deployments(stack)) == before
    runs = [r for r in stack.sandbox.state.check_runs.values() if r.name == "hubbot/deploy"]
    assert runs == []


async def test_health_checks_flaky_passes_are_said_and_failures_gate_prod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    marks = tmp_path / "marks"
    marks.mkdir()
    check = (
        f"if [ {{hub}} = r-staging ]; then exit 4; fi; test -e {marks}/ok-{{hub}} && exit 0; "
        f"touch {marks}/ok-{{hub}}; exit 3"
    )
    config = hubbot_yaml(health_check=f"'{check}'", health_check_attempts="2")
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        number, sha = await merge_change(stack, {COMMON: edited(COMMON, "health")}, branch="h")
        found = by_environment(await deployments(stack), sha)
        flaky = found["uni-a/staging"]["statuses"][-1]
        assert flaky["state"] == "success"
        assert (
            "health check passed on attempt 2 of 2 (flaky: attempt 1: exit code 3)"
            in (flaky["description"])
        )
        failed = found["uni-a/r-staging"]["statuses"][-1]
        assert failed["state"] == "failure"
        assert "health check failed 2 times" in failed["description"]
        assert [states(found[e])[-1] for e in ("uni-a/prod", "uni-a/r-prod")] == ["failure"] * 2
        (body,) = deploy_comments(await stack.pull(number))
        assert "flaky" in body
