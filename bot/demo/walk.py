"""The life of a change, step by step, each step checking that the bot did what it should.

A partner opens a PR on her staging hub, sees the plan, makes and fixes a mistake,
previews it on staging with `/deploy staging`; an engineer promotes it to prod,
approves and merges, and the bot rolls it out: support, staging, then prod. Every
step acts through the double's control API and then waits, with a timeout, until
the PR shows what a user should see; anything else is a `StepFailed` saying what
was expected and what was seen.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.demo import pullview
from bot.demo.pullview import DEPLOY_CHECK, PLAN_CHECK
from bot.demo.stack import Stack, StepFailed
from bot.demo.transcript import Action, latest_id, short, statuses_line

PARTNER, ENGINEER = "alice-partner", "erin-engineer"
USERS = {PARTNER: "read", ENGINEER: "write"}
# What a deploy's log says it did: deploy.py's helm summary, or `hubbot values`' summary.
LOG_SUMMARY = re.compile(
    r"^(rendered \d+ objects \(sha256 \w+\)|\d+ settings \(sha256 \w+\)|schema: .*"
    r"|\s+secret\s+\S+: .*)",
    re.MULTILINE,
)
BRANCH = "alice/workshop-resources"
STAGING = "config/clusters/uni-a/staging.values.yaml"
PROD = "config/clusters/uni-a/prod.values.yaml"
SUPPORT = "config/clusters/uni-a/support.values.yaml"

STAGING_EDIT = """\
jupyterhub:
  singleuser:
    memory:
      guarantee: 1G
      limit: 2G
"""
FIRST_MESSAGE = "uni-a staging: 1G guaranteed, 2G limit for the workshop"
BAD_LINE = 7  # `limit: two`: a string where the schema wants a number
STAGING_BAD = STAGING_EDIT + "    cpu:\n      limit: two\n"
STAGING_FIXED = STAGING_EDIT + "    cpu:\n      limit: 2\n"


@dataclass
class Walk:
    """One run of the scenario against a stack; records what it did for the transcript."""

    stack: Stack
    repo: Path
    timeout: float
    bot: str
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the current step verified
    number: int = 0
    plan_comment_id: int | None = None
    edited: set[int] = field(default_factory=set)  # comments seen changing
    merge_sha: str = ""

    def steps(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """The steps in order: a title and what to run."""
        return [
            (f"{PARTNER} opens a PR editing uni-a/staging's values", self.open_pull),
            ("the plan comment and the hubbot/plan check appear", self.plan_appears),
            ("a bad edit is annotated at its line, fixed, the comment updated", self.bad_edit),
            (f"{PARTNER} comments /deploy staging: the preview deploys", self.preview),
            (f"{ENGINEER} promotes the change to prod, approves and merges", self.merge),
            ("support, staging, then prod roll out", self.rollout),
        ]

    # ---- steps --------------------------------------------------------------------------
    async def open_pull(self) -> None:
        """Partner pushes a branch and opens a PR."""
        await self.stack.control(
            "POST",
            "/branches",
            {
                "name": BRANCH,
                "from": "main",
                "files": {STAGING: STAGING_EDIT},
                "message": FIRST_MESSAGE,
                "user": PARTNER,
            },
        )
        answer = await self.stack.control(
            "POST",
            "/pulls",
            {
                "head": BRANCH,
                "base": "main",
                "title": "uni-a staging: more memory for the workshop",
                "body": "Our workshop notebooks need more than 1G. Trying it on staging first.",
                "user": PARTNER,
            },
        )
        self.number = int(answer["number"])
        self._act(
            0,
            PARTNER,
            f"pushed {short(answer['head_sha'])}: {FIRST_MESSAGE}",
            _files(STAGING),
        )
        self.notes.append(f"PR #{self.number} opened from {BRANCH}")

    async def plan_appears(self) -> None:
        """The plan comment names the hub, and the plan check concluded success."""
        view = await self._wait_plan(conclusion="success", hub=("uni-a", "staging"))
        comment = pullview.plan_comment(view, self.bot)
        assert comment is not None
        self.plan_comment_id = int(comment["id"])
        self.notes.append(f"{self.bot} commented the plan: it names uni-a/staging")
        self.notes.append(f"{PLAN_CHECK} on {short(view['head']['sha'])} concluded success")

    async def bad_edit(self) -> None:
        """A string where the schema wants a number: failure, annotated at the exact line."""
        before = await self.stack.pull(self.number)
        sha = await self._push(PARTNER, {STAGING: STAGING_BAD}, "uni-a staging: 2 CPUs", before)
        view = await self._wait_plan(conclusion="failure", sha=sha)
        run = pullview.plan_run(view, sha)
        assert run is not None
        where = [(a["path"], a["start_line"]) for a in run["annotations"]]
        if (STAGING, BAD_LINE) not in where:
            raise StepFailed(
                f"an annotation at {STAGING}:{BAD_LINE} (the string where a number belongs)",
                f"annotations at {where or 'no line'}",
            )
        note = next(a for a in run["annotations"] if (a["path"], a["start_line"]) == where[0])
        self.notes.append(f"{PLAN_CHECK} failed, annotated at {STAGING}:{BAD_LINE}")
        self.notes.append(f"  “{note.get('message', '')}”")
        bad_body = pullview.plan_comment(view, self.bot)
        sha = await self._push(PARTNER, {STAGING: STAGING_FIXED}, "cpu limit is a number", view)
        view = await self._wait_plan(conclusion="success", sha=sha, hub=("uni-a", "staging"))
        comment = pullview.plan_comment(view, self.bot)
        assert comment is not None and bad_body is not None
        plan_comments = [c for c in view["comments"] if pullview.is_plan(c, self.bot)]
        if len(plan_comments) != 1 or comment["id"] != self.plan_comment_id:
            raise StepFailed(
                f"one plan comment, #{self.plan_comment_id}, edited in place",
                f"plan comments {[c['id'] for c in plan_comments]}",
            )
        if comment["body"] == bad_body["body"]:
            raise StepFailed("the plan comment updated after the fix", "the error plan still")
        self.edited.add(int(comment["id"]))
        self.notes.append(f"fixed: {PLAN_CHECK} succeeded; the same comment now shows the plan")

    async def preview(self) -> None:
        """`/deploy staging` by the partner: 👀, a transient Deployment ending success, 🚀."""
        before = await self.stack.pull(self.number)
        head = before["head"]["sha"]
        answer = await self.stack.control(
            "POST", f"/pulls/{self.number}/comments", {"user": PARTNER, "body": "/deploy staging"}
        )
        command_id = int(answer["id"])

        def done(view: Mapping[str, Any]) -> Any:
            dep = pullview.deployment(view, "uni-a/staging", head)
            comment = next((c for c in view["comments"] if c["id"] == command_id), None)
            got = {
                r["content"] for r in (comment or {}).get("reactions", ()) if r["user"] == self.bot
            }
            finished = dep is not None and pullview.final_state(dep) != "pending"
            ended = "rocket" in got or "confused" in got
            progress = pullview.progress_done(view, self.bot, head)
            return (view, dep) if finished and ended and progress else None

        view, dep = await self.stack.wait_for(
            lambda: self.stack.pull(self.number),
            done,
            expected=f"👀 then 🚀 on the command, a uni-a/staging deployment of {short(head)}, "
            "and the progress comment saying it is done",
            describe=lambda v: pullview.describe_deploys(v, command_id, self.bot, head),
            within=self.timeout,
        )
        if pullview.final_state(dep) != "success" or not dep.get("transient_environment"):
            raise StepFailed(
                "a transient uni-a/staging deployment ending success",
                f"{pullview.describe_deployment(dep)}",
            )
        comment = next(c for c in view["comments"] if c["id"] == command_id)
        given = [r["content"] for r in comment["reactions"] if r["user"] == self.bot]
        if given[:1] != ["eyes"] or "rocket" not in given or "confused" in given:
            raise StepFailed("👀 then 🚀 on the command", f"reactions {given}")
        self.notes.append(f"{self.bot} reacted 👀 then 🚀")
        self.notes.append(f"uni-a/staging (preview) at {short(head)}: {statuses_line(dep)}")
        self.notes += await self._log_summary(dep)
        self.notes.append(
            f"the progress comment: {pullview.progress_heading(view, self.bot, head)}"
        )

    async def merge(self) -> None:
        """The engineer promotes the change to prod (and support), approves, merges."""
        before = await self.stack.pull(self.number)
        files = {
            PROD: _replace(self._file(PROD), "limit: 4G", "limit: 6G"),
            SUPPORT: _replace(self._file(SUPPORT), "retention: 60d", "retention: 90d"),
        }
        sha = await self._push(
            ENGINEER, files, "Promote to prod; keep 90 days of metrics to compare", before
        )
        view = await self._wait_plan(conclusion="success", sha=sha, hub=("uni-a", "prod"))
        self.notes.append(f"{PLAN_CHECK} on {short(sha)} succeeded; the plan now has support+prod")
        review = await self.stack.control(
            "POST", f"/pulls/{self.number}/reviews", {"user": ENGINEER, "state": "APPROVED"}
        )
        answer = await self.stack.control("POST", f"/pulls/{self.number}/merge", {"user": ENGINEER})
        self.merge_sha = str(answer["sha"])
        after = max(latest_id(view), int(review["id"]))
        self._act(after, ENGINEER, f"merged into main as {short(self.merge_sha)}")
        self.notes.append(f"approved and merged: main is now {short(self.merge_sha)}")

    async def rollout(self) -> None:
        """Deployments of the merge commit: support, staging, then prod; comment and check."""
        targets = ("uni-a/support", "uni-a/staging", "uni-a/prod")
        sha = self.merge_sha

        def done(view: Mapping[str, Any]) -> Any:
            deps = [pullview.deployment(view, env, sha) for env in targets]
            run = pullview.latest_run(view, DEPLOY_CHECK, sha)
            settled = all(d is not None and pullview.final_state(d) != "pending" for d in deps)
            checked = run is not None and run["status"] == "completed"
            return (
                view
                if settled and checked and pullview.progress_done(view, self.bot, sha)
                else None
            )

        view = await self.stack.wait_for(
            lambda: self.stack.pull(self.number),
            done,
            expected=f"deployments of {short(sha)} to {', '.join(targets)}, {DEPLOY_CHECK}, "
            "and the progress comment saying they are done",
            describe=lambda v: pullview.describe_rollout(v, sha, self.bot),
            within=self.timeout,
        )
        deps = {env: pullview.deployment(view, env, sha) for env in targets}
        for env in targets:
            dep = deps[env]
            assert dep is not None
            if pullview.final_state(dep) != "success":
                raise StepFailed(f"{env} deployed successfully", pullview.describe_deployment(dep))
            self.notes.append(f"{env} at {short(sha)}: {statuses_line(dep)}")
        pullview.check_order(deps)
        self.notes.append("in order: support before staging, staging done before prod started")
        prod = deps["uni-a/prod"]
        if prod is None or not prod.get("production_environment"):
            raise StepFailed("uni-a/prod marked as a production environment", "it is not")
        self.notes += await self._log_summary(prod)
        run = pullview.latest_run(view, DEPLOY_CHECK, sha)
        assert run is not None
        if run["conclusion"] != "success":
            raise StepFailed(f"{DEPLOY_CHECK} concluded success", f"{run['conclusion']}")
        self.notes.append(f"{DEPLOY_CHECK} on {short(sha)} concluded success")
        self.notes.append(f"the progress comment: {pullview.progress_heading(view, self.bot, sha)}")

    # ---- helpers --------------------------------------------------------------------------
    async def _push(
        self, user: str, files: dict[str, str], message: str, before: Mapping[str, Any]
    ) -> str:
        answer = await self.stack.control(
            "POST",
            f"/pulls/{self.number}/commits",
            {"files": files, "message": message, "user": user},
        )
        sha = str(answer["sha"])
        self._act(latest_id(before), user, f"pushed {short(sha)}: {message}", _files(*files))
        return sha

    def _file(self, path: str) -> str:
        """A file as the example has it (the double never writes its working tree)."""
        return (self.repo / path).read_text(encoding="utf-8")

    async def _wait_plan(
        self, *, conclusion: str, sha: str | None = None, hub: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        def done(view: Mapping[str, Any]) -> Any:
            head = sha or view["head"]["sha"]
            run = pullview.plan_run(view, head)
            comment = pullview.plan_comment(view, self.bot)
            if run is None or run["status"] != "completed" or comment is None:
                return None
            if run["conclusion"] != conclusion:
                return None
            if hub is not None and not pullview.names_hub(comment["body"], *hub):
                return None
            if conclusion == "failure" and "error" not in comment["body"].lower():
                return None
            return view

        what = f"{PLAN_CHECK} concluded {conclusion}" + (f" on {short(sha)}" if sha else "")
        if hub:
            what += f", and the plan comment naming {hub[0]}/{hub[1]}"
        view: dict[str, Any] = await self.stack.wait_for(
            lambda: self.stack.pull(self.number),
            done,
            expected=what,
            describe=lambda v: pullview.describe_plan(v, sha or v["head"]["sha"], self.bot),
            within=self.timeout,
        )
        return view

    async def _log_summary(self, dep: Mapping[str, Any]) -> list[str]:
        """What the deploy's log (its `log_url`, served by the bot) says the renderer did."""
        urls = [s["log_url"] for s in dep.get("statuses") or () if s.get("log_url")]
        if not urls:
            return []
        async with self.stack.http.get(urls[-1]) as resp:
            text = await resp.text() if resp.status == 200 else ""
        found = [" ".join(line.split()) for line in LOG_SUMMARY.findall(text)]
        if not found:
            raise StepFailed(
                f"the log of {dep['environment']} to show what was rendered", text[-300:] or "none"
            )
        return [f"  {dep['environment']}'s log: {'; '.join(found)}"]

    def _act(self, after: int, actor: str, text: str, detail: str = "") -> None:
        self.actions.append(Action(after, actor, text, detail))


def _files(*paths: str) -> str:
    return "\n".join(f"M {p}" for p in paths)


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise StepFailed(f"the example's file to contain {old!r}", "it does not")
    return text.replace(old, new, 1)
