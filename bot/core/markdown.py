"""The plan as the markdown body the bot posts on a pull request.

The body fits GitHub's limit of 65,536 characters for a comment or PR body
(https://docs.github.com/en/rest/issues/comments, "Body is too long"): the verdict,
findings and target tables come first and stay complete; values diffs share what is
left, identical diffs are shown once, and a cut diff says so. Everything a PR author
controls (names, reasons, messages, diffs) is escaped so it cannot break the tables,
the `<details>` blocks or the code fences, nor mention people.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.core.diff import TargetDiff
from bot.core.findings import Finding
from bot.core.planner import Plan, Target, TargetKey

MARKER = "<!-- hubbot:plan -->"
GITHUB_MAX_CHARS = 65_536
# Slack below GitHub's limit for a footer the GitHub side may append (e.g. "updated for <sha>").
DEFAULT_LIMIT = GITHUB_MAX_CHARS - 1_000
MAX_FINDING_ROWS = 200
MIN_DIFF_CHARS = 600  # the least of a diff worth showing; below, diffs are only named
SHORT_REASON = 80  # reasons are cut to this length only when the tables alone overflow

_MD_SPECIAL = re.compile(r"([\\`*_\[\]~|])")


def render_markdown(
    plan: Plan,
    *,
    extra_sections: Sequence[str] = (),
    limit: int = DEFAULT_LIMIT,
) -> str:
    """The PR body for `plan`: marker, verdict, findings, tables, extras, values diffs."""
    for short in (False, True):
        head = _head(plan, extra_sections, short=short)
        if len(head) <= limit:
            return head + _diffs(plan, limit - len(head))
    return _cut(head, limit)


def verdict(plan: Plan) -> str:
    """One line: what happens if this merges."""
    errors = len(plan.errors)
    warnings = len(plan.findings) - errors
    tail = f" ({_n(warnings, 'warning')})" if warnings and not errors else ""
    if errors:
        return f"❌ {_n(errors, 'error')} {'blocks' if errors == 1 else 'block'} this deploy"
    if plan.is_empty:
        if plan.skipped:
            return f"Nothing will deploy: {_n(len(plan.skipped), 'release')} skipped{tail}"
        if plan.removed:
            return f"Nothing will deploy: {_n(len(plan.removed), 'release')} removed{tail}"
        return f"Nothing will deploy: this PR changes no configuration{tail}"
    parts = []
    if plan.hubs:
        split = f"{len(plan.staging)} staging, {len(plan.prod)} production"
        parts.append(f"{_n(len(plan.hubs), 'hub')} ({split})")
    if plan.support:
        parts.append(f"support on {_n(len(plan.support), 'cluster')}")
    return f"✅ {' and '.join(parts)} will deploy{tail}"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- escaping ---------------------------------------------------------------------------------


def text(value: str) -> str:
    """Plain text safe in a table cell: no HTML, no markdown, no pipes, no mentions."""
    value = " ".join(value.split())
    value = html.escape(value, quote=False)
    return _MD_SPECIAL.sub(r"\\\1", value).replace("@", "&#64;")


def code(value: str) -> str:
    """Inline code safe in a table cell or an HTML summary."""
    value = html.escape(" ".join(value.split()), quote=True)
    # Markdown is still parsed inside inline HTML: entities keep it literal.
    return f"<code>{_MD_SPECIAL.sub(lambda m: f'&#{ord(m.group(1))};', value)}</code>"


def fence(body: str, info: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run in `body`."""
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    marks = "`" * max(3, longest + 1)
    if not body.endswith("\n"):
        body += "\n"
    return f"{marks}{info}\n{body}{marks}\n"


# -- the fixed part ---------------------------------------------------------------------------


def _head(plan: Plan, extra_sections: Sequence[str], *, short: bool) -> str:
    parts = [MARKER, f"**{verdict(plan)}**"]
    if plan.base or plan.head:
        parts.append(f"base {_sha(plan.base)} → head {_sha(plan.head)}")
    if plan.findings:
        parts.append(_findings(plan.findings, MAX_FINDING_ROWS if not short else 20))
    if plan.notes:
        parts.append("\n".join(f"- {text(n)}" for n in plan.notes))
    if not plan.is_empty:
        parts.append(_table("Support", plan.support, hub_column=False, short=short))
        parts.append(_table("Staging", plan.staging, hub_column=True, short=short))
        parts.append(_table("Production", plan.prod, hub_column=True, short=short))
    if plan.skipped:
        parts.append(_skipped(plan.skipped, short=short))
    if plan.removed:
        parts.append(_removed(plan.removed))
    parts.extend(s.strip("\n") for s in extra_sections if s.strip())
    return "\n\n".join(p for p in parts if p) + "\n"


def _sha(sha: str | None) -> str:
    return code(sha[:12]) if sha else "working tree"


def _findings(findings: Sequence[Finding], max_rows: int) -> str:
    errors = sum(1 for f in findings if f.is_error)
    title = f"### Validation: {_n(errors, 'error')}, {_n(len(findings) - errors, 'warning')}"
    rows = ["| | Where | Rule | Message |", "|---|---|---|---|"]
    for f in findings[:max_rows]:
        where = f"{f.path}:{f.line}" if f.line else f.path
        icon = "❌" if f.is_error else "⚠️"
        rows.append(f"| {icon} | {code(where)} | {code(f.rule)} | {text(f.message)} |")
    if len(findings) > max_rows:
        more = len(findings) - max_rows
        rows.append(f"\n{_n(more, 'more finding')} not shown: run `hubbot validate` to see all.")
    return title + "\n\n" + "\n".join(rows)


def _reasons(target: Target, short: bool) -> str:
    joined = "; ".join(target.reasons)
    if short and len(joined) > SHORT_REASON:
        joined = joined[: SHORT_REASON - 1] + "…"
    return text(joined)


def _table(title: str, targets: Sequence[Target], *, hub_column: bool, short: bool) -> str:
    if not targets:
        return f"### {title}\n\nNone."
    if hub_column:
        rows = ["| Cluster | Hub | Reasons |", "|---|---|---|"]
        rows += [
            f"| {code(t.cluster)} | {code(t.hub or '')} | {_reasons(t, short)} |" for t in targets
        ]
    else:
        rows = ["| Cluster | Reasons |", "|---|---|"]
        rows += [f"| {code(t.cluster)} | {_reasons(t, short)} |" for t in targets]
    return f"### {title} ({len(targets)})\n\n" + "\n".join(rows)


def _skipped(targets: Sequence[Target], *, short: bool) -> str:
    rows = ["| Release | Why it does not deploy |", "|---|---|"]
    for t in targets:
        name = _release(t.name, support=t.hub is None)
        rows.append(f"| {name} | {_reasons(t, short)} |")
    return f"### Skipped ({len(targets)})\n\n" + "\n".join(rows)


def _release(name: str, *, support: bool) -> str:
    return code(name) + (" (support)" if support else "")


def _removed(keys: Sequence[TargetKey]) -> str:
    names = [
        code(c if h is None else f"{c}/{h}") + (" (support)" if h is None else "") for c, h in keys
    ]
    return (
        f"### Removed ({len(keys)})\n\nNo longer in the configuration; hubbot does not uninstall "
        "them: " + ", ".join(names)
    )


# -- the diffs --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    """Releases whose values diff is identical, shown once."""

    names: list[str]
    diff: TargetDiff


def _groups(plan: Plan) -> tuple[list[_Group], list[str]]:
    """Identical diffs grouped, in table order, and the releases whose values do not change."""
    groups: dict[tuple[str, tuple[str, ...], str | None], _Group] = {}
    unchanged = []
    for target in (*plan.support, *plan.staging, *plan.prod):
        diff = plan.diffs.get(target.key)
        if diff is None:
            continue
        name = _release(target.name, support=target.hub is None)
        if not (diff.text or diff.encrypted or diff.note):
            unchanged.append(name)
            continue
        key = (diff.text, diff.encrypted, diff.note)
        groups.setdefault(key, _Group([], diff)).names.append(name)
    return list(groups.values()), unchanged


def _diffs(plan: Plan, budget: int) -> str:
    if plan.is_empty:
        return ""
    title = "\n### Values diffs\n\n"
    if not plan.diffs:
        if plan.base is None:
            return title + "Not computed: file mode has no base to compare with.\n"
        return ""
    groups, unchanged = _groups(plan)
    out = [title]
    if unchanged:
        out.append(f"Effective values unchanged for {_names(unchanged)}.\n\n")
    budget -= sum(len(s) for s in out) + 600  # room for the "more diffs" line
    shown = 0
    for group in groups:
        # An equal share of what is left, but never less than a readable diff: when
        # the budget runs out, the remaining diffs are named in one line instead.
        share = max(MIN_DIFF_CHARS, budget // (len(groups) - shown))
        block = _block(group, *_cut_diff(group.diff.text, share))
        if len(block) > budget:
            break
        budget -= len(block)
        out.append(block)
        shown += 1
    if shown < len(groups):
        rest = [name for g in groups[shown:] for name in g.names]
        out.append(
            f"{_n(len(groups) - shown, 'more diff')} not shown (body limit), for "
            f"{_names(rest, 20)}: run `hubbot plan --base REF --head REF` locally to see them.\n"
        )
    return "".join(out)


def _names(names: Sequence[str], limit: int = 10) -> str:
    """Already rendered release names, at most `limit` of them."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} +{len(names) - limit} more"


def _cut_diff(diff: str, chars: int) -> tuple[str, int]:
    """At most `chars` characters of a diff, cut at a line, and how many lines were cut."""
    if len(diff) <= chars:
        return diff, 0
    lines = diff.splitlines(keepends=True)
    size = 0
    for kept, line in enumerate(lines):
        if size + len(line) > chars:
            return "".join(lines[:kept]), len(lines) - kept
        size += len(line)
    return diff, 0  # pragma: no cover - the length check above returns first


def _block(group: _Group, shown: str, cut_lines: int) -> str:
    """One `<details>` block: summary, notes, encrypted files, then the diff (maybe cut)."""
    diff = group.diff
    counts = f"+{diff.added} −{diff.removed}" if diff.text else "no values change"
    summary = f"{_names(group.names, 3)}: {counts}"
    if diff.encrypted:
        summary += f"; {_n(len(diff.encrypted), 'encrypted file')} changed"
    parts = [f"<details><summary>{summary}</summary>\n"]
    if len(group.names) > 3:
        parts.append(f"Same diff for {_names(group.names, 40)}.\n")
    if diff.note:
        parts.append(f"{text(diff.note)}.\n")
    parts.extend(
        f"🔒 encrypted file {code(name)} changed (contents not shown).\n" for name in diff.encrypted
    )
    if shown:
        parts.append(fence(shown, "diff"))
    if cut_lines:
        parts.append(f"_Diff cut: {_n(cut_lines, 'more line')} not shown (body limit)._\n")
    elif diff.text and not shown:
        lines = diff.text.count("\n")
        parts.append(f"_Diff not shown ({_n(lines, 'line')}): the body limit is reached._\n")
    parts.append("</details>\n\n")
    return "\n".join(parts)


def _cut(body: str, limit: int) -> str:
    """A last resort when even the tables overflow: cut at a line and say so."""
    note = "\n\n_Body cut at GitHub's size limit: run `hubbot plan` locally for the rest._\n"
    keep = body[: max(limit - len(note), 0)]
    return keep[: keep.rfind("\n") + 1] + note
