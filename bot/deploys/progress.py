"""What people see of a rollout, as pure data and text: targets, their states, the words used.

An `Origin` is one request to deploy (a merge, a PR preview, an engineer's redeploy).
Each of its targets is a `TargetRecord`: one attempt to deploy one release at one SHA,
with its GitHub Deployment. When a newer merge coalesces into a waiting wave, the record
at the older SHA is superseded by a new record at the newer SHA, and every origin that
asked for that target follows it. The reporter renders the PR comment and the check run
from these; nothing here does I/O, and no log text ever goes into what is rendered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["merge", "preview", "redeploy"]
DEPLOY_MARKER = "<!-- hubbot:deploy -->"
DEPLOY_CHECK = "hubbot/deploy"
FINAL = frozenset({"success", "failure", "error", "cancelled", "blocked", "skipped"})
MAX_SECTIONS = 5  # origins shown per PR comment, newest first

_ICONS = {
    "queued": "⏳ queued",
    "running": "🔄 running",
    "success": "✅ deployed",
    "skipped": "➖ skipped",
    "failure": "❌ failed",
    "error": "⚠️ error",
    "cancelled": "🚫 cancelled",
    "blocked": "⛔ not deployed",
    "superseded": "⏭️ superseded",
}


@dataclass(slots=True)
class TargetRecord:
    """One attempt to deploy one release at one SHA, and what became of it."""

    key: str  # cluster/hub or cluster/support
    cluster: str
    hub: str | None
    stage: str
    sha: str
    wave: int
    attempt: str  # a random id: ties the Deployment, the job and the log together
    origin: int  # the newest origin that asked for it (its payload describes it)
    state: str = "queued"
    detail: str = ""
    started: float | None = None  # time.monotonic() when it started
    ended: float | None = None  # time.monotonic() when it ended
    seconds: float | None = None
    log_url: str | None = None
    environment_url: str | None = None
    note: str = ""  # e.g. "requeued after hubbot restarted"

    @property
    def done(self) -> bool:
        """Whether it ended (superseded counts: a newer record carries on)."""
        return self.state in FINAL or self.state == "superseded"


@dataclass(slots=True)
class Origin:
    """One request to deploy, and the targets it asked for (key -> wave id)."""

    id: int
    kind: Kind
    sha: str
    actor: str
    pr: int | None  # the PR whose comment shows progress
    pr_author: str = ""
    comments_url: str | None = None
    source: str = ""
    delivery: str = ""
    asked: frozenset[str] = frozenset()  # the step keys it submitted
    targets: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    note: str = ""  # shown under the heading, e.g. "the PR has moved on: this preview is behind"
    running: bool = False  # its check run was set in progress
    closed: bool = False  # its check run was concluded

    @property
    def stream(self) -> str:
        """The schedule stream its steps go to (see `schedule.MAIN`)."""
        if self.kind == "merge":
            return "main"
        if self.kind == "preview":
            return f"pr#{self.pr}"
        return f"redeploy:{self.sha}"


def deployment_status(record: TargetRecord) -> tuple[str, str]:
    """The Deployment status `(state, description)` for a record's current state."""
    took = f" in {_seconds(record.seconds)}" if record.seconds is not None else ""
    detail = record.detail
    match record.state:
        case "queued":
            return "queued", record.note or "queued"
        case "running":
            return "in_progress", record.note or "deploying"
        case "success":
            return "success", f"deployed{took}" + (
                f"; {_health(detail)}" if _health(detail) else ""
            )
        case "skipped":
            return "inactive", "not deployed: this release no longer exists at this commit"
        case "failure":
            return "failure", f"failed{took}: {detail}"
        case "error":
            return "error", f"error: {detail}"
        case "cancelled":
            return "error", detail if detail.startswith("cancelled") else f"cancelled: {detail}"
        case "blocked":
            return "failure", f"not deployed: {detail}"
        case _:
            return "inactive", detail or "superseded"


def conclusion(
    records: Iterable[TargetRecord],
) -> Literal["success", "failure", "cancelled", "neutral"]:
    """The check run conclusion for an origin's targets, all ended."""
    states = {r.state for r in records}
    if states & {"failure", "error", "blocked"}:
        return "failure"
    if "cancelled" in states:
        return "cancelled"
    if not states or states <= {"skipped"}:
        return "neutral"
    return "success"


def heading(origin: Origin) -> str:
    """One line naming what this origin deploys and who asked."""
    sha = f"`{origin.sha[:7]}`"
    if origin.kind == "merge":
        what = f"Deploy of {sha}" + (f" (merge of #{origin.pr})" if origin.pr else "")
    elif origin.kind == "preview":
        what = f"Staging preview of {sha}"
    else:
        what = f"Redeploy of {sha}"
    return f"{what}, asked by @{origin.actor}" if origin.actor else what


def counts(records: Sequence[TargetRecord]) -> str:
    """`3 of 5 done` or `all 5 done`."""
    done = sum(1 for r in records if r.state in FINAL)
    return f"all {done} done" if done == len(records) else f"{done} of {len(records)} done"


def table(records: Sequence[TargetRecord], asked_sha: str) -> str:
    """A markdown table of targets: stage, state, time, and a log link for failures."""
    rows = ["| target | stage | state | time | |", "|---|---|---|---|---|"]
    for r in sorted(records, key=_order):
        state = _ICONS.get(r.state, r.state)
        if r.state in ("failure", "error", "blocked", "cancelled") and r.detail:
            state += f": {_cell(r.detail)}"
        elif r.state == "success" and _health(r.detail):
            state += f" ({_cell(_health(r.detail))})"
        if r.sha != asked_sha and r.state not in ("blocked", "cancelled"):
            state += f" (at `{r.sha[:7]}`, a newer commit)"
        took = _seconds(r.seconds) if r.seconds is not None and r.state in FINAL else ""
        link = f"[log]({r.log_url})" if r.log_url and r.state in FINAL else ""
        rows.append(f"| `{r.key}` | {r.stage} | {state} | {took} | {link} |")
    return "\n".join(rows)


def section(origin: Origin, records: Sequence[TargetRecord], *, level: str = "###") -> str:
    """One origin's heading, note and table."""
    icon = "🚀" if not all(r.state in FINAL for r in records) else _final_icon(records)
    parts = [f"{level} {icon} {heading(origin)}: {counts(records)}"]
    if origin.source:
        parts.append(f"_{_cell(origin.source)}_")
    if origin.note:
        parts.append(origin.note)
    parts.append(table(records, origin.sha))
    return "\n\n".join(parts)


def comment(sections: Sequence[tuple[Origin, Sequence[TargetRecord]]], footer: str = "") -> str:
    """The PR's deploy comment: the newest origins first."""
    newest = sorted(sections, key=lambda s: -s[0].id)[:MAX_SECTIONS]
    body = [DEPLOY_MARKER] + [section(o, rs) for o, rs in newest]
    if len(sections) > MAX_SECTIONS:
        body.append(f"_{len(sections) - MAX_SECTIONS} earlier deploys of this PR not shown._")
    if footer:
        body.append(footer)
    return "\n\n".join(body)


def check_output(origin: Origin, records: Sequence[TargetRecord]) -> tuple[str, str]:
    """The check run's `(title, summary)`."""
    failed = sum(1 for r in records if r.state in ("failure", "error", "blocked"))
    title = f"{heading(origin)}: {counts(records)}"
    if failed:
        title += f", {failed} not deployed"
    return title, section(origin, records, level="####")


def by_key(records: Mapping[tuple[int, str], TargetRecord], origin: Origin) -> list[TargetRecord]:
    """The current record of each target an origin asked for."""
    found = []
    for key, wave in origin.targets.items():
        record = records.get((wave, key))
        if record is not None:
            found.append(record)
    return found


def _health(detail: str) -> str:
    """The health check's part of a success detail ("health check passed on attempt 2 ...")."""
    return detail.removeprefix("deployed; ") if "health check" in detail else ""


def _final_icon(records: Sequence[TargetRecord]) -> str:
    verdict = conclusion(records)
    return {"success": "✅", "failure": "❌", "cancelled": "🚫"}.get(verdict, "➖")


def _order(record: TargetRecord) -> tuple[str, int, str]:
    return (record.cluster, ("support", "staging", "prod").index(record.stage), record.key)


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: one line, no pipes, bounded."""
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= 200 else flat[:199] + "…"
