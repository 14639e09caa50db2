"""Server settings: environment, flags over environment, one clear line on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.web.settings import ServerSettings, SettingsError, load_settings
from tests.conftest import ROOT


@pytest.fixture
def env(private_key_pem: str, tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "app.pem"
    key.write_text(private_key_pem)
    return {
        "HUBBOT_APP_ID": "12345",
        "HUBBOT_PRIVATE_KEY": str(key),
        "HUBBOT_WEBHOOK_SECRET": "s3cret-value",
    }


def test_defaults(env: dict[str, str], private_key_pem: str) -> None:
    s = load_settings(env)
    assert (s.app_id, s.github_url, s.host, s.port) == (
        "12345",
        "https://api.github.com",
        "0.0.0.0",
        8080,
    )
    assert s.private_key == private_key_pem
    assert s.webhook_secret == "s3cret-value"
    assert "s3cret-value" not in repr(s) and "PRIVATE KEY" not in repr(s)


def test_flags_override_environment(env: dict[str, str]) -> None:
    env |= {"HUBBOT_PORT": "9000", "HUBBOT_GITHUB_URL": "https://ghe.example/api/v3/"}
    s = load_settings(env, {"port": 7000, "host": "127.0.0.1", "app_id": None})
    assert (s.port, s.host, s.app_id) == (7000, "127.0.0.1", "12345")
    assert s.github_url == "https://ghe.example/api/v3"


@pytest.mark.parametrize("escaped", [False, True])
def test_private_key_given_inline(env: dict[str, str], private_key_pem: str, escaped: bool) -> None:
    env["HUBBOT_PRIVATE_KEY"] = private_key_pem.replace("\n", "\\n") if escaped else private_key_pem
    assert load_settings(env).private_key.strip() == private_key_pem.strip()


def _ec_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"HUBBOT_APP_ID": None}, "HUBBOT_APP_ID is not set"),
        ({"HUBBOT_APP_ID": "twelve"}, "HUBBOT_APP_ID must be"),
        ({"HUBBOT_PRIVATE_KEY": None}, "HUBBOT_PRIVATE_KEY is not set"),
        ({"HUBBOT_PRIVATE_KEY": "/no/such/key.pem"}, "no such file"),
        (
            {"HUBBOT_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nnope\n"},
            "not an unencrypted PEM",
        ),
        ({"HUBBOT_PRIVATE_KEY": "EC"}, "must be an RSA key"),
        ({"HUBBOT_WEBHOOK_SECRET": None}, "HUBBOT_WEBHOOK_SECRET is not set"),
        ({"HUBBOT_WEBHOOK_SECRET": ""}, "HUBBOT_WEBHOOK_SECRET is not set"),
        ({"HUBBOT_PORT": "http"}, "HUBBOT_PORT must be a whole number"),
        ({"HUBBOT_PORT": "70000"}, "HUBBOT_PORT must be between"),
        ({"HUBBOT_GITHUB_URL": "ftp://x"}, "HUBBOT_GITHUB_URL must be an http(s) URL"),
        ({"HUBBOT_WORKERS": "0"}, "HUBBOT_WORKERS must be between"),
    ],
)
def test_bad_settings_give_one_line(
    env: dict[str, str], change: dict[str, str | None], expected: str
) -> None:
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = _ec_key() if value == "EC" else value
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "s3cret-value" not in message and "PRIVATE KEY" not in message


def test_insecure_flag_allows_no_secret(env: dict[str, str]) -> None:
    del env["HUBBOT_WEBHOOK_SECRET"]
    s = load_settings(env, {"insecure_no_webhook_secret": True})
    assert isinstance(s, ServerSettings) and s.webhook_secret is None


def _serve(
    env: dict[str, str], *args: str, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUBBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", "serve", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("drop", "args", "expected"),
    [
        ("HUBBOT_WEBHOOK_SECRET", (), "HUBBOT_WEBHOOK_SECRET is not set"),
        ("HUBBOT_APP_ID", (), "HUBBOT_APP_ID is not set"),
        (None, ("--port", "-1"), "HUBBOT_PORT must be between"),
    ],
)
def test_serve_refuses_to_start_with_exit_2_and_no_traceback(
    env: dict[str, str], drop: str | None, args: Any, expected: str
) -> None:
    if drop:
        env.pop(drop)
    proc = _serve(env, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert "Traceback" not in proc.stderr


def test_serve_reports_a_taken_port_in_one_line(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = _serve(env, "--host", "127.0.0.1", "--port", str(port))
    assert proc.returncode == 2
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
