"""Effective-values diffs: pruned to what changed, typed, secrets named but never read."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.diff import TargetDiff, prune, same, unified, with_diffs
from bot.core.model import load_repository
from bot.core.planner import Plan, Target
from bot.core.settings import Settings
from bot.core.snapshot import DictSnapshot
from tests.test_planner import FILES


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"x": 1}, {"x": 1}, True),
        ({"x": 1}, {"x": True}, False),
        ({"x": 1}, {"x": 1.0}, False),
        ({"x": [1, {"y": 0}]}, {"x": [1, {"y": False}]}, False),
        ({"x": [1, 2]}, {"x": [2, 1]}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
    ],
)
def test_same_is_typed(a: Any, b: Any, expected: bool) -> None:
    assert same(a, b) is expected


def test_prune_keeps_only_changed_paths_under_their_parents() -> None:
    base = {"hub": {"image": "a:1", "cpu": 1, "env": {"A": "1"}}, "gone": 1, "same": [1, 2]}
    head = {"hub": {"image": "a:2", "cpu": 1, "env": {"A": "1"}}, "new": {"k": "v"}, "same": [1, 2]}
    assert prune(base, head) == (
        {"hub": {"image": "a:1"}, "gone": 1},
        {"hub": {"image": "a:2"}, "new": {"k": "v"}},
    )


def test_unified_is_readable_and_stable() -> None:
    text = unified({"b": {"y": 1, "x": 1}, "a": 0}, {"a": 0, "b": {"x": 2, "y": 1}})
    assert text == "--- base\n+++ head\n@@ -1,2 +1,2 @@\n b:\n-  x: 1\n+  x: 2\n"
    assert unified({"a": 1}, {"a": 1}) == ""
    diff = TargetDiff(text)
    assert (diff.added, diff.removed) == (1, 1)


def test_unified_shows_a_type_change() -> None:
    assert "-x: 1\n+x: true\n" in unified({"x": 1}, {"x": True})


def _plan(*keys: tuple[str, str | None]) -> Plan:
    support = tuple(Target(c, None, ("r",)) for c, h in keys if h is None)
    prod = tuple(Target(c, h, ("r",)) for c, h in keys if h is not None)
    return Plan("b", "h", (), support, (), prod)


def _repos(changes: dict[str, str | None]) -> tuple[Any, Any]:
    base = DictSnapshot(FILES)
    head = DictSnapshot({k: v for k, v in {**FILES, **changes}.items() if v is not None})
    return load_repository(base, Settings()), load_repository(head, Settings())


def test_values_diff_and_encrypted_files() -> None:
    base, head = _repos(
        {
            "config/clusters/alpha/prod.values.yaml": "x: 2\n",
            "config/clusters/alpha/enc-staging.secret.values.yaml": "password: hunter2\n",
        }
    )
    plan = with_diffs(_plan(("alpha", "prod"), ("alpha", "staging"), ("alpha", None)), base, head)
    prod = plan.diffs[("alpha", "prod")]
    assert "-x: 1\n+x: 2\n" in prod.text and not prod.encrypted and prod.note is None
    staging = plan.diffs[("alpha", "staging")]
    assert staging == TargetDiff("", ("enc-staging.secret.values.yaml",))
    assert plan.diffs[("alpha", None)] == TargetDiff("")
    assert "hunter2" not in repr(plan.diffs)


@pytest.mark.parametrize(
    "text",
    [
        "x: 1\nauth:\n  client_secret: hunter2-in-plain-text\n",
        "x: 1\nauth: {apiToken: 1234567890123}\n",
        "x: 1\ndb: {adminPassword: hunter2-in-plain-text}\n",
    ],
)
def test_a_plaintext_credential_is_never_shown_in_a_diff(text: str) -> None:
    base, head = _repos({"config/clusters/alpha/prod.values.yaml": text})
    diff = with_diffs(_plan(("alpha", "prod")), base, head).diffs[("alpha", "prod")]
    assert "hunter2" not in diff.text and "1234567890123" not in diff.text
    assert "<plaintext credential, not shown>" in diff.text  # the change is still visible


def test_renamed_secret_with_the_same_ciphertext_is_not_reported() -> None:
    old, new = "enc-staging.secret.values.yaml", "enc-stg.secret.values.yaml"
    cluster = FILES["config/clusters/alpha/cluster.yaml"].replace(old, new)
    base, head = _repos(
        {
            "config/clusters/alpha/cluster.yaml": cluster,
            f"config/clusters/alpha/{old}": None,
            f"config/clusters/alpha/{new}": FILES[f"config/clusters/alpha/{old}"],
        }
    )
    plan = with_diffs(_plan(("alpha", "staging")), base, head)
    assert plan.diffs[("alpha", "staging")] == TargetDiff("")


def test_new_release_diffs_against_nothing() -> None:
    extra = (
        "- {name: extra, domain: e.org, helm_chart: basehub, helm_chart_values_files: [c.yaml]}\n"
    )
    base, head = _repos(
        {"config/clusters/gamma/cluster.yaml": FILES["config/clusters/gamma/cluster.yaml"] + extra}
    )
    diff = with_diffs(_plan(("gamma", "extra")), base, head).diffs[("gamma", "extra")]
    assert diff.note == "new release: no values at base"
    assert "+x: 1" in diff.text


def test_broken_values_give_a_note_not_a_crash() -> None:
    base, head = _repos({"config/clusters/gamma/c.yaml": "x: [\n"})
    diff = with_diffs(_plan(("gamma", "prod")), base, head).diffs[("gamma", "prod")]
    assert diff.text == "" and diff.note == "values could not be computed (see the findings)"


@pytest.mark.parametrize(
    ("base", "head", "expected"),
    [
        ({"basehub": {"a": 1}}, {"basehub": {"a": 1, "b": 2}}, " basehub:\n+  b: 2\n"),
        ({"basehub": {"a": 1, "b": 2}}, {"basehub": {"a": 1}}, " basehub:\n-  b: 2\n"),
        ({"x": {}}, {"x": {"b": 2}}, "-x: {}\n+x:\n+  b: 2\n"),
        ({}, {"new": 1}, "+new: 1\n"),
    ],
)
def test_parents_of_added_or_removed_keys_stay_as_context(
    base: dict[str, Any], head: dict[str, Any], expected: str
) -> None:
    assert unified(base, head).split("@@\n", 1)[1] == expected
