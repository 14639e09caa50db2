"""Safe YAML loading with line marks, duplicate-key detection and hard limits.

PyYAML silently keeps the last of two equal keys, expands alias bombs without
limit, and reports positions only on nodes. This loader composes with libyaml
(`CSafeLoader`, about 9x faster than the pure-Python loader), then builds plain
Python data itself so that it can:

- reject duplicate keys, with the line of the second one;
- bound the expanded size (aliases included) before building anything;
- bound nesting depth;
- record the 1-based line where every value was set, keyed by its path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

try:  # libyaml is in every PyYAML wheel; fall back so a source build still works.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 1_000_000

PathKey = tuple[Any, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class YamlProblem(Exception):
    """A file that cannot be loaded: a rule name, a message for people, and a 1-based line."""

    def __init__(self, rule: str, message: str, line: int | None):
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.line = line


@dataclass(slots=True)
class Loaded:
    """A loaded document: plain data, and the line where each value was set."""

    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is allowed); YamlProblem with the line of the first bad byte."""
    if len(data) > MAX_BYTES:
        raise YamlProblem(
            "yaml-too-large",
            f"file is {len(data):,} bytes; the limit is {MAX_BYTES:,} (5 MB)",
            None,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlProblem(
            "yaml-encoding",
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); "
            "save it as UTF-8",
            line,
        ) from exc


def load_yaml(data: bytes | str) -> Loaded:
    """Load one YAML document; YamlProblem for anything that is not plain, sane YAML.

    Lines are counted as git and GitHub count them (at LF only), and never past the end.
    """
    text = decode(data) if isinstance(data, bytes) else data
    if isinstance(data, str) and len(text.encode()) > MAX_BYTES:
        raise YamlProblem("yaml-too-large", "file is over the 5 MB limit", None)
    to_github = _line_mapper(text)
    try:
        loaded = _load(text)
    except YamlProblem as exc:
        exc.line = to_github(exc.line) if exc.line is not None else None
        raise
    loaded.lines = {path: to_github(line) for path, line in loaded.lines.items()}
    return loaded


# YAML also breaks lines at a lone CR, NEL, LS and PS, where git and GitHub do not.
_ODD_BREAK = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
_YAML_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _line_mapper(text: str) -> Callable[[int], int]:
    """Maps libyaml's 1-based lines to GitHub's, clamped to the file's last line.

    libyaml reports some errors one line past the end of a file without a final newline.
    """
    last = text.count("\n") + 1
    if _ODD_BREAK.search(text) is None:
        return lambda line: min(line, last)
    github = [1]  # github[k]: GitHub's line of YAML's line k + 1
    for match in _YAML_BREAK.finditer(text):
        github.append(github[-1] + ("\n" in match.group()))
    return lambda line: github[min(line, len(github)) - 1]


def _load(text: str) -> Loaded:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in what:  # libyaml's own limit (1000 levels)
            raise _too_deep(line) from exc
        raise YamlProblem("yaml-syntax", f"YAML syntax error: {what}", line) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem("yaml-syntax", f"YAML error: {exc}", None) from exc
    if node is None:
        return Loaded(None, {})
    _check_size(node)
    return _Builder().build(node)


def _check_size(root: yaml.Node) -> None:
    """Reject documents whose expanded size or depth is over the limits, in linear time.

    An iterative post-order walk over the node graph, where aliases share nodes, so
    sizes are memoized per collection node; scalars (most nodes) count 1 inline.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size, depth = 1, 1
            for child in _children(node):
                if isinstance(child, yaml.ScalarNode):
                    size += 1
                    depth = max(depth, 2)
                else:
                    size += sizes[id(child)]
                    depth = max(depth, depths[id(child)] + 1)
            if size > MAX_NODES:
                raise YamlProblem(
                    "yaml-too-large",
                    f"document expands to over {MAX_NODES:,} values through aliases "
                    "(an alias bomb?); use fewer nested aliases",
                    node.start_mark.line + 1,
                )
            if depth > MAX_DEPTH:
                raise _too_deep(node.start_mark.line + 1)
            sizes[key] = size
            depths[key] = depth
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlProblem(
                "yaml-recursive", "a YAML alias refers to itself", node.start_mark.line + 1
            )
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if not isinstance(child, yaml.ScalarNode) and id(child) not in sizes:
                stack.append((child, False))


def _too_deep(line: int | None) -> YamlProblem:
    return YamlProblem(
        "yaml-too-deep", f"values are nested more than {MAX_DEPTH} levels deep", line
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Builder:
    """Builds plain data from a node graph, recording lines and rejecting duplicates."""

    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}
        self._scalars = _Loader("")  # only its scalar constructors are used

    def build(self, node: yaml.Node) -> Loaded:
        self.lines[()] = node.start_mark.line + 1
        return Loaded(self._value(node, ()), self.lines)

    def _value(self, node: yaml.Node, path: PathKey) -> Any:
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise self._tag_problem(node)
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self._tag_problem(node)
            items = []
            for i, child in enumerate(node.value):
                self.lines[(*path, i)] = child.start_mark.line + 1
                items.append(self._value(child, (*path, i)))
            return items
        if node.tag == _TIMESTAMP_TAG:
            return node.value  # helm (Go) sees dates as strings, not datetimes
        constructor = self._scalars.yaml_constructors.get(node.tag)
        if constructor is None or not node.tag.startswith("tag:yaml.org,2002:"):
            raise self._tag_problem(node)
        try:
            return constructor(self._scalars, node)
        except (yaml.YAMLError, ValueError) as exc:
            raise YamlProblem(
                "yaml-syntax",
                f"invalid {node.tag.rsplit(':', 1)[-1]} value: {exc}",
                node.start_mark.line + 1,
            ) from exc

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                for source in self._merge_sources(value_node):
                    for k, v in self._mapping(source, path).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(
                    "yaml-key", "mapping keys must be plain scalars", key_node.start_mark.line + 1
                )
            key = self._value(key_node, path)
            line = key_node.start_mark.line + 1
            if key in result:
                first = self.lines.get((*path, key))
                where = f" (first set on line {first})" if first else ""
                raise YamlProblem(
                    "yaml-duplicate-key",
                    f"key {key!r} appears twice in the same mapping{where}; "
                    "YAML keeps only the last one, so remove or merge one of them",
                    line,
                )
            self.lines[(*path, key)] = line
            result[key] = self._value(value_node, (*path, key))
        for k, v in merged.items():
            result.setdefault(k, v)
        return result

    def _merge_sources(self, node: yaml.Node) -> list[yaml.MappingNode]:
        if isinstance(node, yaml.MappingNode):
            return [node]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(n, yaml.MappingNode) for n in node.value
        ):
            return list(node.value)
        raise YamlProblem(
            "yaml-syntax",
            "a `<<` merge key needs a mapping or a list of mappings",
            node.start_mark.line + 1,
        )

    @staticmethod
    def _tag_problem(node: yaml.Node) -> YamlProblem:
        return YamlProblem(
            "yaml-tag",
            f"unsupported YAML tag {node.tag!r}; use plain values",
            node.start_mark.line + 1,
        )


def load_json(data: bytes | str) -> Loaded:
    """Load JSON strictly with the json module, with lines from the YAML loader when it agrees.

    JSON is nearly YAML, so the YAML loader gives line marks; but YAML is more lenient
    (`{"a": }` is valid YAML) and refuses tab indentation, which JSON allows and real
    sops-encrypted JSON files use. Such files load without line marks.
    """
    text = decode(data) if isinstance(data, bytes) else data
    if len(text) > MAX_BYTES:
        raise YamlProblem("yaml-too-large", "file is over the 5 MB limit", None)
    try:
        value = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise YamlProblem("json-syntax", f"JSON syntax error: {exc.msg}", exc.lineno) from exc
    except RecursionError as exc:
        raise YamlProblem("yaml-too-deep", "values are nested too deeply", None) from exc
    except YamlProblem as exc:
        _raise_with_line(text, exc)
    if _depth(value) > MAX_DEPTH:
        raise YamlProblem(
            "yaml-too-deep", f"values are nested more than {MAX_DEPTH} levels deep", None
        )
    try:
        loaded = load_yaml(text)
    except YamlProblem:
        return Loaded(value, {})
    return loaded if loaded.data == value else Loaded(value, {})


def _raise_with_line(text: str, problem: YamlProblem) -> NoReturn:
    """Raise `problem`, or the YAML loader's equivalent, which knows the line."""
    try:
        load_yaml(text)
    except YamlProblem as exc:
        if exc.rule == problem.rule:
            raise exc from None
    raise problem


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise YamlProblem(
                "yaml-duplicate-key",
                f"key {key!r} appears twice in the same object; remove or merge one of them",
                None,
            )
        result[key] = value
    return result


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a JSON document is a tree: no aliases)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest
