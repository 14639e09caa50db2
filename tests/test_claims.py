"""Staging claims derived from deployment records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.deploys.claims import DeploymentRecord, conflicts, derive_claims

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
