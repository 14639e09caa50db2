"""Rendering `.jsonnet` values files with go-jsonnet, as untrusted input.

A `JsonnetJob` is everything one evaluation needs, read from a `Snapshot` up front:
the source (read through symlinks), the external variables, and every file it may
import. Evaluation never touches the disk, so imports are limited to the job's root
folder (the chart folder, or the cluster folder for a hub's own `.jsonnet` file),
secret files are never importable, and results can be cached by content.

The file is evaluated under its path as referenced, unresolved, below a virtual
`/repo` root: `std.thisFile` is e.g. `/repo/helm-charts/daskhub/values.jsonnet`,
which is what 2i2c's daskhub trick (`std.splitLimitR(std.thisFile, '/', 3)[2]`)
needs, while the text comes from `helm-charts/basehub/values.jsonnet` through the
link. Jsonnet's import statements take string literals only, so the import closure
is found by scanning the sources; a file that is not in it cannot be imported.

Renderers evaluate jobs (see `jsonnet_pool.ProcessRenderer`, the default, which
bounds time, memory and output size in worker processes).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.findings import Finding, error
from bot.core.settings import JsonnetSettings
from bot.core.snapshot import Snapshot, resolve_link

VIRTUAL_ROOT = "/repo"
MAX_IMPORT_BYTES = 5 * 1024 * 1024  # all imported files of one job together

_IMPORT = re.compile(
    r"""\b(import|importstr|importbin)\s*(@?)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.S
)
_LOCATION = re.compile(re.escape(VIRTUAL_ROOT) + r"/([^\s:]+):(\d+):")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ImportFile:
    """A file a job may import: its path as imported, where its text was read, the text."""

    path: str
    content_path: str
    text: str


@dataclass(frozen=True, slots=True)
class JsonnetJob:
    """One evaluation, self-contained: build it with `make_job`."""

    path: str  # as referenced; std.thisFile is VIRTUAL_ROOT/path
    content_path: str  # where the source was read, after following links
    source: str
    ext_vars: tuple[tuple[str, str], ...]
    files: tuple[ImportFile, ...]
    timeout: float
    max_output: int
    key: str  # content hash of all of the above: equal keys render equally
    # Hash of the file's content, its imports and the limits, not the variables nor the
    # path it is rendered as: one per file, for every release that renders it.
    source_key: str = ""

    def request(self, job_id: int) -> dict[str, Any]:
        """The worker protocol's request for this job."""
        return {
            "id": job_id,
            "filename": f"{VIRTUAL_ROOT}/{self.path}",
            "source": self.source,
            "ext_vars": dict(self.ext_vars),
            "files": {f"{VIRTUAL_ROOT}/{f.path}": f.text for f in self.files},
            "max_output": self.max_output,
        }

    def finding(self, message: str) -> Finding:
        """A jsonnet finding from go-jsonnet's error text, at the file and line it names."""
        return jsonnet_finding(self, message)


@dataclass(frozen=True, slots=True)
class RenderResult:
    """The parsed output of a job, or the finding that explains why there is none."""

    value: Any
    finding: Finding | None = None


class Renderer:
    """Evaluates jobs. Subclasses bound time and memory; see `jsonnet_pool`."""

    def prefetch(self, jobs: Iterable[JsonnetJob]) -> None:
        """Start rendering `jobs` in the background, if this renderer can."""

    def render(self, job: JsonnetJob) -> RenderResult:
        """The result of `job` (waits for it)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers, if any."""


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _within(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


def _literal(quote_at: str, literal: str) -> str:
    inner = literal[1:-1]
    if quote_at:  # verbatim string: only the doubled quote is special
        return inner.replace(literal[0] * 2, literal[0])
    return re.sub(r"\\(.)", r"\1", inner)


def _imports(text: str) -> Iterable[tuple[str, str]]:
    """(kind, path) of every import literal in Jsonnet text; comments may add extras."""
    for kind, at, literal in _IMPORT.findall(text):
        yield kind, _literal(at, literal)


@dataclass(frozen=True, slots=True)
class _Closure:
    """A file's text and its import closure, with a digest of all of it."""

    content_path: str
    source: str
    files: tuple[ImportFile, ...]
    digest: bytes
    content_digest: bytes  # the same, but not the path it is rendered as


def make_job(
    snapshot: Snapshot,
    path: str,
    *,
    root: str,
    ext_vars: Mapping[str, str],
    settings: JsonnetSettings,
) -> JsonnetJob | Finding:
    """A job for the `.jsonnet` file at `path`, importing only from `root`; or a finding."""
    cache = snapshot.memo("jsonnet.closure")
    closure = cache.get((path, root))
    if closure is None:
        closure = cache[(path, root)] = _closure(snapshot, path, root)
    if isinstance(closure, Finding):
        return closure
    vars_ = tuple(sorted(ext_vars.items()))
    limits = repr((settings.timeout_seconds, settings.max_output_bytes)).encode()
    source_key = hashlib.sha256(closure.content_digest + limits).hexdigest()
    digest = hashlib.sha256(closure.digest)
    digest.update(repr((vars_, settings.timeout_seconds, settings.max_output_bytes)).encode())
    return JsonnetJob(
        path=path,
        content_path=closure.content_path,
        source=closure.source,
        ext_vars=vars_,
        files=closure.files,
        timeout=settings.timeout_seconds,
        max_output=settings.max_output_bytes,
        key=digest.hexdigest(),
        source_key=source_key,
    )


def _closure(snapshot: Snapshot, path: str, root: str) -> _Closure | Finding:
    content_path = resolve_link(snapshot, path)
    if content_path is None:
        return error(path, None, "jsonnet", "file does not exist or is a broken link")
    source = _decode(snapshot.read(content_path))
    files: dict[str, ImportFile] = {}
    todo = [(path, source)]
    total = 0
    while todo:
        importer, text = todo.pop()
        folder = posixpath.dirname(importer)
        for kind, rel in _imports(text):
            target = posixpath.normpath(posixpath.join(folder, rel))
            if rel.startswith("/") or target in files or not _within(target, root):
                continue
            if "secret" in posixpath.basename(target):
                continue  # secret files are never handed to Jsonnet
            resolved = resolve_link(snapshot, target)
            if resolved is None or not _within(resolved, root):
                continue
            data = snapshot.read(resolved)
            total += len(data)
            if total > MAX_IMPORT_BYTES:
                return error(path, None, "jsonnet", "imports more than 5 MB of files; import less")
            files[target] = ImportFile(target, resolved, _decode(data))
            if kind == "import":
                todo.append((target, files[target].text))
    ordered = tuple(sorted(files.values(), key=lambda f: f.path))
    content = hashlib.sha256()
    for part in (content_path, source):
        content.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for f in ordered:
        content.update(f"{f.path}\0{f.content_path}\0{f.text}\0".encode("utf-8", "surrogateescape"))
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape") + b"\0" + content.digest())
    return _Closure(content_path, source, ordered, digest.digest(), content.digest())


def jsonnet_finding(job: JsonnetJob, message: str) -> Finding:
    """A finding for go-jsonnet's error text: first line, at the innermost file:line it names."""
    message = _CONTROL.sub("", message.replace("\r", ""))
    path, line = job.content_path, None
    match = _LOCATION.search(message)
    if match:
        named = match.group(1)
        line = int(match.group(2))
        origins = {f.path: f.content_path for f in job.files}
        path = job.content_path if named == job.path else origins.get(named, named)
    first = message.strip().split("\n", 1)[0].strip()
    first = first.replace(f"{VIRTUAL_ROOT}/", "")
    if len(first) > 500:
        first = first[:500] + "…"
    where = f" (rendered as {job.path})" if job.path != job.content_path else ""
    return error(path, line, "jsonnet", f"Jsonnet error{where}: {first}")


def parse_output(job: JsonnetJob, data: bytes) -> RenderResult:
    """A result from a worker's JSON output."""
    try:
        return RenderResult(json.loads(data))
    except ValueError:
        return RenderResult(None, job.finding("output is not valid JSON"))


def ext_vars_for(
    settings: JsonnetSettings,
    *,
    cluster_name: str,
    cluster: Mapping[str, Any],
    hub: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """External variables from `settings.ext_vars`: the first candidate whose lookups all exist.

    `{cluster.a.b}` looks up cluster.yaml, `{cluster.name}` is its `name` (else the
    folder name), `{hub.x}` the hub's entry; text outside braces is literal. A
    variable with no matching candidate is not set.
    """
    scopes: dict[str, Mapping[str, Any] | None] = {
        "cluster": {"name": cluster_name, **cluster},
        "hub": hub,
    }
    result: dict[str, str] = {}
    for name, candidates in settings.ext_vars.items():
        for template in candidates:
            value = _expand(template, scopes)
            if value is not None:
                result[name] = value
                break
    return result


def _expand(template: str, scopes: Mapping[str, Mapping[str, Any] | None]) -> str | None:
    missing = False

    def lookup(match: re.Match[str]) -> str:
        nonlocal missing
        scope, *keys = match.group(1).strip().split(".")
        node: Any = scopes.get(scope)
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, bool) or not isinstance(node, str | int | float) or node == "":
            missing = True
            return ""
        return str(node)

    value = _PLACEHOLDER.sub(lookup, template)
    return None if missing else value
