"""`hubbot validate` as a process: output contracts, exit codes, --ref without a checkout."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.core_support import real_files

TEXT_LINE = re.compile(r"^[^\s:]+(:\d+)?: (error|warning) \[[a-z-]+\] \S.*$")


def hubbot(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m bot validate ARGS` with this worktree's code."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "validate", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HUBBOT_CACHE_DIR": "off"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_repo(root: Path, changes: dict[str, str] | None = None) -> Path:
    """The real 2i2c cluster and charts written to `root`, with `changes`."""
    for path, content in {**real_files("2i2c"), **(changes or {})}.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else bytes(content))
    return root


def git(root: Path, *args: str) -> None:
    """Run git quietly in `root`."""
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_json_contract_on_the_real_snapshot(snapshot_2i2c: Path) -> None:
    done = hubbot("--repo", str(snapshot_2i2c), "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"clusters", "hubs", "findings"}
    assert (document["clusters"], document["hubs"]) == (30, 171)
    assert len(document["findings"]) == 4
    for finding in document["findings"]:
        assert set(finding) == {"severity", "path", "line", "rule", "message"}
        assert finding["severity"] == "warning"


def test_errors_exit_1_with_text_findings_at_file_and_line(tmp_path: Path) -> None:
    common = "config/clusters/2i2c/common.values.yaml"
    repo = write_repo(tmp_path, {common: 'nfs:\n  enabled: "yes"\n  pv:\n    enabled: true\n'})
    done = hubbot("--repo", str(repo))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert any(line.startswith(f"{common}:2: error [values-schema] nfs.enabled") for line in lines)
    assert "1 errors" in done.stderr


def test_the_current_directory_is_the_default_repo(tmp_path: Path) -> None:
    repo = write_repo(tmp_path)
    done = hubbot(cwd=repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "1 clusters, 2 hubs: 0 errors, 0 warnings" in done.stderr


def test_ref_reads_the_commit_without_a_checkout(tmp_path: Path) -> None:
    repo = write_repo(tmp_path)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "good")
    broken = repo / "config/clusters/2i2c/common.values.yaml"
    broken.write_text("nfs: [\n")
    assert hubbot("--repo", str(repo)).returncode == 1
    done = hubbot("--repo", str(repo), "--ref", "HEAD", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hubs"] == 2
    assert broken.read_text() == "nfs: [\n"  # the working tree is untouched


def test_settings_come_from_the_snapshots_hubbot_yaml(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, {"hubbot.yaml": "clusters_dir: config/clusters\ncolour: blue\n"})
    done = hubbot("--repo", str(repo))
    assert done.returncode == 1
    assert done.stdout.startswith("hubbot.yaml:2: error [settings-schema]")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--repo", "/nonexistent/repo"], "is not a folder"),
        (["--ref", "no-such-ref"], "is not a commit"),
        (["--ref", "HEAD", "--repo", "{tmp}"], "not a git repository"),
        (["--repo", "{tmp}"], "not an infrastructure repository"),
    ],
)
def test_unreadable_repositories_exit_2_with_one_line(
    tmp_path: Path, args: list[str], words: str
) -> None:
    done = hubbot(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("hubbot validate: ") and words in line


def test_usage_errors_exit_2() -> None:
    assert hubbot("--format", "yaml").returncode == 2
