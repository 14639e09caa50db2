"""The example infrastructure repository in `config/`: complete, valid, deployable, and honest.

These tests read the example the way hubbot, helm and sops do: structure through the core's
repository model, secrets through real sops with the TEST-ONLY key, releases through a real
`helm template` (via the example's deploy.py, as the local executor runs it), and values
through jsonschema with helm's merge rules.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _gojsonnet
import jsonschema
import pytest
import yaml

from bot.core.model import load_repository
from bot.core.settings import DEFAULT_EXT_VARS, DEFAULT_SECRET_KEYS, parse_settings, settings_schema
from bot.core.snapshot import DirSnapshot
from tests.conftest import CACHE, EXAMPLE, ROOT

CLUSTERS = EXAMPLE / "config" / "clusters"
CHARTS = EXAMPLE / "helm-charts"
KEY_FILE = EXAMPLE / "TEST-ONLY-age-key.txt"
PLACEHOLDER = "<set-in-encrypted-values>"
KEY_HEADER = "TEST ONLY. Never use for real secrets. Published on purpose."


def _find_tool(name: str, candidates: list[Path]) -> str | None:
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


HELM = _find_tool("helm", [CACHE / "bin" / "helm"])
SOPS = _find_tool("sops", [Path(sys.executable).parent / "sops", ROOT / ".venv" / "bin" / "sops"])
needs_helm = pytest.mark.skipif(HELM is None, reason="helm not found (.cache/bin/helm or PATH)")
needs_sops = pytest.mark.skipif(SOPS is None, reason="sops not found (the venv's or PATH)")


# ---------------------------------------------------------------- the example, as plain data


@dataclass(frozen=True)
class Release:
    """One helm release of the example: a hub, or a cluster's support release."""

    cluster: str
    name: str  # the hub's name, or "support"
    chart: str
    files: tuple[str, ...]  # values files, relative to the cluster folder
    ext_vars: dict[str, str]
    domain: str | None

    @property
    def id(self) -> str:
        return f"{self.cluster}/{self.name}"

    @property
    def is_support(self) -> bool:
        return self.domain is None


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def clusters() -> dict[str, dict[str, Any]]:
    return {p.parent.name: load(p) for p in sorted(CLUSTERS.glob("*/cluster.yaml"))}


def ext_vars_of(cluster: dict[str, Any], hub: dict[str, Any] | None) -> dict[str, str]:
    """The Jsonnet external variables 2i2c's deployer sets (hubbot's DEFAULT_EXT_VARS)."""
    provider = cluster["provider"]
    aws = cluster.get("aws", {}) if provider == "aws" else {}
    gcp = cluster.get("gcp", {}) if provider == "gcp" else {}
    out = {
        "VARS_2I2C_CLUSTER_NAME": str(aws.get("clusterName") or cluster["name"]),
        "VARS_2I2C_PROVIDER": provider,
        "VARS_2I2C_ACCOUNT_ID": str(aws.get("account") or gcp.get("project") or "None"),
    }
    if hub is not None:
        out["VARS_2I2C_HUB_NAME"] = hub["name"]
        out["VARS_2I2C_HUB_DOMAIN"] = hub["domain"]
    return out


def releases() -> list[Release]:
    out = []
    for name, data in clusters().items():
        for hub in data["hubs"]:
            files = tuple(hub["helm_chart_values_files"])
            ext = ext_vars_of(data, hub)
            out.append(Release(name, hub["name"], hub["helm_chart"], files, ext, hub["domain"]))
        files = tuple(data["support"]["helm_chart_values_files"])
        out.append(Release(name, "support", "support", files, ext_vars_of(data, None), None))
    return out


RELEASES = releases()
HUBS = [r for r in RELEASES if not r.is_support]


def is_secret(path: str | Path) -> bool:
    return "secret" in Path(path).name


def leaves(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, (*path, str(key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from leaves(value, (*path, str(i)))
    else:
        yield path, data


# ---------------------------------------------------------------- helm's view of values


def coalesce(base: Any, over: Any) -> Any:
    """Helm's merge: maps merge deeply, a null deletes a key, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = coalesce(out.get(key), value)
    return out


def local_dependencies(chart: str) -> list[str]:
    meta = load(CHARTS / chart / "Chart.yaml")
    deps = []
    for dep in meta.get("dependencies") or []:
        assert dep["repository"].startswith("file://"), f"{chart}: remote dependency {dep}"
        deps.append(Path(dep["repository"][len("file://") :]).name)
    return deps


def chart_defaults(chart: str) -> dict[str, Any]:
    """A chart's values.yaml with each dependency's defaults under its key, as helm sees them."""
    values: dict[str, Any] = load(CHARTS / chart / "values.yaml") or {}
    for dep in local_dependencies(chart):
        values[dep] = coalesce(chart_defaults(dep), values.get(dep) or {})
    return values


def schema_errors(chart: str, values: Any, where: str = "") -> list[str]:
    """Errors of `values` against the chart's schema, and each dependency's under its key."""
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{where}{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(values)
    ]
    for dep in local_dependencies(chart):
        errors += schema_errors(dep, values.get(dep, {}), f"{where}{dep}.")
    return errors


def render_jsonnet(path: Path, ext_vars: dict[str, str]) -> Any:
    # The path stays unresolved: daskhub's symlink must be seen as daskhub's file.
    return json.loads(_gojsonnet.evaluate_file(str(path), ext_vars=ext_vars))


def merged_values(release: Release, secrets: dict[str, Any] | None = None) -> Any:
    """Chart defaults, then the chart's values.jsonnet, then the release's values files."""
    values = chart_defaults(release.chart)
    jsonnet = CHARTS / release.chart / "values.jsonnet"
    if jsonnet.exists():
        values = coalesce(values, render_jsonnet(jsonnet, release.ext_vars))
    for name in release.files:
        if is_secret(name):
            if secrets is not None:
                values = coalesce(values, secrets[f"{release.cluster}/{name}"])
        else:
            values = coalesce(values, load(CLUSTERS / release.cluster / name) or {})
    return values


# ---------------------------------------------------------------- structure


def test_three_clusters_nine_hubs_and_the_providers() -> None:
    data = clusters()
    assert sorted(data) == ["city-college", "ocean-lab", "uni-a"]
    assert len(HUBS) == 9
    assert {c["provider"] for c in data.values()} == {"gcp", "aws", "kubeconfig"}
    assert set(data["uni-a"]["gcp"]) >= {"project", "cluster", "zone", "key"}
    assert set(data["ocean-lab"]["aws"]) >= {"account", "clusterName", "region", "key"}
    assert data["city-college"]["kubeconfig"]["file"] == "enc-deployer-credentials.secret.json"
    for name, cluster in data.items():
        assert cluster["name"] == name, "the folder name is the cluster's name"


def test_the_core_loads_it_without_findings() -> None:
    snapshot = DirSnapshot(EXAMPLE)
    settings, findings = parse_settings(snapshot.read("hubbot.yaml"))
    assert findings == []
    repo = load_repository(snapshot, settings)
    assert repo.findings == []
    assert sorted(repo.charts) == ["basehub", "daskhub", "jupyterhub", "support"]
    assert repo.charts["daskhub"].dependencies == ("basehub",)
    assert repo.charts["basehub"].dependencies == ("jupyterhub",)
    assert sorted(h.key for h in repo.hubs()) == sorted(r.id for r in HUBS)
    for cluster in repo.clusters.values():
        staging = [h.name for h in cluster.hubs if settings.is_staging(h.name)]
        prod = [h.name for h in cluster.hubs if not settings.is_staging(h.name)]
        assert staging and prod, f"{cluster.name} needs a staging hub and a prod hub"
    uni_a = repo.clusters["uni-a"]
    assert [h.name for h in uni_a.hubs if settings.is_staging(h.name)] == ["staging", "r-staging"]


def test_exactly_one_daskhub_and_a_shared_values_file() -> None:
    assert [r.id for r in HUBS if r.chart == "daskhub"] == ["ocean-lab/dask"]
    uni_a = [r for r in HUBS if r.cluster == "uni-a"]
    assert all("common.values.yaml" in r.files for r in uni_a) and len(uni_a) == 4


def test_domains_are_unique_and_not_real() -> None:
    domains = [r.domain for r in HUBS]
    assert len(set(domains)) == len(domains)
    for domain in domains:
        assert domain is not None and domain.endswith((".example.org", ".test")), domain


@pytest.mark.parametrize("cluster", sorted(clusters()))
def test_every_file_in_a_cluster_folder_is_referenced_and_exists(cluster: str) -> None:
    data = clusters()[cluster]
    referenced = {"cluster.yaml", *data["support"]["helm_chart_values_files"]}
    for hub in data["hubs"]:
        referenced.update(hub["helm_chart_values_files"])
    provider_block = data[data["provider"]]
    referenced.add(provider_block.get("key") or provider_block["file"])
    present = {p.name for p in (CLUSTERS / cluster).iterdir()}
    assert present == referenced


def test_daskhub_values_jsonnet_is_a_git_symlink_to_basehubs() -> None:
    rel = "config/helm-charts/daskhub/values.jsonnet"
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        [git, "ls-files", "-s", rel], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed, f"{rel} is not committed"
    mode, blob = listed[0], listed[1]
    assert mode == "120000"
    target = subprocess.run(
        [git, "cat-file", "-p", blob], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert target == "../basehub/values.jsonnet"
    assert (CHARTS / "daskhub" / "values.jsonnet").resolve() == (
        CHARTS / "basehub" / "values.jsonnet"
    ).resolve()


def test_charts_depend_only_on_local_charts() -> None:
    assert local_dependencies("daskhub") == ["basehub"]
    assert local_dependencies("basehub") == ["jupyterhub"]
    assert local_dependencies("support") == []
    assert not list(CHARTS.glob("*/charts")), "charts/ is built at deploy time, not committed"


def test_jsonnet_uses_only_the_default_ext_vars() -> None:
    """The validator and deploy.py set exactly DEFAULT_EXT_VARS; hub-only ones not for support."""
    hub_only = {"VARS_2I2C_HUB_NAME", "VARS_2I2C_HUB_DOMAIN"}
    for path in CHARTS.glob("*/values.jsonnet"):
        used = set(re.findall(r"std\.extVar\('([A-Z0-9_]+)'\)", path.read_text()))
        assert used and used <= set(DEFAULT_EXT_VARS), path
        if path.parent.name == "support":
            assert not used & hub_only


# ---------------------------------------------------------------- secrets


SECRET_FILES = sorted(p for p in EXAMPLE.rglob("*") if p.is_file() and is_secret(p))


def sops_recipient() -> str:
    rules = load(EXAMPLE / ".sops.yaml")["creation_rules"]
    assert len(rules) == 1
    return str(rules[0]["age"])


def decrypt(path: Path) -> Any:
    assert SOPS is not None
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(KEY_FILE)}
    done = subprocess.run(
        [SOPS, "--disable-version-check", "--decrypt", str(path)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-500:]
    text = done.stdout.decode()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@pytest.fixture(scope="module")
def decrypted() -> dict[str, Any]:
    """Every secret file's plaintext, keyed by `cluster/file`."""
    if SOPS is None:
        pytest.skip("sops not found")
    return {f"{p.parent.name}/{p.name}": decrypt(p) for p in SECRET_FILES}


def test_the_secret_files_are_the_expected_ones() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in SECRET_FILES}
    for cluster in clusters():
        assert f"{cluster}/enc-deployer-credentials.secret.json" in names
        assert f"{cluster}/enc-support.secret.values.yaml" in names
    hub_secrets = {n for n in names if n.endswith(".secret.values.yaml") and "support" not in n}
    assert 0 < len(hub_secrets) < len(HUBS), "some hubs have secrets, some do not"
    assert all(p.is_relative_to(CLUSTERS) for p in SECRET_FILES)


@pytest.mark.parametrize("path", SECRET_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_secret_file_is_encrypted_for_the_test_key(path: Path) -> None:
    data = json.loads(path.read_text()) if path.suffix == ".json" else load(path)
    meta = data.pop("sops")
    assert meta["mac"].startswith("ENC[")
    assert [k["recipient"] for k in meta["age"]] == [sops_recipient()]
    for where, value in leaves(data):
        assert isinstance(value, str) and value.startswith("ENC[AES256_GCM,"), where


@needs_sops
@pytest.mark.parametrize("path", SECRET_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_secret_file_decrypts_to_obviously_fake_values(
    path: Path, decrypted: dict[str, Any]
) -> None:
    plain = decrypted[f"{path.parent.name}/{path.name}"]
    assert isinstance(plain, dict) and "sops" not in plain
    credential = re.compile(r"secret|password|token$|private_?key$|accesskeyid$", re.IGNORECASE)
    checked = 0
    for where, value in leaves(plain):
        if any(credential.search(part) for part in where):
            assert "fake" in str(value).lower(), f"{'.'.join(where)} does not look fake"
            checked += 1
    assert checked, "a secret file with no credential in it"


def test_the_test_key_is_marked_and_matches_sops_yaml() -> None:
    from pyrage import x25519

    text = KEY_FILE.read_text()
    assert KEY_HEADER in text.splitlines()[1]
    secret = next(line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    public = str(x25519.Identity.from_str(secret).to_public())
    assert public == sops_recipient()
    assert f"# public key: {public}" in text


def test_sops_rule_matches_exactly_the_secret_files() -> None:
    pattern = re.compile(load(EXAMPLE / ".sops.yaml")["creation_rules"][0]["path_regex"])
    for path in sorted(EXAMPLE.rglob("*")):
        rel = path.relative_to(EXAMPLE).as_posix()
        if path.is_file() and not rel.startswith("TEST-ONLY"):
            assert bool(pattern.search(rel)) == is_secret(path), rel


def test_non_secret_files_hold_only_placeholders_for_credentials() -> None:
    files = [p for p in CLUSTERS.glob("*/*.yaml") if not is_secret(p)]
    files += list(CHARTS.glob("*/values.yaml"))
    seen = 0
    for path in files:
        for where, value in leaves(load(path)):
            if set(where) & set(DEFAULT_SECRET_KEYS):
                assert value in (PLACEHOLDER, ""), f"{path}: {'.'.join(where)}"
                seen += 1
    assert seen >= 5, "the placeholders are part of the example"


# ---------------------------------------------------------------- values against the schemas


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.id)
def test_release_values_pass_the_chart_schema(release: Release) -> None:
    """As hubbot validates them: defaults, jsonnet, then the non-secret values files."""
    assert schema_errors(release.chart, merged_values(release)) == []


@needs_sops
@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.id)
def test_release_values_with_secrets_pass_the_chart_schema(
    release: Release, decrypted: dict[str, Any]
) -> None:
    """As helm sees them at deploy time: the decrypted secret files merged in too."""
    assert schema_errors(release.chart, merged_values(release, decrypted)) == []


def test_values_jsonnet_computes_per_hub_values() -> None:
    dask = next(r for r in HUBS if r.id == "ocean-lab/dask")
    info = merged_values(dask)["basehub"]["hubInfo"]
    assert info == {
        "cluster": "ocean-lab-eks",  # aws.clusterName, not the folder name
        "provider": "aws",
        "accountId": "123456789012",
        "hub": "dask",
        "domain": "dask.ocean-lab.example.org",
        "staging": False,
    }
    staging = merged_values(next(r for r in HUBS if r.id == "uni-a/r-staging"))
    assert staging["hubInfo"]["staging"] is True
    assert staging["hubInfo"]["accountId"] == "uni-a-example-hubs"
    assert staging["jupyterhub"]["ingress"]["hosts"] == ["r-staging.uni-a.example.org"]
    assert staging["jupyterhub"]["cull"]["timeout"] == 900  # the hub's file wins over jsonnet
    college = merged_values(next(r for r in RELEASES if r.id == "city-college/support"))
    expected = {"name": "city-college", "provider": "kubeconfig", "accountId": "None"}
    assert college["clusterInfo"] == expected


BAD_EDITS = [
    # (release, dotted key, bad value, the path of the schema error)
    ("uni-a/staging", "jupyterhub.singleuser.cpu.limit", "lots", "jupyterhub.singleuser.cpu.limit"),
    ("uni-a/staging", "jupyterhub.singleuser.memroy", {"limit": "1G"}, "jupyterhub.singleuser"),
    ("uni-a/prod", "nfss", {"enabled": True}, ""),
    ("city-college/prod", "jupyterhub.hub.replicas", 2, "jupyterhub.hub.replicas"),
    ("ocean-lab/dask", "daskGateway.workerCoresMax", "eight", "daskGateway.workerCoresMax"),
    (
        "ocean-lab/dask",
        "basehub.jupyterhub.cull.timeout",
        "soon",
        "basehub.jupyterhub.cull.timeout",
    ),
    ("ocean-lab/support", "prometheus.retention", 30, "prometheus.retention"),
    ("uni-a/support", "grafana.ingress.host", "", "grafana.ingress.host"),
]


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def last_plain_file(release: Release) -> str:
    return [f for f in release.files if not is_secret(f)][-1]


@pytest.mark.parametrize(("rid", "key", "value", "where"), BAD_EDITS)
def test_bad_edit_fails_the_schema(rid: str, key: str, value: Any, where: str) -> None:
    release = next(r for r in RELEASES if r.id == rid)
    edited = copy.deepcopy(merged_values(release))
    errors = schema_errors(release.chart, set_dotted(edited, key, value))
    assert any(e.split(": ", 1)[0] == where for e in errors), errors


# ---------------------------------------------------------------- helm, for real


def deploy(
    args: list[str], *, repo: Path = EXAMPLE, key: Path = KEY_FILE
) -> subprocess.CompletedProcess[str]:
    """Run the example's deploy.py as the local executor would, with real helm and sops."""
    assert HELM is not None and SOPS is not None
    env = {**os.environ, "HELM": HELM, "SOPS": SOPS, "SOPS_AGE_KEY_FILE": str(key)}
    return subprocess.run(
        [sys.executable, str(repo / "deploy.py"), *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manifests(path: Path) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


@needs_helm
@needs_sops
@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.id)
def test_helm_template_renders_the_release(
    release: Release, tmp_path: Path, decrypted: dict[str, Any]
) -> None:
    target = ["--support"] if release.is_support else [release.name]
    done = deploy([release.cluster, *target, "--output-dir", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    out = tmp_path / release.cluster / f"{release.name}.yaml"
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    objects = manifests(out)
    # Decrypted values reach the manifests, and never deploy.py's output.
    plain = [decrypted[f"{release.cluster}/{f}"] for f in release.files if is_secret(f)]
    for secret in plain:
        for _, value in leaves(secret):
            assert str(value) not in done.stdout + done.stderr
    if release.is_support:
        info = objects["ConfigMap/cluster-info"]["data"]
        assert info["name"] == release.ext_vars["VARS_2I2C_CLUSTER_NAME"]
        grafana = objects["Secret/grafana-admin"]["stringData"]["admin-password"]
        assert grafana.startswith("FAKE-") and grafana == plain[0]["grafana"]["adminPassword"]
        return
    info = objects["ConfigMap/hub-info"]["data"]
    assert info["hub"] == release.name and info["domain"] == release.domain
    assert info["cluster"] == release.ext_vars["VARS_2I2C_CLUSTER_NAME"]
    ingress = objects["Ingress/jupyterhub"]["spec"]
    assert [rule["host"] for rule in ingress["rules"]] == [release.domain]
    hub_config = yaml.safe_load(objects["Secret/hub"]["stringData"]["values.yaml"])["config"]
    callback = hub_config["OAuthenticator"]["oauth_callback_url"]
    assert callback == f"https://{release.domain}/hub/oauth_callback"
    for secret in plain:
        section = secret.get("basehub", secret)["jupyterhub"]["hub"]["config"]
        for authenticator, options in section.items():
            assert hub_config[authenticator]["client_secret"] == options["client_secret"]
    if release.chart == "daskhub":
        address = objects["ConfigMap/dask-gateway"]["data"]["public-address"]
        assert address == f"https://{release.domain}/services/dask-gateway"


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A private copy of the example to break."""
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLE, target, symlinks=True)
    return target


@needs_helm
@needs_sops
@pytest.mark.parametrize(("rid", "key", "value", "where"), BAD_EDITS)
def test_helm_refuses_the_bad_edit_too(
    rid: str, key: str, value: Any, where: str, repo_copy: Path
) -> None:
    release = next(r for r in RELEASES if r.id == rid)
    path = repo_copy / "config" / "clusters" / release.cluster / last_plain_file(release)
    path.write_text(yaml.safe_dump(set_dotted(load(path) or {}, key, value)))
    target = ["--support"] if release.is_support else [release.name]
    done = deploy([release.cluster, *target], repo=repo_copy)
    assert done.returncode != 0
    assert "don't meet the specifications of the schema" in done.stderr
    assert key.rsplit(".", 1)[-1] in done.stderr, done.stderr


@needs_helm
@needs_sops
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["uni-a", "nope"], "cluster uni-a has no hub named 'nope'"),
        (["uni-a"], "name either a HUB or --support"),
        (["uni-a", "prod", "--support"], "name either a HUB or --support"),
        (["atlantis", "prod"], "cannot read cluster.yaml"),
    ],
)
def test_deploy_refuses_unknown_releases_in_one_line(args: list[str], message: str) -> None:
    done = deploy(args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"deploy.py: {message}"), done.stderr


@needs_helm
@needs_sops
def test_deploy_without_the_key_says_which_file(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-key.txt"
    wrong.write_text("# no key in here\n")
    done = deploy(["uni-a", "prod"], key=wrong)
    assert done.returncode == 2
    assert "cannot decrypt enc-prod.secret.values.yaml" in done.stderr
    assert "FAKE" not in done.stdout + done.stderr


# ---------------------------------------------------------------- hubbot.yaml and README


def schema_keys(schema: dict[str, Any]) -> Iterator[str]:
    for key, sub in schema.get("properties", {}).items():
        yield key
        yield from schema_keys(sub)


def test_hubbot_yaml_annotates_every_settings_key() -> None:
    text = (EXAMPLE / "hubbot.yaml").read_text()
    for key in schema_keys(settings_schema()):
        assert re.search(rf"^\s*#?\s*{re.escape(key)}:", text, re.MULTILINE), key


def test_hubbot_yaml_partners_name_real_hubs() -> None:
    settings, findings = parse_settings((EXAMPLE / "hubbot.yaml").read_bytes())
    assert findings == []
    assert settings.partners["uni-a/staging"] == ("alice-partner",)
    assert settings.partners["uni-a/*"] == ("@example-org/uni-a-partners",)
    hubs = {r.id for r in HUBS}
    for key in settings.partners:
        cluster, _, hub = key.partition("/")
        assert key in hubs or (hub == "*" and cluster in clusters()), key


@needs_helm
@needs_sops
@pytest.mark.parametrize("rid", ["ocean-lab/dask", "city-college/support"])
def test_hubbot_yaml_deploy_commands_run(rid: str) -> None:
    """The executor's command templates, rendered with the issue's placeholders, deploy."""
    settings, _ = parse_settings((EXAMPLE / "hubbot.yaml").read_bytes())
    release = next(r for r in RELEASES if r.id == rid)
    template = settings.deploy.support_command if release.is_support else settings.deploy.command
    command = template.format(
        cluster=release.cluster,
        hub=release.name,
        sha="0" * 40,
        chart=release.chart,
        values_files=" ".join(release.files),
        namespace=settings.deploy.namespace.format(hub=release.name),
    )
    assert HELM is not None and SOPS is not None
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(Path(HELM).parent), str(Path(SOPS).parent)]
    )
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["SOPS_AGE_KEY_FILE"] = str(KEY_FILE)
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^rendered \d+ objects", done.stdout, re.MULTILINE), done.stdout


def readme_commands(release: Release) -> list[str]:
    """The exact commands the README gives for a release (kept in step with cluster.yaml)."""
    prefix = f"{release.cluster}-{release.name}"
    ext = " ".join(f"--ext-str {k}={v}" for k, v in release.ext_vars.items())
    rendered = f'"$T/{prefix}.jsonnet.json"'
    jsonnet = f"jsonnet {ext} helm-charts/{release.chart}/values.jsonnet > {rendered}"
    helm = f'helm template {release.name} "$T/helm-charts/{release.chart}"'
    helm += f" --namespace {release.name} --values {rendered}"
    for name in release.files:
        path = f"config/clusters/{release.cluster}/{name}"
        helm += f' --values "$T/{path}"' if is_secret(name) else f" --values {path}"
    return [jsonnet, helm]


def test_readme_gives_the_exact_helm_commands() -> None:
    text = (EXAMPLE / "README.md").read_text()
    assert KEY_HEADER.split(".")[0] in text  # "TEST ONLY"
    for release in RELEASES:
        for command in readme_commands(release):
            assert command in text, f"README is out of step with cluster.yaml:\n{command}"
