"""Fixtures of the hardening suite: template repositories for fault runs, and a loop watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from tests.e2e_support import STAGING, STAGING_TEXT, fresh_repo, git
from tests.hardening.support import LoopWatch

# The PR of the fault runs: one staging values file of the example repository changes.
PLAN_CHANGE = {STAGING: STAGING_TEXT.replace("1G", "4G")}


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


@pytest.fixture
async def loop_watch() -> AsyncIterator[LoopWatch]:
    """Fails the test when a task on the loop died with an exception nobody retrieved."""
    watch = LoopWatch().install()
    yield watch
    watch.uninstall()
    assert not watch.errors, watch.describe()
