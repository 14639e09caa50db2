"""Shared test fixtures: paths to the real 2i2c data and the example repository."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config"
SHARED = ROOT.parent / "shared" / "fixtures"
SNAPSHOT_2I2C = SHARED / "2i2c-infrastructure"
PLAN_CASES_2I2C = SHARED / "2i2c-plan-cases.json"
CACHE = ROOT / ".cache"


@pytest.fixture
def snapshot_2i2c() -> Path:
    """The real 2i2c-org/infrastructure snapshot; skipped only when ../shared is absent."""
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return SNAPSHOT_2I2C
