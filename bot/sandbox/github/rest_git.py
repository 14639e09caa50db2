"""Git data endpoints: trees, blobs, and tarballs (redirected to a codeload-like URL)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from bot.sandbox.github.context import ctx, repo_owner
from bot.sandbox.github.http import ApiError, auth_kind, json_response, not_found

routes = web.RouteTableDef()
TREE_MAX_ENTRIES = 100_000  # GitHub truncates recursive trees beyond this
_SHA = re.compile(r"^[0-9a-f]{40}$")


@routes.get("/repos/{owner}/{repo}/git/trees/{tree_sha:.+}")
async def get_tree(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/git/trees/{tree_sha}?recursive=1."""
    repo_owner(request)
    c = ctx(request)
    tree = c.repo.tree_sha(request.match_info["tree_sha"])
    if tree is None:
        raise not_found()
    # GitHub: "Setting this parameter to any value returns the objects or subtrees".
    recursive = "recursive" in request.query
    entries = await asyncio.to_thread(c.repo.tree, tree, recursive=recursive)
    shape = c.shapes.tree(tree, entries[:TREE_MAX_ENTRIES])
    shape["truncated"] = len(entries) > TREE_MAX_ENTRIES
    return json_response(shape)


@routes.get("/repos/{owner}/{repo}/git/blobs/{file_sha}")
async def get_blob(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/git/blobs/{file_sha}: base64 content."""
    repo_owner(request)
    c = ctx(request)
    sha = request.match_info["file_sha"].lower()
    if not _SHA.match(sha):
        raise ApiError(
            422, "The sha parameter must be exactly 40 characters and contain only [0-9a-f]."
        )
    if c.repo.object_type(sha) != "blob":
        raise not_found()
    return json_response(c.shapes.blob(sha, c.repo.blob(sha)))


@routes.get("/repos/{owner}/{repo}/tarball/{ref:.*}")
async def get_tarball(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/tarball/{ref}: 302 to the archive, as GitHub answers."""
    owner = repo_owner(request) or ctx(request).state.owner
    c = ctx(request)
    ref = request.match_info["ref"] or c.repo.default_branch
    sha = c.repo.resolve(ref)
    if sha is None:
        raise not_found()
    location = f"{c.state.base_url}/codeload/{owner}/{c.state.name}/legacy.tar.gz/{sha}"
    return web.Response(status=302, headers={"Location": location})


@routes.get("/codeload/{owner}/{repo}/legacy.tar.gz/{sha}")
@auth_kind("none")
async def codeload(request: web.Request) -> web.Response:
    """The archive itself: gzip tar with a top folder `<owner>-<repo>-<short sha>/`."""
    owner = repo_owner(request) or ctx(request).state.owner
    c = ctx(request)
    sha = c.repo.resolve(request.match_info["sha"])
    if sha is None:
        raise not_found()
    top = f"{owner}-{c.state.name}-{sha[:7]}"
    data = await asyncio.to_thread(c.repo.archive, sha, top)
    return web.Response(
        body=data,
        content_type="application/x-gzip",
        headers={"Content-Disposition": f"attachment; filename={top}.tar.gz"},
    )
