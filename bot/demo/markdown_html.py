"""A small, safe Markdown-to-HTML renderer for the transcript: GitHub's subset that hubbot writes.

Everything is escaped first; only the constructs below become tags: headings,
paragraphs, lists, quotes, tables, fenced code (diffs coloured), `code`, **bold**,
http(s) links, and the attribute-less HTML GitHub allows that hubbot's comments use
(`<code>`, `<details>`, `<summary>`, `<br>`, `<b>`, `<sub>`). Hidden `<!-- -->`
markers are dropped. No raw HTML from a comment ever reaches the page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

_ALLOWED_INLINE = ("code", "b", "strong", "em", "i", "sub", "sup")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_LIST = re.compile(r"^\s*[-*+]\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_DETAILS = re.compile(r"^\s*<details>\s*(?:<summary>(.*?)</summary>)?\s*$")
_SUMMARY = re.compile(r"^\s*<summary>(.*?)</summary>\s*$")


def inline(text: str) -> str:
    """One line of Markdown, escaped, with the inline constructs rendered."""
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w/])_([^_\s][^_]*?)_(?![\w/])", r"<em>\1</em>", out)
    for tag in _ALLOWED_INLINE:  # GitHub's attribute-less tags, as hubbot writes them
        out = out.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(f"&lt;/{tag}&gt;", f"</{tag}>")
    out = re.sub(r"&lt;br\s*/?&gt;", "<br>", out)
    return re.sub(r"\[([^\]]+)\]\((https?://[^\s)\"'<>]+)\)", r'<a href="\2">\1</a>', out)


def render(markdown: str) -> str:
    """A Markdown document as HTML (a fragment)."""
    text = re.sub(r"<!--.*?-->", "", markdown, flags=re.DOTALL)
    return "\n".join(_blocks(text.splitlines()))


def _blocks(lines: list[str]) -> Iterator[str]:
    i, paragraph = 0, []
    while i < len(lines):
        line = lines[i]
        special = _special(lines, i)
        if special is None and line.strip():
            paragraph.append(inline(line.strip()))
            i += 1
            continue
        if paragraph:
            yield "<p>" + "<br>".join(paragraph) + "</p>"
            paragraph = []
        if special is None:  # a blank line
            i += 1
            continue
        chunk, i = special
        yield chunk
    if paragraph:
        yield "<p>" + "<br>".join(paragraph) + "</p>"


def _special(lines: list[str], i: int) -> tuple[str, int] | None:
    """A block starting at line `i`, and the index after it; None for paragraph text."""
    line = lines[i]
    if fence := _FENCE.match(line):
        return _code(lines, i + 1, fence.group(1), fence.group(2))
    if heading := _HEADING.match(line):
        level = len(heading.group(1))
        return f"<h{level}>{inline(heading.group(2))}</h{level}>", i + 1
    if details := _DETAILS.match(line):
        summary = f"<summary>{inline(details.group(1))}</summary>" if details.group(1) else ""
        return f"<details>{summary}", i + 1
    if alone := _SUMMARY.match(line):
        return f"<summary>{inline(alone.group(1))}</summary>", i + 1
    if line.strip() == "</details>":
        return "</details>", i + 1
    if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):
        return _table(lines, i)
    if _LIST.match(line):
        return _list(lines, i)
    if line.lstrip().startswith(">"):
        end = i
        while end < len(lines) and lines[end].lstrip().startswith(">"):
            end += 1
        quoted = [q.lstrip()[1:].removeprefix(" ") for q in lines[i:end]]
        return "<blockquote>" + "\n".join(_blocks(quoted)) + "</blockquote>", end
    return None


def _code(lines: list[str], start: int, fence: str, lang: str) -> tuple[str, int]:
    end = start
    while end < len(lines) and not lines[end].strip().startswith(fence):
        end += 1
    body = []
    for line in lines[start:end]:
        css = ""
        if lang == "diff":
            css = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")
            if line.startswith(("+++", "---")):
                css = "file"
        escaped = html.escape(line)
        body.append(f'<span class="{css}">{escaped}</span>' if css else escaped)
    return '<pre class="code">' + "\n".join(body) + "</pre>", end + 1


def _cells(line: str) -> list[str]:
    text = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", text)]


def _table(lines: list[str], i: int) -> tuple[str, int]:
    head = "".join(f"<th>{inline(c)}</th>" for c in _cells(lines[i]))
    rows, end = [], i + 2
    while end < len(lines) and lines[end].lstrip().startswith("|"):
        rows.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(lines[end])) + "</tr>")
        end += 1
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>", end


def _list(lines: list[str], i: int) -> tuple[str, int]:
    items, end = [], i
    while end < len(lines) and (item := _LIST.match(lines[end])):
        items.append(f"<li>{inline(item.group(1))}</li>")
        end += 1
    return "<ul>" + "".join(items) + "</ul>", end
