"""Secrets: encrypted files must really be encrypted, and plain files must hold no credentials.

- A file named like a secret (`model.is_secret_path`) must carry sops metadata: a
  `sops` block with a `mac` and at least one key group (`age`, `pgp`, `kms`,
  `gcp_kms`, `azure_kv`, `hc_vault`, or `key_groups` for Shamir splits). YAML and
  JSON files must also have every value encrypted (`ENC[...]`), except where the
  file's own `unencrypted_suffix` / `encrypted_suffix` / `unencrypted_regex` /
  `encrypted_regex` rules leave it in the clear. dotenv and INI files are checked
  for their metadata lines.
- In any other YAML or JSON file, a key that holds credentials (`settings.secret_keys`,
  compared ignoring case, `_` and `-`, plus any key ending in `password`) must not
  have a plaintext value. Placeholders are not secrets: empty or null values, a
  whole value in angle brackets (`<set-in-encrypted-values>`, also through YAML
  aliases), a reference such as `${VAR}`, `$(VAR)`, `{{ var }}` or `{env:VAR}`,
  an inline `ENC[...]` value, and masks made of one repeated character
  (`xxxx`, `****`). Guessable words such as `changeme` are *not* placeholders: helm
  would deploy them as the real password. Booleans, mappings and lists are not
  credentials (a `password:` mapping is a section, not a value).

Messages name the file, key and line, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from bot.core.findings import Finding, error
from bot.core.schemacheck import dotted
from bot.core.yamlload import Loaded

KEY_GROUPS = ("age", "pgp", "kms", "gcp_kms", "azure_kv", "hc_vault")
_ENCRYPTED = re.compile(r"^ENC\[[A-Z0-9_]+,data:.*\]$", re.S)
_PLACEHOLDER = re.compile(
    r"^\s*(<[^<>]*>|\$\{[^}]*\}|\$\([^)]*\)|\{\{.*\}\}|\{[^{}]*\}|\$[A-Za-z_][A-Za-z0-9_]*"
    r"|ENC\[.*\]|(.)\2*)\s*$",
    re.S,
)
_DOTENV_MAC = re.compile(r"^sops_mac=ENC\[", re.M)
_DOTENV_GROUP = re.compile(r"^sops_(?:age|pgp|kms|gcp_kms|azure_kv|hc_vault)__list_0__", re.M)
_INI_MAC = re.compile(r"^\s*mac\s*=\s*ENC\[", re.M)


def _normal(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def is_placeholder(value: str) -> bool:
    """Whether a string under a credential key is a placeholder, not a secret."""
    return not value.strip() or _PLACEHOLDER.match(value) is not None


REDACTED = "<plaintext credential, not shown>"


def is_credential(key: Any, value: Any, wanted: set[str]) -> bool:
    """Whether `value` under `key` is a plaintext credential (`wanted`: normalized key names)."""
    if not isinstance(key, str) or isinstance(value, bool) or value is None:
        return False
    normal = _normal(key)
    if normal not in wanted and not normal.endswith("password"):
        return False
    if isinstance(value, str) and is_placeholder(value):
        return False
    return isinstance(value, str | int | float)


def redact_credentials(data: Any, secret_keys: Iterable[str]) -> Any:
    """A copy of `data` with every plaintext credential replaced by REDACTED (for display)."""
    wanted = {_normal(k) for k in secret_keys}

    def walk(node: Any, key: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        return REDACTED if is_credential(key, node, wanted) else node

    return walk(data, None)


def plaintext_credentials(path: str, loaded: Loaded, secret_keys: Iterable[str]) -> list[Finding]:
    """Errors for credential keys with plaintext values in a non-secret file."""
    wanted = {_normal(k) for k in secret_keys}
    findings = []
    for key_path, value in _leaves(loaded.data, ()):
        key = key_path[-1] if key_path else None
        if is_credential(key, value, wanted):
            findings.append(
                error(
                    path,
                    loaded.line_of(key_path),
                    "plaintext-secret",
                    f"{dotted(key_path)} holds a plaintext credential in a file that is not "
                    "encrypted; move it to an encrypted file (enc-*.secret.values.yaml, "
                    "with sops) and leave a placeholder such as <set-in-encrypted-values> here",
                )
            )
    return findings


def _leaves(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every scalar, iteratively."""
    stack = [(path, node)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*where, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*where, i), v) for i, v in enumerate(value))
        else:
            yield where, value


def sops_text_findings(path: str, text: str) -> list[Finding]:
    """Errors for a dotenv or INI secret file without sops metadata."""
    if _DOTENV_MAC.search(text) and _DOTENV_GROUP.search(text):
        return []
    if "[sops]" in text and _INI_MAC.search(text):
        return []
    return [_not_encrypted(path, None)]


def sops_findings(path: str, loaded: Loaded) -> list[Finding]:
    """Errors for a YAML/JSON secret file whose sops metadata or encryption is missing."""
    data = loaded.data
    meta = data.get("sops") if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        return [_not_encrypted(path, loaded.line_of(()))]
    line = loaded.line_of(("sops",))
    mac = meta.get("mac")
    if not isinstance(mac, str) or not _ENCRYPTED.match(mac):
        return [
            error(
                path,
                loaded.line_of(("sops", "mac")) or line,
                "sops-metadata",
                "the sops block has no valid `mac`; sops cannot verify this file. "
                "Encrypt it again with `sops --encrypt --in-place`",
            )
        ]
    if not _has_key_group(meta):
        return [
            error(
                path,
                line,
                "sops-metadata",
                "the sops block names no key (age, pgp, kms, gcp_kms, azure_kv, hc_vault), "
                "so nobody can decrypt it. Encrypt it again with sops and your .sops.yaml",
            )
        ]
    return _plaintext_in_encrypted(path, loaded, meta)


def _has_key_group(meta: dict[str, Any]) -> bool:
    groups = [meta]
    if isinstance(meta.get("key_groups"), list):
        groups += [g for g in meta["key_groups"] if isinstance(g, dict)]
    return any(isinstance(g.get(k), list) and g[k] for g in groups for k in KEY_GROUPS)


def _plaintext_in_encrypted(path: str, loaded: Loaded, meta: dict[str, Any]) -> list[Finding]:
    rules = _ClearRules(meta)
    findings = []
    body = {k: v for k, v in loaded.data.items() if k != "sops"}
    for key_path, value in _leaves(body, ()):
        if value is None or (isinstance(value, str) and _ENCRYPTED.match(value)):
            continue
        if rules.in_clear(key_path):
            continue
        findings.append(
            error(
                path,
                loaded.line_of(key_path),
                "sops-plaintext",
                f"{dotted(key_path)} is not encrypted in an encrypted file; "
                "edit it with `sops` (never by hand) so that sops encrypts it",
            )
        )
    return findings


class _ClearRules:
    """Which keys sops leaves unencrypted, from the file's own metadata."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.unencrypted_suffix = meta.get("unencrypted_suffix")
        self.encrypted_suffix = meta.get("encrypted_suffix")
        self.unencrypted_regex = _compile(meta.get("unencrypted_regex"))
        self.encrypted_regex = _compile(meta.get("encrypted_regex"))

    def in_clear(self, key_path: tuple[Any, ...]) -> bool:
        """Whether sops would leave the value at `key_path` in the clear."""
        keys = [k for k in key_path if isinstance(k, str)]
        if self.encrypted_suffix or self.encrypted_regex:
            return not any(self._encrypts(k) for k in keys)
        return any(self._leaves_clear(k) for k in keys)

    def _encrypts(self, key: str) -> bool:
        suffix = self.encrypted_suffix
        if isinstance(suffix, str) and suffix and key.endswith(suffix):
            return True
        return self.encrypted_regex is not None and self.encrypted_regex.search(key) is not None

    def _leaves_clear(self, key: str) -> bool:
        suffix = self.unencrypted_suffix
        if isinstance(suffix, str) and suffix and key.endswith(suffix):
            return True
        regex = self.unencrypted_regex
        return regex is not None and regex.search(key) is not None


def _compile(pattern: Any) -> re.Pattern[str] | None:
    if not isinstance(pattern, str) or not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _not_encrypted(path: str, line: int | None) -> Finding:
    return error(
        path,
        line,
        "sops-metadata",
        "this file is named like a secret but has no sops metadata, so it is not "
        "encrypted: never commit it like this. Encrypt it with `sops --encrypt --in-place`, "
        "or rename it if it holds no secrets",
    )
