"""Effective values: helm's merge rules (checked against helm itself), layers and provenance."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.jsonnet_pool import ProcessRenderer
from bot.core.merge import coalesce, merge_user
from bot.core.model import Repository
from bot.core.snapshot import Symlink
from bot.core.values import Source, hub_values, support_values
from tests.conftest import CACHE
from tests.core_support import line_containing, real_files, repo_of, text_of

HELM = CACHE / "bin" / "helm"


@pytest.fixture(scope="module")
def renderer() -> Iterator[ProcessRenderer]:
    """Two worker processes for the whole module."""
    pool = ProcessRenderer()
    yield pool
    pool.close()


@pytest.mark.parametrize(
    ("base", "overlay", "expected"),
    [
        ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": {"x": 1}}, {"a": None}, {"a": None}),  # kept: coalesce decides later
        ({"a": 1}, {"a": {"x": 1}}, {"a": {"x": 1}}),
        ({"a": {"x": 1}}, {"a": "s"}, {"a": "s"}),
    ],
)
def test_merge_user_is_helms_mergemaps(
    base: dict[str, Any], overlay: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_user(base, overlay) == expected


@pytest.mark.parametrize(
    ("top", "defaults", "expected"),
    [
        ({"a": None}, {"a": 1, "b": 2}, {"b": 2}),  # a user null deletes a default
        ({"a": None}, {"b": 2}, {"a": None, "b": 2}),  # ... and stays where there is none
        ({"a": {"x": None}}, {"a": {"x": 1, "y": 2}}, {"a": {"y": 2}}),
        ({"a": [1]}, {"a": [1, 2, 3]}, {"a": [1]}),
        ({"a": {"x": 1}}, {"a": "scalar"}, {"a": {"x": 1}}),
    ],
)
def test_coalesce_is_helms(
    top: dict[str, Any], defaults: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert coalesce(top, defaults) == expected


def test_merging_never_modifies_its_inputs() -> None:
    defaults = {"a": {"x": 1, "y": {"z": 2}}}
    user = {"a": {"y": {"z": None}, "w": 3}}
    before = json.dumps([defaults, user], sort_keys=True)
    coalesce(merge_user({}, user), defaults)
    assert json.dumps([defaults, user], sort_keys=True) == before


PARENT_CHART = """apiVersion: v2
name: parent
version: 0.1.0
dependencies:
  - name: sub
    version: 0.1.0
    repository: file://../sub
"""
PARENT_VALUES = "a: {x: 1, l: [1, 2], z: keep}\nb: 1\ngone: {p: 1}\nsub: {s2: override}\n"
SUB_VALUES = "s1: one\ns2: two\nnested: {k: v, drop: 1}\n"
FIRST = "a: {x: 2, l: [3]}\nb: null\nc: {deep: null, keep: 1}\nsub: {nested: {drop: null}}\n"
SECOND = "a: {z: null}\ngone: null\nnew: null\nlist: [{k: 1}]\n"
CLUSTER = """name: c
provider: kubeconfig
kubeconfig: {file: enc-deployer-credentials.secret.yaml}
hubs:
  - name: h
    display_name: H
    domain: h.example.org
    helm_chart: parent
    helm_chart_values_files: [first.values.yaml, second.values.yaml, enc-h.secret.values.yaml]
"""


def tiny_files() -> dict[str, bytes | str | Symlink]:
    """A chart with a local dependency and a hub with two values files and a secret."""
    return {
        "helm-charts/parent/Chart.yaml": PARENT_CHART,
        "helm-charts/parent/values.yaml": PARENT_VALUES,
        "helm-charts/sub/Chart.yaml": "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
        "helm-charts/sub/values.yaml": SUB_VALUES,
        "config/clusters/c/cluster.yaml": CLUSTER,
        "config/clusters/c/first.values.yaml": FIRST,
        "config/clusters/c/second.values.yaml": SECOND,
        "config/clusters/c/enc-h.secret.values.yaml": "never: read\n",
    }


def tiny_values(renderer: ProcessRenderer, **changes: Any) -> tuple[Repository, Any]:
    """The tiny repository and its hub's effective values."""
    repo = repo_of(tiny_files(), changes)
    hub = repo.hub("c/h")
    assert hub is not None
    return repo, hub_values(repo, hub, renderer=renderer)


def helm_values(tmp_path: Path) -> dict[str, Any]:
    """What helm itself computes for the tiny repository's hub."""
    chart = tmp_path / "parent"
    (chart / "templates").mkdir(parents=True)
    (chart / "charts" / "sub").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(PARENT_CHART)
    (chart / "values.yaml").write_text(PARENT_VALUES)
    (chart / "charts/sub/Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (chart / "charts/sub/values.yaml").write_text(SUB_VALUES)
    template = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    (chart / "templates/out.yaml").write_text(
        template + "data:\n  v: {{ toJson .Values | quote }}\n"
    )
    (tmp_path / "first.yaml").write_text(FIRST)
    (tmp_path / "second.yaml").write_text(SECOND)
    out = subprocess.run(
        [str(HELM), "template", "r", str(chart), "-f", "first.yaml", "-f", "second.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rendered = json.loads(yaml.safe_load(out)["data"]["v"])
    assert isinstance(rendered, dict)
    return rendered


@pytest.mark.skipif(not HELM.exists(), reason="helm is not installed in .cache/bin")
def test_effective_values_equal_what_helm_computes(
    renderer: ProcessRenderer, tmp_path: Path
) -> None:
    _, effective = tiny_values(renderer)
    expected = helm_values(tmp_path)
    # helm hands each dependency an empty `global`; the values files never set one
    assert expected["sub"].pop("global") == {}
    assert effective.values == expected
    assert effective.complete and not effective.findings


def test_layers_and_secret_files(renderer: ProcessRenderer) -> None:
    _, effective = tiny_values(renderer)
    assert [(layer.kind, layer.path, layer.prefix) for layer in effective.layers] == [
        ("chart-defaults", "helm-charts/sub/values.yaml", ("sub",)),
        ("chart-defaults", "helm-charts/parent/values.yaml", ()),
        ("values", "config/clusters/c/first.values.yaml", ()),
        ("values", "config/clusters/c/second.values.yaml", ()),
    ]
    assert effective.secret_files == ["config/clusters/c/enc-h.secret.values.yaml"]


@pytest.mark.parametrize(
    ("path", "source"),
    [
        (("a", "x"), ("config/clusters/c/first.values.yaml", 1)),
        (("a", "l", 0), ("config/clusters/c/first.values.yaml", 1)),
        (("list", 0, "k"), ("config/clusters/c/second.values.yaml", 4)),
        (("c", "keep"), ("config/clusters/c/first.values.yaml", 3)),
        (("sub", "s1"), ("helm-charts/sub/values.yaml", 1)),
        (("sub", "s2"), ("helm-charts/parent/values.yaml", 4)),
        (("sub", "nested", "k"), ("helm-charts/sub/values.yaml", 3)),
        (("new",), ("config/clusters/c/second.values.yaml", 3)),
    ],
)
def test_source_of_is_the_last_layer_that_set_the_value(
    renderer: ProcessRenderer, path: tuple[Any, ...], source: tuple[str, int]
) -> None:
    _, effective = tiny_values(renderer)
    assert effective.source_of(path) == Source(*source)


def test_deleted_by_names_the_null_that_removed_a_default(renderer: ProcessRenderer) -> None:
    _, effective = tiny_values(renderer)
    assert effective.deleted_by(("b",)) == Source("config/clusters/c/first.values.yaml", 2)
    assert effective.deleted_by(("a", "z")) == Source("config/clusters/c/second.values.yaml", 1)
    assert effective.deleted_by(("a", "x")) is None


def test_a_jsonnet_values_file_is_rendered_for_the_hub(renderer: ProcessRenderer) -> None:
    cluster = CLUSTER.replace("second.values.yaml", "extra.values.jsonnet")
    _, effective = tiny_values(
        renderer,
        **{
            "config/clusters/c/cluster.yaml": cluster,
            "config/clusters/c/extra.values.jsonnet": "{host: std.extVar('VARS_2I2C_HUB_DOMAIN')}",
        },
    )
    assert effective.values["host"] == "h.example.org"
    assert effective.source_of(("host",)) == Source("config/clusters/c/extra.values.jsonnet", None)


@pytest.mark.parametrize(
    ("name", "rule", "words"),
    [
        ("missing.values.yaml", "missing-file", "does not exist"),
        ("../other/x.values.yaml", "values-path", "leaves the cluster folder"),
        ("/etc/passwd", "values-path", "absolute"),
        ("link.values.yaml", "values-path", "symlink"),
    ],
)
def test_bad_values_file_references_are_findings_in_cluster_yaml(
    renderer: ProcessRenderer, name: str, rule: str, words: str
) -> None:
    cluster = CLUSTER.replace("second.values.yaml", name)
    _, effective = tiny_values(
        renderer,
        **{
            "config/clusters/c/cluster.yaml": cluster,
            "config/clusters/other/x.values.yaml": "a: 1\n",
            "config/clusters/c/link.values.yaml": Symlink("../other/x.values.yaml"),
        },
    )
    [finding] = effective.findings
    assert (finding.path, finding.line, finding.rule) == ("config/clusters/c/cluster.yaml", 9, rule)
    assert words in finding.message
    assert not effective.complete


def test_real_daskhub_hub_values_are_nested_under_basehub(renderer: ProcessRenderer) -> None:
    files = real_files("leap")
    repo = repo_of(files)
    hub = repo.hub("leap/prod")
    assert hub is not None
    effective = hub_values(repo, hub, renderer=renderer)
    assert not effective.findings
    # leap's prod.values.yaml also sets a top-level dask-gateway, which daskhub ignores
    assert set(effective.values) == {"basehub", "dask-gateway"}
    hosts = effective.values["basehub"]["jupyterhub"]["ingress"]["hosts"]
    assert hosts == ["leap.2i2c.cloud"]
    assert effective.source_of(("basehub", "jupyterhub", "ingress", "hosts")) == Source(
        "helm-charts/basehub/values.jsonnet", None
    )
    common = text_of(files, "config/clusters/leap/daskhub-common.values.yaml")
    line = line_containing(common, "type: jupyterhub")
    assert effective.source_of(("basehub", "dask-gateway", "gateway", "auth", "type")) == Source(
        "config/clusters/leap/daskhub-common.values.yaml", line
    )
    prod = text_of(files, "config/clusters/leap/prod.values.yaml")
    line = line_containing(prod, "memory: 256Mi")
    path = ("basehub", "jupyterhub", "proxy", "chp", "resources", "requests", "memory")
    assert effective.source_of(path) == Source("config/clusters/leap/prod.values.yaml", line)
    assert effective.secret_files == ["config/clusters/leap/enc-prod.secret.values.yaml"]


def test_real_support_values_layer_order(renderer: ProcessRenderer) -> None:
    repo = repo_of(real_files("2i2c"))
    effective = support_values(repo, repo.clusters["2i2c"], renderer=renderer)
    assert [layer.path for layer in effective.layers] == [
        "helm-charts/support/values.yaml",
        "helm-charts/support/values.jsonnet",
        "config/clusters/2i2c/support.values.yaml",
    ]
    assert effective.secret_files == ["config/clusters/2i2c/enc-support.secret.values.yaml"]
    annotations = effective.values["grafana"]["serviceAccount"]["annotations"]
    assert annotations == {
        "iam.gke.io/gcp-service-account": "grafana-2i2c-sa@two-eye-two-see.iam.gserviceaccount.com"
    }


def test_unknown_chart_is_a_finding_at_its_line(renderer: ProcessRenderer) -> None:
    _, effective = tiny_values(
        renderer,
        **{
            "config/clusters/c/cluster.yaml": CLUSTER.replace(
                "helm_chart: parent", "helm_chart: nope"
            )
        },
    )
    assert [(f.rule, f.line) for f in effective.findings] == [("unknown-chart", 8)]
    assert "parent, sub" in effective.findings[0].message
