#!/usr/bin/env python3
"""Render or deploy one release of this infrastructure repository with helm.

    python3 deploy.py CLUSTER HUB      [--mode template|upgrade] [--namespace NS] [--output-dir DIR]
    python3 deploy.py CLUSTER --support [--mode template|upgrade] [--output-dir DIR]

It does what 2i2c's `deployer deploy CLUSTER HUB` does, for the example's charts:
1. copies helm-charts/ to a private temporary folder and runs `helm dependency build` on the
   release's chart and its local (file://) dependencies, deepest first: no network is needed;
2. renders the chart's values.jsonnet with the VARS_2I2C_* external variables of the release;
3. decrypts the release's secret values files with sops into that temporary folder (0600), and
   renders any .jsonnet values file;
4. runs `helm template` (the default, used by hubbot's demo) or `helm upgrade --install`, with
   the values files in order: jsonnet output first, then the files listed in cluster.yaml.

Rendered manifests contain decrypted secrets, so they are never printed: `template` prints a
summary of the objects and writes the manifests only to --output-dir (files with mode 0600).
The temporary folder, with the decrypted files, is removed on exit.

Needs Python 3.11 with PyYAML, and either the gojsonnet module or a `jsonnet` binary (the Go
one); helm and sops come from PATH or $HELM / $SOPS. The sops key is $SOPS_AGE_KEY_FILE, or the
example's TEST-ONLY-age-key.txt when that file exists next to this script.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.exit("deploy.py: PyYAML is required (pip install PyYAML)")

ROOT = Path(__file__).resolve().parent
CLUSTERS_DIR = Path("config/clusters")
CHARTS_DIR = Path("helm-charts")
SUPPORT_CHART = "support"
TEST_ONLY_KEY = ROOT / "TEST-ONLY-age-key.txt"
HELM_TIMEOUT_SECONDS = 600


class DeployError(Exception):
    """A problem with the repository or a tool, explained in one line."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except DeployError as exc:
        print(f"deploy.py: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deploy.py", description=__doc__.split("\n\n")[0])
    p.add_argument("cluster")
    p.add_argument("hub", nargs="?", help="the hub to deploy (omit with --support)")
    p.add_argument("--support", action="store_true", help="the cluster's support release")
    p.add_argument("--mode", choices=["template", "upgrade"], default="template")
    p.add_argument("--namespace", help="default: the hub's name, or `support`")
    p.add_argument("--output-dir", type=Path, help="template mode: write manifests here")
    p.add_argument("--description", help="upgrade mode: recorded in helm's release history")
    p.add_argument("--repo", type=Path, default=ROOT, help="repository root (default: here)")
    return p


def run(args: argparse.Namespace) -> int:
    """Render or deploy the release named by `args`."""
    if args.support == (args.hub is not None):
        raise DeployError("name either a HUB or --support")
    repo: Path = args.repo.resolve()
    cluster_dir = repo / CLUSTERS_DIR / args.cluster
    cluster = _load_yaml(cluster_dir / "cluster.yaml")
    chart, files, release, ext_vars = _release(args, cluster)
    namespace = args.namespace or release
    helm = _tool("HELM", "helm")
    with tempfile.TemporaryDirectory(prefix="deploy-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        charts = _copy_charts(repo, chart, work)
        values = _values_files(repo, cluster_dir, charts / chart, files, ext_vars, work)
        _build_dependencies(helm, charts, chart, work)
        chart_dir = charts / chart
        cmd = [helm, args.mode, release, str(chart_dir), "--namespace", namespace]
        if args.mode == "upgrade":
            cmd[1:2] = ["upgrade", "--install", "--wait", "--create-namespace"]
            if args.description:
                cmd += ["--description", args.description]
            cmd += _kubeconfig_flags(cluster, cluster_dir, work)
        for path in values:
            cmd += ["--values", str(path)]
        print("$ " + _shown(cmd, work, repo), flush=True)
        return _run_helm(cmd, args, release, work)


def _release(
    args: argparse.Namespace, cluster: dict[str, Any]
) -> tuple[str, list[str], str, dict[str, str]]:
    """The chart, values files, release name and jsonnet external variables of the release."""
    # As 2i2c's deployer sets them (and hubbot's default jsonnet.ext_vars reproduce them).
    provider = str(cluster.get("provider", ""))
    aws = cluster.get("aws") if provider == "aws" else None
    gcp = cluster.get("gcp") if provider == "gcp" else None
    name = str(cluster.get("name", args.cluster))
    account = (aws or {}).get("account") or (gcp or {}).get("project") or "None"
    ext_vars = {
        "VARS_2I2C_CLUSTER_NAME": str((aws or {}).get("clusterName") or name),
        "VARS_2I2C_PROVIDER": provider,
        "VARS_2I2C_ACCOUNT_ID": str(account),
    }
    if args.support:
        support = cluster.get("support")
        if not isinstance(support, dict):
            raise DeployError(f"cluster {args.cluster} has no support release")
        return (
            SUPPORT_CHART,
            list(support.get("helm_chart_values_files") or []),
            "support",
            ext_vars,
        )
    hubs = [h for h in cluster.get("hubs") or [] if isinstance(h, dict)]
    hub = next((h for h in hubs if h.get("name") == args.hub), None)
    if hub is None:
        raise DeployError(f"cluster {args.cluster} has no hub named {args.hub!r}")
    ext_vars["VARS_2I2C_HUB_NAME"] = str(hub["name"])
    ext_vars["VARS_2I2C_HUB_DOMAIN"] = str(hub.get("domain", ""))
    files = list(hub.get("helm_chart_values_files") or [])
    return str(hub.get("helm_chart", "")), files, str(hub["name"]), ext_vars


def _copy_charts(repo: Path, chart: str, work: Path) -> Path:
    """A private copy of helm-charts/, so building dependencies never writes to the checkout."""
    charts = work / "helm-charts"
    # Symlinks stay symlinks: daskhub/values.jsonnet must keep its own path for std.thisFile.
    shutil.copytree(repo / CHARTS_DIR, charts, symlinks=True)
    if not (charts / chart / "Chart.yaml").is_file():
        raise DeployError(f"chart {chart!r} not found under {CHARTS_DIR}")
    return charts


def _build_dependencies(helm: str, charts: Path, chart: str, work: Path) -> None:
    """Run `helm dependency build` on `chart` and its local dependencies, deepest first."""
    # Rendered already; helm ignores values.jsonnet (.helmignore) but warns about symlinks.
    for link in charts.glob("*/values.jsonnet"):
        if link.is_symlink():
            link.unlink()
    # Keep helm away from the user's repositories and cache, so nothing reaches the network.
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(work / "helm/cache"),
        "HELM_CONFIG_HOME": str(work / "helm/config"),
        "HELM_DATA_HOME": str(work / "helm/data"),
    }
    for name in _build_order(charts, chart):
        _check([helm, "dependency", "build", "--skip-refresh", str(charts / name)], env=env)


def _build_order(charts: Path, chart: str) -> list[str]:
    """Charts among `chart` and its local dependencies that have dependencies, deepest first."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise DeployError(f"local chart dependencies loop through {name!r}")
        visiting.add(name)
        meta = _load_yaml(charts / name / "Chart.yaml")
        deps = [d for d in meta.get("dependencies") or [] if isinstance(d, dict)]
        for dep in deps:
            repository = str(dep.get("repository", ""))
            if not repository.startswith("file://"):
                raise DeployError(f"{name} depends on {repository!r}: only file:// is offline")
            target = posixpath.normpath(posixpath.join(name, repository[len("file://") :]))
            if "/" in target or target.startswith(".."):
                raise DeployError(f"{name}: dependency {repository!r} leaves {CHARTS_DIR}")
            visit(target)
        visiting.discard(name)
        if deps:
            order.append(name)

    visit(chart)
    return order


def _values_files(
    repo: Path,
    cluster_dir: Path,
    chart_dir: Path,
    files: list[str],
    ext_vars: dict[str, str],
    work: Path,
) -> list[Path]:
    """The `--values` files in order: the chart's jsonnet output, then the release's files."""
    out_dir = work / "values"
    out_dir.mkdir(mode=0o700)
    result: list[Path] = []
    chart_jsonnet = chart_dir / "values.jsonnet"
    if chart_jsonnet.exists():
        target = out_dir / "00-chart-values.json"
        _write_private(target, _render_jsonnet(chart_jsonnet, ext_vars))
        result.append(target)
    for i, name in enumerate(files, start=1):
        source = _inside(cluster_dir, name)
        target = out_dir / f"{i:02d}-{source.name}"
        if "secret" in source.name:
            _write_private(target, _decrypt(source))
        elif source.suffix == ".jsonnet":
            _write_private(target.with_suffix(".json"), _render_jsonnet(source, ext_vars))
            target = target.with_suffix(".json")
        else:
            target = source
        result.append(target)
    return result


def _inside(cluster_dir: Path, name: str) -> Path:
    """The values file `name`, refusing paths that leave the cluster folder."""
    path = (cluster_dir / name).resolve()
    if not path.is_relative_to(cluster_dir.resolve()):
        raise DeployError(f"values file {name!r} is outside the cluster folder")
    if not path.is_file():
        raise DeployError(f"values file {name!r} does not exist")
    return path


def _render_jsonnet(path: Path, ext_vars: dict[str, str]) -> bytes:
    """Render a Jsonnet file with go-jsonnet, keeping its path as named (not resolved)."""
    try:
        import _gojsonnet  # the Go implementation, from PyPI's gojsonnet

        text = _gojsonnet.evaluate_file(str(path), ext_vars=ext_vars)
        return str(text).encode()
    except ImportError:
        jsonnet = shutil.which("jsonnet")
        if jsonnet is None:
            raise DeployError("rendering Jsonnet needs the gojsonnet module or `jsonnet`") from None
        cmd = [jsonnet, str(path)]
        for key, value in ext_vars.items():
            cmd += ["--ext-str", f"{key}={value}"]
        return _check(cmd)
    except RuntimeError as exc:
        raise DeployError(f"{path.name}: {exc}") from None


def _kubeconfig_flags(cluster: dict[str, Any], cluster_dir: Path, work: Path) -> list[str]:
    """For `provider: kubeconfig`, the decrypted kubeconfig; other providers use the context.

    Getting credentials for gcp and aws (gcloud, aws eks) is left to the environment: the
    example has no real clusters.
    """
    if cluster.get("provider") != "kubeconfig":
        return []
    name = str((cluster.get("kubeconfig") or {}).get("file", ""))
    target = work / "kubeconfig"
    _write_private(target, _decrypt(_inside(cluster_dir, name)))
    return ["--kubeconfig", str(target)]


def _decrypt(path: Path) -> bytes:
    """A sops file's plaintext (kept in memory and the private temporary folder only)."""
    env = dict(os.environ)
    if "SOPS_AGE_KEY_FILE" not in env and TEST_ONLY_KEY.is_file():
        print(f"deploy.py: decrypting with the TEST-ONLY key {TEST_ONLY_KEY.name}", file=sys.stderr)
        env["SOPS_AGE_KEY_FILE"] = str(TEST_ONLY_KEY)
    try:
        return _check([_tool("SOPS", "sops"), "--disable-version-check", "-d", str(path)], env=env)
    except DeployError as exc:
        raise DeployError(f"cannot decrypt {path.name}: {exc}") from None


def _run_helm(cmd: list[str], args: argparse.Namespace, release: str, work: Path) -> int:
    """Run helm; in template mode, summarize the manifests instead of printing them."""
    if args.mode == "upgrade":
        return subprocess.run(cmd, timeout=HELM_TIMEOUT_SECONDS, check=False).returncode
    done = subprocess.run(cmd, capture_output=True, timeout=HELM_TIMEOUT_SECONDS, check=False)
    sys.stderr.write(_redact(done.stderr.decode("utf-8", "replace"), work))
    if done.returncode != 0:
        return done.returncode
    objects = [d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict)]
    names = sorted(f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in objects)
    digest = hashlib.sha256(done.stdout).hexdigest()[:12]
    print(f"rendered {len(objects)} objects (sha256 {digest}): {', '.join(names)}")
    if args.output_dir is not None:
        out = args.output_dir / args.cluster / f"{release}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_private(out, done.stdout)
        print(f"manifests written to {out}")
    return 0


def _check(cmd: list[str], env: dict[str, str] | None = None) -> bytes:
    """Run a tool and return its output; a failure becomes a DeployError (output not shown)."""
    try:
        done = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"{Path(cmd[0]).name} failed to run: {exc}") from None
    if done.returncode != 0:
        # The first line of sops's and helm's stderr says what went wrong (never a value).
        first = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1] or ["no output"]
        raise DeployError(f"{' '.join(Path(c).name for c in cmd[:2])} ... failed: {first[0]}")
    return done.stdout


def _tool(env_name: str, default: str) -> str:
    """The path of a tool, from $ENV_NAME or PATH."""
    found = os.environ.get(env_name) or shutil.which(default)
    if not found:
        raise DeployError(f"`{default}` not found on PATH (or set ${env_name})")
    return found


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise DeployError(f"{path} is not a mapping")
    return data


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _shown(cmd: list[str], work: Path, repo: Path) -> str:
    """The command as printed: temporary and repository paths shortened, for readable logs."""
    return _redact(" ".join(cmd), work).replace(str(repo) + "/", "")


def _redact(text: str, work: Path) -> str:
    return text.replace(str(work), "$TMP")


if __name__ == "__main__":
    sys.exit(main())
