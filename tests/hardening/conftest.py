"""Fixtures of the hardening suite: template repositories for fault runs, and a loop watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE
from tests.e2e_support import STAGING, STAGING_TEXT, fresh_repo, git
from tests.hardening.support import LoopWatch, SampledChecker

# The PR of the fault runs: one staging values file of the example repository changes.
PLAN_CHANGE = {STAGING: STAGING_TEXT.replace("1G", "4G")}

# The PR of the rollout runs: City College's shared hub values and its support values change,
# so its merge deploys one target per stage (support, then staging, then prod).
CITY = "config/clusters/city-college"
ROLLOUT_ENVIRONMENTS = ("city-college/support", "city-college/staging", "city-college/prod")


def _edit(path: str, old: str, new: str) -> str:
    text = (EXAMPLE / path).read_text()
    assert old in text, f"{path} no longer holds {old!r}"
    return text.replace(old, new, 1)


def rollout_change() -> dict[str, str | None]:
    """The files of the rollout PR (read from the example when called, so a skip is clean)."""
    return {
        f"{CITY}/common.values.yaml": _edit(
            f"{CITY}/common.values.yaml", "name: City College", "name: City College (hardened)"
        ),
        f"{CITY}/support.values.yaml": _edit(
            f"{CITY}/support.values.yaml", "retention: 15d", "retention: 16d"
        ),
    }


def template_repo(where: Path, branches: dict[str, dict[str, str | None]]) -> Path:
    """The example repository as a git repository on `main`, plus one commit per branch.

    The commits are made here, once, so every copy has the same SHAs: a clean run's API
    paths then name the same calls in every faulted run.
    """
    if not EXAMPLE.is_dir():
        pytest.skip("config/ (the example repository) is absent")
    repo = fresh_repo(EXAMPLE, where / "infrastructure")
    for branch, files in branches.items():
        git(repo, "checkout", "-q", "-b", branch, "main")
        for path, text in files.items():
            if text is None:
                git(repo, "rm", "-q", path)
            else:
                (repo / path).parent.mkdir(parents=True, exist_ok=True)
                (repo / path).write_text(text)
                git(repo, "add", path)
        git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", branch)
    git(repo, "checkout", "-q", "main")
    return repo


@pytest.fixture(scope="session")
def plan_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository with a branch `edit` that changes one staging values file."""
    return template_repo(tmp_path_factory.mktemp("plan-template"), {"edit": PLAN_CHANGE})


@pytest.fixture(scope="session")
def rollout_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository with a branch `change` whose merge deploys three stages."""
    where = tmp_path_factory.mktemp("rollout-template")
    if not EXAMPLE.is_dir():
        pytest.skip("config/ (the example repository) is absent")
    return template_repo(where, {"change": rollout_change()})


@pytest.fixture(scope="session")
def sampled_checker(openapi_checker: Any) -> SampledChecker:
    """GitHub's OpenAPI checker, checking each kind of exchange once per session."""
    return SampledChecker(openapi_checker)


def commit_dates_fixed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits the double makes (merges) carry a fixed date, so every run has the same SHAs.

    A merge commit made a second later has another SHA, and the clean run's paths would
    name calls the faulted runs never make.
    """
    from bot.sandbox.github import actions
    from bot.sandbox.github.gitrepo import Person

    date = "2025-01-01T00:00:00Z"
    monkeypatch.setattr(
        actions, "person", lambda c, login: Person(login, c.state.ensure_user(login).email, date)
    )
    monkeypatch.setattr(actions, "_committer", lambda: Person("GitHub", "noreply@github.com", date))


@pytest.fixture
async def loop_watch() -> AsyncIterator[LoopWatch]:
    """Fails the test when a task on the loop died with an exception nobody retrieved."""
    watch = LoopWatch().install()
    yield watch
    watch.uninstall()
    assert not watch.errors, watch.describe()
