"""Slash commands in PR comments: parsing only, no permissions and no I/O.

A command is a line that starts with `/` followed by a word (`/deploy staging`).
Lines inside block quotes, fenced or indented code and HTML comments are not
commands, so quoting someone's `/deploy` never runs it again. Several commands in
one comment run in order. Anything that looks like a command but is not one
becomes an `Unknown` with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

COMMANDS = ("deploy", "plan", "unlock", "cancel", "help")

# `/word` at the start of a line, then whitespace or the end: `/usr/bin` is not a command.
_COMMAND_LINE = re.compile(r"^ {0,3}/(?P<name>[A-Za-z][\w-]*)(?=\s|$)(?P<rest>.*)$")
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
_TARGET = re.compile(r"^(?P<cluster>[a-z0-9][a-z0-9._-]*)/(?P<hub>[a-z0-9][a-z0-9._-]*)$")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True, slots=True)
class Target:
    """A `cluster/hub` named in a command, optionally pinned to a commit."""

    cluster: str
    hub: str
    sha: str | None = None

    @property
    def key(self) -> str:
        """`cluster/hub`."""
        return f"{self.cluster}/{self.hub}"


@dataclass(frozen=True, slots=True)
class Command:
    """One recognised command, with its line in the comment (1-based)."""

    name: str
    args: tuple[str, ...]
    line: int
    staging: bool = False  # `/deploy staging`
    targets: tuple[Target, ...] = ()  # `/deploy c/h ...`, `/unlock c/h`

    @property
    def text(self) -> str:
        """The command as written, normalised."""
        return " ".join(("/" + self.name, *self.args))


@dataclass(frozen=True, slots=True)
class Unknown:
    """A line that looked like a command but is not a valid one."""

    text: str
    line: int
    problem: str
    suggestion: str | None = None


@dataclass(slots=True)
class Parsed:
    """Every command of a comment, in order, and the lines that were not understood."""

    commands: list[Command] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.commands or self.unknown)


def command_lines(body: str) -> list[tuple[int, str]]:
    """Lines that may hold commands: not quoted, not code, not inside HTML comments."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    in_html_comment = False
    for number, raw in enumerate(body.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw
        if fence is not None:
            match = _FENCE.match(line)
            if match and match.group("fence")[0] == fence[0] and len(match["fence"]) >= len(fence):
                if not line.strip().lstrip(fence[0]):
                    fence = None
            continue
        if in_html_comment:
            end = line.find("-->")
            if end < 0:
                continue
            in_html_comment = False
            line = line[end + 3 :]
        stripped = _strip_html_comments(line)
        if stripped is None:
            in_html_comment = True
            continue
        line = stripped
        match = _FENCE.match(line)
        if match:
            fence = match.group("fence")
            continue
        if line.startswith(("    ", "\t")) or line.lstrip().startswith(">"):
            continue
        lines.append((number, line))
    return lines


def _strip_html_comments(line: str) -> str | None:
    """The line without complete `<!-- -->` comments; None if a comment opens and stays open."""
    while True:
        start = line.find("<!--")
        if start < 0:
            return line
        end = line.find("-->", start + 4)
        if end < 0:
            return None if not line[:start].strip() else line[:start]
        line = line[:start] + line[end + 3 :]


def parse_comment(body: str) -> Parsed:
    """Every command in a comment body, in order, plus near-misses with suggestions."""
    parsed = Parsed()
    for number, line in command_lines(body):
        match = _COMMAND_LINE.match(line)
        if not match:
            continue
        name = match["name"].lower()
        args = tuple(match["rest"].split())
        if name not in COMMANDS:
            close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.6)
            parsed.unknown.append(
                Unknown(
                    text=line.strip(),
                    line=number,
                    problem=f"`/{name}` is not a hubbot command",
                    suggestion=f"/{close[0]}" if close else None,
                )
            )
            continue
        result = _parse_args(name, args, number, line.strip())
        if isinstance(result, Unknown):
            parsed.unknown.append(result)
        else:
            parsed.commands.append(result)
    return parsed


def _parse_args(name: str, args: tuple[str, ...], number: int, text: str) -> Command | Unknown:
    if name in ("plan", "cancel", "help"):
        if args:
            return Unknown(text, number, f"`/{name}` takes no arguments", f"/{name}")
        return Command(name, args, number)
    if name == "unlock":
        targets = []
        for arg in args:
            target = _target(arg, allow_sha=False)
            if target is None:
                return Unknown(
                    text, number, f"`{arg}` is not a `<cluster>/<hub>`", "/unlock <cluster>/<hub>"
                )
            targets.append(target)
        return Command(name, args, number, targets=tuple(targets))
    # deploy
    if not args:
        return Unknown(text, number, "`/deploy` needs a target", "/deploy staging")
    if len(args) == 1 and args[0].lower() == "staging":
        return Command(name, ("staging",), number, staging=True)
    targets = []
    for arg in args:
        target = _target(arg, allow_sha=True)
        if target is None:
            return Unknown(text, number, f"`{arg}` is not a deploy target", _deploy_hint(arg))
        targets.append(target)
    return Command(name, args, number, targets=tuple(targets))


def _target(arg: str, *, allow_sha: bool) -> Target | None:
    key, _, sha = arg.partition("@")
    match = _TARGET.match(key)
    if not match:
        return None
    if sha:
        if not allow_sha or not _SHA.match(sha.lower()):
            return None
        return Target(match["cluster"], match["hub"], sha.lower())
    return Target(match["cluster"], match["hub"])


def _deploy_hint(arg: str) -> str:
    lowered = arg.lower()
    if difflib.get_close_matches(lowered, ["staging"], n=1, cutoff=0.6):
        return "/deploy staging"
    if lowered in ("prod", "production", "all", "main"):
        return "/deploy <cluster>/<hub>@<sha>"
    if "@" in arg:
        return "/deploy <cluster>/<hub>@<sha of the default branch>"
    return "/deploy <cluster>/<hub>"


HELP_ROWS = (
    (
        "/deploy staging",
        "a partner of the hubs, or anyone with write access",
        "deploys this PR's head to the staging hubs of every cluster the plan touches",
    ),
    (
        "/deploy <cluster>/<hub>",
        "same; staging hubs only from a PR",
        "deploys this PR's head to that staging hub",
    ),
    (
        "/deploy <cluster>/<hub>@<sha>",
        "write access",
        "redeploys a commit of the default branch to any hub (redeploy or roll back)",
    ),
    ("/plan", "anyone", "re-plans this PR and refreshes the plan comment and check"),
    (
        "/unlock [<cluster>/<hub>]",
        "the author of the PR holding the claim, or write access",
        "releases staging claims",
    ),
    (
        "/cancel",
        "whoever started the deploys, or write access",
        "cancels queued and running deploys of this PR (of its merge: those not started)",
    ),
    ("/help", "anyone", "shows this table"),
)


def help_text() -> str:
    """The `/help` reply: every command, who may run it, and what it does."""
    rows = "\n".join(f"| `{c}` | {who} | {what} |" for c, who, what in HELP_ROWS)
    return (
        "| command | who may run it | what it does |\n|---|---|---|\n"
        + rows
        + "\n\nA command is a line starting with `/`. "
        "Quoted lines, code blocks and HTML comments are ignored."
    )
