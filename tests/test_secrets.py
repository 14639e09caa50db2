"""Secrets: sops metadata on secret files, no plaintext credentials elsewhere, values hidden."""

from __future__ import annotations

import json

import pytest

from bot.core.findings import Finding
from bot.core.secrets import (
    is_placeholder,
    plaintext_credentials,
    sops_findings,
    sops_text_findings,
)
from bot.core.settings import DEFAULT_SECRET_KEYS
from bot.core.yamlload import load_json, load_yaml
from tests.conftest import SNAPSHOT_2I2C

SECRET = "hunter2-Xq9"  # never allowed in any message


@pytest.mark.parametrize(
    "value",
    [
        "<set-in-encrypted-values>",
        "<your token>",
        "${GRAFANA_PASSWORD}",
        "$(TOKEN)",
        "$TOKEN",
        "{{ password }}",
        "{env:OPENAI_API_KEY}",
        "ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]",
        "",
        "   ",
        "xxxxxxxx",
        "********",
    ],
)
def test_placeholders_are_not_secrets(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", [SECRET, "changeme", "password123", "<oops", "ghp_abc123"])
def test_real_looking_values_are_secrets(value: str) -> None:
    assert not is_placeholder(value)


def credentials(text: str) -> list[Finding]:
    """Plaintext-credential findings for a non-secret YAML file."""
    return plaintext_credentials("c/x.values.yaml", load_yaml(text.encode()), DEFAULT_SECRET_KEYS)


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        (f"hub:\n  config:\n    client_secret: {SECRET}\n", 3, "hub.config.client_secret"),
        (f"a:\n  clientSecret: {SECRET}\n", 2, "a.clientSecret"),
        (f"grafana:\n  adminPassword: {SECRET}\n", 2, "grafana.adminPassword"),
        ("db:\n  PASSWORD: 123456\n", 2, "db.PASSWORD"),
        (f"list:\n  - name: x\n    token: {SECRET}\n", 3, "list[0].token"),
        ("auth:\n  password: changeme\n", 2, "auth.password"),
    ],
)
def test_plaintext_credentials_are_errors_at_their_line(text: str, line: int, where: str) -> None:
    [finding] = credentials(text)
    assert (finding.severity, finding.line, finding.rule) == ("error", line, "plaintext-secret")
    assert finding.message.startswith(where)
    assert SECRET not in finding.message and "123456" not in finding.message
    assert "changeme" not in finding.message


@pytest.mark.parametrize(
    "text",
    [
        "registry:\n  password: &fake <set-in-encrypted-values>\nother:\n  password: *fake\n",
        "password:\n  valueFrom: {secretKeyRef: {name: x, key: y}}\n",
        "tls:\n  - secretName: https-auto-tls\n",
        "token_url: https://example.org/oauth/token\n",
        "grafana:\n  basicAuthPassword: '${password}'\n",
        "enable_password: true\n",
        "client_secret: ''\npassword: null\n",
    ],
)
def test_placeholders_references_and_non_credentials_pass(text: str) -> None:
    assert credentials(text) == []


def test_the_real_alias_placeholder_file_passes() -> None:
    path = SNAPSHOT_2I2C / "config/clusters/projectpythia/binderhub-service-common.values.yaml"
    if not path.is_file():
        pytest.skip("../shared/fixtures is absent")
    loaded = load_yaml(path.read_bytes())
    assert plaintext_credentials("x", loaded, DEFAULT_SECRET_KEYS) == []


ENCRYPTED = """hub:
  client_secret: ENC[AES256_GCM,data:PiRAC4,iv:tyVo=,tag:rbMj==,type:str]
  count: ENC[AES256_GCM,data:WpL4,iv:q/Y+=,tag:z3An==,type:int]
sops:
  gcp_kms:
    - resource_id: projects/p/locations/global/keyRings/k/cryptoKeys/c
      enc: CiUA4OM7
  age: []
  mac: ENC[AES256_GCM,data:3eQh2p,iv:NV8a=,tag:JAJV==,type:str]
  unencrypted_suffix: _unencrypted
  version: 3.7.3
"""


def sops(text: str) -> list[Finding]:
    """sops findings for a YAML secret file."""
    return sops_findings("c/enc-x.secret.values.yaml", load_yaml(text.encode()))


def test_a_well_encrypted_file_passes() -> None:
    assert sops(ENCRYPTED) == []


@pytest.mark.parametrize(
    ("text", "rule", "line", "words"),
    [
        ("hub:\n  client_secret: " + SECRET + "\n", "sops-metadata", 1, "no sops metadata"),
        (ENCRYPTED.replace("  mac: ENC", "  mac_gone: ENC"), "sops-metadata", 4, "mac"),
        (ENCRYPTED.replace("mac: ENC[AES256_GCM,data:", "mac: plain["), "sops-metadata", 9, "mac"),
        (
            ENCRYPTED.replace("  gcp_kms:\n", "  gcp_kms: []\n  old:\n"),
            "sops-metadata",
            4,
            "names no key",
        ),
        (
            ENCRYPTED.replace("ENC[AES256_GCM,data:WpL4", SECRET + "[x"),
            "sops-plaintext",
            3,
            "count",
        ),
    ],
)
def test_broken_encryption_is_an_error(text: str, rule: str, line: int, words: str) -> None:
    [finding] = sops(text)
    assert (finding.rule, finding.line) == (rule, line)
    assert words in finding.message
    assert SECRET not in finding.message


@pytest.mark.parametrize(
    "change",
    [
        (
            "  client_secret: ENC[AES256_GCM,data:PiRAC4",
            "  note_unencrypted: plain\n  x: ENC[A,data:",
        ),
        ("  unencrypted_suffix: _unencrypted\n", "  encrypted_regex: ^client_secret$\n"),
    ],
)
def test_sops_clear_text_rules_are_respected(change: tuple[str, str]) -> None:
    text = ENCRYPTED.replace(*change)
    if "encrypted_regex" in text:
        text = text.replace("type:int]", "type:int]\n  plain_ok: visible")
    assert sops(text) == []


def test_shamir_key_groups_count_as_keys() -> None:
    text = ENCRYPTED.replace(
        "  gcp_kms:\n", "  key_groups:\n    - age:\n        - recipient: age1x\n  old:\n"
    )
    assert sops(text) == []


def test_real_json_secret_with_tabs_passes() -> None:
    path = SNAPSHOT_2I2C / "config/clusters/nasa-cryo/enc-deployer-credentials.secret.json"
    if not path.is_file():
        pytest.skip("../shared/fixtures is absent")
    assert sops_findings("x.json", load_json(path.read_bytes())) == []


def test_plaintext_json_secret_fails() -> None:
    data = json.dumps({"type": "service_account", "private_key": SECRET}).encode()
    [finding] = sops_findings("c/enc-deployer-credentials.secret.json", load_json(data))
    assert finding.rule == "sops-metadata" and SECRET not in finding.message


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("TOKEN=ENC[x]\nsops_age__list_0__map_recipient=age1\nsops_mac=ENC[AES]\n", True),
        ("[secrets]\nx = ENC[y]\n[sops]\nmac = ENC[AES]\nage__list_0 = a\n", True),
        (f"TOKEN={SECRET}\n", False),
        ("TOKEN=ENC[x]\nsops_mac=ENC[AES]\n", False),  # no key group
    ],
)
def test_dotenv_and_ini_secret_files(text: str, ok: bool) -> None:
    found = sops_text_findings("c/enc-x.secret.env", text)
    assert (found == []) == ok
    assert all(SECRET not in f.message for f in found)
