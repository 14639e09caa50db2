"""The status page's HTML: a pure function of the page data, every value escaped.

No script at all (the page refreshes with `<meta http-equiv="refresh">`), and one
`<style>` element whose SHA-256 is the only style the Content-Security-Policy
allows, so nothing injected could style or run.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections import Counter
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

REFRESH_SECONDS = 15
STYLE = (resources.files("bot.web") / "status.css").read_text(encoding="utf-8")
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# How each state looks: a CSS class from a fixed set, never from the data.
_TONES = {
    "running": "busy",
    "in progress": "busy",
    "in_progress": "busy",
    "queued": "wait",
    "success": "good",
    "ok": "good",
    "skipped": "gone",
    "failure": "bad",
    "failed": "bad",
    "error": "bad",
    "blocked": "bad",
    "cancelled": "gone",
    "superseded": "gone",
    "neutral": "gone",
    "released": "gone",
}


def e(value: object) -> str:
    """`value` as escaped HTML text ("" for None)."""
    return html.escape("" if value is None else str(value), quote=True)


def plural(n: int, noun: str) -> str:
    """`1 wave`, `2 waves`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def pill(state: str) -> str:
    """A state as a coloured label."""
    if not state:
        return ""
    return f'<span class="pill {_TONES.get(state, "")}">{e(state)}</span>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(ident: str, title: str, content: str) -> str:
    return f'<section id="{ident}"><h2>{e(title)}</h2>{content}</section>'


def _queue(queue: Mapping[str, Any]) -> str:
    figures = [
        ("waiting", f"{queue['depth']} / {queue['max']}"),
        ("running", f"{queue['running']} of {queue['workers']} workers"),
    ]
    items = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in figures)
    return _section("queue", "Queue", f'<dl class="figures">{items}</dl>')


def _seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, float | int) else ""


def _deliveries(rows: list[Mapping[str, Any]]) -> str:
    headers = ("received", "delivery", "event", "action", "repository", "answer", "handling")
    cells = (
        (
            e(r["received_at"]),
            f"<code>{e(r['delivery_id'])}</code>",
            e(r["event"]),
            e(r["action"]),
            e(r["repository"]),
            f"{e(r['status'])} {e(r['answer'].replace('_', ' '))}",
            f"{pill(r['handling'])} {e(_seconds(r['seconds']))}".strip(),
        )
        for r in rows
    )
    table = _table(headers, cells, empty="No deliveries since the bot started.")
    return _section("deliveries", f"Recent deliveries ({len(rows)})", table)


def _wave(repo: str, wave: Mapping[str, Any]) -> str:
    counts = Counter(t["state"] for t in wave["targets"])
    order = list(_TONES)  # running and queued before the endings
    ranked = sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    summary = " ".join(f"{pill(state)} {n}" for state, n in ranked)
    facts = [f"wave {e(wave['id'])}", f"cluster {e(wave['cluster'])}", e(wave["stream"])]
    if wave["sha"]:
        facts.append(f'<code title="{e(wave["sha"])}">{e(wave["sha"][:7])}</code>')
    if wave["pr"] is not None:
        facts.append(f"PR #{e(wave['pr'])}")
    if wave["actor"]:
        facts.append(f"by @{e(wave['actor'])}")
    title = f"<h3>{e(repo)} · {' · '.join(facts)}</h3>"
    sources = ", ".join(e(s) for s in wave["sources"] if s)
    lead = f'<p class="muted">{summary}{" · from " + sources if sources else ""}</p>'
    cells = (
        (
            f"<code>{e(t['target'])}</code>",
            e(t["stage"]),
            pill(t["state"]),
            e(t["detail"]),
            e(_seconds(t["seconds"])),
        )
        for t in wave["targets"]
    )
    headers = ("target", "stage", "state", "detail", "time")
    return title + lead + _table(headers, cells, empty="No targets.")


def _rollouts(deploys: Mapping[str, Any] | None, problem: str) -> str:
    if deploys is None:
        return _section("rollouts", "Rollouts", f'<p class="empty">{e(problem)}</p>')
    waves = [_wave(r["repo"], w) for r in deploys["rollouts"] for w in r["waves"]]
    body = "".join(waves) or '<p class="empty">No rollout in progress.</p>'
    recovery = deploys["recovery"]
    notes = [f"executor: {e(deploys['executor'] or 'unknown')}"]
    if recovery["state"]:
        notes.append(f"recovery: {e(recovery['state'])}")
        notes += [
            f"{e(k.replace('_', ' '))} {e(recovery[k])}"
            for k in ("requeued", "adopted", "missed_pushes")
            if recovery[k]
        ]
        if recovery["detail"]:
            notes.append(e(recovery["detail"]))
    head = f'<p class="muted">{" · ".join(notes)}</p>'
    return _section("rollouts", f"Rollouts ({plural(len(waves), 'wave')})", head + body)


def _recent(deploys: Mapping[str, Any] | None, problem: str) -> str:
    if deploys is None:
        return _section("recent", "Recent deploys", f'<p class="empty">{e(problem)}</p>')
    cells = (
        (
            e(o["created"]),
            e(o["repo"]),
            e(o["kind"]),
            f'<code title="{e(o["sha"])}">{e(o["sha"][:7])}</code>',
            "" if o["pr"] is None else f"#{e(o['pr'])}",
            f"@{e(o['actor'])}" if o["actor"] else "",
            e(o["progress"]),
            pill(o["state"]),
        )
        for o in deploys["recent"]
    )
    headers = ("asked", "repository", "kind", "commit", "PR", "by", "progress", "state")
    table = _table(headers, cells, empty="No deploy since the bot started.")
    return _section("recent", "Recent deploys", table)


def _claims(deploys: Mapping[str, Any] | None, problem: str) -> str:
    if deploys is None:
        return _section("claims", "Staging claims", f'<p class="empty">{e(problem)}</p>')
    cells = (
        (
            e(c["repo"]),
            f"<code>{e(c['environment'])}</code>",
            "" if c["pr"] is None else f"#{e(c['pr'])}",
            f"@{e(c['author'])}" if c["author"] else "",
            e(c["since"]),
            e(c["expires"]),
        )
        for c in deploys["claims"]
    )
    headers = ("repository", "environment", "PR", "author", "since", "expires")
    table = _table(headers, cells, empty="No staging hub is claimed.")
    return _section("claims", f"Staging claims ({len(deploys['claims'])})", table)


def _replica(replica: Mapping[str, Any] | None) -> str:
    """Which replica answered, when several run (nothing when one runs alone)."""
    if not replica or replica.get("role") in (None, "single"):
        return ""
    text = f" · answered by the {e(replica['role'])}"
    if replica.get("role") != "leader":
        text += f" (the leader, {e(replica.get('leader') or 'unknown')}, did not answer)"
    if replica.get("held"):
        text += f" · {e(replica['held'])} deliveries held until a leader answers"
    return text


def render(data: Mapping[str, Any]) -> str:
    """The whole page for `status.status_data(...)`."""
    deploys, problem = data["deploys"], data["deploys_problem"]
    sections = (
        _queue(data["queue"])
        + _rollouts(deploys, problem)
        + _recent(deploys, problem)
        + _claims(deploys, problem)
        + _deliveries(data["deliveries"])
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>hubbot status</title><style>{STYLE}</style></head><body>"
        f"<header><h1>hubbot</h1><p>status at <time>{e(data['generated_at'])}</time>"
        f" · refreshes every {REFRESH_SECONDS} s{_replica(data.get('replica'))}</p></header>"
        f"<main>{sections}</main>"
        '<footer>The same data as JSON: <a href="/status.json">/status.json</a>'
        ' · <a href="/metrics">/metrics</a></footer></body></html>\n'
    )
