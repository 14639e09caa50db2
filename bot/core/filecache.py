"""Parsed YAML/JSON files, cached by content: each distinct file is parsed once per process.

A snapshot's files are read once (per snapshot) and parsed once per content hash
(across snapshots), so a plan's base and head share the parse of every file that
did not change, and the 171 hubs of a repository share their chart's defaults.
Results are shared: never mutate a `Loaded`'s data.
"""

from __future__ import annotations

import hashlib
import threading

from cachetools import LRUCache

from bot.core.snapshot import Snapshot
from bot.core.yamlload import Loaded, YamlProblem, load_json, load_yaml

_Outcome = Loaded | YamlProblem

_by_content: LRUCache[bytes, _Outcome] = LRUCache(8192)
_lock = threading.Lock()


def parse(snapshot: Snapshot, path: str) -> Loaded:
    """The parsed file at `path`; KeyError if absent, YamlProblem if it does not load."""
    memo = snapshot.memo("filecache.parse")
    outcome = memo.get(path)
    if outcome is None:
        data = snapshot.read(path)
        digest = hashlib.sha256(data + path.endswith(".json").to_bytes()).digest()
        with _lock:
            outcome = _by_content.get(digest)
        if outcome is None:
            try:
                outcome = load_json(data) if path.endswith(".json") else load_yaml(data)
            except YamlProblem as exc:
                outcome = exc
            with _lock:
                _by_content[digest] = outcome
        memo[path] = outcome
    if isinstance(outcome, YamlProblem):
        raise YamlProblem(outcome.rule, outcome.message, outcome.line)  # a fresh traceback
    return outcome
