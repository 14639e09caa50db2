"""Rebuilding head files from compare's patches, checked against what git itself produces."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.github.patch import PatchError, apply_patch


def git_patch(tmp: Path, old: bytes, new: bytes) -> str:
    """The hunks `git diff` prints for old → new: what GitHub puts in a compare `patch`."""
    (tmp / "a").write_bytes(old)
    (tmp / "b").write_bytes(new)
    proc = subprocess.run(
        ["git", "diff", "--no-index", "--no-color", "-U3", "a", "b"],
        cwd=tmp,
        capture_output=True,
    )
    text = proc.stdout.decode()
    return text[text.index("@@") :] if "@@" in text else ""


CASES = [
    (b"", b"new file\nwith two lines\n"),
    (b"a\nb\nc\n", b"a\nB\nc\n"),
    (b"a\nb", b"a\nc"),  # no newline at the end, before and after
    (b"a\nb", b"a\nb\nc\n"),  # gains a final newline
    (b"a\nb\n", b"a\nb"),  # loses it
    (b"keep\n" * 20 + b"x\n" + b"keep\n" * 20, b"keep\n" * 20 + b"y\n" + b"keep\n" * 20),
    (b"one\r\ntwo\r\n", b"one\r\nTWO\r\n"),  # CRLF kept
    (b"a\x0cb\nc\n", b"a\x0cb\nd\n"),  # form feed is not a line break for git
    (b"x: 1\n", b""),
    (b"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", b"0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n"),
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_apply_reproduces_git(tmp_path: Path, old: bytes, new: bytes) -> None:
    assert apply_patch(old, git_patch(tmp_path, old, new)) == new


@pytest.mark.parametrize(
    ("base", "patch"),
    [
        (b"a\n", "@@ -1 +1 @@\n-b\n+c"),  # context mismatch
        (b"a\n", "not a hunk"),
        (b"a\n", "@@ -5,1 +5,1 @@\n-a\n+b"),  # beyond the end
        (b"\xff\xfe", "@@ -1 +1 @@\n-x\n+y"),  # not UTF-8
        (b"a\n", "@@ -1 +1 @@\n?weird"),
    ],
)
def test_a_patch_that_does_not_apply_is_an_error(base: bytes, patch: str) -> None:
    with pytest.raises(PatchError):
        apply_patch(base, patch)


lines = st.lists(st.sampled_from(["a", "b", "c", "key: 1", "", " x", "-y", "+z"]), max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=lines, new=lines, old_eol=st.booleans(), new_eol=st.booleans())
def test_apply_matches_git_on_random_edits(
    tmp_path: Path, old: list[str], new: list[str], old_eol: bool, new_eol: bool
) -> None:
    before = ("\n".join(old) + ("\n" if old_eol and old else "")).encode()
    after = ("\n".join(new) + ("\n" if new_eol and new else "")).encode()
    assert apply_patch(before, git_patch(tmp_path, before, after)) == after
