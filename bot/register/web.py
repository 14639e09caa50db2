"""The local side of the manifest flow: a page that posts the manifest, and the callback.

`GET /` answers a form that posts the manifest to GitHub's "new app" page, as the docs
show; GitHub asks the user to confirm, then redirects to `GET /callback?code=&state=`,
which checks `state`, trades the code for credentials and writes them. Only loopback
`Host` headers are answered, so a web page cannot read `state` through DNS rebinding.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.register.credentials import CredentialsError, write_credentials
from bot.register.exchange import ExchangeError, convert_code
from bot.register.flow import Failed, Flow, Registered

FLOW = web.AppKey("flow", Flow)
SESSION = web.AppKey("session", aiohttp.ClientSession)
EXCHANGE_TIMEOUT = aiohttp.ClientTimeout(total=60)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(flow: Flow) -> web.Application:
    """The local server of one registration."""
    app = web.Application(middlewares=[_guard])
    app[FLOW] = flow
    app.cleanup_ctx.append(_client_session)
    app.router.add_get("/", form_page)
    app.router.add_get("/callback", callback)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=EXCHANGE_TIMEOUT) as session:
        app[SESSION] = session
        yield


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.host not in request.app[FLOW].hosts:
        return _page(400, "Wrong address", "Open this page at the address hubbot printed.")
    return await handler(request)


async def form_page(request: web.Request) -> web.Response:
    """The page with the manifest form, and what the app will be allowed to do."""
    flow = request.app[FLOW]
    manifest = flow.manifest()
    e = html.escape
    host = urlsplit(flow.options.github_url).netloc
    owner = f"the organisation <b>{e(flow.options.org)}</b>" if flow.options.org else "your account"
    hook = manifest["hook_attributes"]
    webhook = (
        f"webhooks go to <code>{e(hook['url'])}</code>"
        if hook.get("active")
        else "the webhook is created <b>inactive</b>: set its URL in the app's settings later"
    )
    permissions = "".join(
        f"<li>{e(scope)}: {e(level)}</li>"
        for scope, level in manifest["default_permissions"].items()
    )
    body = (
        f"<p>This creates the GitHub App <b>{e(manifest['name'])}</b> on {e(host)} for {owner}; "
        f"{webhook}. GitHub asks you to confirm (you may rename the app there), then sends "
        "you back here and hubbot saves the app's private key and webhook secret.</p>"
        f"<h2>Permissions</h2><ul>{permissions}</ul>"
        f"<h2>Events</h2><p>{e(', '.join(manifest['default_events']))}</p>"
        f'<form method="post" action="{e(flow.form_action())}">'
        f'<input type="hidden" name="manifest" value="{e(json.dumps(manifest))}">'
        f'<button type="submit">Create the app on {e(host)}</button></form>'
    )
    # The form's POST must carry a real Origin: with "no-referrer" browsers send `null`.
    return _page(200, "Register hubbot as a GitHub App", body, raw=True, referrer=True)


async def callback(request: web.Request) -> web.StreamResponse:
    """GitHub's redirect: check `state`, trade the code, write the files, end the flow."""
    flow = request.app[FLOW]
    if flow.outcome.done():
        return _page(410, "Already done", "This registration has ended; close this tab.")
    if not flow.state_matches(request.query.get("state")):
        # Not ours (a forged or stale link): refuse, write nothing, keep waiting.
        return _page(400, "Refused", "This callback does not belong to this registration.")
    code = request.query.get("code")
    if not code:
        return _page(400, "Refused", "GitHub sent no code back.")
    if flow.busy:
        return _page(409, "In progress", "This registration is already being completed.")
    flow.busy = True
    try:
        creds = await convert_code(request.app[SESSION], api_url=flow.options.api_url, code=code)
    except ExchangeError as exc:
        failed = Failed(str(exc))
        return await _end(request, failed, _page(502, "GitHub gave no credentials", failed.reason))
    try:
        files = write_credentials(
            creds, flow.options.out_dir, api_url=flow.options.api_url, force=flow.options.force
        )
    except CredentialsError as exc:
        reason = (
            f"GitHub created the app {creds.html_url}, but {exc}; generate a new private key "
            "in the app's settings (GitHub shows a key only once)"
        )
        page = _page(500, "The credentials were not saved", reason)
        return await _end(request, Failed(reason), page)
    page = _success_page(creds.name, creds.html_url, files.private_key.parent)
    return await _end(request, Registered(creds, files), page)


async def _end(
    request: web.Request, outcome: Registered | Failed, response: web.Response
) -> web.Response:
    """Answer the browser, then end the flow (which shuts this server down)."""
    await response.prepare(request)
    await response.write_eof()
    request.app[FLOW].finish(outcome)
    return response


def _success_page(name: str, html_url: str, out_dir: Path) -> web.Response:
    e = html.escape
    install = f"{html_url}/installations/new"
    body = (
        f"<p>GitHub created the app <b>{e(name)}</b>. Its private key and webhook secret are "
        f"saved in <code>{e(str(out_dir))}</code>, readable only by you.</p>"
        f'<p>Next, <a href="{e(install)}">install it on your infrastructure repository</a>. '
        "The terminal shows how to run hubbot with these credentials. You can close this tab.</p>"
    )
    return _page(200, "hubbot is registered", body, raw=True)


def _page(
    status: int, title: str, body: str, *, raw: bool = False, referrer: bool = False
) -> web.Response:
    content = body if raw else f"<p>{html.escape(body)}</p>"
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{content}</body></html>"
    )
    headers = {"Cache-Control": "no-store"}
    if not referrer:
        # The callback's URL carries the code: links on its pages must not pass it on.
        headers["Referrer-Policy"] = "no-referrer"
    return web.Response(status=status, text=text, content_type="text/html", headers=headers)
