"""The search for the last deployed commit before a missed push, and its cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.deploys.missed import Head, find_base, first_parent_chain, recover_missed
from bot.deploys.recovery import WINDOW
from bot.deploys.service import DeployService
from bot.github.snapshot import RepoRef

REPO = RepoRef("o", "r", "https://api.github.test/repos/o/r")


def commit(sha: str, *parents: str) -> dict[str, Any]:
    return {"sha": sha, "parents": [{"sha": p} for p in parents]}


# main: a - b - m(b, x) - c ; x is a merged branch's commit, listed among main's.
HISTORY = [commit("c", "m"), commit("m", "b", "x"), commit("x", "a"), commit("b", "a"), commit("a")]


@pytest.mark.parametrize(
    ("listing", "chain", "root"),
    [
        (HISTORY, ["m", "b", "a"], True),  # first parents only: never the branch's `x`
        (HISTORY[:2], ["m", "b"], False),  # left the listing at `b`'s parent
        ([commit("c")], [], True),  # `c` is a first commit
        ([commit("c", "m"), commit("m", "c")], ["m"], False),  # a loop ends the walk
        ([], [], False),
    ],
)
def test_the_chain_follows_first_parents_within_the_listing(
    listing: list[dict[str, Any]], chain: list[str], root: bool
) -> None:
    assert first_parent_chain(listing, "c") == (chain, root)


@pytest.mark.parametrize(
    ("deployed", "root", "expected"),
    [
        ({"b", "a"}, True, ("missed", "b")),  # the newest deployed commit is the base
        ({"a"}, False, ("missed", "a")),
        (set(), True, ("root", None)),  # hubbot never deployed this branch
        (set(), False, ("unknown", None)),  # the base is beyond the searched history
    ],
)
async def test_the_base_is_the_newest_deployed_commit(
    deployed: set[str], root: bool, expected: tuple[str, str | None]
) -> None:
    asked: list[str] = []

    async def is_deployed(sha: str) -> bool:
        asked.append(sha)
        return sha in deployed

    assert await find_base(["m", "b", "a"], root, is_deployed) == expected
    assert asked == ["m", "b", "a"][: len(asked)]  # newest first, stopping at the base


class FakeGitHub:
    """Answers the branch and check-run reads; counts every call."""

    def __init__(self, head: dict[str, Any], checks: dict[str, list[dict[str, Any]]]) -> None:
        self.head, self.checks = head, checks
        self.calls: list[str] = []

    async def getitem(self, url: str, url_vars: dict[str, Any] | None = None) -> Any:
        self.calls.append(url)
        if "/branches/" in url:
            return {"name": "main", "commit": self.head}
        if url.endswith("/commits{?sha,per_page}"):
            return [commit("h" * 40, "p" * 40), commit("p" * 40)]
        if "/check-runs" in url:
            sha = url.split("/commits/")[1].split("/")[0]
            return {"total_count": 1, "check_runs": self.checks.get(sha, [])}
        raise AssertionError(f"unexpected call {url}")


def head(sha: str = "h" * 40, *, age: timedelta = timedelta(minutes=5)) -> dict[str, Any]:
    date = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "sha": sha,
        "parents": [{"sha": "p" * 40}],
        "commit": {"committer": {"date": date}},
        "author": {"login": "octocat"},
    }


def service() -> DeployService:
    deploys = DeployService(app_id="7")
    deploys.started_at = datetime.now(UTC)
    return deploys


@pytest.mark.parametrize(
    ("checks", "age", "calls"),
    [
        ({"h" * 40: [{"app": {"id": 7}}]}, timedelta(minutes=5), 2),  # deployed: 2 calls
        ({}, WINDOW + timedelta(hours=1), 2),  # missed but too old: left
    ],
)
async def test_nothing_missed_costs_two_calls(
    checks: dict[str, list[dict[str, Any]]], age: timedelta, calls: int
) -> None:
    gh = FakeGitHub(head(age=age), checks)
    deploys = service()
    since = datetime.now(UTC) - WINDOW
    await recover_missed(deploys, gh, REPO, "main", since=since)  # type: ignore[arg-type]
    assert len(gh.calls) == calls
    assert deploys.recovery["missed_pushes"] == 0


@pytest.mark.parametrize(
    ("app", "started", "calls"),
    [
        (7, timedelta(0), 2),  # its own check: deployed
        (99, timedelta(0), 4),  # another app's check: searched (to the root: nothing missed)
        (99, timedelta(hours=1), 2),  # pushed after this process started: its webhook comes
    ],
)
async def test_only_this_apps_check_counts_and_only_pushes_before_the_start(
    app: int, started: timedelta, calls: int
) -> None:
    gh = FakeGitHub(head(), {"h" * 40: [{"app": {"id": app}}]})
    deploys = service()
    deploys.started_at = datetime.now(UTC) - started
    since = datetime.now(UTC) - WINDOW
    await recover_missed(deploys, gh, REPO, "main", since=since)  # type: ignore[arg-type]
    assert len(gh.calls) == calls
    assert deploys.recovery["missed_pushes"] == 0


def test_the_head_reads_from_the_branch_endpoint() -> None:
    read = Head.from_branch({"commit": head()})
    assert read is not None and read.parents == ("p" * 40,) and read.author == "octocat"
    assert read.committed is not None and read.committed.tzinfo is not None
    assert Head.from_branch({"commit": None}) is None


@pytest.mark.parametrize(
    ("seen", "recovered", "kept"),
    [
        ("recovery", False, False),  # the late webhook: skipped once, a redelivery deploys
        ("push", True, True),  # recovery of a push this process handles: skipped
    ],
)
async def test_a_push_handled_one_way_is_not_deployed_the_other(
    seen: str, recovered: bool, kept: bool
) -> None:
    deploys = service()
    deploys._pushes[(REPO.full_name, "h")] = seen
    waves = await deploys.deploy_merge(
        None,  # type: ignore[arg-type]  # never reached: nothing is read
        REPO,
        before="b",
        after="h",
        default_branch="main",
        recovered=recovered,
    )
    assert waves == []
    assert ((REPO.full_name, "h") in deploys._pushes) is kept
