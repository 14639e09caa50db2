"""The manifest flow end to end against the GitHub double, driven as a browser would."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.register.flow import Failed, Registered, RegisterOptions
from bot.register.main import Registrar, next_steps
from bot.register.manifest import packaged_manifest
from tests.register_support import complete, follow, post_form, read_form

ORG = "hubbot-sandbox"  # the double's repository owner


def options_for(sandbox: Any, out_dir: Path, **changes: Any) -> RegisterOptions:
    values: dict[str, Any] = {
        "manifest": packaged_manifest(),
        "github_url": f"{sandbox.api_url}/_html",  # the double's web side
        "api_url": sandbox.api_url,
        "out_dir": out_dir,
    }
    values.update(changes)
    return RegisterOptions(**values)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def started(options: RegisterOptions) -> tuple[Registrar, str]:
    registrar = Registrar(options, port=0)
    return registrar, await registrar.start()


async def outcome_of(registrar: Registrar) -> Registered | Failed:
    try:
        return await asyncio.wait_for(registrar.outcome(), timeout=30)
    finally:
        await registrar.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("org", [None, ORG])
async def test_registration_writes_the_credentials_the_double_issued(
    github_sandbox: Any, sandbox_ctl: Any, browser: Any, tmp_path: Path, org: str | None
) -> None:
    await sandbox_ctl.post("/webhook", {"url": None})  # a new app has no webhook yet
    out = tmp_path / "creds"
    opts = options_for(
        github_sandbox,
        out,
        org=org,
        name="hubbot-acme",
        webhook_url="https://hubbot.acme.org/webhook",
    )
    registrar, url = await started(opts)
    status, page, form = await complete(browser, url)
    result = await outcome_of(registrar)

    action = urlsplit(form.action)
    expected = (
        f"/_html/organizations/{org}/settings/apps/new" if org else "/_html/settings/apps/new"
    )
    assert action.path == expected
    assert parse_qs(action.query)["state"] == [registrar.flow.state]
    manifest = json.loads(form.fields["manifest"])
    assert manifest["redirect_url"] == f"{url}callback"
    assert manifest["default_permissions"] == packaged_manifest()["default_permissions"]

    assert status == 200 and "hubbot is registered" in page
    app_page = f"{github_sandbox.api_url}/_html/apps/hubbot"
    assert f"{app_page}/installations/new" in page
    assert isinstance(result, Registered)
    assert mode(out) == 0o700
    for path in out.iterdir():
        if path.name != ".gitignore":
            assert mode(path) == 0o600, path
    assert (out / "private-key.pem").read_text() == github_sandbox.private_key
    assert (out / "webhook-secret").read_text() == "sandbox-secret"
    app = json.loads((out / "app.json").read_text())
    assert (app["id"], app["slug"], app["html_url"]) == (github_sandbox.app_id, "hubbot", app_page)
    # What the double did with the posted manifest: the app's name and webhook.
    assert github_sandbox.state.app.name == "hubbot-acme"
    assert (await sandbox_ctl.get("/"))["webhook_url"] == "https://hubbot.acme.org/webhook"
    assert github_sandbox.private_key not in page and "sandbox-secret" not in page


async def test_a_callback_with_another_state_is_refused_and_the_flow_goes_on(
    github_sandbox: Any, browser: Any, tmp_path: Path
) -> None:
    out = tmp_path / "creds"
    registrar, url = await started(options_for(github_sandbox, out))
    location = await post_form(browser, await read_form(browser, url))
    forged = location.replace(f"state={registrar.flow.state}", "state=forged")
    assert forged != location
    status, _ = await follow(browser, forged)
    assert status == 400
    assert not out.exists()
    assert not registrar.flow.outcome.done()
    # The refused callback did not spend the code: the real one still completes.
    status, _ = await follow(browser, location)
    assert status == 200
    assert isinstance(await outcome_of(registrar), Registered)


async def test_a_used_code_fails_with_a_clear_reason_and_writes_nothing(
    github_sandbox: Any, browser: Any, tmp_path: Path
) -> None:
    first, url = await started(options_for(github_sandbox, tmp_path / "first"))
    location = await post_form(browser, await read_form(browser, url))
    await follow(browser, location)
    assert isinstance(await outcome_of(first), Registered)

    second, url = await started(options_for(github_sandbox, tmp_path / "second"))
    code = parse_qs(urlsplit(location).query)["code"][0]
    status, page = await follow(browser, f"{url}callback?code={code}&state={second.flow.state}")
    result = await outcome_of(second)
    assert status == 502
    assert isinstance(result, Failed)
    assert "already used" in result.reason and "already used" in page
    assert not (tmp_path / "second").exists()


async def test_files_that_appear_meanwhile_are_kept_and_the_flow_fails(
    github_sandbox: Any, browser: Any, tmp_path: Path
) -> None:
    out = tmp_path / "creds"
    registrar, url = await started(options_for(github_sandbox, out))
    out.mkdir()
    (out / "hubbot.env").write_text("mine")
    status, page, _ = await complete(browser, url)
    result = await outcome_of(registrar)
    assert status == 500
    assert isinstance(result, Failed)
    assert "generate a new private key" in page
    assert "hubbot.env" in result.reason and "generate a new private key" in result.reason
    assert (out / "hubbot.env").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["hubbot.env"]


async def test_next_steps_name_the_install_page_and_files_but_no_secret(
    github_sandbox: Any, browser: Any, tmp_path: Path
) -> None:
    opts = options_for(github_sandbox, tmp_path / "creds", org=ORG)
    registrar, url = await started(opts)
    await complete(browser, url)
    result = await outcome_of(registrar)
    assert isinstance(result, Registered)
    text = next_steps(result, opts)
    assert f"{github_sandbox.api_url}/_html/apps/hubbot/installations/new" in text
    assert str(tmp_path / "creds" / "hubbot.env") in text
    assert f"--set github.appId={github_sandbox.app_id}" in text
    assert f"--set github.url={github_sandbox.api_url}" in text
    assert "webhook is inactive" in text  # no --webhook-url
    assert f"/_html/organizations/{ORG}/settings/apps/hubbot" in text
    assert github_sandbox.private_key not in text and "sandbox-secret" not in text
