"""A Jsonnet worker process: renders jobs from stdin with go-jsonnet, one at a time.

Run as a script by path (`python -I _jsonnet_worker.py`), never imported by the
core: go-jsonnet is a blocking C call that cannot be interrupted, so the parent
bounds time by killing this process, and memory with RLIMIT_DATA set here before
the Go runtime starts. It uses only the standard library and `_gojsonnet`.

Protocol, one job at a time:
- in: one line of JSON, `{"id", "filename", "source", "ext_vars", "files", "max_output"}`,
  where `files` maps the absolute (virtual) path of every importable file to its text;
- out: one line of JSON, `{"id", "ok", "len", "error"}`, then `len` bytes of output.
"""

from __future__ import annotations

import json
import posixpath
import resource
import sys

MEMORY_LIMIT_BYTES = int(sys.argv[1]) if len(sys.argv) > 1 else 512 << 20

# RLIMIT_DATA, not RLIMIT_AS: the Go runtime reserves address space it never uses, so
# an address-space limit kills it at random, while the data limit counts only memory
# it really commits. 2i2c's charts need under 100 MB.
resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))

import _gojsonnet  # noqa: E402  (after the limit, so the Go runtime starts under it)


def _render(job: dict[str, object]) -> tuple[bool, bytes, str]:
    files = job["files"]
    assert isinstance(files, dict)
    refused: list[str] = []

    def import_callback(folder: str, rel: str) -> tuple[str, bytes]:
        target = posixpath.normpath(posixpath.join(folder, rel))
        text = files.get(target)
        if text is None:
            # go-jsonnet garbles the callback's message, so keep our own.
            refused.append(rel)
            raise RuntimeError("import refused")
        return target, text.encode("utf-8", "surrogateescape")

    try:
        out = _gojsonnet.evaluate_snippet(
            job["filename"],
            job["source"],
            ext_vars=job["ext_vars"],
            import_callback=import_callback,
            max_stack=500,
            max_trace=4,
        )
    except RuntimeError as exc:
        message = str(exc)
        if refused and "importer error" in message:
            first = message.split("\n", 1)
            rest = first[1] if len(first) > 1 else ""
            message = f"RUNTIME ERROR: cannot import {refused[-1]!r}\n{rest}"
        return False, b"", message
    data = out.encode()
    limit = job["max_output"]
    assert isinstance(limit, int)
    if len(data) > limit:
        return False, b"", f"OUTPUT ERROR: output is {len(data):,} bytes; the limit is {limit:,}"
    return True, data, ""


def main() -> None:
    """Serve jobs until stdin closes."""
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    for line in stdin:
        job = json.loads(line)
        ok, data, message = _render(job)
        header = {"id": job["id"], "ok": ok, "len": len(data), "error": message}
        stdout.write(json.dumps(header).encode() + b"\n" + data)
        stdout.flush()


if __name__ == "__main__":
    main()
