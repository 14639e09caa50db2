"""App authentication on the double: RS256 JWTs checked like GitHub, `ghs_` tokens that expire."""

from __future__ import annotations

import calendar
import json
import time

import gidgethub
import pytest
from gidgethub import apps
from gidgethub.aiohttp import GitHubAPI

from bot.sandbox.github.auth import generate_private_key
from tests.sandbox_support import app_jwt, installation_client, repo_path

OTHER_KEY = generate_private_key()


async def get_app(sandbox_ctl, sandbox, authorization: str | None):
    headers = {"Authorization": authorization} if authorization else {}
    async with sandbox_ctl.session.get(f"{sandbox.api_url}/app", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_valid_jwt_reads_the_app(github_sandbox, sandbox_ctl):
    status, body = await get_app(sandbox_ctl, github_sandbox, f"Bearer {app_jwt(github_sandbox)}")
    assert status == 200
    assert (body["id"], body["slug"]) == (github_sandbox.app_id, "hubbot")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"key": OTHER_KEY}, "A JSON web token could not be decoded"),
        ({"alg": "HS256"}, "A JSON web token could not be decoded"),
        ({"iss": "999"}, "Integration not found"),
        ({"exp": -10, "iat": -300}, "'Expiration time'"),
        ({"exp": 3600}, "too far in the future"),
        ({"iat": 300, "exp": 500}, "'Issued at'"),
    ],
    ids=["wrong-key", "hs256", "wrong-iss", "expired", "exp-too-far", "iat-future"],
)
async def test_bad_jwts_are_401(github_sandbox, sandbox_ctl, claims, message):
    token = app_jwt(github_sandbox, **claims)
    status, body = await get_app(sandbox_ctl, github_sandbox, f"Bearer {token}")
    assert status == 401
    assert message in body["message"]
    assert body["documentation_url"].startswith("https://docs.github.com/")
    assert token not in str(body)


@pytest.mark.parametrize("header", [None, "Bearer ", "Basic abc", "Bearer ghs_notajwt"])
async def test_missing_or_non_jwt_credentials_on_app_endpoints(github_sandbox, sandbox_ctl, header):
    status, _ = await get_app(sandbox_ctl, github_sandbox, header)
    assert status == 401


async def test_installation_token_shape_and_use(github_sandbox, sandbox_ctl):
    app = GitHubAPI(sandbox_ctl.session, "t", base_url=github_sandbox.api_url)
    installation = await app.getitem(
        f"{repo_path(github_sandbox)}/installation", jwt=app_jwt(github_sandbox)
    )
    assert installation["id"] == github_sandbox.installation_id
    token = await apps.get_installation_access_token(
        app,
        installation_id=str(installation["id"]),
        app_id=str(github_sandbox.app_id),
        private_key=github_sandbox.private_key,
    )
    assert token["token"].startswith("ghs_") and len(token["token"]) == 40
    expires = calendar.timegm(time.strptime(token["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert 3500 < expires - time.time() <= 3600
    gh = GitHubAPI(
        sandbox_ctl.session, "t", oauth_token=token["token"], base_url=github_sandbox.api_url
    )
    repo = await gh.getitem(repo_path(github_sandbox))
    assert repo["full_name"] == github_sandbox.state.full_name


async def test_token_endpoints_refuse_jwts_and_tokens_refuse_app_endpoints(
    github_sandbox, sandbox_ctl
):
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(repo_path(github_sandbox), jwt=app_jwt(github_sandbox))
    assert caught.value.status_code == 401
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem("/app")
    assert caught.value.status_code == 401


async def test_unknown_installation_is_404(github_sandbox, sandbox_ctl):
    app = GitHubAPI(sandbox_ctl.session, "t", base_url=github_sandbox.api_url)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await apps.get_installation_access_token(
            app,
            installation_id="1",
            app_id=str(github_sandbox.app_id),
            private_key=github_sandbox.private_key,
        )
    assert caught.value.status_code == 404


async def test_expired_tokens_answer_bad_credentials(github_sandbox, sandbox_ctl):
    gh = await installation_client(sandbox_ctl.session, github_sandbox)
    await gh.getitem(repo_path(github_sandbox))
    assert (await sandbox_ctl.post("/tokens/expire"))["expired"] == 1
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(repo_path(github_sandbox))
    assert caught.value.status_code == 401
    assert "Bad credentials" in str(caught.value)
    fresh = await installation_client(sandbox_ctl.session, github_sandbox)
    assert (await fresh.getitem(repo_path(github_sandbox)))["name"] == github_sandbox.state.name


@pytest.mark.parametrize("header", [None, "token ghs_" + "x" * 36, "token "])
async def test_rest_endpoints_need_a_live_token(github_sandbox, sandbox_ctl, header):
    headers = {"Authorization": header} if header else {}
    url = f"{github_sandbox.api_url}{repo_path(github_sandbox)}"
    async with sandbox_ctl.session.get(url, headers=headers) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["message"] in ("Requires authentication", "Bad credentials")


async def test_token_for_other_repositories_or_more_permissions_is_refused(
    github_sandbox, sandbox_ctl
):
    app = GitHubAPI(sandbox_ctl.session, "t", base_url=github_sandbox.api_url)
    url = f"/app/installations/{github_sandbox.installation_id}/access_tokens"
    for data in ({"repositories": ["elsewhere"]}, {"permissions": {"administration": "write"}}):
        with pytest.raises(gidgethub.BadRequest) as caught:
            await app.post(url, data=data, jwt=app_jwt(github_sandbox))
        assert caught.value.status_code == 422
    scoped = await app.post(
        url,
        data={"repositories": [github_sandbox.state.name], "permissions": {"checks": "write"}},
        jwt=app_jwt(github_sandbox),
    )
    assert scoped["repositories"][0]["name"] == github_sandbox.state.name


async def test_manifest_conversion_hands_out_working_credentials(github_sandbox, sandbox_ctl):
    code = (await sandbox_ctl.post("/app-manifests", {"manifest": {"name": "my-hubbot"}}))["code"]
    anonymous = GitHubAPI(sandbox_ctl.session, "t", base_url=github_sandbox.api_url)
    app = await anonymous.post(f"/app-manifests/{code}/conversions", data=b"")
    assert (app["id"], app["slug"], app["name"]) == (github_sandbox.app_id, "hubbot", "my-hubbot")
    assert app["webhook_secret"] == "sandbox-secret"
    assert app["client_id"] and app["client_secret"]
    assert app["pem"] == github_sandbox.private_key
    token = await apps.get_installation_access_token(
        anonymous,
        installation_id=str(github_sandbox.installation_id),
        app_id=str(app["id"]),
        private_key=app["pem"],
    )
    assert token["token"].startswith("ghs_")
    with pytest.raises(gidgethub.BadRequest) as caught:  # codes are single use
        await anonymous.post(f"/app-manifests/{code}/conversions", data=b"")
    assert caught.value.status_code == 404


async def test_manifest_web_flow_redirects_with_a_code(github_sandbox, sandbox_ctl):
    """What `hubbot register`'s page does: post the manifest form to GitHub's web side."""
    from urllib.parse import parse_qs, urlsplit

    await sandbox_ctl.post("/webhook", {"url": None})  # a new app has no webhook URL yet
    manifest = {
        "name": "hubbot-test",
        "url": "https://example.org/hubbot",
        "redirect_url": "http://127.0.0.1:1/callback",
        "hook_attributes": {"url": "http://127.0.0.1:2/webhook"},
    }
    web_url = (await sandbox_ctl.get("/"))["web_url"]
    async with sandbox_ctl.session.post(
        f"{web_url}/organizations/hubbot-sandbox/settings/apps/new?state=xyz",
        data={"manifest": json.dumps(manifest)},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302
        location = urlsplit(resp.headers["Location"])
    assert location.path == "/callback"
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    anonymous = GitHubAPI(sandbox_ctl.session, "t", base_url=github_sandbox.api_url)
    app = await anonymous.post(f"/app-manifests/{query['code'][0]}/conversions", data=b"")
    assert app["name"] == "hubbot-test"
    assert (await sandbox_ctl.get("/"))["webhook_url"] == "http://127.0.0.1:2/webhook"
    async with sandbox_ctl.session.post(
        f"{web_url}/settings/apps/new", data={"manifest": "{not json"}, allow_redirects=False
    ) as resp:
        assert resp.status == 422
