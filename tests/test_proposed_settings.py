"""A change that edits hubbot.yaml: checked now, applied only after the merge."""

from __future__ import annotations

from bot.core.planner import Plan
from bot.core.semantic import plan_snapshots
from bot.core.settings import Settings, parse_settings
from bot.core.snapshot import DictSnapshot, DirSnapshot, Symlink
from tests.conftest import EXAMPLE

SETTINGS = "hubbot.yaml"


def snapshots(new_settings: bytes | None) -> tuple[DirSnapshot, DictSnapshot]:
    base = DirSnapshot(EXAMPLE)
    files = {p: base.read(p) for p in base.paths() if not base.is_symlink(p)}
    links = {p: Symlink(base.read(p).decode()) for p in base.paths() if base.is_symlink(p)}
    head = DictSnapshot({**files, **links}).with_changes({SETTINGS: new_settings})
    return base, head


def plan_for(new_settings: bytes | None) -> Plan:
    base, head = snapshots(new_settings)
    settings, problems = parse_settings(base.read(SETTINGS))
    assert problems == []
    return plan_snapshots(base, head, settings)


def test_a_broken_proposal_is_an_error_at_its_line() -> None:
    text = DirSnapshot(EXAMPLE).read(SETTINGS) + b"\nstaging_hub_pattren: x\n"
    plan = plan_for(text)
    (finding,) = [f for f in plan.findings if f.path == SETTINGS]
    assert finding.is_error and finding.rule == "settings-schema"
    assert finding.line == text.decode().splitlines().index("staging_hub_pattren: x") + 1
    assert any("apply once this change is merged" in n for n in plan.notes)


def test_an_unknown_placeholder_in_a_proposed_command_is_an_error() -> None:
    text = (
        DirSnapshot(EXAMPLE)
        .read(SETTINGS)
        .replace(b"--mode template\n", b"--mode template {hubb}\n", 1)
    )
    plan = plan_for(text)
    assert any(f.path == SETTINGS and f.is_error and "{hubb}" in f.message for f in plan.findings)


def test_a_valid_proposal_is_noted_but_not_applied() -> None:
    # the proposal would make every hub a staging hub; the plan keeps the merged rules
    text = DirSnapshot(EXAMPLE).read(SETTINGS) + b"\n"
    text = text.replace(b"staging_hub_pattern: staging", b"staging_hub_pattern: '.'")
    plan = plan_for(text)
    assert [f for f in plan.findings if f.path == SETTINGS] == []
    assert any("follows the settings already merged" in n for n in plan.notes)
    assert Settings().staging_hub_pattern == "staging"


def test_deleting_the_settings_file_is_not_a_finding() -> None:
    plan = plan_for(None)
    assert [f for f in plan.findings if f.path == SETTINGS] == []
