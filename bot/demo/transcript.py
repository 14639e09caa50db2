"""The pull request as a reviewer sees it, as text: the conversation in order, then the checks.

The double numbers everything it creates (comments, reviews, check runs,
deployments, statuses) from one counter, so ids give the order things appeared
in, to the request. What the demo did as a person (pushes, the merge) is placed
by the highest id visible just before it acted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

REACTIONS = {
    "+1": "👍",
    "-1": "👎",
    "laugh": "😄",
    "confused": "😕",
    "heart": "❤️",
    "hooray": "🎉",
    "rocket": "🚀",
    "eyes": "👀",
}


@dataclass(frozen=True, slots=True)
class Action:
    """Something the demo did as a person, placed after every object with an id <= `after`."""

    after: int
    actor: str
    text: str
    detail: str = ""  # e.g. the files a push changed


@dataclass(frozen=True, slots=True)
class Entry:
    """One item of the conversation: a comment, review, deployment or action."""

    kind: str  # "comment", "review", "deployment", "action"
    data: Any


def latest_id(view: Mapping[str, Any]) -> int:
    """The highest id of anything visible on the pull request."""
    ids = [0]
    for key in ("comments", "reviews", "check_runs", "deployments"):
        ids += [int(item["id"]) for item in view.get(key) or ()]
    for dep in view.get("deployments") or ():
        ids += [int(s["id"]) for s in dep.get("statuses") or ()]
    return max(ids)


def conversation(view: Mapping[str, Any], actions: list[Action]) -> list[Entry]:
    """Comments, reviews, deployments and the demo's actions, in the order they happened."""
    keyed: list[tuple[tuple[int, int], Entry]] = []
    for kind, key in (
        ("comment", "comments"),
        ("review", "reviews"),
        ("deployment", "deployments"),
    ):
        keyed += [((int(item["id"]), 0), Entry(kind, item)) for item in view.get(key) or ()]
    keyed += [((a.after, 1), Entry("action", a)) for a in actions]
    keyed.sort(key=lambda pair: pair[0])
    return [entry for _, entry in keyed]


def short(sha: str | None) -> str:
    """A commit as GitHub shows it: seven hex digits."""
    return (sha or "")[:7]


def terminal_markdown(body: str) -> str:
    """A comment's markdown, readable in a terminal: hidden markers and HTML tags removed."""
    text = re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL)
    text = re.sub(r"<summary>(.*?)</summary>", r"▸ \1", text, flags=re.DOTALL)
    text = re.sub(r"</?code>", "`", text)
    text = re.sub(r"</?(details|summary|br|b|i|em|strong|sub|sup|p)\s*/?>", "", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def reactions_line(reactions: list[Mapping[str, Any]]) -> str:
    """`👀 hubbot[bot] · 🚀 hubbot[bot]`, in the order they were given."""
    return " · ".join(f"{REACTIONS.get(r['content'], r['content'])} {r['user']}" for r in reactions)


def statuses_line(dep: Mapping[str, Any]) -> str:
    """A deployment's states in order: `queued → in_progress → success`."""
    return " → ".join(str(s["state"]) for s in dep.get("statuses") or ()) or "(no status yet)"


def deployment_title(dep: Mapping[str, Any]) -> str:
    """`uni-a/staging (preview) at 1a2b3c4`, `uni-a/prod (production) at 1a2b3c4`."""
    kind = ""
    if dep.get("transient_environment"):
        kind = " (preview)"
    elif dep.get("production_environment"):
        kind = " (production)"
    return f"{dep['environment']}{kind} at {short(dep.get('sha'))}"


def deployment_url(dep: Mapping[str, Any]) -> str | None:
    """The last environment URL a status gave."""
    urls = [s.get("environment_url") for s in dep.get("statuses") or () if s.get("environment_url")]
    return str(urls[-1]) if urls else None


def is_edited(comment: Mapping[str, Any], edited: Collection[int]) -> bool:
    """Whether a comment was edited (seen changing, or its timestamps say so)."""
    return int(comment["id"]) in edited or comment["updated_at"] != comment["created_at"]


def render_text(
    view: Mapping[str, Any], actions: list[Action], *, edited: Collection[int] = ()
) -> str:
    """The whole pull request as plain text, for the terminal."""
    return "\n".join(_text_lines(view, actions, edited)) + "\n"


def _text_lines(
    view: Mapping[str, Any], actions: list[Action], edited: Collection[int]
) -> Iterator[str]:
    state = "merged" if view.get("merged") else str(view.get("state"))
    yield f"#{view['number']} {view['title']}  [{state}]"
    yield f"opened by {view['user']}: {view['head']['ref']} → {view['base']['ref']}"
    yield ""
    for entry in conversation(view, actions):
        yield from _entry_lines(entry, edited)
        yield ""
    yield "Checks"
    for run in view.get("check_runs") or ():
        yield from _check_lines(run)


def _entry_lines(entry: Entry, edited: Collection[int]) -> Iterator[str]:
    item = entry.data
    if entry.kind == "action":
        yield f"● {item.actor} {item.text}"
        for line in item.detail.splitlines():
            yield f"    {line}"
    elif entry.kind == "comment":
        flag = " (edited)" if is_edited(item, edited) else ""
        yield f"💬 {item['user']} commented{flag}:"
        for line in terminal_markdown(item["body"]).splitlines():
            yield f"  │ {line}".rstrip()
        if item["reactions"]:
            yield f"  └ {reactions_line(item['reactions'])}"
    elif entry.kind == "review":
        verb = {"APPROVED": "approved these changes", "CHANGES_REQUESTED": "requested changes"}
        yield f"✅ {item['user']} {verb.get(item['state'], 'reviewed')}"
    elif entry.kind == "deployment":
        url = deployment_url(item)
        yield f"🚀 {item['creator']} deployed {deployment_title(item)}: {statuses_line(item)}"
        if url:
            yield f"    {url}"


def _check_lines(run: Mapping[str, Any]) -> Iterator[str]:
    outcome = run.get("conclusion") or run.get("status")
    title = (run.get("output") or {}).get("title") or ""
    yield f"  {run['name']} on {short(run['head_sha'])}: {outcome} — {title}".rstrip(" —")
    for note in run.get("annotations") or ():
        yield (
            f"    {note['path']}:{note['start_line']}: {note['annotation_level']}: "
            f"{note.get('message', '')}"
        )
