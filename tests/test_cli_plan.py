"""`hubbot plan` as a process: exit codes, one-line usage errors, the JSON contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SNAPSHOT_2I2C
from tests.test_planner import FILES
from tests.test_semantic import GIT_ENV

KEYS = ["base", "head", "findings", "support", "staging", "prod", "skipped", "removed"]


def hubbot(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUBBOT_CACHE_DIR": "off"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(
        ["git", "-C", str(root), *args], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "infra", FILES)


def test_json_contract_on_the_real_snapshot(snapshot_2i2c: Path) -> None:
    proc = hubbot(
        "plan",
        "--repo",
        str(snapshot_2i2c),
        "--changed",
        "config/clusters/utoronto/r-prod.values.yaml",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == KEYS
    assert data["base"] is None and data["head"] is None
    assert [(t["cluster"], t["hub"]) for t in data["staging"]] == [
        ("utoronto", "r-staging"),
        ("utoronto", "staging"),
    ]
    assert data["prod"] == [
        {
            "cluster": "utoronto",
            "hub": "r-prod",
            "reasons": ["values file r-prod.values.yaml changed"],
        }
    ]
    assert not [f for f in data["findings"] if f["severity"] == "error"]


def test_markdown_is_the_default(tiny: Path) -> None:
    proc = hubbot("plan", "--repo", str(tiny), "--changed", "config/clusters/gamma/c.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "<!-- hubbot:plan -->\n\n**✅ 3 hubs (2 staging, 1 production) will deploy"
    )


def test_absolute_changed_path_inside_the_repo(tiny: Path) -> None:
    path = tiny / "config/clusters/gamma/c.yaml"
    proc = hubbot("plan", "--repo", str(tiny), "--changed", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["prod"][0]["hub"] == "prod"


def test_errors_exit_1(tiny: Path) -> None:
    (tiny / "config/clusters/gamma/c.yaml").write_text("x: 1\nx: 2\n")
    proc = hubbot(
        "plan", "--repo", str(tiny), "--changed", "config/clusters/gamma/c.yaml", "--format", "json"
    )
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert {"severity": "error", "path": "config/clusters/gamma/c.yaml", "line": 2} == {
        k: findings[0][k] for k in ("severity", "path", "line")
    }


def test_bad_settings_exit_1(tiny: Path) -> None:
    (tiny / "hubbot.yaml").write_text("no_such_key: 1\n")
    proc = hubbot("plan", "--repo", str(tiny), "--changed", "README.md", "--format", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["findings"][0]["rule"] == "settings-schema"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--repo", "/no/such/dir", "--changed", "x"],
            "hubbot plan: not a directory: /no/such/dir",
        ),
        (["--repo", "{empty}", "--changed", "x"], "hubbot plan: no config/clusters/ folder in"),
        (
            ["--repo", "{tiny}", "--changed", "/etc/passwd"],
            "hubbot plan: /etc/passwd is not a file inside",
        ),
        (["--repo", "{tiny}", "--changed", "../x"], "hubbot plan: ../x is not a file inside"),
        (["--repo", "{tiny}", "--base", "HEAD"], "hubbot plan: git: "),
        (["--repo", "{git}", "--base", "no-such-ref"], "hubbot plan: git: "),
        (
            ["--repo", "{tiny}", "--changed", "x", "--head", "main"],
            "hubbot plan: --head needs --base",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    tiny: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    repo = write_tree(tmp_path / "git", FILES)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    args = [a.format(tiny=tiny, empty=tmp_path / "empty", git=repo) for a in args]
    proc = hubbot("plan", *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_argparse_usage_exit_2() -> None:
    proc = hubbot("plan", "--format", "json")
    assert proc.returncode == 2 and "--changed" in proc.stderr


def test_semantic_mode_takes_settings_from_base(tiny: Path) -> None:
    write_tree(tiny, {"hubbot.yaml": "labels:\n  skip_deploy: stop\n"})
    git(tiny, "init", "-q")
    git(tiny, "add", "-A")
    git(tiny, "commit", "-qm", "base")
    base = git(tiny, "rev-parse", "HEAD")
    write_tree(
        tiny,
        {
            "hubbot.yaml": "labels:\n  skip_deploy: other\n",
            "config/clusters/gamma/c.yaml": "x: 2\n",
        },
    )
    git(tiny, "commit", "-qam", "head")
    proc = hubbot(
        "plan", "--repo", str(tiny), "--base", base, "--label", "stop", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["base"] == base and data["head"] == git(tiny, "rev-parse", "HEAD")
    assert data["prod"] == [] and [t["hub"] for t in data["skipped"]] == [
        "prod",
        "r-staging",
        "staging",
    ]
    md = hubbot("plan", "--repo", str(tiny), "--base", "HEAD~1", "--head", "HEAD")
    assert md.returncode == 0, md.stderr
    assert "<summary><code>gamma/prod</code>: +1 −1</summary>" in md.stdout
    assert "-x: 1\n+x: 2\n" in md.stdout


def test_secret_contents_never_reach_the_output(tiny: Path) -> None:
    git(tiny, "init", "-q")
    git(tiny, "add", "-A")
    git(tiny, "commit", "-qm", "base")
    write_tree(
        tiny,
        {"config/clusters/alpha/enc-staging.secret.values.yaml": "password: hunter2-topsecret\n"},
    )
    git(tiny, "commit", "-qam", "head")
    for fmt in ("json", "markdown"):
        proc = hubbot("plan", "--repo", str(tiny), "--base", "HEAD~1", "--format", fmt)
        assert "hunter2" not in proc.stdout + proc.stderr
    assert "encrypted file enc-staging.secret.values.yaml changed" in proc.stdout


@pytest.mark.skipif(not SNAPSHOT_2I2C.is_dir(), reason="../shared is absent")
def test_all_hubs_plan_validates_all_of_them() -> None:
    proc = hubbot(
        "plan",
        "--repo",
        str(SNAPSHOT_2I2C),
        "--changed",
        "helm-charts/basehub/values.yaml",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["staging"]) + len(data["prod"]) == 171
