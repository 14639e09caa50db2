"""Slash-command parsing: what counts as a command, and what does not."""

from __future__ import annotations

import pytest

from bot.core.commands import Target, command_lines, parse_comment


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/deploy staging", ["/deploy staging"]),
        ("  /plan", ["/plan"]),
        ("/help\r\n/plan\r\n", ["/help", "/plan"]),
        ("Looks good!\n/deploy uni-a/staging\nthanks", ["/deploy uni-a/staging"]),
        ("/deploy a/staging b/r-staging", ["/deploy a/staging b/r-staging"]),
        ("/deploy uni-a/prod@ABCDEF1", ["/deploy uni-a/prod@ABCDEF1"]),
        ("/unlock", ["/unlock"]),
        ("/unlock uni-a/staging", ["/unlock uni-a/staging"]),
        ("/cancel\n/deploy staging", ["/cancel", "/deploy staging"]),
        ("/DEPLOY staging", ["/deploy staging"]),
    ],
)
def test_commands_are_found_in_order(body: str, expected: list[str]) -> None:
    parsed = parse_comment(body)
    assert [c.text for c in parsed.commands] == expected
    assert parsed.unknown == []


@pytest.mark.parametrize(
    "body",
    [
        "> /deploy staging",
        ">/deploy staging",
        "> quoted\n> /deploy staging",
        "```\n/deploy staging\n```",
        "~~~\n/deploy staging\n~~~",
        "````\n```\n/deploy staging\n```\n````",
        "    /deploy staging",
        "\t/deploy staging",
        "<!-- /deploy staging -->",
        "<!--\n/deploy staging\n-->",
        "<!-- hubbot:plan -->\n<!--\nsecret\n/deploy staging -->",
        "please run `/deploy staging`",
        "see /usr/bin/helm",
        "/etc/hosts is wrong",
        "",
    ],
)
def test_quotes_code_and_comments_run_nothing(body: str) -> None:
    parsed = parse_comment(body)
    assert parsed.commands == []
    assert parsed.unknown == []


def test_unclosed_fence_hides_the_rest() -> None:
    assert parse_comment("```\n/deploy staging").commands == []


def test_text_after_a_closed_html_comment_on_the_same_line_counts() -> None:
    assert [c.text for c in parse_comment("<!-- x -->/plan").commands] == ["/plan"]


def test_line_numbers() -> None:
    parsed = parse_comment("hello\n\n/plan\n```\n/plan\n```\n/help")
    assert [(c.name, c.line) for c in parsed.commands] == [("plan", 3), ("help", 7)]
    assert [n for n, _ in command_lines("a\n> b\nc")] == [1, 3]


@pytest.mark.parametrize(
    ("body", "suggestion"),
    [
        ("/deplyo staging", "/deploy"),
        ("/deploi staging", "/deploy"),
        ("/plna", "/plan"),
        ("/unlcok", "/unlock"),
        ("/hlep", "/help"),
        ("/deploy", "/deploy staging"),
        ("/deploy stagin", "/deploy staging"),
        ("/deploy prod", "/deploy <cluster>/<hub>@<sha>"),
        ("/deploy uni-a", "/deploy <cluster>/<hub>"),
        ("/deploy uni-a/prod@nothex!", "/deploy <cluster>/<hub>@<sha of the default branch>"),
        ("/plan now", "/plan"),
        ("/unlock uni-a/staging@abcdef1", "/unlock <cluster>/<hub>"),
    ],
)
def test_near_misses_suggest(body: str, suggestion: str) -> None:
    parsed = parse_comment(body)
    assert parsed.commands == []
    assert [u.suggestion for u in parsed.unknown] == [suggestion]


def test_unknown_without_close_match_has_no_suggestion() -> None:
    parsed = parse_comment("/shrug")
    assert parsed.unknown[0].suggestion is None
    assert "not a hubbot command" in parsed.unknown[0].problem


def test_targets() -> None:
    (command,) = parse_comment("/deploy uni-a/staging uni-b/prod@DEADBEEF").commands
    assert command.targets == (
        Target("uni-a", "staging"),
        Target("uni-b", "prod", "deadbeef"),
    )
    assert not command.staging
    (staging,) = parse_comment("/deploy staging").commands
    assert staging.staging and staging.targets == ()
