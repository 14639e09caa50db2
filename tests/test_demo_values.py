"""`hubbot values`: the demo's stand-in for `helm template` where helm is not installed."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.commands.values import load_release, run_values
from tests.conftest import EXAMPLE, ROOT

STAGING = "config/clusters/uni-a/staging.values.yaml"
SECRET = "config/clusters/uni-a/enc-staging.secret.values.yaml"
PLAINTEXT_SECRET = "jupyterhub:\n  hub:\n    config:\n      GitHubOAuthenticator:\n"
PLAINTEXT_SECRET += (
    "        client_id: demo-client-id-123\n        client_secret: sw0rdf1sh-value\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A writable copy of the example repository."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "repo", symlinks=True))


def values(repo: Path, *argv: str) -> tuple[int, str]:
    """Run `hubbot values` in-process; (exit code, stdout)."""
    out = io.StringIO()
    cluster, *rest = argv
    support = "--support" in rest
    fmt = "json" if "--json" in rest else "text"
    hub = next((a for a in rest if not a.startswith("--")), None)
    args = argparse.Namespace(repo=str(repo), cluster=cluster, hub=hub, support=support, format=fmt)
    return run_values(args, out=out), out.getvalue()


@pytest.mark.parametrize(
    ("release", "chart", "top"),
    [
        (("uni-a", "staging"), "basehub", "jupyterhub"),
        (("ocean-lab", "dask"), "daskhub", "basehub"),
        (("city-college", "--support"), "support", "prometheus"),
    ],
)
def test_a_release_is_merged_and_valid(
    repo: Path, release: tuple[str, str], chart: str, top: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no sops: secret files are left out
    code, out = values(repo, *release)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"effective values of {release[0]}/")
    assert f"(chart {chart}), merged by hubbot" in lines[0]
    assert "chart-jsonnet" in out and "schema: valid" in out
    assert f" {top} (" in out
    assert "left out: sops is not installed" in out


def test_the_json_summary_lists_layers_in_merge_order(repo: Path) -> None:
    code, out = values(repo, "uni-a", "staging", "--json")
    assert code == 0
    doc = json.loads(out)
    kinds = [layer["kind"] for layer in doc["layers"]]
    assert kinds == ["chart-defaults", "chart-defaults", "chart-jsonnet", "values", "values"]
    assert doc["layers"][0] == {
        "kind": "chart-defaults",
        "path": "helm-charts/jupyterhub/values.yaml",
        "under": "jupyterhub",
    }
    assert [layer["path"] for layer in doc["layers"][3:]] == [
        "config/clusters/uni-a/common.values.yaml",
        STAGING,
    ]
    assert doc["rendered_by"] == "hubbot" and len(doc["sha256"]) == 12
    assert doc["settings"] == sum(doc["top_level"].values())


def test_a_bad_value_fails_at_its_line(repo: Path) -> None:
    text = (repo / STAGING).read_text() + "    cpu:\n      limit: two\n"
    (repo / STAGING).write_text(text)
    code, out = values(repo, "uni-a", "staging")
    assert code == 1
    assert (
        f"{STAGING}:7: error [values-schema] jupyterhub.singleuser.cpu.limit must be a number"
        in out
    )


def test_a_decrypted_secret_file_is_merged_in_its_place_and_never_shown(repo: Path) -> None:
    # The local executor decrypts a deploy's secret files in its checkout before the command runs.
    (repo / SECRET).write_text(PLAINTEXT_SECRET)
    release = load_release(repo, "uni-a", "staging")
    paths = [layer.path for layer in release.effective.layers]
    assert paths[-2:] == [STAGING, SECRET]  # cluster.yaml's order
    oauth = release.effective.values["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert oauth["client_secret"] == "sw0rdf1sh-value"
    assert oauth["allowed_organizations"] == ["uni-a-example"]  # common.values.yaml kept
    code, out = values(repo, "uni-a", "staging")
    assert code == 0
    assert f"secret          {SECRET}: decrypted in the working tree" in out
    assert "sw0rdf1sh" not in out and "demo-client-id" not in out
    code, out = values(repo, "uni-a", "staging", "--json")
    assert "sw0rdf1sh" not in out


def test_a_secret_file_between_others_keeps_its_place(repo: Path) -> None:
    cluster = repo / "config/clusters/uni-a/cluster.yaml"
    text = cluster.read_text()
    order = "  - common.values.yaml\n  - staging.values.yaml\n  - enc-staging.secret.values.yaml\n"
    assert order in text
    swapped = (
        "  - common.values.yaml\n  - enc-staging.secret.values.yaml\n  - staging.values.yaml\n"
    )
    cluster.write_text(text.replace(order, swapped, 1))
    (repo / SECRET).write_text(PLAINTEXT_SECRET)
    (repo / STAGING).write_text(
        (repo / STAGING).read_text()
        + "  hub:\n    config:\n      GitHubOAuthenticator:\n        client_id: from-staging\n"
    )
    release = load_release(repo, "uni-a", "staging")
    assert [layer.path for layer in release.effective.layers][-2:] == [SECRET, STAGING]
    oauth = release.effective.values["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert oauth["client_id"] == "from-staging"  # the later file wins, as with helm


@pytest.mark.skipif(
    shutil.which("sops", path=str(Path(sys.executable).parent)) is None, reason="sops"
)
def test_sops_decrypts_with_the_test_only_key(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(repo / "TEST-ONLY-age-key.txt"))
    code, out = values(repo, "uni-a", "staging")
    assert code == 0, out
    assert f"{SECRET}: decrypted with sops" in out
    assert "FAKE-" not in out and "fake-" not in out  # the example's secret values


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nowhere", "staging"], "no cluster 'nowhere' (clusters: city-college, ocean-lab, uni-a)"),
        (["uni-a", "nope"], "cluster 'uni-a' has no hub 'nope' (hubs: staging, prod, r-staging,"),
        (["uni-a"], "name either a HUB or --support"),
        (["uni-a", "staging", "--support"], "name either a HUB or --support"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(repo: Path, argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "values", "--repo", str(repo), *argv],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
