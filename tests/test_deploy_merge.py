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
    merge_change,
    running,
    states,
)
from tests.e2e_support import Stack

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")


@pytest.fixture
async def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> AsyncIterator[Stack]:
    async for stack in running(tmp_path, monkeypatch, openapi_checker):
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

    # Order, from the statuses' global ids: support ends before staging starts, staging
    # before prod.
    def ids(env: str) -> dict[str, int]:
        return {s["state"]: s["id"] for s in found[env]["statuses"]}

    staging = ["uni-a/staging", "uni-a/r-staging"]
    prod = ["uni-a/prod", "uni-a/r-prod"]
    assert all(ids("uni-a/support")["success"] < ids(e)["in_progress"] for e in staging + prod)
    assert max(ids(e)["success"] for e in staging) < min(ids(e)["in_progress"] for e in prod)

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
