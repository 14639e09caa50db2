"""File-mode planner rules, on a small repository built in memory and on the real snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.findings import error, warning
from bot.core.model import Repository, load_repository
from bot.core.planner import Plan, plan_files
from bot.core.settings import Settings, build_settings
from bot.core.snapshot import DictSnapshot, DirSnapshot

CLUSTER_ALPHA = """\
name: alpha
provider: gcp
gcp: {key: enc-deployer-credentials.secret.json, project: p, cluster: alpha, zone: z}
support:
  helm_chart_values_files: [support.values.yaml, enc-support.secret.values.yaml]
hubs:
- name: staging
  display_name: Alpha staging
  domain: staging.alpha.org
  helm_chart: basehub
  helm_chart_values_files: [common.values.yaml, staging.values.yaml, enc-staging.secret.values.yaml]
- name: prod
  display_name: Alpha
  domain: alpha.org
  helm_chart: basehub
  helm_chart_values_files: [common.values.yaml, prod.values.yaml]
- name: dask
  display_name: Alpha Dask
  domain: dask.alpha.org
  helm_chart: daskhub
  chart_override: chart.yaml
  helm_chart_values_files: [dask.values.yaml]
"""
CLUSTER_BETA = """\
name: beta
provider: aws
aws: {key: enc-deployer-credentials.secret.json, clusterType: eks, clusterName: beta,
      region: us-west-2}
hubs:
- name: prod
  display_name: Beta
  domain: beta.org
  helm_chart: basehub
  helm_chart_values_files: [prod.values.yaml]
"""
CLUSTER_GAMMA = """\
name: gamma
provider: kubeconfig
kubeconfig: {file: enc-deployer-credentials.secret.yaml}
support:
  helm_chart_values_files: [support.values.yaml]
hubs:
- {name: staging, display_name: S, domain: s.gamma.org, helm_chart: basehub,
   helm_chart_values_files: [a.yaml]}
- {name: r-staging, display_name: RS, domain: rs.gamma.org, helm_chart: basehub,
   helm_chart_values_files: [b.yaml]}
- {name: prod, display_name: P, domain: gamma.org, helm_chart: basehub,
   helm_chart_values_files: [c.yaml]}
"""
# Looks encrypted to validation (sops metadata, ENC values); never decrypted by the planner.
SOPS = """\
x: ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:int]
sops:
  mac: ENC[AES256_GCM,data:DDDD,iv:EEEE,tag:FFFF,type:str]
  age:
  - recipient: age1test
    enc: not-a-real-key
  version: 3.9.0
"""
SOPS_JSON = (
    '{"x": "ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]", "sops": {"mac": '
    '"ENC[AES256_GCM,data:DDDD,iv:EEEE,tag:FFFF,type:str]", "age": [{"recipient": "age1test", '
    '"enc": "x"}], "version": "3.9.0"}}\n'
)
FILES: dict[str, str] = {
    "pyproject.toml": "[project]\n",
    "README.md": "# infra\n",
    "helm-charts/basehub/Chart.yaml": "name: basehub\nversion: 0.1.0\n",
    "helm-charts/basehub/values.yaml": "jupyterhub: {}\n",
    "helm-charts/daskhub/Chart.yaml": (
        "name: daskhub\nversion: 0.1.0\n"
        "dependencies:\n- name: basehub\n  version: 0.1.0\n  repository: file://../basehub\n"
    ),
    "helm-charts/support/Chart.yaml": "name: support\nversion: 0.1.0\n",
    "helm-charts/support/values.yaml": "prometheus: {}\n",
    "helm-charts/images/hub/Dockerfile": "FROM python\n",
    "config/clusters/alpha/cluster.yaml": CLUSTER_ALPHA,
    "config/clusters/alpha/chart.yaml": "name: daskhub\n",
    "config/clusters/beta/cluster.yaml": CLUSTER_BETA,
    "config/clusters/gamma/cluster.yaml": CLUSTER_GAMMA,
    "config/clusters/templates/gcp/cluster.yaml": "name: {{ cluster_name }}\n",
    **{
        f"config/clusters/alpha/{name}": "x: 1\n"
        for name in (
            "support.values.yaml",
            "common.values.yaml",
            "staging.values.yaml",
            "prod.values.yaml",
            "dask.values.yaml",
        )
    },
    "config/clusters/alpha/enc-support.secret.values.yaml": SOPS,
    "config/clusters/alpha/enc-staging.secret.values.yaml": SOPS,
    "config/clusters/alpha/enc-deployer-credentials.secret.json": SOPS_JSON,
    "config/clusters/beta/enc-deployer-credentials.secret.json": SOPS_JSON,
    "config/clusters/gamma/enc-deployer-credentials.secret.yaml": SOPS,
    "config/clusters/beta/prod.values.yaml": "x: 1\n",
    **{f"config/clusters/gamma/{n}": "x: 1\n" for n in ("support.values.yaml", "a.yaml", "b.yaml")},
    "config/clusters/gamma/c.yaml": "x: 1\n",
}
ALL_HUBS = [
    "alpha/dask",
    "alpha/prod",
    "alpha/staging",
    "beta/prod",
    "gamma/prod",
    "gamma/r-staging",
    "gamma/staging",
]


def tiny_repo(settings: Settings | None = None, **changes: str | None) -> Repository:
    """The small repository, with files changed (`a__b` is `a/b`; None deletes)."""
    snapshot = DictSnapshot(FILES).with_changes(
        {k.replace("__", "/"): v for k, v in changes.items()}
    )
    return load_repository(snapshot, settings or Settings())


def summary(plan: Plan) -> dict[str, list[str]]:
    """Target names per list, sorted, empty lists left out."""
    out = {
        "support": [t.name for t in plan.support],
        "staging": [t.name for t in plan.staging],
        "prod": [t.name for t in plan.prod],
        "skipped": [t.name for t in plan.skipped],
    }
    return {k: sorted(v) for k, v in out.items() if v}


def staging_of(hubs: list[str]) -> list[str]:
    return sorted(h for h in hubs if "staging" in h)


def prod_of(hubs: list[str]) -> list[str]:
    return sorted(h for h in hubs if "staging" not in h)


RULES: list[Any] = [
    pytest.param(
        ["helm-charts/support/values.yaml"], [], {"support": ["alpha", "gamma"]}, id="support-chart"
    ),
    pytest.param(
        ["helm-charts/daskhub/Chart.yaml"],
        [],
        {"staging": staging_of(ALL_HUBS), "prod": prod_of(ALL_HUBS)},
        id="other-chart-all-hubs",
    ),
    pytest.param(["helm-charts/images/hub/Dockerfile"], [], {}, id="not-a-chart-folder"),
    pytest.param(["helm-charts/README.md"], [], {}, id="file-beside-charts"),
    pytest.param(
        ["pyproject.toml"],
        [],
        {"staging": staging_of(ALL_HUBS), "prod": prod_of(ALL_HUBS)},
        id="redeploy-all-path",
    ),
    pytest.param(["README.md"], [], {}, id="unrelated-file"),
    pytest.param(
        ["config/clusters/alpha/prod.values.yaml"],
        [],
        {"staging": ["alpha/staging"], "prod": ["alpha/prod"]},
        id="prod-values-gated-by-staging",
    ),
    pytest.param(
        ["config/clusters/alpha/common.values.yaml"],
        [],
        {"staging": ["alpha/staging"], "prod": ["alpha/prod"]},
        id="shared-values",
    ),
    pytest.param(
        ["config/clusters/alpha/enc-staging.secret.values.yaml"],
        [],
        {"staging": ["alpha/staging"]},
        id="secret-values",
    ),
    pytest.param(
        ["config/clusters/alpha/enc-support.secret.values.yaml"],
        [],
        {"support": ["alpha"]},
        id="support-secret-values",
    ),
    pytest.param(
        ["config/clusters/alpha/cluster.yaml"],
        [],
        {"support": ["alpha"], "staging": ["alpha/staging"], "prod": ["alpha/dask", "alpha/prod"]},
        id="cluster-file",
    ),
    pytest.param(
        ["config/clusters/beta/cluster.yaml"],
        [],
        {"prod": ["beta/prod"]},
        id="no-support-no-staging",
    ),
    pytest.param(
        ["config/clusters/alpha/chart.yaml"],
        [],
        {"staging": ["alpha/staging"], "prod": ["alpha/dask"]},
        id="chart-override",
    ),
    pytest.param(
        ["config/clusters/gamma/c.yaml"],
        [],
        {"staging": ["gamma/r-staging", "gamma/staging"], "prod": ["gamma/prod"]},
        id="gate-adds-every-staging-hub",
    ),
    pytest.param(
        ["config/clusters/gamma/b.yaml", "config/clusters/gamma/c.yaml"],
        [],
        {"staging": ["gamma/r-staging"], "prod": ["gamma/prod"]},
        id="gate-satisfied-by-one-staging-hub",
    ),
    pytest.param(["config/clusters/templates/gcp/cluster.yaml"], [], {}, id="ignored-template"),
    pytest.param(["config/clusters/alpha/old.values.yaml"], [], {}, id="deleted-unreferenced"),
    pytest.param(
        ["./config/clusters/alpha/../alpha/staging.values.yaml"],
        [],
        {"staging": ["alpha/staging"]},
        id="path-normalized",
    ),
    pytest.param(
        ["config/clusters/alpha/prod.values.yaml", "helm-charts/support/values.yaml"],
        ["deployer:skip-deploy"],
        {"skipped": ["alpha", "alpha/prod", "alpha/staging", "gamma"]},
        id="label-skip-everything",
    ),
    pytest.param(
        ["config/clusters/alpha/prod.values.yaml", "helm-charts/support/values.yaml"],
        ["deployer:skip-deploy-hubs"],
        {"support": ["alpha", "gamma"], "skipped": ["alpha/prod", "alpha/staging"]},
        id="label-skip-hubs",
    ),
    pytest.param(
        [],
        ["deployer:deploy-hubs"],
        {"staging": staging_of(ALL_HUBS), "prod": prod_of(ALL_HUBS)},
        id="label-all-hubs",
    ),
    pytest.param(
        [], ["deployer:deploy-support"], {"support": ["alpha", "gamma"]}, id="label-support"
    ),
    pytest.param(
        [],
        ["deployer:deploy-hubs", "deployer:skip-deploy-hubs"],
        {"skipped": ALL_HUBS},
        id="label-skip-wins-over-force",
    ),
    pytest.param(
        ["pyproject.toml"],
        ["some-other-label"],
        {"staging": staging_of(ALL_HUBS), "prod": prod_of(ALL_HUBS)},
        id="unknown-label-ignored",
    ),
]


@pytest.mark.parametrize(("changed", "labels", "expected"), RULES)
def test_file_mode_rule(changed: list[str], labels: list[str], expected: dict[str, Any]) -> None:
    plan = plan_files(tiny_repo(), changed, labels, validate=False)
    assert summary(plan) == expected
    for target in (*plan.support, *plan.staging, *plan.prod, *plan.skipped):
        assert target.reasons, target


@pytest.mark.parametrize(
    ("changed", "key", "reason"),
    [
        (
            ["config/clusters/alpha/prod.values.yaml"],
            "alpha/prod",
            "values file prod.values.yaml changed",
        ),
        (
            ["config/clusters/alpha/prod.values.yaml"],
            "alpha/staging",
            "staging gate: prod hubs deploy (prod)",
        ),
        (
            ["config/clusters/alpha/enc-staging.secret.values.yaml"],
            "alpha/staging",
            "encrypted file enc-staging.secret.values.yaml changed",
        ),
        (["config/clusters/alpha/chart.yaml"], "alpha/dask", "chart override chart.yaml changed"),
        (["config/clusters/alpha/cluster.yaml"], "alpha", "cluster.yaml changed"),
        (["helm-charts/support/values.yaml"], "gamma", "support chart changed (values.yaml)"),
        (
            [f"helm-charts/basehub/{n}.yaml" for n in "abcde"],
            "beta/prod",
            "chart basehub changed (a.yaml, b.yaml, c.yaml +2 more)",
        ),
        (["pyproject.toml"], "gamma/prod", "pyproject.toml changed (redeploys every hub)"),
    ],
)
def test_reasons_say_why(changed: list[str], key: str, reason: str) -> None:
    plan = plan_files(tiny_repo(), changed, validate=False)
    targets = {t.name: t for t in (*plan.support, *plan.staging, *plan.prod)}
    assert reason in targets[key].reasons


def test_skipped_keeps_the_reasons_and_adds_the_label() -> None:
    plan = plan_files(
        tiny_repo(),
        ["config/clusters/alpha/prod.values.yaml"],
        ["deployer:skip-deploy"],
        validate=False,
    )
    prod = next(t for t in plan.skipped if t.name == "alpha/prod")
    assert prod.reasons == ("values file prod.values.yaml changed", "label deployer:skip-deploy")
    assert plan.is_empty


def test_deleted_referenced_file_still_deploys_its_hub() -> None:
    repo = tiny_repo(**{"config__clusters__beta__prod.values.yaml": None})
    plan = plan_files(repo, ["config/clusters/beta/prod.values.yaml"], validate=False)
    assert summary(plan) == {"prod": ["beta/prod"]}


def test_cluster_without_staging_deploys_ungated_with_a_note() -> None:
    plan = plan_files(tiny_repo(), ["config/clusters/beta/prod.values.yaml"], validate=False)
    assert summary(plan) == {"prod": ["beta/prod"]}
    assert any("beta has no staging hub" in n for n in plan.notes)


def test_deleted_cluster_file_is_noted_not_undeployed() -> None:
    repo = tiny_repo(**{"config__clusters__beta__cluster.yaml": None})
    plan = plan_files(repo, ["config/clusters/beta/cluster.yaml"], validate=False)
    assert plan.is_empty
    assert any("was deleted" in n for n in plan.notes)


@pytest.mark.parametrize(
    ("raw", "changed", "expected"),
    [
        (
            {"staging_hub_pattern": "^r-"},
            ["config/clusters/gamma/c.yaml"],
            {"staging": ["gamma/r-staging"], "prod": ["gamma/prod"]},
        ),
        (
            {"redeploy_all_paths": ["deployer/**"]},
            ["deployer/x/y.py"],
            {"staging": staging_of(ALL_HUBS), "prod": prod_of(ALL_HUBS)},
        ),
        ({"redeploy_all_paths": ["deployer/**"]}, ["pyproject.toml"], {}),
        ({"ignored_paths": ["config/clusters/gamma/**"]}, ["config/clusters/gamma/c.yaml"], {}),
        (
            {"charts_dir": "charts", "support_chart": "infra"},
            ["charts/infra/values.yaml"],
            {"support": ["alpha", "gamma"]},
        ),
    ],
)
def test_settings_steer_the_rules(
    raw: dict[str, Any], changed: list[str], expected: dict[str, Any]
) -> None:
    settings = build_settings(raw)
    files = {
        p.replace("helm-charts/support/", "charts/infra/").replace("helm-charts/", "charts/")
        if "charts_dir" in raw
        else p: v
        for p, v in FILES.items()
    }
    repo = load_repository(DictSnapshot(files), settings)
    assert summary(plan_files(repo, changed, validate=False)) == expected


def test_custom_label_names() -> None:
    settings = build_settings({"labels": {"skip_deploy": "no-deploy"}})
    repo = tiny_repo(settings)
    plan = plan_files(repo, ["pyproject.toml"], ["no-deploy"], validate=False)
    assert plan.is_empty and len(plan.skipped) == len(ALL_HUBS)
    plan = plan_files(repo, ["pyproject.toml"], ["deployer:skip-deploy"], validate=False)
    assert not plan.is_empty


def test_json_contract_shape_and_order() -> None:
    plan = plan_files(
        tiny_repo(),
        ["config/clusters/alpha/cluster.yaml", "helm-charts/support/values.yaml"],
        ["deployer:skip-deploy-hubs"],
        validate=False,
    )
    data = plan.to_json()
    assert list(data) == [
        "base",
        "head",
        "findings",
        "support",
        "staging",
        "prod",
        "skipped",
        "removed",
    ]
    assert data["support"] == [
        {
            "cluster": "alpha",
            "reasons": ["cluster.yaml changed", "support chart changed (values.yaml)"],
        },
        {"cluster": "gamma", "reasons": ["support chart changed (values.yaml)"]},
    ]
    assert [(s["cluster"], s["hub"]) for s in data["skipped"]] == [
        ("alpha", "dask"),
        ("alpha", "prod"),
        ("alpha", "staging"),
    ]
    assert all(set(s) == {"cluster", "hub", "reasons"} for s in data["skipped"])
    assert data["base"] is None and data["removed"] == []


def test_lists_sort_by_cluster_then_hub() -> None:
    hub = "- {name: %s, domain: %s.org, helm_chart: basehub, helm_chart_values_files: []}\n"
    files = {
        "helm-charts/basehub/Chart.yaml": "name: basehub\n",
        "config/clusters/2i2c-aws-us/cluster.yaml": "name: x\nhubs:\n" + hub % ("b", "b"),
        "config/clusters/2i2c/cluster.yaml": "name: y\nhubs:\n"
        + hub % ("z", "z")
        + hub % ("a", "a"),
    }
    plan = plan_files(
        load_repository(DictSnapshot(files), Settings()), ["pyproject.toml"], validate=False
    )
    # by (cluster, hub): "2i2c" sorts before "2i2c-aws-us", although "2i2c/" > "2i2c-" as text
    assert [t.name for t in plan.prod] == ["2i2c/a", "2i2c/z", "2i2c-aws-us/b"]
    assert [h["hub"] for h in plan.to_json()["prod"]] == ["a", "z", "b"]


@pytest.mark.parametrize(
    ("findings", "blocked"),
    [((), False), ((warning("a", 1, "r", "m"),), False), ((error("a", 1, "r", "m"),), True)],
)
def test_blocked_only_by_errors(findings: tuple[Any, ...], blocked: bool) -> None:
    plan = Plan(None, None, findings, (), (), ())
    assert plan.blocked is blocked
    assert plan.is_empty


def test_hub_keys_and_support_clusters() -> None:
    plan = plan_files(tiny_repo(), ["config/clusters/alpha/cluster.yaml"], validate=False)
    assert plan.hub_keys("staging") == {"alpha/staging"}
    assert plan.hub_keys() == {"alpha/staging", "alpha/prod", "alpha/dask"}
    assert plan.support_clusters == {"alpha"}


# -- the real snapshot -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(request: pytest.FixtureRequest) -> Repository:
    from tests.conftest import SNAPSHOT_2I2C

    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return load_repository(DirSnapshot(SNAPSHOT_2I2C), Settings())


@pytest.mark.parametrize(
    ("changed", "labels", "counts"),
    [
        (["pyproject.toml"], [], (0, 29, 142)),
        (["requirements.txt"], [], (0, 29, 142)),
        (["helm-charts/daskhub/values.jsonnet"], [], (0, 29, 142)),
        (["helm-charts/support/Chart.yaml"], [], (30, 0, 0)),
        (["config/clusters/utoronto/gone.values.yaml"], [], (0, 0, 0)),
        (["config/clusters/templates/common/hub.values.yaml"], [], (0, 0, 0)),
        ([], ["deployer:deploy-hubs"], (0, 29, 142)),
        ([], ["deployer:deploy-support"], (30, 0, 0)),
        (["helm-charts/basehub/values.yaml"], ["deployer:skip-deploy-hubs"], (0, 0, 0)),
        (["config/clusters/utoronto/cluster.yaml"], ["deployer:skip-deploy"], (0, 0, 0)),
    ],
)
def test_real_snapshot_rules(
    real: Repository, changed: list[str], labels: list[str], counts: tuple[int, int, int]
) -> None:
    plan = plan_files(real, changed, labels, validate=False)
    assert (len(plan.support), len(plan.staging), len(plan.prod)) == counts


def test_real_snapshot_skip_label_lists_what_would_deploy(real: Repository) -> None:
    plan = plan_files(
        real, ["config/clusters/utoronto/cluster.yaml"], ["deployer:skip-deploy"], validate=False
    )
    assert [t.name for t in plan.skipped] == [
        "utoronto",
        "utoronto/highmem",
        "utoronto/prod",
        "utoronto/r-prod",
        "utoronto/r-staging",
        "utoronto/staging",
    ]


def test_plan_validates_only_what_it_touches() -> None:
    repo = tiny_repo(
        **{
            "config__clusters__alpha__prod.values.yaml": "y: 1\ny: 2\n",
            "config__clusters__gamma__c.yaml": "x: [\n",
        }
    )
    plan = plan_files(repo, ["config/clusters/alpha/prod.values.yaml"])
    assert [(f.path, f.line, f.rule) for f in plan.errors] == [
        ("config/clusters/alpha/prod.values.yaml", 2, "yaml-duplicate-key")
    ]
    assert plan.blocked
    assert not plan_files(repo, ["config/clusters/beta/prod.values.yaml"]).findings


def test_ignored_paths_are_not_validated() -> None:
    repo = tiny_repo(**{"config__clusters__templates__gcp__cluster.yaml": "name: [{{ x }\n"})
    plan = plan_files(repo, ["config/clusters/templates/gcp/cluster.yaml"])
    assert plan.is_empty and not plan.findings


def test_clean_repository_plans_without_findings() -> None:
    plan = plan_files(tiny_repo(), ["pyproject.toml"])
    assert not plan.findings and len(plan.hubs) == len(ALL_HUBS)


def test_deleted_paths_are_validated_without_a_crash() -> None:
    plan = plan_files(
        tiny_repo(), ["config/clusters/alpha/gone.yaml", "helm-charts/basehub/x.yaml"]
    )
    assert not plan.findings and len(plan.hubs) == len(ALL_HUBS)
