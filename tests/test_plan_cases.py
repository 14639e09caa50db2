"""Every shared plan case (2i2c's planner, bug fixed, on the real snapshot) matches exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.core.model import Repository, load_repository
from bot.core.planner import plan_files
from bot.core.settings import Settings
from bot.core.snapshot import DirSnapshot
from tests.conftest import PLAN_CASES_2I2C


def _cases() -> list[Any]:
    if not PLAN_CASES_2I2C.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason="../shared is absent"))]
    cases = json.loads(PLAN_CASES_2I2C.read_text())["cases"]
    return [pytest.param(case, id=case["id"]) for case in cases]


@pytest.fixture(scope="module")
def repo_2i2c() -> Repository:
    """The real snapshot, loaded once for the module."""
    from tests.conftest import SNAPSHOT_2I2C

    if not Path(SNAPSHOT_2I2C).is_dir():
        pytest.skip("../shared/fixtures is absent")
    return load_repository(DirSnapshot(SNAPSHOT_2I2C), Settings())


@pytest.mark.parametrize("case", _cases())
def test_plan_case_matches_exactly(repo_2i2c: Repository, case: dict[str, Any]) -> None:
    plan = plan_files(repo_2i2c, case["changed"], case.get("labels", []), validate=False)
    got = {
        "support": sorted(t.cluster for t in plan.support),
        "staging": sorted(t.name for t in plan.staging),
        "prod": sorted(t.name for t in plan.prod),
    }
    assert got == case["expected"]
    assert all(t.reasons for t in (*plan.support, *plan.staging, *plan.prod))
    assert not plan.skipped and not plan.removed


def test_every_case_is_sorted_as_documented() -> None:
    if not PLAN_CASES_2I2C.is_file():
        pytest.skip("../shared is absent")
    for case in json.loads(PLAN_CASES_2I2C.read_text())["cases"]:
        for names in case["expected"].values():
            assert names == sorted(names), case["id"]
