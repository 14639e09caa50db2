"""GitHub's web side of the app manifest flow, so `hubbot register` can be tried on the double.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
A browser posts a form field `manifest` (JSON) to `<web>/settings/apps/new` (or
`<web>/organizations/<org>/settings/apps/new`), GitHub asks the user to confirm, then
redirects to the manifest's `redirect_url` with `?code=...&state=...`. The double
confirms on the user's behalf. Its web root is `<api_url>/_html`.
"""

from __future__ import annotations

import json
import secrets

from aiohttp import web
from yarl import URL

from bot.sandbox.github.context import ctx
from bot.sandbox.github.state import now

routes = web.RouteTableDef()


@routes.post("/_html/settings/apps/new")
@routes.post("/_html/organizations/{org}/settings/apps/new")
async def new_app_from_manifest(request: web.Request) -> web.Response:
    """Accept a manifest form and redirect to its `redirect_url` with a one-time code."""
    form = await request.post()
    raw = form.get("manifest")
    try:
        manifest = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        return web.Response(status=422, text="The manifest must be a JSON object.")
    redirect = manifest.get("redirect_url")
    if not isinstance(redirect, str) or not redirect.startswith(("http://", "https://")):
        return web.Response(status=422, text="The manifest needs a redirect_url.")
    c = ctx(request)
    code = secrets.token_hex(10)
    c.state.manifest_codes[code] = (now(), manifest)
    query = {"code": code}
    if "state" in request.query:
        query["state"] = request.query["state"]
    raise web.HTTPFound(str(URL(redirect).update_query(query)))
