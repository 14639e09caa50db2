"""Staging claims derived from deployment records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.settings import parse_settings
from bot.deploys.claims import DeploymentRecord, conflicts, derive_claims
from bot.deploys.service import DeployService
from bot.github.deployments import DeploymentRef, Listed
from bot.github.snapshot import RepoRef
from tests.conftest import FakeGH

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def rec(
    i: int,
    env: str,
    *,
    pr: int | None,
    hours: float = 0,
    state: str | None = "success",
    author: str = "alice",
) -> DeploymentRecord:
    payload = {"hubbot": {"pr": pr, "pr_author": author}} if pr is not None else {"hubbot": {}}
    return DeploymentRecord(i, env, "sha", T0 + timedelta(hours=hours), payload, state)


def claims(records: list[DeploymentRecord], **kw: object) -> dict[str, int]:
    now = kw.pop("now", T0 + timedelta(hours=1))
    found = derive_claims(records, now=now, claim_hours=24, **kw)  # type: ignore[arg-type]
    return {env: c.pr for env, c in found.items()}


def test_a_preview_claims_its_hub() -> None:
    assert claims([rec(1, "a/staging", pr=7)]) == {"a/staging": 7}


def test_newest_deployment_decides_and_a_merge_wins() -> None:
    records = [rec(1, "a/staging", pr=7), rec(2, "a/staging", pr=None, hours=0.5)]
    assert claims(records) == {}


def test_a_later_preview_takes_over() -> None:
    records = [rec(1, "a/staging", pr=7), rec(2, "a/staging", pr=8, hours=0.5)]
    assert claims(records) == {"a/staging": 8}


@pytest.mark.parametrize("state", ["inactive"])
def test_released(state: str) -> None:
    assert claims([rec(1, "a/staging", pr=7, state=state)]) == {}


@pytest.mark.parametrize("state", [None, "queued", "in_progress", "success", "failure", "error"])
def test_held_in_any_other_state(state: str | None) -> None:
    assert claims([rec(1, "a/staging", pr=7, state=state)]) == {"a/staging": 7}


def test_expiry() -> None:
    assert claims([rec(1, "a/staging", pr=7)], now=T0 + timedelta(hours=24)) == {}
    assert claims([rec(1, "a/staging", pr=7)], now=T0 + timedelta(hours=23.9)) == {"a/staging": 7}


def test_closed_prs_hold_nothing() -> None:
    assert claims([rec(1, "a/staging", pr=7)], open_prs=[8]) == {}
    assert claims([rec(1, "a/staging", pr=7)], open_prs=[7]) == {"a/staging": 7}


def test_conflicts_ignore_own_claims() -> None:
    found = derive_claims(
        [rec(1, "a/staging", pr=7), rec(2, "b/staging", pr=8)],
        now=T0,
        claim_hours=24,
    )
    assert [c.pr for c in conflicts(found, ["a/staging", "b/staging"], 7)] == [8]
    assert found["a/staging"].author == "alice"


def test_malformed_payloads_are_not_claims() -> None:
    bad = DeploymentRecord(1, "a/staging", "s", T0, {"hubbot": {"pr": "7"}}, "success")
    worse = DeploymentRecord(2, "b/staging", "s", T0, {"hubbot": "x"}, "success")
    assert derive_claims([bad, worse], now=T0, claim_hours=1) == {}


# --- reads of GitHub racing a deploy being queued -------------------------------------------


def _listed(ident: int, payload: dict[str, object], minutes_ago: float) -> Listed:
    env = "uni-a/staging"
    return Listed(
        DeploymentRef(ident, f"https://api.github.test/d/{ident}", env, "a" * 40),
        payload,
        datetime.now(UTC) - timedelta(minutes=minutes_ago),
        "success",
    )


PREVIEW = _listed(1, {"kind": "preview", "pr": 7, "pr_author": "alice"}, minutes_ago=10)
MERGE = _listed(2, {"kind": "merge"}, minutes_ago=0)
DEFAULTS, _ = parse_settings(None)
REPO = RepoRef(owner="org", name="infra", url="https://api.github.test/repos/org/infra")


@pytest.mark.parametrize("fresh", [True, False])
async def test_a_read_that_a_queued_deploy_overtook_is_read_again(
    monkeypatch: pytest.MonkeyPatch, fresh: bool
) -> None:
    # The merge is queued while the listing is on its way: that listing may predate the
    # merge's Deployment, and must not bring back the claim the merge cleared.
    service = DeployService()
    reads: list[int] = []

    async def listing(*args: object, **kwargs: object) -> list[Listed]:
        reads.append(1)
        if len(reads) == 1:
            service.claims_changed(REPO)  # the merge lands in the service meanwhile
            return [PREVIEW]
        return [MERGE, PREVIEW]

    monkeypatch.setattr("bot.deploys.service.newest_per_environment", listing)
    found = await service.claims(FakeGH(), REPO, fresh=fresh, settings=DEFAULTS)
    assert found == {} and len(reads) == 2
    assert service.claims_board(REPO) == {}
    assert await service.claims(FakeGH(), REPO, settings=DEFAULTS) == {}
    assert len(reads) == 2  # the good read is kept: it serves the next non-fresh one


async def test_reads_overtaken_every_time_are_answered_but_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = DeployService()
    reads: list[int] = []

    async def listing(*args: object, **kwargs: object) -> list[Listed]:
        reads.append(1)
        service.claims_changed(REPO)
        return [PREVIEW]

    monkeypatch.setattr("bot.deploys.service.newest_per_environment", listing)
    found = await service.claims(FakeGH(), REPO, fresh=True, settings=DEFAULTS)
    assert set(found) == {"uni-a/staging"} and len(reads) == 3
    assert service.claims_board(REPO) == {}  # the plan comment never shows a stale read
