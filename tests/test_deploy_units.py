"""The deploy feature's small parts, without a server: words, throttling, checkouts, routing.

Handlers are tested through the merged router with GitHub's recorded `push` example and
a recording stand-in for the deploy service, so their registration is tested too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from gidgethub import sansio

from bot.core.settings import parse_settings
from bot.core.snapshot import DictSnapshot, Symlink
from bot.deploys import progress
from bot.deploys.executor import DeployJob, DeployResult
from bot.deploys.health import HealthResult
from bot.deploys.local import CheckoutError
from bot.deploys.progress import Origin, TargetRecord
from bot.deploys.repo import DeployLog, deploy_environment
from bot.deploys.reporter import Throttled
from bot.deploys.rollout import StepOutcome
from bot.deploys.schedule import Step
from bot.deploys.service import DeployService
from bot.deploys.workspace import write_tree
from bot.handlers.context import Services
from bot.handlers.router import router
from bot.web.deploys import deploy_log
from bot.web.keys import SERVICES
from bot.web.settings import SettingsError, load_settings
from tests.conftest import FakeGH, sample


def record(state: str, detail: str = "", seconds: float | None = None, **kw: Any) -> TargetRecord:
    fields: dict[str, Any] = {
        "key": "uni-a/staging",
        "cluster": "uni-a",
        "hub": "staging",
        "stage": "staging",
        "sha": "a" * 40,
        "wave": 1,
        "attempt": "0" * 32,
        "origin": 1,
        "state": state,
        "detail": detail,
        "seconds": seconds,
    }
    fields.update(kw)
    return TargetRecord(**fields)


@pytest.mark.parametrize(
    ("state", "detail", "expected"),
    [
        ("queued", "", ("queued", "queued")),
        ("running", "", ("in_progress", "deploying")),
        ("success", "exit code 0", ("success", "deployed in 12 s")),
        ("failure", "exit code 2", ("failure", "failed in 12 s: exit code 2")),
        ("error", "sops could not decrypt x", ("error", "error: sops could not decrypt x")),
        ("cancelled", "cancelled by @mo", ("error", "cancelled by @mo")),
        (
            "blocked",
            "staging failed on uni-a",
            ("failure", "not deployed: staging failed on uni-a"),
        ),
        ("skipped", "", ("inactive", "not deployed: this release no longer exists at this commit")),
        (
            "superseded",
            "superseded by the deploy of abc1234",
            ("inactive", "superseded by the deploy of abc1234"),
        ),
    ],
)
def test_each_ending_has_its_deployment_status(
    state: str, detail: str, expected: tuple[str, str]
) -> None:
    assert progress.deployment_status(record(state, detail, 12.0)) == expected


def test_a_flaky_health_check_is_said_in_the_status() -> None:
    detail = "deployed; health check passed on attempt 2 of 3 (flaky: attempt 1: exit code 7)"
    state, description = progress.deployment_status(record("success", detail, 3.0))
    assert state == "success" and "flaky" in description


def test_conclusions() -> None:
    assert progress.conclusion([record("success"), record("skipped")]) == "success"
    assert progress.conclusion([record("success"), record("blocked")]) == "failure"
    assert progress.conclusion([record("cancelled"), record("success")]) == "cancelled"
    assert progress.conclusion([record("skipped")]) == "neutral"


def test_the_table_is_one_line_per_target_and_escapes_cells() -> None:
    origin = Origin(1, "merge", "a" * 40, "octocat", 7, targets={"uni-a/staging": 1})
    bad = record("failure", "exit code 1 | <script>x</script>\nsecond line", 2.0)
    bad.log_url = "http://hubbot.test/deploys/" + "0" * 32
    body = progress.comment([(origin, [bad])])
    assert body.startswith(progress.DEPLOY_MARKER)
    row = next(line for line in body.splitlines() if "`uni-a/staging`" in line)
    assert row.count(" | ") == 4 and "\\|" in row and "second line" in row  # 5 cells
    assert "[log](http://hubbot.test/deploys/" in row and "merge of #7" in body


def test_a_target_deployed_at_a_newer_commit_says_so() -> None:
    origin = Origin(1, "merge", "a" * 40, "octocat", 7, targets={"uni-a/staging": 1})
    body = progress.table([record("success", sha="b" * 40)], origin.sha)
    assert "(at `bbbbbbb`, a newer commit)" in body


async def test_throttled_writes_at_most_once_per_interval_and_always_after_the_last_change() -> (
    None
):
    seen: list[tuple[float, int]] = []
    value = 0

    async def write() -> None:
        seen.append((time.monotonic(), value))

    throttled = Throttled(write, 0.2)
    for value in range(1, 6):  # noqa: B007 - the write reads it
        throttled.poke()
        await asyncio.sleep(0)
    await throttled.flush()
    assert seen[-1][1] == 5  # the final state is always written
    assert len(seen) <= 2
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert all(gap >= 0.19 for gap in gaps)


def test_checkouts_keep_symlinks_and_make_scripts_executable(tmp_path: Path) -> None:
    snapshot = DictSnapshot(
        {
            "deploy.py": "#!/usr/bin/env python3\nprint('hi')\n",
            "charts/a/values.yaml": "x: 1\n",
            "charts/b/values.jsonnet": Symlink("../a/values.yaml"),
        }
    )
    write_tree(snapshot, tmp_path)
    assert (tmp_path / "charts/b/values.jsonnet").is_symlink()
    assert (tmp_path / "charts/b/values.jsonnet").read_text() == "x: 1\n"
    assert os.stat(tmp_path / "deploy.py").st_mode & stat.S_IXUSR
    assert not os.stat(tmp_path / "charts/a/values.yaml").st_mode & stat.S_IXUSR


@pytest.mark.parametrize(
    "files",
    [
        {"a": Symlink("/etc"), "a/passwd": "pwned\n"},  # a write through a symlink
        {"link": Symlink(".."), "link/escape": "x\n"},
    ],
)
def test_checkouts_never_write_through_a_symlink(tmp_path: Path, files: dict[str, Any]) -> None:
    root = tmp_path / "checkout"
    root.mkdir()
    with pytest.raises(CheckoutError, match="unsafe path"):
        write_tree(DictSnapshot(files), root)
    assert not (tmp_path / "escape").exists()


def test_deploys_never_see_the_bots_variables_and_find_its_python_first() -> None:
    import sys

    env = deploy_environment({"PATH": "/usr/bin", "HUBBOT_WEBHOOK_SECRET": "s", "HOME": "/h"})
    assert "HUBBOT_WEBHOOK_SECRET" not in env
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_an_unknown_placeholder_is_a_finding_at_its_line() -> None:
    text = b"deploy:\n  executor: local\n  health_check: curl https://{domian}/hub/health\n"
    _, findings = parse_settings(text)
    (finding,) = findings
    assert (finding.line, finding.rule) == (3, "settings-template")
    assert "{domian}" in finding.message and "{domain}" in finding.message


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"HUBBOT_PUBLIC_URL": "hubbot.example.org"}, "HUBBOT_PUBLIC_URL"),
        ({"HUBBOT_KUBE_HOST": "not a url"}, "HUBBOT_KUBE_HOST"),
        ({"HUBBOT_KUBE_CA": "/nonexistent/ca.pem"}, "HUBBOT_KUBE_CA"),
        ({"HUBBOT_DEPLOY_ENV": "GOOD, 1BAD"}, "1BAD"),
        ({"HUBBOT_DEPLOY_ENV": "HUBBOT_WEBHOOK_SECRET"}, "never see it"),
    ],
)
def test_bad_deploy_server_settings_say_what_to_fix(
    env: dict[str, str], problem: str, private_key_pem: str
) -> None:
    base = {"HUBBOT_APP_ID": "1", "HUBBOT_PRIVATE_KEY": private_key_pem}
    with pytest.raises(SettingsError, match=problem):
        load_settings(base | env | {"HUBBOT_WEBHOOK_SECRET": "s"})


def test_deploy_server_settings(private_key_pem: str) -> None:
    settings = load_settings(
        {
            "HUBBOT_APP_ID": "1",
            "HUBBOT_PRIVATE_KEY": private_key_pem,
            "HUBBOT_WEBHOOK_SECRET": "s",
            "HUBBOT_PUBLIC_URL": "https://hubbot.example.org/",
            "HUBBOT_KUBE_TOKEN": "kube-token-value",
            "HUBBOT_DEPLOY_ENV": "AZURE_CONFIG_DIR, VAULT_ADDR",
        }
    )
    assert settings.public_url == "https://hubbot.example.org"
    assert settings.deploy_env == ("AZURE_CONFIG_DIR", "VAULT_ADDR")
    assert "kube-token-value" not in repr(settings)


# --- handlers, through the merged router -------------------------------------------------


class Recording(DeployService):
    """A deploy service that records what handlers ask of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def deploy_merge(self, gh: Any, repo: Any, **kw: Any) -> list[Any]:  # type: ignore[override]
        self.calls.append(("merge", kw))
        return []

    async def cancel_pr(self, repo: Any, pr: int, **kw: Any) -> list[Any]:  # type: ignore[override]
        self.calls.append(("cancel", {"pr": pr, **kw}))
        return []

    async def release_claims(self, gh: Any, repo: Any, **kw: Any) -> list[Any]:  # type: ignore[override]
        self.calls.append(("release", kw))
        return []


def push_event(**changes: Any) -> sansio.Event:
    data = sample("push", "push")  # GitHub's example deletes a tag: make it a branch update
    data.update(deleted=False, created=False, before="a" * 40, after="b" * 40)
    data.update(changes)
    data.setdefault("installation", {"id": 1})
    return sansio.Event(data, event="push", delivery_id="d-1")


@pytest.mark.parametrize(
    ("changes", "deploys"),
    [
        ({}, True),
        ({"ref": "refs/heads/feature"}, False),
        ({"ref": "refs/tags/v1.0"}, False),
        ({"deleted": True, "after": "0" * 40}, False),
        ({"created": True, "before": "0" * 40}, False),
    ],
    ids=["default-branch", "other-branch", "tag", "deleted", "created"],
)
async def test_only_pushes_that_move_the_default_branch_deploy(
    changes: dict[str, Any], deploys: bool
) -> None:
    event = push_event(**changes)
    if "ref" not in changes:
        event.data["ref"] = f"refs/heads/{event.data['repository']['default_branch']}"
    repo_url = event.data["repository"]["url"]
    after = event.data["after"]
    merged = {
        "number": 12,
        "merged_at": "2024-01-01T00:00:00Z",
        "merge_commit_sha": after,
        "base": {"ref": event.data["repository"]["default_branch"]},
        "labels": [{"name": "deployer:skip-deploy-hubs"}],
        "comments_url": f"{repo_url}/issues/12/comments",
    }
    gh = FakeGH({("GET", f"{repo_url}/commits/{after}/pulls"): [merged]})
    deploy = Recording()
    await router.dispatch(event, gh, services=Services(deploys=deploy))
    merges = [kw for name, kw in deploy.calls if name == "merge"]
    assert bool(merges) is deploys
    if deploys:
        (kw,) = merges
        assert kw["pr"] == 12 and kw["labels"] == ("deployer:skip-deploy-hubs",)
        assert kw["before"] == event.data["before"] and kw["after"] == after
        assert kw["delivery"] == "d-1" and "merge of #12" in kw["source"]
    else:
        assert gh.calls == []


async def test_a_direct_push_deploys_without_a_pr() -> None:
    event = push_event()
    event.data["ref"] = f"refs/heads/{event.data['repository']['default_branch']}"
    url = f"{event.data['repository']['url']}/commits/{event.data['after']}/pulls"
    deploy = Recording()
    await router.dispatch(event, FakeGH({("GET", url): []}), services=Services(deploys=deploy))
    ((_, kw),) = deploy.calls
    assert kw["pr"] is None and kw["labels"] == () and kw["comments_url"] is None


@pytest.mark.parametrize("merged", [True, False])
async def test_a_closed_pr_cancels_queued_previews_and_releases_its_claims(merged: bool) -> None:
    data = sample("pull_request", "closed")
    data["pull_request"]["merged"] = merged
    data.setdefault("installation", {"id": 1})
    deploy = Recording()
    event = sansio.Event(data, event="pull_request", delivery_id="d-2")
    await router.dispatch(event, FakeGH(), services=Services(deploys=deploy))
    names = [name for name, _ in deploy.calls]
    assert names == ["cancel", "release"]
    cancel, release = (kw for _, kw in deploy.calls)
    assert cancel["running"] is False  # a running preview finishes, then is released
    number = data["pull_request"]["number"]
    assert release["pr"] == number and release["environments"] is None
    assert release["reason"] == f"claim released: PR #{number} {'merged' if merged else 'closed'}"


# --- the log page -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "status"),
    [("0" * 32, 200), ("f" * 32, 404), ("..%2F..%2Fetc", 404), ("0" * 31, 404)],
)
async def test_the_log_page(aiohttp_client: Any, attempt: str, status: int) -> None:
    services = Services()
    services.deploys.logs["0" * 32] = DeployLog(
        repo="o/r",
        target="uni-a/staging",
        sha="a" * 40,
        outcome="failure",
        detail="exit code 1",
        log="helm: <b>boom</b>\n",
    )
    app = web.Application()
    app[SERVICES] = services
    app.router.add_get("/deploys/{attempt}", deploy_log)
    client = await aiohttp_client(app)
    async with client.get(f"/deploys/{attempt}") as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        text = await resp.text()
    if status == 200:
        assert "uni-a/staging" in text and "helm: <b>boom</b>" in text


CREDENTIALS = {
    "github token": "ghs_" + "A1b2" * 9,
    "fine-grained token": "github_pat_" + "x9" * 20,
    "age key": "AGE-SECRET-KEY-1" + "QZ" * 29,
    "PEM block": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow"
    + "K" * 64
    + "\n-----END RSA PRIVATE KEY-----",
}


@pytest.mark.parametrize("shape", list(CREDENTIALS))
def test_a_kept_log_holds_no_credential_shaped_text(shape: str) -> None:
    # A Kubernetes Job decrypts its secrets in its pod: the bot never knows their values.
    secret = CREDENTIALS[shape]
    outcome = StepOutcome(
        "failure",
        f"exit code 1 ({secret})",
        result=DeployResult("failure", "exit code 1", log=f"before\n{secret}\nafter\n"),
        health=HealthResult(ok=False, attempts=2, detail="failed", log=f"curl: {secret}"),
    )
    entry = DeployLog.of("o/r", Step("uni-a", "staging", "staging", sha="a" * 40), outcome)
    assert entry is not None
    for text in (entry.detail, entry.log, entry.health):
        assert secret not in text and "[redacted]" in text
    assert entry.log.startswith("before\n") and entry.log.endswith("after\n")


def test_a_step_that_never_ran_keeps_no_log() -> None:
    step = Step("uni-a", None, "support")
    assert DeployLog.of("o/r", step, StepOutcome("cancelled", "cancelled")) is None


def test_the_status_snapshot_is_json_and_starts_empty() -> None:
    view = DeployService().snapshot()
    assert json.loads(json.dumps(view)) == view
    assert view["rollouts"] == [] and view["claims"] == [] and view["executor"] == "none"
    assert view["recovery"]["state"] == "not started"


async def test_an_executor_that_cannot_start_fails_each_deploy_saying_why() -> None:
    from bot.core.settings import build_settings
    from bot.github.snapshot import RepoRef

    settings = build_settings({"deploy": {"executor": "kubernetes"}})
    repo = RepoRef("o", "r", "https://api.github.com/repos/o/r")
    executor = DeployService()._executor(repo, settings, lambda: FakeGH())
    job = DeployJob("j", "o/r", "c", "h", "a" * 40, "true", 1.0)
    result = await executor.run(job)
    assert result.outcome == "error"
    assert "the Kubernetes executor cannot start" in result.detail
    assert "no API host given" in result.detail or "job_template" in result.detail


def test_health_checks_see_only_the_minimal_environment_and_what_the_operator_adds() -> None:
    from bot.deploys.repo import health_environment

    base = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x", "KUBECONFIG": "/k", "HUBBOT_X": "s"}
    assert set(health_environment(base)) == {"PATH"}
    assert set(health_environment(base, extra=("KUBECONFIG", "HUBBOT_X"))) == {"PATH", "KUBECONFIG"}
