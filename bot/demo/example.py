"""The demo's repository: a fresh git copy of the embedded example (`config/`), set up to deploy.

The example ships inside the package (`bot/demo/example`, a link to `config/` in a
source tree, real files in a wheel). Wheels cannot hold symbolic links, so links
the example relies on are listed in `LINKS` and made again in the copy.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent / "example"
SETTINGS_FILE = "hubbot.yaml"
# Every symbolic link of the example: path -> target (tests keep this true to config/).
LINKS = {"helm-charts/daskhub/values.jsonnet": "../basehub/values.jsonnet"}
# Built by helm in a checkout, never part of the repository (see the example's .gitignore).
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "charts", "Chart.lock")
AUTHOR = ("hubbot demo", "demo@hubbot.invalid")
# The GitHub double merges pull requests with `git merge-tree --write-tree`.
MIN_GIT = (2, 38)


class ExampleError(Exception):
    """The example cannot be found or set up: one line that says why."""


@dataclass(frozen=True, slots=True)
class DeployCommands:
    """The deploy command templates the demo's copy of hubbot.yaml gets."""

    command: str
    support_command: str
    renderer: str  # "helm" or "hubbot", for the transcript


def example_dir() -> Path:
    """The embedded example repository, as installed."""
    if not (EXAMPLE / SETTINGS_FILE).is_file():
        raise ExampleError(
            f"the example repository is missing from the installed package ({EXAMPLE}); "
            "reinstall hubbot"
        )
    return EXAMPLE


def helm_commands(python: str = sys.executable) -> DeployCommands:
    """The example's own deploy.py (helm template), run by this Python (PyYAML, gojsonnet)."""
    py = shlex.quote(python)
    return DeployCommands(
        command=f"{py} deploy.py {{cluster}} {{hub}} --namespace {{namespace}} --mode template",
        support_command=f"{py} deploy.py {{cluster}} --support --mode template",
        renderer="helm",
    )


def hubbot_commands(python: str = sys.executable) -> DeployCommands:
    """`hubbot values` of this very hubbot, for machines without helm (or sops)."""
    # The deploy runs in a bare environment: name where this `bot` package lives.
    root = shlex.quote(str(Path(__file__).resolve().parents[2]))
    run = f"PYTHONPATH={root} {shlex.quote(python)} -m bot values --repo ."
    return DeployCommands(
        command=f"{run} {{cluster}} {{hub}}",
        support_command=f"{run} {{cluster}} --support",
        renderer="hubbot",
    )


def prepare_repository(
    target: Path, commands: DeployCommands, *, source: Path | None = None
) -> str:
    """Copy the example into `target`, point its deploys at `commands`, commit it on `main`."""
    source = source or example_dir()
    check_git(_git(target.parent, "--version"))
    if target.exists() and any(target.iterdir()):
        raise ExampleError(f"{target} is not empty")
    shutil.copytree(source, target, symlinks=True, ignore=IGNORED, dirs_exist_ok=True)
    restore_links(target)
    settings = target / SETTINGS_FILE
    settings.write_text(with_commands(settings.read_text(encoding="utf-8"), commands))
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "The example infrastructure repository")
    return _git(target, "rev-parse", "HEAD").strip()


def check_git(version: str) -> None:
    """Refuse a git older than the double needs, saying which version was found."""
    found = re.search(r"(\d+)\.(\d+)", version)
    if found is None or (int(found.group(1)), int(found.group(2))) < MIN_GIT:
        need = ".".join(map(str, MIN_GIT))
        raise ExampleError(
            f"git {need} or newer is needed (the GitHub double merges with "
            f"`git merge-tree --write-tree`); found: {version.strip() or 'unknown'}"
        )


def restore_links(root: Path) -> None:
    """Make each of `LINKS` a symbolic link again where a wheel turned it into a copy."""
    for path, target in LINKS.items():
        link = root / path
        if link.is_symlink():
            continue
        if not (link.parent / target).is_file():
            raise ExampleError(f"the example's {path} should link to {target}, which is missing")
        link.unlink(missing_ok=True)
        os.symlink(target, link)


def with_commands(text: str, commands: DeployCommands) -> str:
    """hubbot.yaml's text with its deploy command templates replaced (comments kept)."""
    for key, value in (
        ("command", commands.command),
        ("support_command", commands.support_command),
    ):
        pattern = re.compile(rf"^(  {key}: ).*$", re.MULTILINE)
        # A YAML single-quoted scalar: only the quote itself needs escaping.
        quoted = "'" + value.replace("'", "''") + "'"
        text, count = pattern.subn(r"\g<1>" + quoted.replace("\\", "\\\\"), text)
        if count != 1:
            raise ExampleError(f"the example's {SETTINGS_FILE} has no single deploy.{key} line")
    return text


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": AUTHOR[0],
        "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0],
        "GIT_COMMITTER_EMAIL": AUTHOR[1],
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    try:
        done = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise ExampleError("git is not installed; the demo needs it for its repository") from None
    if done.returncode != 0:
        raise ExampleError(f"git {args[0]} failed: {done.stderr.strip()}")
    return done.stdout
