"""`hubbot register`'s parts: the filled manifest, the files it writes, the local server."""

from __future__ import annotations

import html
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.register.credentials import (
    AppCredentials,
    ConversionError,
    CredentialsError,
    check_out_dir,
    write_credentials,
)
from bot.register.flow import Flow, RegisterOptions
from bot.register.manifest import (
    ManifestError,
    app_settings_url,
    check_name,
    check_org,
    check_url,
    default_api_url,
    fill_manifest,
    new_app_url,
    packaged_manifest,
    parse_manifest,
)
from bot.register.web import create_app

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
SECRET = "0123456789abcdef0123456789abcdef01234567"


def conversion(**changes: Any) -> dict[str, Any]:
    """The parts of GitHub's conversion answer that hubbot reads."""
    data: dict[str, Any] = {
        "id": 4242,
        "slug": "hubbot-acme",
        "name": "hubbot acme",
        "owner": {"login": "acme"},
        "html_url": "https://github.com/apps/hubbot-acme",
        "client_id": "Iv1.abc",
        "client_secret": "not-kept",
        "webhook_secret": SECRET,
        "pem": PEM,
    }
    data.update(changes)
    return data


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# ---- the manifest ------------------------------------------------------------------------


def test_fill_points_the_webhook_and_homepage_at_hubbot_and_back_at_the_local_page() -> None:
    base = packaged_manifest()
    filled = fill_manifest(
        base,
        redirect_url="http://127.0.0.1:3000/callback",
        webhook_url="https://hubbot.acme.org/webhook",
        name="hubbot-acme",
    )
    assert filled["hook_attributes"] == {"url": "https://hubbot.acme.org/webhook", "active": True}
    assert filled["url"] == "https://hubbot.acme.org/"
    assert filled["redirect_url"] == "http://127.0.0.1:3000/callback"
    assert filled["name"] == "hubbot-acme"
    assert filled["default_permissions"] == base["default_permissions"]
    assert filled["default_events"] == base["default_events"]
    assert base == packaged_manifest(), "the packaged manifest must not change"


def test_fill_without_a_webhook_registers_it_inactive() -> None:
    filled = fill_manifest(packaged_manifest(), redirect_url="http://127.0.0.1:1/callback")
    assert filled["hook_attributes"]["active"] is False
    assert filled["name"] == "hubbot"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list", "must be a mapping"),
        ("name: x\nurl: y\nbogus: 1", "unknown keys: bogus"),
        ("name: x\nurl: y\ndefault_events: []\ndefault_permissions: {}", "hook_attributes.url"),
        (
            "name: x\nurl: y\nhook_attributes: {url: z}\ndefault_events: []\n"
            "default_permissions: {checks: admin}",
            "read or write",
        ),
        ("a: [", "not YAML"),
    ],
)
def test_parse_refuses_what_github_would_not_take(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text)


@pytest.mark.parametrize(
    ("github_url", "org", "new", "settings", "api"),
    [
        (
            "https://github.com",
            None,
            "https://github.com/settings/apps/new",
            "https://github.com/settings/apps/hubbot",
            "https://api.github.com",
        ),
        (
            "https://github.com",
            "2i2c-org",
            "https://github.com/organizations/2i2c-org/settings/apps/new",
            "https://github.com/organizations/2i2c-org/settings/apps/hubbot",
            "https://api.github.com",
        ),
        (
            "https://ghe.example.com",
            "infra",
            "https://ghe.example.com/organizations/infra/settings/apps/new",
            "https://ghe.example.com/organizations/infra/settings/apps/hubbot",
            "https://ghe.example.com/api/v3",
        ),
    ],
)
def test_urls_for_github_com_and_enterprise(
    github_url: str, org: str | None, new: str, settings: str, api: str
) -> None:
    assert new_app_url(github_url, org) == new
    assert app_settings_url(github_url, org, "hubbot") == settings
    assert default_api_url(github_url) == api


@pytest.mark.parametrize("org", ["-acme", "acme-", "ac/me", "a" * 40, "../x", ""])
def test_bad_organisation_names_are_refused(org: str) -> None:
    with pytest.raises(ManifestError, match="not a GitHub organisation"):
        check_org(org)


@pytest.mark.parametrize("name", ["", "   ", "x" * 35, "hub\nbot"])
def test_bad_app_names_are_refused(name: str) -> None:
    with pytest.raises(ManifestError, match="--name"):
        check_name(name)


@pytest.mark.parametrize("url", ["github.com", "ftp://github.com", "https://", "https://h/?a=1"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ManifestError, match="--github-url"):
        check_url(url, "--github-url")


# ---- credentials -------------------------------------------------------------------------


def test_conversion_is_read_and_its_secrets_stay_out_of_reprs() -> None:
    creds = AppCredentials.from_conversion(conversion())
    assert (creds.id, creds.slug, creds.owner, creds.client_id) == (
        4242,
        "hubbot-acme",
        "acme",
        "Iv1.abc",
    )
    assert (creds.pem, creds.webhook_secret) == (PEM, SECRET)
    assert PEM not in repr(creds) and SECRET not in repr(creds)
    assert "client_secret" not in AppCredentials.__slots__


@pytest.mark.parametrize(
    "changes",
    [{"id": None}, {"id": True}, {"id": "7"}, {"pem": None}, {"pem": "nope"}, {"slug": ""}],
)
def test_conversion_without_what_hubbot_needs_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ConversionError):
        AppCredentials.from_conversion(conversion(**changes))


def test_files_are_private_and_hold_what_github_issued(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "creds"
    creds = AppCredentials.from_conversion(conversion())
    files = write_credentials(creds, out, api_url="https://api.github.com")
    assert mode(out) == 0o700
    assert (out / ".gitignore").read_text() == "*\n"
    for path in (files.private_key, files.webhook_secret, files.env, files.app):
        assert path is not None and mode(path) == 0o600, path
    assert files.private_key.read_text() == PEM
    assert files.webhook_secret is not None
    assert files.webhook_secret.read_bytes() == SECRET.encode()  # no final newline
    app = json.loads(files.app.read_text())
    assert app == {
        "id": 4242,
        "slug": "hubbot-acme",
        "name": "hubbot acme",
        "owner": "acme",
        "client_id": "Iv1.abc",
        "html_url": "https://github.com/apps/hubbot-acme",
        "api_url": "https://api.github.com",
    }
    assert SECRET not in files.app.read_text() and "not-kept" not in files.app.read_text()


def test_env_file_is_what_a_shell_sources(tmp_path: Path) -> None:
    out = tmp_path / "with space's"
    creds = AppCredentials.from_conversion(conversion())
    files = write_credentials(creds, out, api_url="https://ghe.example.com/api/v3")
    env = subprocess.run(
        ["sh", "-c", 'set -a; . "$0"; set +a; env', str(files.env)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.split("=", 1) for line in env.splitlines() if line.startswith("HUBBOT_"))
    assert values == {
        "HUBBOT_APP_ID": "4242",
        "HUBBOT_PRIVATE_KEY": str(files.private_key),
        "HUBBOT_WEBHOOK_SECRET": SECRET,
        "HUBBOT_GITHUB_URL": "https://ghe.example.com/api/v3",
    }


def test_env_file_is_accepted_by_hubbot_serve(tmp_path: Path, sandbox_private_key: str) -> None:
    settings = pytest.importorskip("bot.web.settings", reason="hubbot serve is not here yet")
    creds = AppCredentials.from_conversion(conversion(pem=sandbox_private_key))
    files = write_credentials(creds, tmp_path / "c", api_url="https://api.github.com")
    env = {}
    for line in files.env.read_text().splitlines():
        if not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value
    loaded = settings.load_settings(env)
    assert (loaded.app_id, loaded.webhook_secret) == ("4242", SECRET)
    assert loaded.private_key == sandbox_private_key


def test_no_webhook_secret_means_no_secret_file_and_no_variable(tmp_path: Path) -> None:
    creds = AppCredentials.from_conversion(conversion(webhook_secret=None))
    files = write_credentials(creds, tmp_path / "c", api_url="https://api.github.com")
    assert files.webhook_secret is None
    assert not (tmp_path / "c" / "webhook-secret").exists()
    assert "HUBBOT_WEBHOOK_SECRET" not in files.env.read_text()


@pytest.mark.parametrize(
    "existing", ["private-key.pem", "webhook-secret", "hubbot.env", "app.json"]
)
def test_existing_files_are_never_replaced_without_force(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("keep me")
    creds = AppCredentials.from_conversion(conversion())
    with pytest.raises(CredentialsError, match=f"{existing}.*--force"):
        check_out_dir(tmp_path, force=False)
    with pytest.raises(CredentialsError, match="--force"):
        write_credentials(creds, tmp_path, api_url="https://api.github.com")
    assert (tmp_path / existing).read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing], "nothing else written"


def test_force_replaces_files_and_makes_them_private_again(tmp_path: Path) -> None:
    old = tmp_path / "private-key.pem"
    old.write_text("old")
    old.chmod(0o644)
    creds = AppCredentials.from_conversion(conversion())
    write_credentials(creds, tmp_path, api_url="https://api.github.com", force=True)
    assert old.read_text() == PEM
    assert mode(old) == 0o600


def test_force_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    (out / "private-key.pem").symlink_to(victim)
    creds = AppCredentials.from_conversion(conversion())
    with pytest.raises(CredentialsError, match="cannot write"):
        write_credentials(creds, out, api_url="https://api.github.com", force=True)
    assert victim.read_text() == "untouched"


def test_an_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(CredentialsError, match="not a folder"):
        check_out_dir(target, force=True)


# ---- the local server --------------------------------------------------------------------


def options(tmp_path: Path, **changes: Any) -> RegisterOptions:
    values: dict[str, Any] = {
        "manifest": packaged_manifest(),
        "github_url": "https://github.com",
        "api_url": "https://api.github.com",
        "out_dir": tmp_path / "creds",
    }
    values.update(changes)
    return RegisterOptions(**values)


async def local_server(aiohttp_client: Any, opts: RegisterOptions) -> tuple[Any, Flow]:
    flow = Flow(opts)
    client = await aiohttp_client(create_app(flow))
    flow.port = client.port
    return client, flow


async def test_page_posts_the_filled_manifest_with_the_state(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    opts = options(tmp_path, org="acme", webhook_url="https://hubbot.acme.org/webhook")
    client, flow = await local_server(aiohttp_client, opts)
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Referrer-Policy" not in resp.headers, "GitHub must see where the form comes from"
    page = await resp.text()
    action = f"https://github.com/organizations/acme/settings/apps/new?state={flow.state}"
    assert f'action="{action}"' in page
    start = page.index('name="manifest" value="') + len('name="manifest" value="')
    posted = json.loads(html.unescape(page[start : page.index('"', start)]))
    assert posted == flow.manifest()
    assert posted["redirect_url"] == f"http://127.0.0.1:{client.port}/callback"


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1:1", "localhost"])
async def test_only_loopback_host_headers_are_answered(
    aiohttp_client: Any, tmp_path: Path, host: str
) -> None:
    client, flow = await local_server(aiohttp_client, options(tmp_path))
    for path in ("/", f"/callback?code=abc&state={flow.state}"):
        resp = await client.get(path, headers={"Host": host})
        assert resp.status == 400
        assert flow.state not in await resp.text()
    assert not flow.outcome.done()


@pytest.mark.parametrize(
    "query",
    ["", "?code=abc", "?code=abc&state=wrong", "?state={state}", "?code=&state={state}"],
)
async def test_callbacks_without_this_flows_state_or_a_code_are_refused(
    aiohttp_client: Any, tmp_path: Path, query: str
) -> None:
    client, flow = await local_server(aiohttp_client, options(tmp_path))
    resp = await client.get("/callback" + query.format(state=flow.state))
    assert resp.status == 400
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert not flow.outcome.done(), "a refused callback must not end the flow"
    assert not (tmp_path / "creds").exists()


async def test_a_callback_after_the_end_is_gone(aiohttp_client: Any, tmp_path: Path) -> None:
    from bot.register.flow import Failed

    client, flow = await local_server(aiohttp_client, options(tmp_path))
    flow.finish(Failed("over"))
    resp = await client.get(f"/callback?code=abc&state={flow.state}")
    assert resp.status == 410
