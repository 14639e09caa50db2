"""Authorisation decisions: partners, write access, forks, and the staging-only rule."""

from __future__ import annotations

import pytest

from bot.core.permissions import (
    Actor,
    may_cancel,
    may_deploy_pr,
    may_redeploy,
    may_unlock,
    partner_clusters,
    teams_named,
)
from bot.core.settings import Settings

SETTINGS = Settings(
    partners={
        "uni-a/staging": ("alice",),
        "uni-b/*": ("@example-org/uni-b-partners", "Bob"),
    }
)
ROLES = ["admin", "maintain", "write", "triage", "read", "none"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("fork", [False, True])
def test_write_access_may_deploy_any_staging_hub(role: str, fork: bool) -> None:
    decision = may_deploy_pr(SETTINGS, Actor("eve", role), [("uni-c", "staging")], fork=fork)
    assert decision.allowed is (role in ("admin", "maintain", "write"))


@pytest.mark.parametrize("role", ROLES)
def test_nobody_deploys_prod_from_a_pr(role: str) -> None:
    decision = may_deploy_pr(SETTINGS, Actor("eve", role), [("uni-a", "prod")], fork=False)
    assert not decision.allowed
    assert "`uni-a/prod` is not a staging hub" in decision.reason


def test_partner_on_their_cluster() -> None:
    alice = Actor("alice", "read")
    assert may_deploy_pr(SETTINGS, alice, [("uni-a", "staging")], fork=False).allowed
    # a partner of a hub may deploy the staging hubs of that hub's cluster
    assert may_deploy_pr(SETTINGS, alice, [("uni-a", "r-staging")], fork=False).allowed


def test_partner_on_another_cluster_is_refused_and_nothing_deploys() -> None:
    decision = may_deploy_pr(
        SETTINGS, Actor("alice", "read"), [("uni-a", "staging"), ("uni-b", "staging")], fork=False
    )
    assert not decision.allowed
    assert "`uni-b/staging`" in decision.reason and "partner on `uni-a` only" in decision.reason


def test_partner_through_a_team_and_case_insensitive_login() -> None:
    carol = Actor("carol", "read", teams=frozenset({"@Example-Org/uni-b-partners"}))
    assert may_deploy_pr(SETTINGS, carol, [("uni-b", "staging")], fork=False).allowed
    assert may_deploy_pr(SETTINGS, Actor("bob", "none"), [("uni-b", "staging")], fork=False).allowed


def test_partner_on_a_fork_is_refused() -> None:
    decision = may_deploy_pr(SETTINGS, Actor("alice", "read"), [("uni-a", "staging")], fork=True)
    assert not decision.allowed and "fork" in decision.reason


def test_stranger_is_refused() -> None:
    decision = may_deploy_pr(SETTINGS, Actor("mallory", "read"), [("uni-a", "staging")], fork=False)
    assert not decision.allowed and "neither a partner" in decision.reason


def test_empty_target_list_is_refused() -> None:
    assert not may_deploy_pr(SETTINGS, Actor("root", "admin"), [], fork=False).allowed


@pytest.mark.parametrize("role", ROLES)
def test_redeploy_needs_write(role: str) -> None:
    assert may_redeploy(Actor("x", role)).allowed is (role in ("admin", "maintain", "write"))


def test_unlock_and_cancel() -> None:
    assert may_unlock(Actor("alice", "read"), holder_authors=["Alice"]).allowed
    assert not may_unlock(Actor("alice", "read"), holder_authors=["bob"]).allowed
    assert may_unlock(Actor("root", "maintain"), holder_authors=["bob"]).allowed
    assert may_cancel(Actor("alice", "read"), started_by=["alice"]).allowed
    refused = may_cancel(Actor("alice", "read"), started_by=["alice", "bob"])
    assert not refused.allowed and "@bob" in refused.reason


def test_helpers() -> None:
    assert teams_named(SETTINGS) == {"@example-org/uni-b-partners"}
    assert partner_clusters(SETTINGS, Actor("bob", "read")) == {"uni-b"}
