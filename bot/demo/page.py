"""The demo's HTML transcript: one self-contained page (inline CSS, no scripts, no assets).

Every string from the PR (titles, bodies, messages, URLs) is escaped; comment
bodies go through `markdown_html`, which escapes first and renders a safe subset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from bot.demo import markdown_html
from bot.demo.transcript import (
    REACTIONS,
    Action,
    Entry,
    conversation,
    deployment_title,
    deployment_url,
    is_edited,
    short,
)


@dataclass(frozen=True, slots=True)
class StepReport:
    """How one step went, for the page and the terminal."""

    number: int
    title: str
    status: str  # "passed", "failed", "not run"
    seconds: float
    notes: tuple[str, ...] = ()
    expected: str = ""
    seen: str = ""


CSS = """
body{font:14px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;
 background:#f6f8fa;margin:0}
main{max-width:960px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 10px;
 border-bottom:1px solid #d1d9e0;padding-bottom:6px}
.muted{color:#59636e} code,pre{font:12px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace}
code{background:#eff1f3;border-radius:4px;padding:1px 4px}
pre.code{background:#f6f8fa;border:1px solid #d1d9e0;border-radius:6px;padding:8px;
 overflow:auto} pre.code code{background:none}
.add{color:#116329;background:#dafbe1}.del{color:#82071e;background:#ffebe9}
.hunk{color:#0550ae}.file{color:#59636e}
.box{background:#fff;border:1px solid #d1d9e0;border-radius:6px;margin:12px 0}
.box>header{background:#f6f8fa;border-bottom:1px solid #d1d9e0;padding:6px 12px;
 border-radius:6px 6px 0 0}
.box>.body{padding:4px 12px}
.event{margin:10px 0 10px 16px;padding-left:12px;border-left:2px solid #d1d9e0}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #d1d9e0;padding:4px 8px;
 text-align:left;vertical-align:top}
.chip{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;
 border:1px solid #d1d9e0;background:#fff}
.success,.passed{background:#dafbe1;border-color:#4ac26b;color:#116329}
.failure,.error,.failed{background:#ffebe9;border-color:#ff8182;color:#82071e}
.queued,.in_progress,.pending,.not_run{background:#fff8c5;border-color:#d4a72c;color:#7d4e00}
.reactions span{display:inline-block;border:1px solid #d1d9e0;border-radius:10px;
 padding:0 6px;margin-right:4px;background:#f6f8fa}
ul.notes{margin:2px 0 6px;padding-left:20px}
"""


def render_page(
    *,
    view: Mapping[str, Any] | None,
    actions: Sequence[Action],
    steps: Sequence[StepReport],
    notes: Sequence[str],
    passed: bool,
    seconds: float,
    edited: Collection[int] = (),
) -> str:
    """The whole page, as one string."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "every step behaved as expected" if passed else "a step failed"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No scripts, no remote anything: the page is a record, safe to open anywhere.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        "<title>hubbot demo transcript</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>hubbot demo: the life of a change</h1>",
        f'<p class="muted">{escape(when)} · {seconds:.1f} s · '
        f'<span class="chip {"passed" if passed else "failed"}">{escape(verdict)}</span></p>',
        '<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>",
        "<h2>Steps</h2>",
        *_steps(steps),
    ]
    if view is not None:
        parts += [
            f"<h2>Pull request #{int(view['number'])}: {escape(str(view['title']))}</h2>",
            *_conversation(view, list(actions), edited),
            "<h2>Checks</h2>",
            *_checks(view.get("check_runs") or ()),
        ]
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _chip(state: str) -> str:
    css = state.replace(" ", "_")
    return f'<span class="chip {escape(css)}">{escape(state)}</span>'


def _steps(steps: Sequence[StepReport]) -> Iterator[str]:
    yield "<table><thead><tr><th>#</th><th>Step</th><th>Result</th><th>Time</th></tr></thead>"
    yield "<tbody>"
    for step in steps:
        details = "".join(f"<li>{escape(n)}</li>" for n in step.notes)
        if step.status == "failed":
            details += f"<li><strong>expected:</strong> {escape(step.expected)}</li>"
            details += f"<li><strong>seen:</strong> {escape(step.seen)}</li>"
        notes = f'<ul class="notes">{details}</ul>' if details else ""
        yield (
            f"<tr><td>{step.number}</td><td>{escape(step.title)}{notes}</td>"
            f"<td>{_chip(step.status)}</td><td>{step.seconds:.2f} s</td></tr>"
        )
    yield "</tbody></table>"


def _conversation(
    view: Mapping[str, Any], actions: list[Action], edited: Collection[int]
) -> Iterator[str]:
    yield (
        f'<p class="muted">{escape(str(view["user"]))} wants to merge '
        f"<code>{escape(str(view['head']['ref']))}</code> into "
        f"<code>{escape(str(view['base']['ref']))}</code> · "
        f"{_chip('merged' if view.get('merged') else str(view.get('state')))}</p>"
    )
    body = view.get("body")
    if body:
        yield _box(f"<strong>{escape(str(view['user']))}</strong> opened this pull request", body)
    for entry in conversation(view, actions):
        yield _entry(entry, edited)


def _box(header: str, markdown: str, footer: str = "") -> str:
    return (
        f'<section class="box"><header>{header}</header>'
        f'<div class="body">{markdown_html.render(markdown)}{footer}</div></section>'
    )


def _entry(entry: Entry, edited: Collection[int]) -> str:
    item = entry.data
    if entry.kind == "action":
        detail = f'<pre class="code">{escape(item.detail)}</pre>' if item.detail else ""
        return (
            f'<div class="event"><strong>{escape(item.actor)}</strong> '
            f"{escape(item.text)}{detail}</div>"
        )
    if entry.kind == "comment":
        flag = ' <span class="muted">(edited)</span>' if is_edited(item, edited) else ""
        reactions = "".join(
            f'<span title="{escape(str(r["user"]))}">'
            f"{escape(REACTIONS.get(r['content'], r['content']))} {escape(str(r['user']))}</span>"
            for r in item["reactions"]
        )
        footer = f'<p class="reactions">{reactions}</p>' if reactions else ""
        header = f"<strong>{escape(str(item['user']))}</strong> commented{flag}"
        return _box(header, str(item["body"]), footer)
    if entry.kind == "review":
        verb = "approved these changes" if item["state"] == "APPROVED" else "reviewed"
        return f'<div class="event">✅ <strong>{escape(str(item["user"]))}</strong> {verb}</div>'
    return _deployment(item)


def _deployment(dep: Mapping[str, Any]) -> str:
    states = " → ".join(_chip(str(s["state"])) for s in dep.get("statuses") or ())
    url = deployment_url(dep)
    where = f" · <code>{escape(url)}</code>" if url else ""
    return (
        f'<div class="event">🚀 <strong>{escape(str(dep["creator"]))}</strong> deployed '
        f"<code>{escape(deployment_title(dep))}</code>: {states or _chip('pending')}{where}</div>"
    )


def _checks(runs: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    for run in runs:
        output = run.get("output") or {}
        outcome = str(run.get("conclusion") or run.get("status"))
        notes = "".join(
            f"<li><code>{escape(str(a['path']))}:{int(a['start_line'])}</code> "
            f"{escape(str(a.get('annotation_level')))}: {escape(str(a.get('message', '')))}</li>"
            for a in run.get("annotations") or ()
        )
        summary = output.get("summary") or ""
        yield (
            f'<section class="box"><header><strong>{escape(str(run["name"]))}</strong> on '
            f"<code>{escape(short(run['head_sha']))}</code> {_chip(outcome)} "
            f'{escape(str(output.get("title") or ""))}</header><div class="body">'
            + (f'<ul class="notes">{notes}</ul>' if notes else "")
            + (
                f"<details><summary>summary</summary>{markdown_html.render(summary)}</details>"
                if summary
                else ""
            )
            + "</div></section>"
        )
