"""Rebuild a changed file from its base content and the `patch` GitHub's compare gives.

https://docs.github.com/en/rest/commits/commits#compare-two-commits lists each
changed file with a unified-diff `patch` (hunks only, no file headers). Applying
it to the base blob gives the head blob for free, without a blob or tarball
call. The caller checks the result against the head blob id from the same
answer, so a patch GitHub cut short, a binary file or an odd encoding can only
cost a fetch, never a wrong file.
"""

from __future__ import annotations

import re

_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"


class PatchError(ValueError):
    """The patch does not apply to this content."""


def apply_patch(base: bytes, patch: str) -> bytes:
    """The content `patch` turns `base` into; raises PatchError if it does not apply."""
    try:
        old = _lines(base.decode("utf-8"))
    except UnicodeDecodeError:
        raise PatchError("base is not UTF-8") from None
    out: list[str] = []
    pos = 0  # next unread line of `old`
    lines = patch.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        match = _HUNK.match(lines[i])
        if match is None:
            raise PatchError(f"expected a hunk header, got {lines[i][:40]!r}")
        start = int(match.group(1))
        # A hunk adding to an empty file says -0,0; otherwise lines are 1-based.
        start_index = start - 1 if start > 0 else 0
        if start_index < pos or start_index > len(old):
            raise PatchError("hunks out of order")
        out.extend(old[pos:start_index])
        pos = start_index
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            if line == _NO_NEWLINE:
                # It qualifies the line before it; a removed line left nothing in `out`.
                if not lines[i - 1].startswith("-"):
                    if not out or not out[-1].endswith("\n"):
                        raise PatchError("misplaced end-of-file marker")
                    out[-1] = out[-1][:-1]
            elif line.startswith((" ", "-")):
                text = line[1:]
                if pos >= len(old) or old[pos].rstrip("\n") != text:
                    raise PatchError("context does not match")
                if line[0] == " ":
                    out.append(old[pos] if old[pos].endswith("\n") else old[pos] + "\n")
                pos += 1
            elif line.startswith("+"):
                out.append(line[1:] + "\n")
            elif line == "":
                raise PatchError("empty patch line")
            else:
                raise PatchError(f"unexpected patch line {line[:20]!r}")
            i += 1
    out.extend(old[pos:])
    return "".join(out).encode("utf-8")


def _lines(text: str) -> list[str]:
    """Lines as git sees them: split on "\n" only, each keeping its "\n" (the last may lack it)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines
