"""`hubbot demo`: run the whole loop on loopback, check every step, print and save the transcript.

Exit codes: 0 every step behaved as expected, 1 a step failed (which, what was
expected, what was seen), 2 the demo could not start (no example, no git).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from bot.demo.example import ExampleError, prepare_repository
from bot.demo.page import StepReport, render_page
from bot.demo.stack import Stack, StepFailed, start_stack
from bot.demo.tools import Tools, deploy_environment, find_tools
from bot.demo.transcript import render_text
from bot.demo.walk import ENGINEER, PARTNER, STAGING, USERS, Walk

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
HTML_NAME = "hubbot-demo.html"
LOG_NAME = "hubbot.log"
RULE = "─" * 78


@dataclass
class Outcome:
    """What the walk did: step reports, the final view of the PR, and the walk itself."""

    steps: list[StepReport] = field(default_factory=list)
    view: dict[str, Any] | None = None
    walk: Walk | None = None

    @property
    def passed(self) -> bool:
        """Whether every step ran and behaved as expected."""
        return bool(self.steps) and all(s.status == "passed" for s in self.steps)


def run_demo(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run `hubbot demo`; returns the exit code."""
    stdout = out or sys.stdout
    started = time.monotonic()
    tools = find_tools()
    html = html_path(args.html)
    with workdir(args.workdir) as (root, keep):
        logs = _capture_logs(root / LOG_NAME)
        _say(stdout, "hubbot demo: the life of a change, on the embedded example repository")
        for note in tools.notes:
            _say(stdout, f"  · {note}")
        try:
            outcome = asyncio.run(_run(args, root, tools, stdout))
        except ExampleError as exc:
            print(f"hubbot demo: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            _say(stdout, "interrupted")
            return EXIT_INTERRUPTED
        finally:
            logs.close()
        seconds = time.monotonic() - started
        _write_html(html, outcome, tools, seconds, stdout)
        if not outcome.passed:
            for line in logs.warnings[-12:]:
                _say(stdout, f"  bot: {line}")
            keep.append(root)
            _say(stdout, f"the demo's files are kept for a look: {root} (bot log: {LOG_NAME})")
            return EXIT_FAILED
        _say(stdout, f"every step behaved as expected, in {seconds:.1f} s in all")
        return EXIT_OK


async def _run(args: argparse.Namespace, root: Path, tools: Tools, stdout: TextIO) -> Outcome:
    repo = root / "infrastructure"
    began = time.monotonic()
    prepare_repository(repo, tools.commands)
    outcome = Outcome()
    with _environment(deploy_environment(tools, repo, os.environ)):
        stack = await start_stack(repo, users=USERS)
        try:
            _say(stdout, f"  · repository: {repo} (a fresh git repository, branch main)")
            _say(stdout, f"  · GitHub double: {stack.sandbox.api_url} (control API: /_sandbox)")
            _say(stdout, f"  · hubbot serve: {stack.bot_url} (webhooks signed with a new secret)")
            _say(stdout, f"  · ready in {time.monotonic() - began:.2f} s\n")
            walk = Walk(stack, repo, args.timeout, bot=stack.sandbox.bot_login)
            outcome.walk = walk
            await _walk(walk, outcome, stdout)
            if walk.number:
                outcome.view = await stack.pull(walk.number)
                _say(stdout, f"\n{RULE}\nThe pull request, as a reviewer sees it\n{RULE}")
                _say(stdout, render_text(outcome.view, walk.actions, edited=walk.edited))
            if args.keep_running and outcome.passed:
                status_page = await _answers(stack, f"{stack.bot_url}/")
                _say(stdout, keep_running_help(stack, repo, walk.number, status_page=status_page))
                await _until_signal()
        finally:
            await stack.close()
    return outcome


async def _walk(walk: Walk, outcome: Outcome, stdout: TextIO) -> None:
    steps = walk.steps()
    for number, (title, run) in enumerate(steps, start=1):
        walk.notes = []
        began = time.monotonic()
        try:
            await run()
        except StepFailed as exc:
            seconds = time.monotonic() - began
            report = StepReport(
                number, title, "failed", seconds, tuple(walk.notes), exc.expected, exc.seen
            )
            outcome.steps.append(report)
            _say(stdout, f"✘ {number}. {title} — failed after {seconds:.2f} s")
            _say(stdout, f"     expected: {exc.expected}")
            _say(stdout, f"     seen:     {exc.seen}")
            for later, (rest, _) in enumerate(steps[number:], start=number + 1):
                outcome.steps.append(StepReport(later, rest, "not run", 0.0))
                _say(stdout, f"  {later}. {rest} — not run")
            return
        seconds = time.monotonic() - began
        outcome.steps.append(StepReport(number, title, "passed", seconds, tuple(walk.notes)))
        _say(stdout, f"✔ {number}. {title:<66} {seconds:6.2f} s")
        for note in walk.notes:
            _say(stdout, f"     {note}")


async def _answers(stack: Stack, url: str) -> bool:
    """Whether a GET of `url` answers 200 (the status page is optional)."""
    try:
        async with stack.http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


def keep_running_help(stack: Stack, repo: Path, number: int, *, status_page: bool) -> str:
    """The commands to keep poking the running double and bot."""
    control = stack.control_url
    post = "curl -s -X POST -H 'Content-Type: application/json'"
    body = "jupyterhub:\\n  singleuser:\\n    memory:\\n      limit: 3G\\n"
    return "\n".join(
        [
            RULE,
            "The GitHub double and the bot keep running (Ctrl-C stops everything). Try these,",
            "one at a time, looking at the PR in between:",
            f"  CONTROL={control}",
            f"  curl -s $CONTROL/pulls/{number}                     # the PR above, as JSON",
            f'  {post} $CONTROL/branches -d \'{{"name": "more", "user": "{PARTNER}", '
            f'"files": {{"{STAGING}": "{body}"}}}}\'',
            f'  {post} $CONTROL/pulls -d \'{{"head": "more", "title": "More memory", '
            f'"user": "{PARTNER}"}}\'',
            f'  {post} $CONTROL/pulls/{number + 1}/comments -d \'{{"user": "{PARTNER}", '
            '"body": "/deploy staging"}\'',
            f'  {post} $CONTROL/pulls/{number + 1}/merge -d \'{{"user": "{ENGINEER}"}}\'',
            f"  curl -s $CONTROL/pulls/{number + 1}",
            "  curl -s $CONTROL/deployments; curl -s $CONTROL/deliveries",
            "  the bot: "
            + (f"{stack.bot_url}/ (status page), " if status_page else "")
            + f"{stack.bot_url}/metrics, {stack.bot_url}/readyz",
            f"  the repository: git -C {repo} log --oneline --graph main",
            "  the control API: docs/sandbox.md",
        ]
    )


def html_path(given: str | None) -> Path:
    """Where the HTML transcript goes: as given, else here, else a temporary folder."""
    if given:
        return Path(given).expanduser().resolve()
    here = Path.cwd()
    if os.access(here, os.W_OK):
        return here / HTML_NAME
    return Path(tempfile.mkdtemp(prefix="hubbot-demo-")) / HTML_NAME


@contextlib.contextmanager
def workdir(given: str | None) -> Iterator[tuple[Path, list[Path]]]:
    """The demo's folder: `given` (kept), or a temporary one removed unless a step failed."""
    if given:
        root = Path(given).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        yield root, [root]
        return
    root = Path(tempfile.mkdtemp(prefix="hubbot-demo-"))
    keep: list[Path] = []
    try:
        yield root, keep
    finally:
        if root not in keep:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Run with `env` as the process environment (the local executor copies it), then restore."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class _Logs:
    handlers: list[logging.Handler]
    warnings: list[str]

    def close(self) -> None:
        for handler in self.handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _capture_logs(path: Path) -> _Logs:
    """The bot's log to a file; its warnings and errors also kept for a failure report."""
    from bot.web.logs import FORMAT, install_record_factory

    install_record_factory()
    warnings: list[str] = []
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = [handler, Keep()]
    for each in handlers:
        root.addHandler(each)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return _Logs(handlers, warnings)


def _write_html(path: Path, outcome: Outcome, tools: Tools, seconds: float, stdout: TextIO) -> None:
    page = render_page(
        view=outcome.view,
        actions=outcome.walk.actions if outcome.walk else [],
        steps=outcome.steps,
        notes=tools.notes,
        passed=outcome.passed,
        seconds=seconds,
        edited=outcome.walk.edited if outcome.walk else (),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        _say(stdout, f"could not write the HTML transcript to {path}: {exc.strerror}")
        return
    _say(stdout, f"HTML transcript: {path}")


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _say(stdout: TextIO, line: str) -> None:
    stdout.write(line + "\n")
    stdout.flush()
