"""Keep the docs true: the operator guide names everything the code has, and links resolve.

The guide (docs/operator-guide.md) must mention every settings key of the schema, every
metric, every slash command and every `HUBBOT_*` server variable; its settings example for
2i2c must be valid and behave as the migration section says on the real snapshot; and every
relative link (and `#anchor`) in docs/*.md and README.md must point at something that exists.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from bot.core.commands import COMMANDS
from bot.core.model import Repository, load_repository
from bot.core.planner import Plan, plan_files
from bot.core.semantic import plan_snapshots
from bot.core.settings import (
    DEFAULT_COMMAND,
    DEFAULT_SECRET_KEYS,
    DEFAULT_SUPPORT_COMMAND,
    Settings,
    parse_settings,
    settings_schema,
)
from bot.core.snapshot import DictSnapshot, DirSnapshot
from bot.deploys.jobs import check_template
from bot.web.metrics import Metrics
from tests.conftest import PLAN_CASES_2I2C, ROOT, SNAPSHOT_2I2C

GUIDE = ROOT / "docs" / "operator-guide.md"
LINKED_DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"])


def guide() -> str:
    """The guide's text."""
    return GUIDE.read_text(encoding="utf-8")


def table_row(text: str, first_cell: str) -> str:
    """The markdown table row whose first cell is exactly `first_cell` (fails if absent)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells and cells[0] == first_cell:
            return line
    raise AssertionError(f"no table row starts with {first_cell}")


# -- settings reference ------------------------------------------------------------------------


def schema_keys(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named key of the schema, dotted, with its sub-schema (maps of free keys stop)."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, sub
        yield from schema_keys(sub, key + ".")


SCHEMA_KEYS = dict(schema_keys(settings_schema()))


def test_the_schema_walk_finds_nested_keys() -> None:
    assert {"labels.skip_deploy", "deploy.kubernetes.job_template", "jsonnet.ext_vars"} <= set(
        SCHEMA_KEYS
    )
    assert len(SCHEMA_KEYS) >= 35


@pytest.mark.parametrize("key", sorted(SCHEMA_KEYS))
def test_every_settings_key_has_a_row(key: str) -> None:
    table_row(guide(), f"`{key}`")


def _default_tokens(default: Any) -> list[str]:
    if isinstance(default, bool):
        return [str(default).lower()]
    if default is None:
        return ["null"]
    if isinstance(default, list):
        return [str(item) for item in default]
    return [str(default)]


def _attribute(settings: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        settings = getattr(settings, part)
    return settings


@pytest.mark.parametrize(
    "key", sorted(k for k, sub in SCHEMA_KEYS.items() if "default" in sub), ids=str
)
def test_documented_defaults_are_the_schemas_and_the_codes(key: str) -> None:
    default = SCHEMA_KEYS[key]["default"]
    row = table_row(guide(), f"`{key}`")
    for token in _default_tokens(default):
        assert f"`{token}`" in row, f"{key}: default {token!r} not in {row!r}"
    # The schema's default is what the code really uses, so the guide cannot be right by luck.
    value = _attribute(Settings(), key)
    assert (list(value) if isinstance(value, tuple) else value) == default


@pytest.mark.parametrize(
    ("key", "default"),
    [("deploy.command", DEFAULT_COMMAND), ("deploy.support_command", DEFAULT_SUPPORT_COMMAND)],
)
def test_default_commands_are_quoted_exactly(key: str, default: str) -> None:
    assert f"`{default}`" in table_row(guide(), f"`{key}`")


def test_secret_keys_row_counts_the_rest() -> None:
    row = table_row(guide(), "`secret_keys`")
    shown = re.findall(r"`([A-Za-z_]+)`", row.split("|")[3])
    assert shown and all(k in DEFAULT_SECRET_KEYS for k in shown)
    assert f"{len(DEFAULT_SECRET_KEYS) - len(shown)} more" in row


def test_every_placeholder_is_documented() -> None:
    from bot.deploys.jobs import PLACEHOLDERS

    text = guide()
    missing = [p for p in sorted(PLACEHOLDERS) if f"`{{{p}}}`" not in text]
    assert not missing


# -- metrics, commands, server variables --------------------------------------------------------


def _metrics() -> list[MetricWrapperBase]:
    metrics = Metrics()
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def test_the_metrics_are_found() -> None:
    assert len(_metrics()) >= 7


@pytest.mark.parametrize("metric", _metrics(), ids=lambda m: m._name)
def test_every_metric_is_documented_with_its_labels(metric: MetricWrapperBase) -> None:
    name = metric._name + ("_total" if metric._type == "counter" else "")
    row = table_row(guide(), f"`{name}`")
    assert metric._type in row
    for label in metric._labelnames:
        assert f"`{label}`" in row, f"{name}: label {label} undocumented"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_row(command: str) -> None:
    commands = guide().split("## 3.", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in commands.splitlines() if line.startswith(f"| `/{command}")]
    assert rows, f"/{command} has no row in the commands table"
    assert all(row.count("|") == 4 for row in rows)  # command, who, what


def server_variables() -> list[str]:
    """Every `HUBBOT_*` name `hubbot serve`'s settings read."""
    source = (ROOT / "bot" / "web" / "settings.py").read_text()
    return sorted(set(re.findall(r"\bHUBBOT_[A-Z][A-Z_]*[A-Z]\b", source)))


def test_the_server_variables_are_found() -> None:
    assert {"HUBBOT_APP_ID", "HUBBOT_WEBHOOK_SECRET", "HUBBOT_DEPLOY_ENV"} <= set(
        server_variables()
    )


@pytest.mark.parametrize("variable", server_variables())
def test_every_server_variable_has_a_row(variable: str) -> None:
    table_row(guide(), f"`{variable}`")


# -- links ------------------------------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def links(path: Path) -> list[str]:
    """The targets of the markdown links of a file, outside code blocks and spans."""
    found, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            found += _LINK.findall(re.sub(r"`[^`]*`", "", line))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.lstrip("#")).strip().lower()
    text = "".join(c for c in text if c in " -" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (outside code blocks)."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.add(slug(line))
    return found


def test_the_link_parser_and_slugs() -> None:
    assert slug("## 2. Repository settings: `hubbot.yaml`") == "2-repository-settings-hubbotyaml"
    assert slug("What GitHub shows") == "what-github-shows"


def relative_links() -> list[Any]:
    params = []
    for doc in LINKED_DOCS:
        for target in links(doc):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            params.append(pytest.param(doc, target, id=f"{doc.name}:{target}"))
    return params


def test_the_guide_has_relative_links() -> None:
    assert sum(1 for p in relative_links() if p.values[0] == GUIDE) >= 8


@pytest.mark.parametrize(("doc", "target"), relative_links())
def test_relative_links_resolve(doc: Path, target: str) -> None:
    file_part, _, fragment = target.partition("#")
    where = (doc.parent / file_part).resolve() if file_part else doc
    assert where.exists(), f"{doc.name}: {target} points at nothing"
    assert where.is_relative_to(ROOT), f"{doc.name}: {target} leaves the repository"
    if fragment:
        assert where.suffix == ".md", f"{doc.name}: an anchor into a non-markdown file"
        assert fragment in anchors(where), f"{doc.name}: no heading #{fragment} in {where.name}"


# -- the 2i2c migration section ---------------------------------------------------------------


def migration_settings_text() -> str:
    """The `hubbot.yaml` the migration section recommends (its first yaml block)."""
    section = guide().split("## 8.", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "the migration section has no yaml block"
    return "\n".join(line[3:] if line.startswith("   ") else line for line in match[1].split("\n"))


def migration_settings() -> Settings:
    """The recommended settings, parsed (fails on any finding)."""
    settings, findings = parse_settings(migration_settings_text().encode())
    assert not findings, findings
    return settings


def test_the_recommended_settings_are_valid_and_2i2c_shaped() -> None:
    settings = migration_settings()
    assert settings.deploy.command == "deployer deploy {cluster} {hub}"
    assert settings.deploy.support_command == "deployer deploy-support {cluster}"
    assert settings.deploy.decrypt_secrets is False
    assert settings.labels == Settings().labels  # 2i2c's label names, unchanged


def test_the_dry_run_commands_are_valid_templates() -> None:
    dry_run = "echo deployer deploy {cluster} {hub}"
    assert f"`command: {dry_run}`" in guide()
    assert check_template(dry_run) == []
    assert check_template("echo deployer deploy-support {cluster}") == []


@pytest.fixture(scope="module")
def repo_2i2c() -> Repository:
    """The real snapshot under the guide's recommended settings."""
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return load_repository(DirSnapshot(SNAPSHOT_2I2C), migration_settings())


def _names(plan: Plan) -> dict[str, set[str]]:
    return {
        "support": {t.cluster for t in plan.support},
        "staging": {t.name for t in plan.staging},
        "prod": {t.name for t in plan.prod},
        "skipped": {t.name for t in plan.skipped},
    }


def test_the_recommended_settings_keep_every_shared_plan_case(repo_2i2c: Repository) -> None:
    for case in json.loads(PLAN_CASES_2I2C.read_text())["cases"]:
        got = _names(plan_files(repo_2i2c, case["changed"], case.get("labels", []), validate=False))
        want = {k: set(v) for k, v in case["expected"].items()}
        assert {k: got[k] for k in want} == want, case["id"]


HUB_FILE = "config/clusters/utoronto/r-prod.values.yaml"
SUPPORT_FILE = "config/clusters/utoronto/support.values.yaml"


@pytest.mark.parametrize(
    ("label", "expect"),
    [
        ("deployer:skip-deploy", {"support": 0, "hubs": 0, "skipped": True}),
        ("deployer:skip-deploy-hubs", {"support": 1, "hubs": 0, "skipped": True}),
        ("deployer:deploy-hubs", {"support": 1, "hubs": "all", "skipped": False}),
        ("deployer:deploy-support", {"support": "all", "hubs": 3, "skipped": False}),
    ],
)
def test_each_2i2c_label_does_what_the_table_says(
    repo_2i2c: Repository, label: str, expect: dict[str, Any]
) -> None:
    assert f"| `{label}` |" in guide()
    plan = plan_files(repo_2i2c, [HUB_FILE, SUPPORT_FILE], [label], validate=False)
    hubs = len(plan.staging) + len(plan.prod)
    all_hubs = sum(1 for _ in repo_2i2c.hubs())
    with_support = sum(1 for c in repo_2i2c.clusters.values() if c.support_values_files is not None)
    assert hubs == (all_hubs if expect["hubs"] == "all" else expect["hubs"])
    assert len(plan.support) == (with_support if expect["support"] == "all" else expect["support"])
    assert bool(plan.skipped) is expect["skipped"]


def test_a_deployer_change_redeploys_every_hub(repo_2i2c: Repository) -> None:
    plan = plan_files(repo_2i2c, ["deployer/commands/deploy.py"], validate=False)
    assert len(plan.staging) + len(plan.prod) == sum(1 for _ in repo_2i2c.hubs())
    assert not plan.support


@pytest.fixture(scope="module")
def snapshot_files() -> dict[str, bytes]:
    """Every file of the real snapshot, for edited copies."""
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return {
        str(p.relative_to(SNAPSHOT_2I2C)): p.read_bytes()
        for p in SNAPSHOT_2I2C.rglob("*")
        if p.is_file()
    }


UTORONTO = "config/clusters/utoronto/cluster.yaml"


@pytest.mark.parametrize("cluster_file_changes", ["changed-hubs", "all-hubs"])
def test_cluster_yaml_changes_on_github(
    snapshot_files: dict[str, bytes], cluster_file_changes: str
) -> None:
    """One hub's entry changes: that hub (gated) by default; every hub and support with all-hubs."""
    old = b"display_name: University of Toronto (R)\n"
    assert snapshot_files[UTORONTO].count(old) == 1
    edited = snapshot_files[UTORONTO].replace(old, b"display_name: U of T (R)\n")
    head_files = {**snapshot_files, UTORONTO: edited}
    text = migration_settings_text().replace(
        "cluster_file_changes: all-hubs", f"cluster_file_changes: {cluster_file_changes}"
    )
    settings, findings = parse_settings(text.encode())
    assert not findings and settings.cluster_file_changes == cluster_file_changes
    base = DictSnapshot(snapshot_files, sha="a" * 40)
    head = DictSnapshot(head_files, sha="b" * 40)
    got = _names(plan_snapshots(base, head, settings, validate=False))
    cluster = load_repository(head, settings).clusters["utoronto"]
    prod = {f"utoronto/{h.name}" for h in cluster.hubs if not settings.is_staging(h.name)}
    assert got["staging"] == {"utoronto/staging", "utoronto/r-staging"}  # the gate, or all
    if cluster_file_changes == "changed-hubs":
        assert (got["support"], got["prod"]) == (set(), {"utoronto/r-prod"})
    else:
        assert (got["support"], got["prod"]) == ({"utoronto"}, prod)
        assert len(prod) > 1
