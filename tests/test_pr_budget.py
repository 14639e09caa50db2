"""The call budget: a synchronize touching 100 values files on the 2i2c-sized repository.

At most 8 GitHub API calls cold (a fresh bot process) and 5 warm (the next push),
comment and check run included, counted from the double's own request log (the
scenario is bench/budget.py, shared with the benchmark's report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.budget import run_budget_scenario

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")
pytest.importorskip("bot.core.semantic", reason="the core planner")


async def test_synchronize_of_100_values_files_fits_the_budget(
    snapshot_2i2c: Path, openapi_checker: Any
) -> None:
    tokens: list[str] = []

    def watch_tokens(app: Any) -> None:
        from tests.test_pr_e2e import record_tokens

        record_tokens(app, tokens)

    run = await run_budget_scenario(snapshot_2i2c, on_app=watch_tokens, checker=openapi_checker)
    print(f"\ncold: {run.cold}\nwarm: {run.warm}\n{run.summary()}")
    assert len(run.cold) <= 8
    assert len(run.warm) <= 5
    # Counted strictly, the tarball's download leg (codeload on GitHub) fits the budget too.
    assert len(run.cold) + run.cold_external <= 8
    assert len(run.warm) + run.warm_external <= 5
    assert run.cold[0].startswith("POST /app/installations/")  # the token request counts
    assert len(tokens) == 1  # and is not repeated warm
    assert all(status < 400 for status in run.statuses)
    assert run.violations == []
    assert len(run.view["comments"]) == 1
    runs = [r for r in run.view["check_runs"] if r["head_sha"] == run.view["head"]["sha"]]
    assert [(r["status"], r["conclusion"]) for r in runs] == [("completed", "success")]
