"""Decrypting sops files for a deploy, and keeping their values out of every log.

Only the local executor decrypts, inside its throwaway checkout. The plaintext
never leaves that folder, and every string it held is redacted from the output
the deploy produced before anything is reported.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

MIN_REDACTED_LENGTH = 4
REDACTED = "[redacted]"


class SopsError(RuntimeError):
    """A secret file could not be decrypted; the message never holds secret values."""


async def decrypt_in_place(root: Path, files: Iterable[str], *, env: Mapping[str, str]) -> set[str]:
    """Decrypt each file under `root` in place with sops; returns the secret strings found."""
    files = list(files)
    if not files:
        return set()
    sops = shutil.which("sops", path=env.get("PATH"))
    if sops is None:
        raise SopsError("sops is not on PATH: secret values files cannot be decrypted")
    secrets: set[str] = set()
    for name in files:
        path = _inside(root, name)
        proc = await asyncio.create_subprocess_exec(
            sops,
            "--disable-version-check",
            "--decrypt",
            "--in-place",
            str(path),
            env=dict(env),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            # sops error text names files and key groups, never plaintext
            reason = err.decode(errors="replace").strip().splitlines()
            raise SopsError(f"sops could not decrypt {name}: {reason[-1] if reason else 'failed'}")
        secrets |= _read_private(path)
    return secrets


def _inside(root: Path, name: str) -> Path:
    """The checkout path of a secret file, refusing anything outside the checkout."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise SopsError(f"secret file {name} is missing from the checkout")
    return path


def _read_private(path: Path) -> set[str]:
    path.chmod(0o600)
    return secret_strings(path.read_bytes())


def secret_strings(data: bytes) -> set[str]:
    """Every scalar value of a decrypted YAML/JSON document, as strings worth redacting."""
    try:
        doc = yaml.load(data, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        try:
            doc = json.loads(data)
        except ValueError:
            return {line for line in data.decode(errors="replace").splitlines() if line.strip()}
    found: set[str] = set()
    _leaves(doc, found)
    return {s for s in found if len(s) >= MIN_REDACTED_LENGTH}


def _leaves(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _leaves(v, found)
    elif isinstance(value, list):
        for v in value:
            _leaves(v, found)
    elif value is not None and not isinstance(value, bool):
        text = str(value)
        found.add(text)
        found.update(line for line in text.splitlines() if len(line.strip()) >= 8)


# Credentials recognisable by their shape, redacted from every log and page whoever printed
# them: GitHub tokens (github.blog/2021-04-05-behind-githubs-new-authentication-token-formats),
# age private keys (sops' usual key) and PEM blocks. A Kubernetes Job decrypts its secrets in
# its own pod, so the bot cannot know their values: their shape is all it can go by.
_SHAPED = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9_]{20,}|github_pat_[A-Za-z0-9_]{20,}|AGE-SECRET-KEY-1[0-9A-Z]{20,})"
    r"|-----BEGIN [A-Z ]*-----.*?(?:-----END [A-Z ]*-----|\Z)",
    re.DOTALL,
)


def scrub(text: str) -> str:
    """`text` with every token, age key and PEM block replaced (credentials known by shape)."""
    return _SHAPED.sub(REDACTED, text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret string replaced, longest first."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text
