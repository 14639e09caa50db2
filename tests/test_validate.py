"""validate(): the real snapshot is clean; mutations of real files are found at the right line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.findings import Finding
from bot.core.jsonnet_pool import ProcessRenderer
from bot.core.model import load_repository
from bot.core.settings import Settings
from bot.core.snapshot import DirSnapshot, Symlink
from bot.core.validate import Scope, validate
from tests.conftest import ROOT, SNAPSHOT_2I2C
from tests.core_support import line_containing, real_files, repo_of, text_of

CLUSTER = "config/clusters/2i2c/cluster.yaml"
COMMON = "config/clusters/2i2c/common.values.yaml"
STAGING = "config/clusters/2i2c/staging.values.yaml"
LEAP_COMMON = "config/clusters/leap/daskhub-common.values.yaml"
# Seven levels of ten aliases: ten million values if expanded.
ALIAS_BOMB = b"a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n".encode() for i in range(1, 8)
)
REAL_WARNINGS = {
    "config/clusters/bnext-bio/enc-common.secret.values.yaml",
    "config/clusters/cloudbank/enc-demo.secret.values.yaml",
    "config/clusters/cloudbank/enc-unr.secret.values.yaml",
    "config/clusters/cloudbank/unr.values.yaml",
}


@pytest.fixture(scope="module")
def renderer() -> Iterator[ProcessRenderer]:
    """Two worker processes for the whole module."""
    pool = ProcessRenderer()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def real_findings(renderer: ProcessRenderer) -> list[Finding]:
    """Findings for the whole real snapshot (171 hubs, 30 support releases), once."""
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    repo = load_repository(DirSnapshot(SNAPSHOT_2I2C), Settings())
    assert (len(repo.clusters), sum(1 for _ in repo.hubs())) == (30, 171)
    return validate(repo, renderer=renderer)


def test_the_real_snapshot_has_no_errors(real_findings: list[Finding]) -> None:
    assert [f for f in real_findings if f.is_error] == []


def test_the_real_snapshot_warns_only_about_unused_values_files(
    real_findings: list[Finding],
) -> None:
    assert {(f.rule, f.path) for f in real_findings} == {
        ("unused-values-file", path) for path in REAL_WARNINGS
    }


def check(
    renderer: ProcessRenderer,
    changes: dict[str, bytes | str | Symlink | None],
    *clusters: str,
    scope: Scope | None = None,
) -> list[Finding]:
    """Findings for real clusters (2i2c by default) with `changes` applied."""
    files = real_files(*(clusters or ("2i2c",)))
    return validate(repo_of(files, changes), scope, renderer=renderer)


def replace(path: str, old: str, new: str, *clusters: str) -> dict[str, bytes | str | None]:
    """A change replacing `old` (which must occur) by `new` in a real file."""
    text = text_of(real_files(*(clusters or ("2i2c",))), path)
    assert old in text, old
    return {path: text.replace(old, new, 1)}


def only(findings: list[Finding], rule: str) -> Finding:
    """The single finding of `rule`, with no errors of other rules."""
    errors = [f for f in findings if f.is_error or f.rule == rule]
    assert [f.rule for f in errors] == [rule], errors
    return errors[0]


def test_clean_real_clusters_have_no_findings(renderer: ProcessRenderer) -> None:
    assert check(renderer, {}, "2i2c", "leap") == []


def test_bad_type_in_a_hub_values_file_points_at_the_file_that_set_it(
    renderer: ProcessRenderer,
) -> None:
    found = only(
        check(renderer, replace(COMMON, "  enabled: true", '  enabled: "yes"')), "values-schema"
    )
    assert (found.path, found.line) == (COMMON, 2)
    assert found.message.startswith("nfs.enabled must be a boolean, not a string")
    assert "helm-charts/basehub/values.schema.yaml" in found.message


def test_daskhub_values_are_checked_against_basehubs_schema_under_its_key(
    renderer: ProcessRenderer,
) -> None:
    changes = replace(LEAP_COMMON, "    enabled: true", "    enabled: 3", "leap")
    found = only(check(renderer, changes, "leap"), "values-schema")
    assert (found.path, found.line) == (LEAP_COMMON, 3)
    assert found.message.startswith("basehub.nfs.enabled must be a boolean, not an integer")


def test_an_unknown_key_points_at_the_key(renderer: ProcessRenderer) -> None:
    found = only(
        check(renderer, replace(COMMON, "  enabled: true", "  enabeld: true")), "values-schema"
    )
    assert (found.path, found.line) == (COMMON, 2)
    assert "nfs.enabeld is not a known setting" in found.message


def test_a_required_value_deleted_by_null_points_at_the_null(renderer: ProcessRenderer) -> None:
    changes = replace(STAGING, "  custom:\n", "  custom:\n    auth: null\n")
    found = only(check(renderer, changes), "values-schema")
    assert (found.path, found.line) == (STAGING, 10)
    assert "jupyterhub.custom must set 'auth'" in found.message


def test_duplicate_key_in_a_values_file(renderer: ProcessRenderer) -> None:
    found = only(
        check(renderer, replace(COMMON, "nfs:\n", "nfs:\n  enabled: false\n")), "yaml-duplicate-key"
    )
    assert (found.path, found.line) == (COMMON, 3)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("missing.values.yaml", "missing-file"),
        ("../leap/prod.values.yaml", "values-path"),
        ("/etc/hosts", "values-path"),
        ("escape.values.yaml", "values-path"),
    ],
)
def test_bad_values_file_references(renderer: ProcessRenderer, name: str, rule: str) -> None:
    changes: dict[str, bytes | str | Symlink | None] = {
        **replace(CLUSTER, "  - staging.values.yaml", f"  - {name}"),
        "config/clusters/2i2c/escape.values.yaml": Symlink(
            "../../../helm-charts/support/values.yaml"
        ),
    }
    findings = check(renderer, changes)
    found = only(findings, rule)
    assert (found.path, found.line) == (CLUSTER, 30)


def test_unknown_chart(renderer: ProcessRenderer) -> None:
    found = only(
        check(renderer, replace(CLUSTER, "helm_chart: basehub", "helm_chart: bashub")),
        "unknown-chart",
    )
    assert (found.path, found.line) == (CLUSTER, 27)
    assert "basehub, daskhub, support" in found.message


def test_duplicate_domain_across_clusters(renderer: ProcessRenderer) -> None:
    changes = replace(
        "config/clusters/leap/cluster.yaml",
        "domain: leap.2i2c.cloud",
        "domain: MTU.2i2c.cloud",
        "leap",
    )
    findings = [f for f in check(renderer, changes, "2i2c", "leap") if f.rule == "duplicate-domain"]
    leap = text_of(real_files("leap"), "config/clusters/leap/cluster.yaml")
    assert sorted((f.path, f.line) for f in findings) == [
        (CLUSTER, 34),
        ("config/clusters/leap/cluster.yaml", line_containing(leap, "domain: leap.2i2c.cloud")),
    ]
    assert "2i2c/mtu" in findings[1].message


def test_duplicate_hub_name(renderer: ProcessRenderer) -> None:
    changes = replace(CLUSTER, "- name: mtu", "- name: staging")
    changes = {
        CLUSTER: str(changes[CLUSTER]).replace("domain: mtu.2i2c.cloud", "domain: x.2i2c.cloud")
    }
    found = only(check(renderer, changes), "duplicate-hub")
    assert (found.path, found.line) == (CLUSTER, 32)


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        (
            "domain: mtu.2i2c.cloud",
            "domain: https://mtu.2i2c.cloud/",
            34,
            "hubs[1].domain must match",
        ),
        ("- name: mtu", "- name: MTU_hub", 32, "hubs[1].name must match"),
        (
            "  domain: mtu.2i2c.cloud\n",
            "  domain: mtu.2i2c.cloud\n  colour: blue\n",
            35,
            "hubs[1].colour is not a known setting",
        ),
        (
            "  display_name: Michigan Technological University\n",
            "",
            32,
            "hubs[1] must set 'display_name'",
        ),
        ("provider: gcp", "provider: digitalocean", 2, "provider must be one of"),
        ("  zone: us-central1-b\n", "", 8, "gcp must set 'zone'"),
    ],
)
def test_cluster_schema_checks_every_hub_at_the_offending_line(
    renderer: ProcessRenderer, old: str, new: str, line: int, words: str
) -> None:
    findings = [
        f for f in check(renderer, replace(CLUSTER, old, new)) if f.rule == "cluster-schema"
    ]
    assert [(f.path, f.line) for f in findings] == [(CLUSTER, line)], findings
    assert words in findings[0].message


def test_plaintext_password_in_a_values_file(renderer: ProcessRenderer) -> None:
    changes = replace(STAGING, "  custom:\n", "  custom:\n    password: hunter2-Xq9\n")
    findings = check(renderer, changes)
    leaks = [f for f in findings if f.rule == "plaintext-secret"]
    assert [(f.path, f.line) for f in leaks] == [(STAGING, 10)]
    assert all("hunter2" not in f.message for f in findings)


def test_broken_sops_metadata(renderer: ProcessRenderer) -> None:
    path = "config/clusters/2i2c/enc-staging.secret.values.yaml"
    text = text_of(real_files("2i2c"), path)
    line = line_containing(text, "  mac: ENC[")
    broken = text.replace("  mac: ENC[", "  mac: XXX[")
    found = only(check(renderer, {path: broken}), "sops-metadata")
    assert (found.path, found.line) == (path, line)


@pytest.mark.parametrize(
    ("content", "rule", "line"),
    [
        (b"nfs:\n  enabled: caf\xe9\n", "yaml-encoding", 2),
        (
            ALIAS_BOMB,
            "yaml-too-large",
            None,
        ),
        (b"a: " + b"x" * (5 * 1024 * 1024 + 1), "yaml-too-large", None),
        (("[" * 120 + "]" * 120).encode(), "yaml-too-deep", None),
    ],
)
def test_unloadable_values_files(
    renderer: ProcessRenderer, content: bytes, rule: str, line: int | None
) -> None:
    found = only(check(renderer, {COMMON: content}), rule)
    assert found.path == COMMON
    if line is not None:
        assert found.line == line


def test_jsonnet_error_in_the_chart(renderer: ProcessRenderer) -> None:
    path = "helm-charts/basehub/values.jsonnet"
    text = text_of(real_files(), path)
    line = line_containing(text, "local is_staging")
    broken = text.replace("local is_staging = ", "local is_staging = error 'broken'; local x = ", 1)
    found = only(check(renderer, {path: broken}), "jsonnet")
    assert (found.path, found.line) == (path, line)
    assert "broken" in found.message


def test_jsonnet_importing_outside_the_chart_folder(renderer: ProcessRenderer) -> None:
    path = "helm-charts/support/values.jsonnet"
    text = text_of(real_files(), path)
    stolen = "local stolen = import '../basehub/values.jsonnet';\nassert stolen != null;\n"
    changes = {path: stolen + text}
    found = only(check(renderer, changes), "jsonnet")
    assert (found.path, found.line) == (path, 1)
    assert "cannot import '../basehub/values.jsonnet'" in found.message


def test_ignored_paths_are_never_validated(renderer: ProcessRenderer) -> None:
    changes = {
        "config/clusters/templates/gcp/cluster.yaml": "name: {{ x }}\nhubs: [{",
        "config/clusters/templates/common/x.values.yaml": "password: hunter2-Xq9\n",
    }
    assert check(renderer, changes) == []


def test_a_new_unreferenced_values_file_is_a_warning(renderer: ProcessRenderer) -> None:
    changes = {"config/clusters/2i2c/forgotten.values.yaml": "a: 1\n"}
    [found] = check(renderer, changes)
    assert (found.severity, found.rule, found.path) == (
        "warning",
        "unused-values-file",
        "config/clusters/2i2c/forgotten.values.yaml",
    )


def test_scope_limits_releases_and_files(renderer: ProcessRenderer) -> None:
    changes = {
        **replace(COMMON, "  enabled: true", '  enabled: "yes"'),
        "config/clusters/leap/new.values.yaml": "password: hunter2-Xq9\n",
    }
    leap_only = Scope(
        hubs=frozenset({"leap/prod"}), paths=frozenset({"config/clusters/leap/new.values.yaml"})
    )
    found = check(renderer, changes, "2i2c", "leap", scope=leap_only)
    assert {f.rule for f in found if f.is_error} == {"plaintext-secret"}
    everything = check(renderer, changes, "2i2c", "leap")
    assert {f.rule for f in everything if f.is_error} == {"plaintext-secret", "values-schema"}


def test_the_core_imports_neither_aiohttp_nor_kubernetes() -> None:
    code = (
        "import sys, bot.core.validate, bot.core.values, bot.core.jsonnet_pool, "
        "bot.commands.validate, bot.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'kubernetes')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (
            "  userServiceAccount:\n    type: object",
            "  userServiceAccount:\n    $ref: https://example.org/x.json\n    type: object",
            "cannot be resolved",
        ),
        ("  userServiceAccount:\n    type: object", "  userServiceAccount:\n    type: 5", "not a"),
    ],
)
def test_a_broken_chart_schema_is_a_finding_not_a_crash(
    renderer: ProcessRenderer, old: str, new: str, words: str
) -> None:
    schema = "helm-charts/basehub/values.schema.yaml"
    found = only(check(renderer, replace(schema, old, new)), "schema-invalid")
    assert found.path == schema
    assert words in found.message


@pytest.mark.parametrize(
    ("chart_yaml", "line", "words"),
    [
        ("apiVersion: v2\nname: daskhub\n", 1, "must set 'version'"),
        (
            "name: daskhub\nversion: 1\ndependencies:\n  - name: basehub\n"
            "    repository: file://../nope\n",
            5,
            "not a chart folder",
        ),
        (
            "name: daskhub\nversion: 1\ndependencies:\n  - name: daskhub\n"
            "    repository: file://../daskhub\n",
            3,
            "cycle",
        ),
    ],
)
def test_chart_yaml_problems(
    renderer: ProcessRenderer, chart_yaml: str, line: int, words: str
) -> None:
    findings = check(renderer, {"helm-charts/daskhub/Chart.yaml": chart_yaml})
    found = [f for f in findings if f.rule == "chart"]
    assert [(f.path, f.line) for f in found] == [("helm-charts/daskhub/Chart.yaml", line)]
    assert words in found[0].message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
HUB_KEYS = st.sampled_from(
    ["name", "domain", "helm_chart", "helm_chart_values_files", "chart_override", "other"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    hub=st.dictionaries(HUB_KEYS, JSON_VALUES, max_size=5),
    top=st.dictionaries(
        st.sampled_from(["support", "aws", "gcp", "name", "hubs"]), JSON_VALUES, max_size=2
    ),
    values=JSON_VALUES,
)
def test_any_structure_gives_findings_never_a_crash(
    renderer: ProcessRenderer, hub: dict[str, object], top: dict[str, object], values: object
) -> None:
    cluster = {"name": "c", "provider": "kubeconfig", "hubs": [hub], **top}
    files: dict[str, bytes | str | Symlink] = {
        "helm-charts/basehub/Chart.yaml": "name: basehub\nversion: 1\n",
        "helm-charts/basehub/values.schema.json": json.dumps(
            {"type": "object", "properties": {"a": {"type": "integer"}}}
        ),
        "config/clusters/c/cluster.yaml": yaml.safe_dump(cluster),
        "config/clusters/c/x.values.yaml": yaml.safe_dump(values),
    }
    findings = validate(repo_of(files), renderer=renderer)
    assert all(f.path and f.rule and f.message for f in findings)
