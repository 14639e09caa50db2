"""The PR body: golden files, escaping of everything a PR author controls, the size limit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bot.core.diff import TargetDiff, unified
from bot.core.findings import error, warning
from bot.core.markdown import (
    DEFAULT_LIMIT,
    GITHUB_MAX_CHARS,
    MARKER,
    code,
    fence,
    render_markdown,
    text,
    verdict,
)
from bot.core.planner import Plan, Target

GOLDEN = Path(__file__).parent / "golden"
BASE = "0123456789abcdef0123456789abcdef01234567"
HEAD = "fedcba9876543210fedcba9876543210fedcba98"


def diff_of(before: dict[str, object], after: dict[str, object], name: str) -> str:
    return unified(before, after)


DEPLOY = Plan(
    base=BASE,
    head=HEAD,
    findings=(
        warning(
            "config/clusters/alpha/cluster.yaml",
            12,
            "unused-values-file",
            "old.values.yaml is not used by any release",
        ),
    ),
    support=(Target("alpha", None, ("support chart changed (values.yaml)",)),),
    staging=(Target("alpha", "staging", ("staging gate: prod hubs deploy (prod)",)),),
    prod=(
        Target(
            "alpha",
            "prod",
            (
                "values file prod.values.yaml changed",
                "encrypted file enc-prod.secret.values.yaml changed",
            ),
        ),
        Target("beta", "new", ("new hub",)),
    ),
    diffs={
        ("alpha", None): TargetDiff(
            diff_of(
                {"prometheus": {"retention": "7d"}}, {"prometheus": {"retention": "30d"}}, "alpha"
            )
        ),
        ("alpha", "staging"): TargetDiff(""),
        ("alpha", "prod"): TargetDiff(
            diff_of(
                {"jupyterhub": {"singleuser": {"image": "a:1", "cpu": 1}}},
                {"jupyterhub": {"singleuser": {"image": "a:2", "cpu": 1}}},
                "alpha/prod",
            ),
            encrypted=("enc-prod.secret.values.yaml",),
        ),
        ("beta", "new"): TargetDiff(
            diff_of({}, {"jupyterhub": {"hub": {"config": {"x": 1}}}}, "beta/new"),
            note="new release: no values at base",
        ),
    },
)
BLOCKED = Plan(
    base=None,
    head=None,
    findings=(
        error(
            "config/clusters/alpha/prod.values.yaml",
            3,
            "values-schema",
            "jupyterhub.singleuser.cpu: 'lots' is not of type 'number'",
        ),
        error("config/clusters/alpha/cluster.yaml", None, "missing-file", "file does not exist"),
        warning("config/clusters/alpha/x.values.yaml", 1, "unused-values-file", "not referenced"),
    ),
    support=(),
    staging=(Target("alpha", "staging", ("staging gate: prod hubs deploy (prod)",)),),
    prod=(Target("alpha", "prod", ("values file prod.values.yaml changed",)),),
)
SKIPPED = Plan(
    base=BASE,
    head=HEAD,
    findings=(),
    support=(),
    staging=(),
    prod=(),
    skipped=(
        Target("alpha", None, ("cluster.yaml changed only in comments or formatting",)),
        Target(
            "alpha", "prod", ("values file prod.values.yaml changed", "label deployer:skip-deploy")
        ),
    ),
    removed=(("beta", None), ("beta", "old")),
    notes=("hubbot never uninstalls: releases listed as removed stay installed",),
)
EMPTY = Plan(base=BASE, head=HEAD, findings=(), support=(), staging=(), prod=())
HOSTILE = Plan(
    base=None,
    head=HEAD,
    findings=(
        error(
            "a|b.yaml",
            1,
            "r`x`",
            "value </details> <script>alert(1)</script> @octocat | *bold* [link](http://x)",
        ),
    ),
    support=(),
    staging=(),
    prod=(
        Target(
            "we|ird", "h`u`b", ("values file `x`|y.yaml changed </details> @team", "_em_ **b**")
        ),
    ),
    diffs={
        ("we|ird", "h`u`b"): TargetDiff(
            "--- a\n+++ b\n@@ -1 +1 @@\n-x: 1\n+x: '```'\n+y: </details>\n+z: ````\n",
            encrypted=("enc-</summary>.secret.yaml",),
        )
    },
)
CASES = {
    "deploy": DEPLOY,
    "blocked": BLOCKED,
    "skipped": SKIPPED,
    "empty": EMPTY,
    "hostile": HOSTILE,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    body = render_markdown(CASES[name])
    path = GOLDEN / f"{name}.md"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(body)
    assert body == path.read_text(), f"run UPDATE_GOLDEN=1 pytest {__file__} and review the diff"


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (EMPTY, "Nothing will deploy: this PR changes no configuration"),
        (BLOCKED, "❌ 2 errors block this deploy"),
        (
            DEPLOY,
            "✅ 3 hubs (1 staging, 2 production) and support on 1 cluster will deploy (1 warning)",
        ),
        (SKIPPED, "Nothing will deploy: 2 releases skipped"),
        (Plan(None, None, (error("a", 1, "r", "m"),), (), (), ()), "❌ 1 error blocks this deploy"),
        (
            Plan(None, None, (), (Target("a", None, ("r",)),), (), ()),
            "✅ support on 1 cluster will deploy",
        ),
        (
            Plan(None, None, (), (), (), (), removed=(("a", "b"),)),
            "Nothing will deploy: 1 release removed",
        ),
    ],
)
def test_verdict(plan: Plan, expected: str) -> None:
    assert verdict(plan) == expected
    assert render_markdown(plan).startswith(f"{MARKER}\n\n**{expected}**\n")


def outside_fences(body: str) -> str:
    """The body with fenced code blocks removed (their contents are not markdown)."""
    out, fence_marks = [], None
    for line in body.splitlines():
        marks = re.match(r"^(`{3,})", line)
        if fence_marks is None and marks:
            fence_marks = marks.group(1)
        elif fence_marks is not None and line.rstrip() == fence_marks:
            fence_marks = None
        elif fence_marks is None:
            out.append(line)
    assert fence_marks is None, "a code fence is left open"
    return "\n".join(out)


def cells(row: str) -> list[str]:
    """Table cells split at unescaped pipes, as GitHub does."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


@pytest.mark.parametrize("name", sorted(CASES))
def test_structure_survives_hostile_input(name: str) -> None:
    body = render_markdown(CASES[name])
    markdown = outside_fences(body)
    assert markdown.count("<details>") == markdown.count("</details>")
    assert "<script>" not in markdown and "@octocat" not in markdown and "@team" not in markdown
    for block in re.split(r"\n\n", markdown):
        table = [line for line in block.splitlines() if line.startswith("|")]
        if table:
            assert len({len(cells(r)) for r in table}) == 1, table


def test_hostile_diff_keeps_its_fence() -> None:
    body = render_markdown(HOSTILE)
    assert "`````diff\n" in body  # longer than the diff's longest backtick run (4)
    assert "+y: </details>" in body  # shown verbatim, inside the fence
    assert "enc-&lt;/summary&gt;.secret.yaml" in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a|b", "a\\|b"),
        ("<b>x</b>", "&lt;b&gt;x&lt;/b&gt;"),
        ("@octocat", "&#64;octocat"),
        ("*x* _y_ `z` [l](u) ~s~", "\\*x\\* \\_y\\_ \\`z\\` \\[l\\](u) \\~s\\~"),
        ("line\nbreak", "line break"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_text_escaping(value: str, expected: str) -> None:
    assert text(value) == expected


def test_code_escaping() -> None:
    assert code("a|b<c>") == "<code>a&#124;b&lt;c&gt;</code>"


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fence("x ``` y\n", "diff").startswith("````diff\n")
    assert fence("plain", "").endswith("plain\n```\n")


def _big_plan(hubs: int, diff_lines: int, *, identical: bool) -> Plan:
    prod = tuple(
        Target(f"c{i % 7}", f"hub-{i:03d}", ("chart basehub changed (values.yaml)",))
        for i in range(hubs)
    )
    diffs = {}
    for i, t in enumerate(prod):
        tag = "same" if identical else str(i)
        after = {f"key{j}": f"{tag}-value-{j}" for j in range(diff_lines)}
        diffs[t.key] = TargetDiff(unified({}, after))
    return Plan(BASE, HEAD, (), (), (), prod, diffs=diffs)


@pytest.mark.parametrize(
    ("hubs", "lines", "identical"),
    [(171, 400, False), (171, 400, True), (3, 20_000, False), (600, 5, False)],
)
def test_body_stays_within_the_limit_with_complete_tables(
    hubs: int, lines: int, identical: bool
) -> None:
    plan = _big_plan(hubs, lines, identical=identical)
    body = render_markdown(plan)
    assert len(body) <= DEFAULT_LIMIT < GITHUB_MAX_CHARS
    for t in plan.prod:
        assert f"| {code(t.cluster)} | {code(t.hub or '')} |" in body
    outside_fences(body)
    if identical:
        assert body.count("<details>") == 1 and "Same diff for" in body
    else:
        assert "Diff cut" in body or "not shown" in body


def test_extra_sections_count_against_the_limit() -> None:
    plan = _big_plan(50, 2_000, identical=False)
    extra = "### Claims\n\n" + "x" * 10_000
    body = render_markdown(plan, extra_sections=[extra], limit=40_000)
    assert len(body) <= 40_000
    assert extra in body
    assert body.index(extra) < body.index("### Values diffs")


def test_small_diffs_are_whole() -> None:
    body = render_markdown(DEPLOY)
    assert "Diff cut" not in body and "not shown" not in body.replace("contents not shown", "")
    assert "-    image: a:1\n+    image: a:2" in body
    assert "🔒 encrypted file <code>enc-prod.secret.values.yaml</code> changed" in body


def test_file_mode_says_there_is_no_diff() -> None:
    assert "Not computed: file mode has no base to compare with." in render_markdown(BLOCKED)


def test_all_171_hubs_case_on_the_real_snapshot(snapshot_2i2c: Path) -> None:
    """Plan case c11 (every hub and every support release), with diffs from a mutated base."""
    from bot.core.diff import with_diffs
    from bot.core.model import load_repository
    from bot.core.planner import plan_files
    from bot.core.settings import Settings
    from bot.core.snapshot import DictSnapshot, DirSnapshot

    disk = DirSnapshot(snapshot_2i2c)
    head = DictSnapshot({p: disk.read(p) for p in disk.paths()})
    head_repo = load_repository(head, Settings())
    changes: dict[str, bytes | None] = {}
    for hub in head_repo.hubs():  # a distinct change per hub, in its last plain values file
        plain = [f for f in hub.values_files if "secret" not in f and f.endswith(".yaml")]
        if plain:
            path = head_repo.clusters[hub.cluster].file_path(plain[-1])
            lines = "".join(f"base_only_{hub.name}_{i}: {i}\n" for i in range(20))
            changes[path] = (changes.get(path) or head.read(path)) + b"\n" + lines.encode()
    base_repo = load_repository(head.with_changes(changes), Settings())
    changed = ["helm-charts/basehub/Chart.yaml", "helm-charts/support/values.yaml"]
    plan = with_diffs(plan_files(head_repo, changed, validate=False), base_repo, head_repo)
    assert (len(plan.support), len(plan.staging), len(plan.prod)) == (30, 29, 142)
    body = render_markdown(plan)
    assert len(body) <= DEFAULT_LIMIT
    for t in plan.support:
        assert f"| {code(t.cluster)} | support chart changed (values.yaml) |" in body
    for t in plan.hubs:
        assert (
            f"| {code(t.cluster)} | {code(t.hub or '')} | chart basehub changed (Chart.yaml) |"
            in body
        )
    assert "Diff cut" in body or "more diffs not shown" in body
    markdown = outside_fences(body)
    assert markdown.count("<details>") == markdown.count("</details>") > 0
