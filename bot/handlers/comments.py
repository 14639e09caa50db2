"""Slash commands in PR comments: `/deploy`, `/plan`, `/unlock`, `/cancel`, `/help`.

Only `issue_comment` `created` on a pull request runs anything: edits and
deletions never do (nothing is routed for them), nor do comments by bots, the
app's own included, so the bot never answers itself. A comment with commands gets
👀 at once, its commands run in order (a refused one does not stop the next),
then exactly one reply groups every result and every line that was not
understood, and the comment gets 🚀 if everything succeeded, 😕 otherwise.
Who may do what is decided by `bot.core.permissions`, over the settings of the
default branch only: a PR cannot grant itself rights by editing `hubbot.yaml`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gidgethub
from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from bot.core.commands import Command, Unknown, help_text, parse_comment
from bot.core.permissions import may_cancel, may_unlock
from bot.github.client import AmbiguousWrite
from bot.github.comments import find_comment, fit
from bot.github.reactions import DONE, FAILED, SEEN, Reaction, react
from bot.handlers.command_context import CommentRun, Refused
from bot.handlers.context import PayloadError, Services
from bot.handlers.deploy_command import run_deploy
from bot.handlers.pull_requests import describe_failure, plan_pull_request

logger = logging.getLogger(__name__)

router = routing.Router()

Outcome = Literal["ok", "refused", "failed", "unknown"]
ICONS: Mapping[Outcome, str] = {"ok": "✅", "refused": "🚫", "failed": "❌", "unknown": "❓"}
REPLY_MARKER = "<!-- hubbot:reply {comment_id} -->"
# A comment runs at most this many commands, and its reply lists at most this many lines:
# anyone may comment, and one comment must not queue unbounded work.
MAX_COMMANDS = 10
MAX_LINES = 30
MAX_ECHO = 120


@dataclass(frozen=True, slots=True)
class Result:
    """How one line of the comment ended, for the reply."""

    line: int
    text: str
    outcome: Outcome
    message: str


def is_bot(comment: Mapping[str, Any], app_id: str | None) -> bool:
    """Whether a comment was written by a bot (any app, ours included)."""
    user = comment.get("user")
    if not isinstance(user, Mapping):
        return False
    login = user.get("login")
    if user.get("type") == "Bot" or (isinstance(login, str) and login.endswith("[bot]")):
        return True
    app = comment.get("performed_via_github_app")
    return isinstance(app, Mapping) and app_id is not None and str(app.get("id")) == str(app_id)


@router.register("issue_comment", action="created")
async def on_comment(event: sansio.Event, gh: GitHubAPI, *args: Any, services: Services) -> None:
    """Run the slash commands of a new PR comment, react, and reply once."""
    data = event.data
    issue, comment = data.get("issue"), data.get("comment")
    if not isinstance(issue, Mapping) or not isinstance(comment, Mapping):
        raise PayloadError("issue_comment payload lacks its issue or comment")
    if not issue.get("pull_request"):
        logger.debug("a comment on issue #%s, not a pull request: ignored", issue.get("number"))
        return
    if is_bot(comment, services.app_id):
        logger.debug("a comment by a bot: ignored")
        return
    body = comment.get("body")
    parsed = parse_comment(body if isinstance(body, str) else "")
    if not parsed:
        return
    run = CommentRun(gh, services, data, delivery=event.delivery_id or "")
    marker = REPLY_MARKER.format(comment_id=run.comment_id)
    if await find_comment(run.gh, run.comments_url, marker, services.app_id):
        # GitHub signs a delivery's body, not its id: a redelivery (after a restart emptied
        # the dedupe cache) or a replay must not run `/deploy …@sha` a second time.
        logger.info(
            "comment %s was answered already: its commands do not run again", run.comment_id
        )
        return
    if parsed.commands:
        await _react(run, SEEN)
    results = [unknown_result(u) for u in parsed.unknown[:MAX_LINES]]
    for command in parsed.commands[:MAX_COMMANDS]:
        results.append(await run_command(run, command))
    results += [
        Result(c.line, c.text, "refused", f"not run: at most {MAX_COMMANDS} commands a comment")
        for c in parsed.commands[MAX_COMMANDS:MAX_LINES]
    ]
    results.sort(key=lambda r: r.line)
    await reply(run, render_reply(run.login, results))
    # Lines past the caps are never all "ok": a capped comment ends 😕.
    all_ok = all(r.outcome == "ok" for r in results)
    await _react(run, DONE if all_ok else FAILED)


async def _react(run: CommentRun, content: Reaction) -> None:
    """React to the comment; a reaction GitHub would not take never stops the commands."""
    try:
        await react(run.gh, run.comment_url, content)
    except gidgethub.GitHubException as exc:
        logger.warning("could not react %s to the comment: %s", content, describe_failure(exc))


def unknown_result(unknown: Unknown) -> Result:
    """A line that was not understood, with its "did you mean"."""
    hint = f"; did you mean `{unknown.suggestion}`?" if unknown.suggestion else ""
    return Result(unknown.line, unknown.text, "unknown", f"{unknown.problem}{hint} See `/help`.")


CommandFn = Callable[[CommentRun, Command], Awaitable[str]]


async def run_command(run: CommentRun, command: Command) -> Result:
    """Run one command; a refusal or a failure becomes its result, never an exception."""
    try:
        message = await COMMANDS[command.name](run, command)
    except Refused as exc:
        return Result(command.line, command.text, "refused", str(exc))
    except Exception as exc:
        # The boundary between one user's command and the bot: the commenter always gets an
        # answer and later commands still run; the traceback goes to the log once, here.
        if not isinstance(exc, gidgethub.GitHubException | PayloadError):
            logger.exception("%s failed", command.text)
        else:
            logger.warning("%s failed: %s", command.text, describe_failure(exc))
        return Result(command.line, command.text, "failed", describe_failure(exc))
    return Result(command.line, command.text, "ok", message)


async def run_help(run: CommentRun, command: Command) -> str:
    """`/help`: the command table."""
    return "\n\n" + help_text()


async def run_plan(run: CommentRun, command: Command) -> str:
    """`/plan`: re-plan the PR as it is now, refreshing the plan comment and check."""
    fresh = await run.pull()
    if not fresh.open:
        raise Refused(f"this pull request is {fresh.pr.state}: there is nothing to re-plan")
    await plan_pull_request(run.gh, run.services, fresh.pr)
    return (
        f"re-planned at `{fresh.pr.head_sha[:7]}`: the plan comment and the `hubbot/plan` "
        "check are up to date"
    )


async def run_unlock(run: CommentRun, command: Command) -> str:
    """`/unlock [<cluster>/<hub> ...]`: release this PR's claims, or the named ones."""
    deploys = run.services.deploys
    claims = await deploys.claims(run.gh, run.repo, fresh=True, settings=await run.settings())
    fresh = await run.pull()
    free: list[str] = []
    if not command.targets:
        mine = sorted(c.environment for c in claims.values() if c.pr == run.number)
        if not mine:
            return f"#{run.number} holds no staging claims: nothing to unlock"
        wanted = {run.number: mine}
    else:
        wanted = {}
        for target in command.targets:
            claim = claims.get(target.key)
            if claim is None:
                free.append(target.key)
            else:
                wanted.setdefault(claim.pr, []).append(target.key)
        if not wanted:
            return f"{_names(free)} {_was(free)} not claimed: nothing to unlock"
    actor = await run.actor()
    for holder, envs in wanted.items():
        if holder == run.number:
            decision = may_unlock(actor, holder_authors=[fresh.author])
            if not decision.allowed:
                raise Refused(decision.reason)
        elif not actor.can_write:
            raise Refused(
                f"{_names(envs)} {_was(envs)} claimed by "
                f"{run.pull_link(holder)}, not this PR: from here only someone with write access "
                f"may release another PR's claim (its author can `/unlock` on #{holder})"
            )
    released: list[str] = []
    for holder, envs in wanted.items():
        reason = f"/unlock by @{run.login} on #{run.number}"
        # Without names, all of this PR's claims go, previews still running included.
        environments = None if not command.targets else envs
        done = await deploys.release_claims(
            run.gh, run.repo, pr=holder, environments=environments, reason=reason
        )
        released += [c.environment for c in done]
    if not released:
        return "nothing was claimed any more: nothing to unlock"
    message = f"released {_names(sorted(set(released)))}"
    return message + (f"; {_names(free)} {_was(free)} not claimed" if free else "")


async def run_cancel(run: CommentRun, command: Command) -> str:
    """`/cancel`: stop this PR's deploys; of its merge's rollout, the targets not started."""
    deploys = run.services.deploys
    started = deploys.started_by(run.repo, run.number, merges=True)
    if not started:
        return f"nothing of #{run.number} is queued or running: nothing to cancel"
    decision = may_cancel(await run.actor(), started_by=started)
    if not decision.allowed:
        raise Refused(decision.reason)
    steps = await deploys.cancel_pr(run.repo, run.number, actor=run.login, merges=True)
    left = deploys.merge_running(run.repo, run.number)
    still = (
        f"; {_names(left)} {_was(left, 'keeps', 'keep')} running: a merge's deploy that has "
        "started is not stopped mid-upgrade"
        if left
        else ""
    )
    if not steps:
        return "nothing was waiting any more: nothing to cancel" + still
    return f"cancelled {_names(sorted({s.key for s in steps}))}" + still


COMMANDS: Mapping[str, CommandFn] = {
    "help": run_help,
    "plan": run_plan,
    "deploy": run_deploy,
    "unlock": run_unlock,
    "cancel": run_cancel,
}


def _names(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _was(keys: list[str], one: str = "is", many: str = "are") -> str:
    return one if len(keys) == 1 else many


def render_reply(login: str, results: list[Result]) -> str:
    """The one reply to a comment: each line's result, in the comment's order."""
    parts = [f"@{login}"]
    for r in results:
        sep = "" if r.message.startswith("\n") else " "
        word = {"ok": "", "refused": "refused: ", "failed": "failed: ", "unknown": ""}[r.outcome]
        parts.append(f"{ICONS[r.outcome]} **`{echo(r.text)}`**{sep}{word}{r.message}")
    return "\n\n".join(parts)


def echo(text: str) -> str:
    """A commenter's line, safe inside a code span: no backticks, bounded length."""
    text = text.replace("`", "'")
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"


async def reply(run: CommentRun, body: str) -> None:
    """Post the reply, once: after an ambiguous failure, look for it before posting again."""
    marker = REPLY_MARKER.format(comment_id=run.comment_id)
    body = fit(f"{marker}\n{body}")
    for _attempt in range(3):
        try:
            await run.gh.post(run.comments_url, data={"body": body})
            return
        except AmbiguousWrite:
            logger.warning("posting the reply may have failed; looking before retrying")
        if await find_comment(run.gh, run.comments_url, marker, run.services.app_id):
            return
    raise gidgethub.GitHubException("could not post the reply to the command")
