"""The YAML loader: line marks, duplicate keys, limits, encodings, and JSON with tabs."""

from __future__ import annotations

import pytest

from bot.core.yamlload import MAX_BYTES, MAX_DEPTH, YamlProblem, load_json, load_yaml


def problem(text: str | bytes) -> YamlProblem:
    """The problem loading `text` raises."""
    with pytest.raises(YamlProblem) as info:
        load_yaml(text.encode() if isinstance(text, str) else text)
    return info.value


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: 2\na: 3\n", 3),
        ("top:\n  x: 1\n  y: 2\n  x: 3\n", 4),
        ("hubs:\n- name: a\n  domain: x\n  name: b\n", 4),
        ("a: {x: 1, x: 2}\n", 1),
        ("a: 1\n'a': 2\n", 2),
    ],
)
def test_duplicate_keys_are_errors_at_the_second_key(text: str, line: int) -> None:
    found = problem(text)
    assert (found.rule, found.line) == ("yaml-duplicate-key", line)
    assert "appears twice" in found.message


def test_alias_bomb_is_refused_before_expansion() -> None:
    # Nine levels of ten aliases: a billion values if expanded.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    found = problem("\n".join(lines) + "\n")
    assert found.rule == "yaml-too-large"
    assert "alias" in found.message


def test_a_few_aliases_are_fine() -> None:
    loaded = load_yaml(b"base: &b {x: 1}\nuse: *b\npassword: &p <x>\nother: *p\n")
    assert loaded.data == {"base": {"x": 1}, "use": {"x": 1}, "password": "<x>", "other": "<x>"}


def test_over_5_mb_is_refused_without_parsing() -> None:
    data = b"a: " + b"x" * MAX_BYTES + b"\n"
    found = problem(data)
    assert found.rule == "yaml-too-large"
    assert "5 MB" in found.message


@pytest.mark.parametrize(("style", "depth"), [("block", 105), ("flow", 105), ("flow", 50_000)])
def test_nesting_deeper_than_the_limit_is_refused(style: str, depth: int) -> None:
    if style == "flow":
        text = "[" * depth + "]" * depth
    else:
        text = "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + "  " * depth + "v: 1\n"
    found = problem(text)
    assert found.rule == "yaml-too-deep"


def test_nesting_at_the_limit_is_fine() -> None:
    text = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    assert load_yaml(text.encode()).data is not None


@pytest.mark.parametrize(
    ("data", "line"),
    [(b"a: 1\nb: caf\xe9\n", 2), (b"\xff\xfe\n", 1), (b"a: 1\n\nc: \xc3\x28\n", 3)],
)
def test_invalid_utf8_reports_the_line(data: bytes, line: int) -> None:
    found = problem(data)
    assert (found.rule, found.line) == ("yaml-encoding", line)
    assert "UTF-8" in found.message


@pytest.mark.parametrize(
    ("text", "line"),
    [("a: 1\nb: [1, 2\nc: 3\n", 3), ("a:\n  - x\n - y\n", 3), ("a: 'open\n", 2)],
)
def test_syntax_errors_report_a_line(text: str, line: int) -> None:
    found = problem(text)
    assert found.rule == "yaml-syntax"
    assert found.line is not None and abs(found.line - line) <= 1


@pytest.mark.parametrize("text", ["a: !!python/object:os.system {}\n", "a: !custom x\n"])
def test_unknown_tags_are_refused(text: str) -> None:
    assert problem(text).rule == "yaml-tag"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: 2i2c\np", 2),  # libyaml says line 3: past the end of a 2-line file
        ("a: 1\nb: [", 2),
        ("a: 1\rb: 2\rc: [\r", 1),  # lone CRs: one line to git and GitHub
        ("a: 1\r\nb: 2\r\nc: [", 3),
        ("a: 'x\u2028y'\nb: 2\nc: {", 3),  # a line separator inside a string
        ("a: 1\x85b: 1\nc: {", 2),
    ],
)
def test_lines_are_githubs_and_inside_the_file(text: str, line: int) -> None:
    assert problem(text).line == line
    assert line <= text.count("\n") + 1


def test_value_lines_count_lf_only() -> None:
    loaded = load_yaml("a: 'x\u2028y'\nb: 2\rc: 3\n".encode())
    assert loaded.lines[("b",)] == 2 and loaded.lines[("c",)] == 2


def test_lines_of_nested_keys_and_list_items() -> None:
    loaded = load_yaml(b"# comment\nhubs:\n  - name: a\n    files:\n      - x\n      - y\n")
    assert loaded.line_of(("hubs",)) == 2
    assert loaded.line_of(("hubs", 0)) == 3
    assert loaded.line_of(("hubs", 0, "files", 1)) == 6
    assert loaded.line_of(("hubs", 0, "missing", "deeper")) == 3  # nearest ancestor


def test_merge_keys_and_timestamps_load_as_helm_sees_them() -> None:
    loaded = load_yaml(b"base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nwhen: 2024-01-01\n")
    assert loaded.data["m"] == {"x": 1, "y": 3}
    assert loaded.data["when"] == "2024-01-01"


def test_empty_document_is_none() -> None:
    assert load_yaml(b"# nothing\n").data is None


def test_json_with_tab_indentation_loads() -> None:
    loaded = load_json(b'{\n\t"a": {\n\t\t"b": 1\n\t}\n}\n')
    assert loaded.data == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("data", "rule", "line"),
    [
        (b'{\n\t"a": 1,\n\t"a": 2\n}\n', "yaml-duplicate-key", 3),
        (b'{\n\t"a": 1,\n\t"b": \n}\n', "json-syntax", 4),
    ],
)
def test_json_problems(data: bytes, rule: str, line: int | None) -> None:
    with pytest.raises(YamlProblem) as info:
        load_json(data)
    assert (info.value.rule, info.value.line) == (rule, line)
