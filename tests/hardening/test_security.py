"""Security: replays, forged signatures, settings smuggled into a PR, plaintext secrets, and
no secret or token in anything the bot writes.

Everything runs against the real bot and the GitHub double on loopback, over a fresh copy of
the example repository (`config/`), whose secret files are really encrypted with sops and a
TEST-ONLY age key: the tests decrypt them to know what must never appear.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import EXAMPLE, sign
from tests.e2e_support import (
    MARKER,
    SECRET,
    STAGING,
    STAGING_TEXT,
    Stack,
    fresh_repo,
    git,
    plan_runs,
    record_tokens,
    start_stack,
)
from tests.hardening.support import LoopWatch, RecordingChecker, leaks

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

SOPS = Path(sys.executable).with_name("sops")
AGE_KEY = EXAMPLE / "TEST-ONLY-age-key.txt"
PROD = "config/clusters/uni-a/prod.values.yaml"
PLAINTEXT = "hunter2-Plaintext-Client-Secret-7f3a9c"


@dataclass
class Secured:
    """A stack whose every exchange with the double is recorded, bodies included."""

    stack: Stack
    recorder: RecordingChecker

    async def open_pr(self, branch: str, files: dict[str, str | None]) -> int:
        """Push a branch and open a PR from it; its number once the bot is done."""
        await self.stack.control("POST", "/branches", {"name": branch, "files": files})
        answer = await self.stack.control("POST", "/pulls", {"head": branch, "base": "main"})
        await self.stack.settle()
        return int(answer["number"])

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """Send a delivery straight to the bot; the status it answered."""
        url = f"{self.stack.bot_url}/webhook"
        async with self.stack.http.post(url, data=body, headers=headers) as resp:
            return resp.status


@pytest.fixture
async def secured(
    tmp_path: Path, openapi_checker: Any, loop_watch: LoopWatch
) -> AsyncIterator[Secured]:
    """The bot and the double over a fresh copy of the example repository (loop watched)."""
    if not EXAMPLE.is_dir():
        pytest.skip("config/ (the example repository) is absent")
    recorder = RecordingChecker(openapi_checker)
    sandbox, runner = await start_stack(fresh_repo(EXAMPLE, tmp_path / "repo"), checker=recorder)
    async with aiohttp.ClientSession() as http:
        port = runner.addresses[0][1]
        stack = Stack(sandbox, f"http://127.0.0.1:{port}", runner.app, http, [])
        record_tokens(runner.app, stack.tokens)
        await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
        yield Secured(stack, recorder)
    await runner.cleanup()
    await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


def plan_comment(view: dict[str, Any]) -> str:
    """The PR's one plan comment."""
    (comment,) = [c["body"] for c in view["comments"] if c["body"].startswith(MARKER)]
    return str(comment)


def without_shas(body: str) -> str:
    """A plan comment without its base → head line (which names the PR's commits)."""
    return "\n".join(line for line in body.splitlines() if "→ head" not in line)


# ---- replays and forged signatures -------------------------------------------------------
def delivered(stack: Stack, event: str, action: str | None, *, ref: bytes = b"") -> Any:
    """The double's last delivery of an event and action (its exact signed body)."""
    found = [
        d
        for d in stack.sandbox.deliveries
        if (d.event, d.action) == (event, action) and ref in d.payload
    ]
    return found[-1]


def headers_for(stack: Stack, delivery: Any, *, guid: str, signature: str) -> dict[str, str]:
    """Headers of a (re)delivery, as the double sends them."""
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": delivery.event,
        "X-GitHub-Delivery": guid,
        "X-GitHub-Hook-ID": str(stack.sandbox.state.app.hook_id),
        "X-Hub-Signature-256": signature,
    }


async def test_a_replayed_delivery_is_processed_once(secured: Secured) -> None:
    stack = secured.stack
    number = await secured.open_pr("replay", {STAGING: STAGING_TEXT.replace("1G", "7G")})
    opened = delivered(stack, "pull_request", "opened")
    signature = sign(opened.payload, SECRET)
    before = len(stack.sandbox.requests)
    view = await stack.pull(number)

    # The same delivery again (same id, same body, valid signature): answered, not processed.
    status = await secured.post(
        opened.payload, headers_for(stack, opened, guid=opened.guid, signature=signature)
    )
    await stack.settle()
    assert status == 202
    assert len(stack.sandbox.requests) == before

    # A captured body, altered, sent with its old signature under a new id: refused.
    altered = opened.payload.replace(b'"opened"', b'"reopened"', 1)
    assert altered != opened.payload
    status = await secured.post(
        altered, headers_for(stack, opened, guid="new-id-1", signature=signature)
    )
    await stack.settle()
    assert status == 401
    assert len(stack.sandbox.requests) == before

    # GitHub signs the body, not the delivery id: the verbatim body under a new id verifies.
    # A re-plan is idempotent, so the PR looks the same (one comment, same plan).
    status = await secured.post(
        opened.payload, headers_for(stack, opened, guid="new-id-2", signature=signature)
    )
    await stack.settle()
    assert status == 202
    again = await stack.pull(number)
    assert plan_comment(again) == plan_comment(view)
    assert all(r["status"] == "completed" for r in again["check_runs"])


async def test_a_replayed_old_push_never_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    from tests.deploy_support import (
        COMMON,
        edited,
        merge_change,
        needs_tools,
        running,
        tools_path,
    )

    needs_tools()
    tools_path(monkeypatch)
    async with running(tmp_path, openapi_checker) as stack:
        await merge_change(stack, {COMMON: edited(COMMON, "one")}, branch="one")
        old = delivered(stack, "push", None, ref=b'"refs/heads/main"')
        await merge_change(stack, {COMMON: edited(COMMON, "two")}, branch="two")
        head = git(Path(stack.sandbox.context.repo.path), "rev-parse", "main").strip()
        seen = len(await stack.control("GET", "/deployments"))
        signature = sign(old.payload, SECRET)
        status = await Secured(stack, RecordingChecker()).post(
            old.payload, headers_for(stack, old, guid="replayed-push", signature=signature)
        )
        assert status == 202  # GitHub signs the body only: it verifies
        await stack.deployed()
        later = (await stack.control("GET", "/deployments"))[seen:]
    assert all(d["sha"] == head for d in later), [(d["environment"], d["sha"]) for d in later]


def sha1(body: bytes, secret: str) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


@pytest.mark.parametrize(
    "forge",
    ["another-secret", "sha1-only", "sha1-in-sha256-header", "empty-secret", "truncated", "none"],
)
async def test_forged_signatures_are_401_and_reach_nothing(secured: Secured, forge: str) -> None:
    stack = secured.stack
    await secured.open_pr("sig", {STAGING: STAGING_TEXT.replace("1G", "8G")})
    opened = delivered(stack, "pull_request", "opened")
    body = opened.payload
    headers = headers_for(stack, opened, guid=f"forged-{forge}", signature="")
    del headers["X-Hub-Signature-256"]
    if forge == "another-secret":
        headers["X-Hub-Signature-256"] = sign(body, "not-" + SECRET)
    elif forge == "sha1-only":
        headers["X-Hub-Signature"] = sha1(body, SECRET)  # GitHub's legacy header, valid
    elif forge == "sha1-in-sha256-header":
        headers["X-Hub-Signature-256"] = sha1(body, SECRET)
    elif forge == "empty-secret":
        headers["X-Hub-Signature-256"] = sign(body, "")
    elif forge == "truncated":
        headers["X-Hub-Signature-256"] = sign(body, SECRET)[:-2]
    before = len(stack.sandbox.requests)
    assert await secured.post(body, headers) == 401
    await stack.settle()
    assert len(stack.sandbox.requests) == before


# ---- settings come from the default branch -----------------------------------------------
def settings_with(change: str) -> str:
    """The example's hubbot.yaml with one setting changed by a PR."""
    data = yaml.safe_load((EXAMPLE / "hubbot.yaml").read_text())
    if change == "ignore-uni-a":
        data["ignored_paths"] = [*data.get("ignored_paths", []), "config/clusters/uni-a/**"]
    elif change == "no-staging":
        data["staging_hub_pattern"] = "^$"  # no staging hubs: prod would deploy ungated
    elif change == "everything-staging":
        data["staging_hub_pattern"] = "."  # prod hubs would count as staging (PR-deployable)
    elif change == "skip-label":
        data["labels"] = {**data.get("labels", {}), "skip_deploy": "documentation"}
    return yaml.safe_dump(data)


@pytest.mark.parametrize("change", ["no-staging", "everything-staging", "skip-label"])
async def test_settings_changed_in_a_pr_do_not_change_its_plan(
    secured: Secured, change: str
) -> None:
    edit = {PROD: (EXAMPLE / PROD).read_text().replace("limit: 4G", "limit: 6G")}
    plain = await secured.open_pr("plain", edit)
    sneaky = await secured.open_pr("sneaky", {**edit, "hubbot.yaml": settings_with(change)})
    if change == "skip-label":
        await secured.stack.control("POST", f"/pulls/{sneaky}/labels", {"add": ["documentation"]})
        await secured.stack.settle()
    views = [await secured.stack.pull(n) for n in (plain, sneaky)]
    note = "- This change edits hubbot.yaml: it was checked, but this plan follows the "
    sneaky_comment = plan_comment(views[1])
    assert note in sneaky_comment  # the proposal is checked and said to wait for the merge
    kept = "\n".join(line for line in sneaky_comment.splitlines() if not line.startswith(note))

    def squeezed(text: str) -> str:
        return re.sub(r"\n{3,}", "\n\n", without_shas(text)).strip()

    assert squeezed(plan_comment(views[0])) == squeezed(kept)
    runs = [plan_runs(v, v["head"]["sha"])[-1] for v in views]
    assert runs[0]["output"]["title"] == runs[1]["output"]["title"]
    assert "staging" in runs[1]["output"]["title"]  # the gate still adds the staging hub


async def test_an_ignore_added_in_a_pr_hides_nothing_until_merged(secured: Secured) -> None:
    stack = secured.stack
    broken = STAGING_TEXT + "nfs:\n  enabled: maybe\n"
    number = await secured.open_pr(
        "hide", {STAGING: broken, "hubbot.yaml": settings_with("ignore-uni-a")}
    )
    view = await stack.pull(number)
    (run,) = plan_runs(view, view["head"]["sha"])
    assert run["conclusion"] == "failure"
    assert (STAGING, 7) in {(a["path"], a["start_line"]) for a in run["annotations"]}

    # Merged, the rule is the repository's: the next PR is judged by it.
    await stack.control("POST", f"/pulls/{number}/merge", {"user": "octocat"})
    await stack.settle()
    later = await secured.open_pr("after", {STAGING: broken + "# again\n"})
    view = await stack.pull(later)
    (run,) = plan_runs(view, view["head"]["sha"])
    assert run["conclusion"] == "success"
    assert run["annotations"] == []


async def test_a_pr_cannot_spend_the_rate_limit(secured: Secured) -> None:
    """Thousands of findings (a file of unknown keys) cost a bounded number of API calls."""
    stack = secured.stack
    keys = "".join(f"unknown{i}: {i}\n" for i in range(5000))
    before = len(stack.sandbox.requests)
    number = await secured.open_pr("many", {STAGING: (EXAMPLE / STAGING).read_text() + keys})
    calls = stack.sandbox.requests[before:]
    assert len(calls) <= 20, f"{len(calls)} calls for one plan"
    view = await stack.pull(number)
    (run,) = plan_runs(view, view["head"]["sha"])
    assert run["conclusion"] == "failure" and len(run["annotations"]) == 500


# ---- plaintext secrets, and what must never be published --------------------------------
def decrypted_secrets() -> set[str]:
    """Plaintext values of the example's sops files (TEST-ONLY key), not found elsewhere."""
    if not SOPS.is_file():
        pytest.skip("sops is not installed in the venv")
    env = {**os.environ, "SOPS_AGE_KEY_FILE": str(AGE_KEY)}
    values: set[str] = set()
    files = sorted(EXAMPLE.rglob("enc-*.secret.*"))
    assert files
    for path in files:
        out = subprocess.run(
            [str(SOPS), "--disable-version-check", "-d", str(path)],
            check=True,
            capture_output=True,
            env=env,
        ).stdout
        data = json.loads(out) if path.suffix == ".json" else yaml.safe_load(out)
        values |= set(_strings(data))
    public = "\n".join(
        p.read_text(errors="replace")
        for p in EXAMPLE.rglob("*")
        if p.is_file() and "secret" not in p.name and p.name != AGE_KEY.name
    )
    return {v for v in values if len(v) >= 8 and v not in public}


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def published(stack: Stack) -> dict[str, str]:
    """Everything the bot wrote where people can read it: comments, check runs."""
    state = stack.sandbox.state
    return {
        "comments": json.dumps([c.body for c in state.comments.values()]),
        "check runs": json.dumps(
            [[r.output, r.annotations] for r in state.check_runs.values()], default=str
        ),
    }


async def test_a_plaintext_secret_is_blocked_and_never_repeated(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = secured.stack
    leaked, line = leaked_values_file()
    number = await secured.open_pr("leak", {STAGING: leaked})
    view = await stack.pull(number)
    (run,) = plan_runs(view, view["head"]["sha"])
    assert run["conclusion"] == "failure"
    spots = {(a["path"], a["start_line"], a["annotation_level"]) for a in run["annotations"]}
    assert (STAGING, line, "failure") in spots
    assert [a["title"] for a in run["annotations"]] == ["plaintext-secret"]  # the only error
    places = {
        **published(stack),
        "logs": caplog.text,
        "requests to GitHub": secured.recorder.sent_text(),
    }
    assert leaks([PLAINTEXT, PLAINTEXT[:12], PLAINTEXT[-12:]], places) == []


def leaked_values_file() -> tuple[str, int]:
    """The example's staging values with a plaintext client secret, and its line."""
    text = (EXAMPLE / STAGING).read_text()
    assert text.startswith("jupyterhub:\n")
    secret_line = f"        client_secret: {PLAINTEXT}"
    leaked = text.replace(
        "jupyterhub:\n",
        f"jupyterhub:\n  hub:\n    config:\n      GitHubOAuthenticator:\n{secret_line}\n",
        1,
    )
    return leaked, leaked.splitlines().index(secret_line) + 1


@pytest.mark.parametrize("output", ["markdown", "json"])
def test_hubbot_plan_never_prints_a_plaintext_secret(tmp_path: Path, output: str) -> None:
    """`hubbot plan` in CI: its output (the values diff included) goes to public logs."""
    from tests.conftest import ROOT

    repo = fresh_repo(EXAMPLE, tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", "leak")
    leaked, line = leaked_values_file()
    (repo / STAGING).write_text(leaked)
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "leak")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "plan",
            "--repo",
            str(repo),
            "--base",
            "main",
            "--head",
            "leak",
            "--format",
            output,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HUBBOT_CACHE_DIR": "off"},
    )
    assert proc.returncode == 1, proc.stderr  # blocked by the error
    assert f"{STAGING}:{line}" in proc.stdout or f'"line": {line}' in proc.stdout
    assert leaks([PLAINTEXT], {"stdout": proc.stdout, "stderr": proc.stderr}) == []


async def test_no_token_key_secret_or_decrypted_value_in_anything_the_bot_wrote(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = secured.stack
    secret_file = "config/clusters/uni-a/enc-staging.secret.values.yaml"
    encrypted = (EXAMPLE / secret_file).read_text()
    # A values change, an encrypted file re-encrypted (a byte of its MAC changed), a broken
    # file, and a token expiry on the way: every path that writes a comment or a check.
    await secured.open_pr("one", {STAGING: STAGING_TEXT.replace("1G", "9G")})
    await stack.control("POST", "/tokens/expire")
    await secured.open_pr(
        "two",
        {
            secret_file: encrypted.replace(
                "mac: ENC[AES256_GCM,data:v", "mac: ENC[AES256_GCM,data:w"
            )
        },
    )
    await secured.open_pr("three", {PROD: "jupyterhub: [unclosed\n"})
    pages = {}
    for page in ("/metrics", "/", "/status.json", "/readyz", "/healthz"):
        async with stack.http.get(f"{stack.bot_url}{page}") as resp:
            assert resp.status == 200, page
            pages[f"page {page}"] = await resp.text()
    key_lines = [ln for ln in stack.sandbox.private_key.splitlines() if "-----" not in ln]
    tokens = secured.recorder.issued_tokens()
    assert len(tokens) >= 2 and set(tokens) <= set(stack.tokens)
    secrets = {SECRET, *tokens, *key_lines, *decrypted_secrets()}
    places = {
        **published(stack),
        "logs": caplog.text,
        "requests to GitHub": secured.recorder.sent_text(),
        **pages,
    }
    assert leaks(secrets, places) == []
    assert "PRIVATE KEY" not in caplog.text and "ghs_" not in caplog.text


# Who, besides the levels `tests/test_commands_deploys.py` runs on the PR author's deploy,
# must not touch another user's deploy: partners (of the hub itself, of its cluster through
# a team, of another hub of it) and users below write.
NOT_WRITERS = {
    "alice-partner": "read",  # partner of uni-a/staging, the very hub deploying
    "rstudio-rita": "read",  # partner of uni-a/r-staging
    "team-tim": "triage",  # partner of uni-a/* through @example-org/uni-a-partners
    "user-triage": "triage",
    "user-read": "read",
    "user-none": "none",
}


async def test_partners_and_non_writers_cannot_cancel_unlock_or_redeploy_anothers_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    """octocat's preview of uni-a/staging runs (held at a gate) and claims the hub. Each
    user tries, on that PR, `/cancel`, `/unlock` and a redeploy of main to prod, and, from
    another PR, `/unlock uni-a/staging`: every one is refused, and the deploy, its claim and
    prod are untouched."""
    from tests.deploy_support import (
        by_environment,
        deployments,
        edited,
        eventually,
        gate,
        hubbot_yaml,
        needs_tools,
        running,
        states,
        tools_path,
    )
    from tests.test_commands_e2e import add_user, comment, open_pr_as, reactions, reply

    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(before_command=gate(gates))
    async with running(tmp_path, openapi_checker, hubbot_yaml=config) as stack:
        team = {"org": "example-org", "slug": "uni-a-partners", "members": ["team-tim"]}
        await stack.control("POST", "/teams", team)
        for login, role in NOT_WRITERS.items():
            await add_user(stack, login, role)
        held = await open_pr_as(stack, "octocat", {STAGING: edited(STAGING, "held")}, branch="a")
        other = await open_pr_as(
            stack, "octocat", {STAGING: edited(STAGING, "other", 2)}, branch="b"
        )
        view = await stack.pull(held)
        head, main = view["head"]["sha"], view["base"]["sha"]
        await comment(stack, held, "octocat", "/deploy staging")

        async def deploying() -> bool:
            found = by_environment(await deployments(stack), head).get("uni-a/staging")
            return found is not None and "in_progress" in states(found)

        await eventually(deploying)
        lines = ["/cancel", "/unlock", f"/deploy uni-a/prod@{main[:7]}"]
        for login in NOT_WRITERS:
            for number, body in ((held, "\n".join(lines)), (other, "/unlock uni-a/staging")):
                cid = await comment(stack, number, login, body)
                view = await stack.pull(number)
                text = reply(view, cid)
                assert "✅" not in text and text.count("🚫") == len(body.splitlines()), (
                    login,
                    text,
                )
                assert reactions(view, cid) == ["eyes", "confused"], (login, text)
        (gates / "go").touch()
        await stack.deployed()
        found = by_environment(await deployments(stack))
    assert set(found) == {"uni-a/staging"}  # no prod redeploy
    # Neither cancelled nor released (a released preview ends `inactive`).
    assert states(found["uni-a/staging"]) == ["queued", "in_progress", "success"]
