"""Helpers for the deploy tests: a bot that really deploys the example with helm and sops.

The local executor runs the example's `deploy.py` (real `helm template` from
`.cache/bin`, real sops with the example's TEST-ONLY key) in checkouts written from the
double's tarballs. What happened is read back from the double: Deployments with their
statuses, comments, check runs and the requests the bot made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.deploys.service import DeployService
from bot.github.snapshot import RepoRef
from bot.web.keys import GITHUB, SERVICES
from tests.conftest import CACHE, EXAMPLE
from tests.e2e_support import Stack, fresh_repo, git, record_tokens, start_stack

PUBLIC_URL = "http://hubbot.test"
DEPLOY_MARKER = "<!-- hubbot:deploy -->"
COMMON = "config/clusters/uni-a/common.values.yaml"
SUPPORT = "config/clusters/uni-a/support.values.yaml"
OCEAN_COMMON = "config/clusters/ocean-lab/staging.values.yaml"
HELM = CACHE / "bin" / "helm"


def needs_tools() -> None:
    """Skip unless helm (from tools/setup) and the example repository are present."""
    if not HELM.is_file():
        pytest.skip("run tools/setup: .cache/bin/helm is absent")
    if not EXAMPLE.is_dir():
        pytest.skip("config/ (the example repository) is absent")


def tools_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """helm first on PATH for deploys (the bot puts its own interpreter's folder first)."""
    monkeypatch.setenv("PATH", f"{HELM.parent}{os.pathsep}{os.environ.get('PATH', '')}")


DEPLOY_COMMAND = "python3 deploy.py {cluster} {hub} --namespace {namespace} --mode template"


SUPPORT_COMMAND = "python3 deploy.py {cluster} --support --mode template"


def hubbot_yaml(*, before_command: str = "", before_support: str = "", **replace: str) -> str:
    """The example's hubbot.yaml with its commands prefixed, and `deploy:` keys replaced."""
    text = (EXAMPLE / "hubbot.yaml").read_text()
    for key, command, before in (
        ("command", DEPLOY_COMMAND, before_command),
        ("support_command", SUPPORT_COMMAND, before_support),
    ):
        line = f"  {key}: {command}\n"
        assert line in text, f"the example's {key} changed"
        text = text.replace(line, f"  {key}: {_yaml_str(f'{before} {command}'.strip())}\n")
    for key, value in replace.items():
        old = next(x for x in text.splitlines() if x.startswith(f"  {key}:"))
        text = text.replace(old + "\n", f"  {key}: {value}\n", 1)
    return text


def _yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def gate(folder: Path) -> str:
    """A shell prefix that holds a deploy until `folder/go` exists (the test opens the gate)."""
    return f"while [ ! -e {folder}/go ]; do sleep 0.05; done;"


def gate_each(folder: Path, hub: str = "{hub}") -> str:
    """Holds a deploy until `folder/go` or `folder/go-<cluster>-<hub>` exists."""
    mine = f"{folder}/go-{{cluster}}-{hub}"
    return f"while [ ! -e {folder}/go ] && [ ! -e {mine} ]; do sleep 0.05; done;"


def example_repo(tmp_path: Path, *, hubbot_yaml: str | None = None) -> Path:
    """A fresh git repository of the example, optionally with another hubbot.yaml."""
    repo = fresh_repo(EXAMPLE, tmp_path / "repo")
    if hubbot_yaml is not None:
        (repo / "hubbot.yaml").write_text(hubbot_yaml)
        git(repo, "add", "-A")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "cfg")
    return repo


async def deploy_stack(
    repo: Path, *, checker: Any = None, sandbox: Any = None, **server: Any
) -> tuple[Any, Any]:
    """The double and a deploying bot (public URL set, so statuses carry log links)."""
    server.setdefault("public_url", PUBLIC_URL)
    return await start_stack(repo, checker=checker, sandbox=sandbox, **server)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    checker: Any,
    *,
    hubbot_yaml: str | None = None,
    **server: Any,
) -> AsyncIterator[Stack]:
    """A Stack over the example; checks at the end that the double saw no invalid request."""
    repo = example_repo(tmp_path, hubbot_yaml=hubbot_yaml)
    sandbox, runner = await deploy_stack(repo, checker=checker, **server)
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            stack = Stack(sandbox, f"http://127.0.0.1:{port}", runner.app, http, [])
            record_tokens(runner.app, stack.tokens)
            await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
            yield stack
    finally:
        await runner.cleanup()
        await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


async def eventually(check: Any, within: float = 60.0) -> Any:
    """Wait for a condition (of the double, usually) to hold, with a timeout."""
    async with asyncio.timeout(within):
        while not (result := await check()):
            await asyncio.sleep(0.05)
    return result


async def repo_ref(stack: Stack) -> RepoRef:
    """The double's repository as the bot names it."""
    info = await stack.control("GET", "/")
    owner, name = str(info["repository"]).split("/")
    return RepoRef(owner, name, f"{info['api_url']}/repos/{owner}/{name}")


def client(stack: Stack) -> Any:
    """An installation client of the bot's own factory."""
    return stack.app[GITHUB].for_installation(stack.sandbox.installation_id)


@dataclass(frozen=True)
class Times:
    """When a target started and ended, by the bot's monotonic clock."""

    started: float
    ended: float


async def target_records(stack: Stack, sha: str) -> dict[str, Times]:
    """The bot's own start and end times of each ended target deployed at `sha`.

    GitHub's status ids give the order in which concurrent writes landed, not the order of
    the deploys: order assertions read these instead.
    """
    repo = await repo_ref(stack)
    found = {}
    for record in service(stack).repos[repo.full_name].reporter.records.values():
        if record.sha == sha and record.started is not None and record.ended is not None:
            found[record.key] = Times(record.started, record.ended)
    return found


def service(stack: Stack) -> DeployService:
    """The bot's deploy service."""
    return stack.app[SERVICES].deploys


async def open_pr(
    stack: Stack, files: dict[str, str | None], *, branch: str, user: str = "octocat"
) -> tuple[int, str]:
    """Open a PR; returns its number and head SHA."""
    await stack.control(
        "POST", "/branches", {"name": branch, "from": "main", "files": files, "user": user}
    )
    answer = await stack.control("POST", "/pulls", {"head": branch, "user": user})
    await stack.settle()
    return int(answer["number"]), str(answer["head_sha"])


async def merge_change(
    stack: Stack,
    files: dict[str, str | None],
    *,
    branch: str,
    labels: list[str] | None = None,
    wait: bool = True,
) -> tuple[int, str]:
    """Open a PR with `files`, label it, merge it; returns (number, merge commit)."""
    await stack.control("POST", "/branches", {"name": branch, "from": "main", "files": files})
    number = int((await stack.control("POST", "/pulls", {"head": branch}))["number"])
    if labels:
        await stack.control("POST", f"/pulls/{number}/labels", {"add": labels})
    merged = await stack.control("POST", f"/pulls/{number}/merge", {"user": "octocat"})
    if wait:
        await stack.deployed()
    return number, str(merged["sha"])


# A harmless, valid change per file: (text in the example, its replacement with {note}).
EDITS = {
    "config/clusters/uni-a/common.values.yaml": ("name: University A", "name: University A {note}"),
    "config/clusters/uni-a/support.values.yaml": ("retention: 60d", "retention: 6{n}d"),
    "config/clusters/uni-a/staging.values.yaml": ("limit: 1G", "limit: 1{n}G  # {note}"),
    "config/clusters/ocean-lab/staging.values.yaml": ("limit: 2G", "limit: 2{n}G  # {note}"),
}


def edited(path: str, note: str, n: int = 1) -> str:
    """The example's file at `path` with a real (parsed) change tagged by `note`."""
    text = (EXAMPLE / path).read_text()
    old, new = EDITS[path]
    new = new.format(note=note, n=n)
    if not old:
        return text + new
    assert old in text, f"{path} no longer holds {old!r}"
    return text.replace(old, new, 1)


async def deployments(stack: Stack) -> list[dict[str, Any]]:
    """Every deployment the double holds, oldest first, with statuses."""
    data: list[dict[str, Any]] = await stack.control("GET", "/deployments")
    return data


def states(deployment: dict[str, Any]) -> list[str]:
    """A deployment's status states, oldest first."""
    return [s["state"] for s in deployment["statuses"]]


def by_environment(found: list[dict[str, Any]], sha: str | None = None) -> dict[str, Any]:
    """The newest deployment of each environment (of one SHA when given)."""
    out: dict[str, Any] = {}
    for d in found:
        if sha is None or d["sha"] == sha:
            out[d["environment"]] = d
    return out


def deploy_comments(view: dict[str, Any]) -> list[str]:
    """The bodies of the PR's deploy comments."""
    return [c["body"] for c in view["comments"] if c["body"].startswith(DEPLOY_MARKER)]


def deploy_runs(view: dict[str, Any], sha: str) -> list[dict[str, Any]]:
    """The `hubbot/deploy` check runs on a commit."""
    return [r for r in view["check_runs"] if r["name"] == "hubbot/deploy" and r["head_sha"] == sha]
