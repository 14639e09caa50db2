"""Restarts never lose an accepted deploy.

- Local executor: the bot stops mid-rollout (one deploy running, others queued). Started
  again, it finds the unfinished Deployments in GitHub and requeues them on the same
  Deployments: the cut one says it is deployed again, the queued ones say they were
  requeued, and all of them end. The stopped bot's check run was concluded, not left open.
- Kubernetes executor (against the API double, which runs the Job as a real process held
  by its pause switch): the bot stops while the Job runs; started again, it adopts the Job
  (found by label), does not create another, and reports its real end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.web.keys import SERVICES
from tests.deploy_support import (
    COMMON,
    SUPPORT,
    by_environment,
    deploy_comments,
    deploy_runs,
    deploy_stack,
    deployments,
    edited,
    eventually,
    example_repo,
    gate,
    gate_each,
    hubbot_yaml,
    merge_change,
    needs_tools,
    states,
    target_records,
    tools_path,
)
from tests.e2e_support import Stack, record_tokens

pytest.importorskip("bot.sandbox.github.app", reason="the GitHub double")

UNI_A = ("uni-a/staging", "uni-a/r-staging", "uni-a/prod", "uni-a/r-prod")
STAGING = "config/clusters/uni-a/staging.values.yaml"


async def start_bot(
    sandbox: Any, repo: Path, http: aiohttp.ClientSession, **server: Any
) -> tuple[Stack, Any]:
    """A bot (fresh process state) on an existing double, webhooks pointed at it."""
    _, runner = await deploy_stack(repo, sandbox=sandbox, **server)
    stack = Stack(sandbox, f"http://127.0.0.1:{runner.addresses[0][1]}", runner.app, http, [])
    record_tokens(runner.app, stack.tokens)
    await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
    return stack, runner


async def test_a_restart_requeues_accepted_local_deploys_on_their_deployments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(before_command=gate(gates), max_parallel_per_cluster="1")
    repo = example_repo(tmp_path, hubbot_yaml=config)
    sandbox, first = await deploy_stack(repo, checker=openapi_checker)
    try:
        async with aiohttp.ClientSession() as http:
            stack = Stack(sandbox, f"http://127.0.0.1:{first.addresses[0][1]}", first.app, http, [])
            await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
            number, sha = await merge_change(
                stack, {COMMON: edited(COMMON, "restart")}, branch="r", wait=False
            )

            async def one_running() -> bool:
                found = by_environment(await deployments(stack), sha)
                return set(found) == set(UNI_A) and "in_progress" in states(
                    found["uni-a/r-staging"]
                )

            await eventually(one_running)  # r-staging first (name order), the rest queued
            await stack.settle()
            await first.cleanup()  # the bot stops: its running deploy is killed

            found = by_environment(await deployments(stack), sha)
            assert states(found["uni-a/r-staging"]) == ["queued", "in_progress"]
            assert {e: states(found[e]) for e in UNI_A if e != "uni-a/r-staging"} == {
                e: ["queued"] for e in UNI_A if e != "uni-a/r-staging"
            }
            view = await stack.pull(number)
            (stopped,) = deploy_runs(view, sha)
            assert (stopped["status"], stopped["conclusion"]) == ("completed", "cancelled")
            (body,) = deploy_comments(view)
            assert "⏸️ hubbot was stopped" in body
            ids = {e: d["id"] for e, d in found.items()}

            stack, second = await start_bot(sandbox, repo, http)
            try:
                assert stack.app[SERVICES].deploys.recovery["requeued"] == 4
                (gates / "go").touch()
                await stack.deployed()
                after = by_environment(await deployments(stack), sha)
                assert {e: d["id"] for e, d in after.items()} == ids  # no new Deployments
                cut = after["uni-a/r-staging"]["statuses"]
                assert [s["state"] for s in cut] == [
                    "queued",
                    "in_progress",
                    "queued",  # back in its lane, then deployed again
                    "in_progress",
                    "success",
                ]
                assert cut[2]["description"] == "interrupted by a hubbot restart; deploying again"
                assert cut[3]["description"] == cut[2]["description"]
                queued = after["uni-a/prod"]["statuses"]
                assert [s["state"] for s in queued] == [
                    "queued",
                    "queued",
                    "in_progress",
                    "success",
                ]
                assert queued[1]["description"] == "requeued after hubbot restarted"
                view = await stack.pull(number)
                runs = deploy_runs(view, sha)
                assert [r["conclusion"] for r in runs] == ["cancelled", "success"]
                (body,) = deploy_comments(view)
                assert "⏸️" not in body and "all 4 done" in body
            finally:
                await second.cleanup()
    finally:
        await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


KUBE_CONFIG_TEMPLATE = """
  kubernetes:
    namespace: hubbot
    ttl_seconds_after_finished: 3600
    job_template:
      spec:
        template:
          spec:
            containers:
              - name: deploy
                image: ghcr.io/example-org/hub-deployer:test
"""


def kube_hubbot_yaml() -> str:
    """The example's settings with the Kubernetes executor and a self-contained command."""
    text = hubbot_yaml(executor="kubernetes", decrypt_secrets="false")
    text = text.replace(
        "  command: 'python3 deploy.py {cluster} {hub} --namespace {namespace} --mode template'",
        "  command: 'echo deploying {cluster}/{hub} at {sha} into {namespace}'",
    )
    head, _, _ = text.partition("  kubernetes:\n")
    return head + KUBE_CONFIG_TEMPLATE.lstrip("\n")


async def test_a_restart_adopts_the_running_kubernetes_job_and_reports_its_end(
    tmp_path: Path, openapi_checker: Any
) -> None:
    from bot.sandbox.kube import KubeSandbox

    repo = example_repo(tmp_path, hubbot_yaml=kube_hubbot_yaml())
    async with KubeSandbox() as kube, aiohttp.ClientSession() as http:
        server = {"kube_host": kube.url, "kube_token": kube.token}
        sandbox, first = await deploy_stack(repo, checker=openapi_checker, **server)
        try:
            stack = Stack(sandbox, f"http://127.0.0.1:{first.addresses[0][1]}", first.app, http, [])
            await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
            kube.pause()  # the Job is created, but its pod does not run yet
            number, sha = await merge_change(
                stack, {STAGING: edited(STAGING, "kube")}, branch="k", wait=False
            )
            await stack.settle()
            await kube.wait_for(lambda: len(kube.jobs("hubbot")) == 1, 30)

            async def running() -> bool:
                d = by_environment(await deployments(stack), sha).get("uni-a/staging")
                return d is not None and "in_progress" in states(d)

            await eventually(running)
            await first.cleanup()  # the bot stops; the Job keeps running in the cluster
            (job,) = kube.jobs("hubbot")
            assert "deletionTimestamp" not in job["metadata"]

            stack, second = await start_bot(sandbox, repo, http, **server)
            try:
                assert stack.app[SERVICES].deploys.recovery["adopted"] == 1
                kube.resume()
                await stack.deployed()
                (again,) = kube.jobs("hubbot")  # adopted, not created a second time
                assert again["metadata"]["uid"] == job["metadata"]["uid"]
                found = by_environment(await deployments(stack), sha)
                assert set(found) == {"uni-a/staging"}
                statuses = found["uni-a/staging"]["statuses"]
                assert [s["state"] for s in statuses] == [
                    "queued",
                    "in_progress",
                    "in_progress",
                    "success",
                ]
                assert statuses[2]["description"].startswith("resumed after hubbot restarted")
                attempt = found["uni-a/staging"]["payload"]["hubbot"]["attempt"]
                log = stack.app[SERVICES].deploys.logs[attempt].log
                assert f"deploying uni-a/staging at {sha}" in log
                runs = deploy_runs(await stack.pull(number), sha)
                assert [r["conclusion"] for r in runs] == ["cancelled", "success"]
            finally:
                await second.cleanup()
        finally:
            await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)


STAGES = {
    "support": ["uni-a/support"],
    "staging": ["uni-a/staging", "uni-a/r-staging"],
    "prod": ["uni-a/prod", "uni-a/r-prod"],
}


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_restart_at_each_stage_of_a_rollout_loses_nothing_and_redoes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openapi_checker: Any, stage: str
) -> None:
    needs_tools()
    tools_path(monkeypatch)
    gates = tmp_path / "gates"
    gates.mkdir()
    config = hubbot_yaml(
        before_command=gate_each(gates), before_support=gate_each(gates, "support")
    )
    repo = example_repo(tmp_path, hubbot_yaml=config)
    order = list(STAGES)
    done_before = [env for s in order[: order.index(stage)] for env in STAGES[s]]
    for env in done_before:  # the stages before this one may finish
        (gates / f"go-{env.replace('/', '-')}").touch()
    sandbox, first = await deploy_stack(repo, checker=openapi_checker)
    try:
        async with aiohttp.ClientSession() as http:
            stack = Stack(sandbox, f"http://127.0.0.1:{first.addresses[0][1]}", first.app, http, [])
            await stack.control("POST", "/webhook", {"url": f"{stack.bot_url}/webhook"})
            files = {COMMON: edited(COMMON, stage), SUPPORT: edited(SUPPORT, stage)}
            number, sha = await merge_change(stack, files, branch="s", wait=False)

            async def stage_running() -> bool:
                found = by_environment(await deployments(stack), sha)
                return all(
                    env in found and "in_progress" in states(found[env]) for env in STAGES[stage]
                )

            await eventually(stage_running)
            await stack.settle()
            await first.cleanup()
            before = by_environment(await deployments(stack), sha)
            assert len(before) == 5

            stack, second = await start_bot(sandbox, repo, http)
            try:
                assert stack.app[SERVICES].deploys.recovery["requeued"] == 5 - len(done_before)
                (gates / "go").touch()
                await stack.deployed()
                after = by_environment(await deployments(stack), sha)
                assert {e: d["id"] for e, d in after.items()} == {
                    e: d["id"] for e, d in before.items()
                }
                for env, d in after.items():
                    if env in done_before:  # ended before the restart: not deployed again
                        assert states(d) == ["queued", "in_progress", "success"]
                    elif env in STAGES[stage]:  # cut by the restart: deployed again
                        assert states(d) == [
                            "queued",
                            "in_progress",
                            "queued",
                            "in_progress",
                            "success",
                        ]
                    else:  # still queued at the restart: requeued
                        assert states(d) == ["queued", "queued", "in_progress", "success"]
                # Order holds across the restart: no prod started before staging ended.
                # (The bot's own times: GitHub's status ids follow the order writes landed in.)
                times = await target_records(stack, sha)
                prod_started = min(times[e].started for e in STAGES["prod"])
                if stage == "prod":  # staging ended in the first process, before it stopped
                    assert not set(STAGES["staging"]) & set(times)
                else:
                    assert max(times[e].ended for e in STAGES["staging"]) < prod_started
                runs = deploy_runs(await stack.pull(number), sha)
                assert [r["conclusion"] for r in runs] == ["cancelled", "success"]
            finally:
                await second.cleanup()
    finally:
        await sandbox.close()
    assert sandbox.violations == [], "\n".join(sandbox.violations)
