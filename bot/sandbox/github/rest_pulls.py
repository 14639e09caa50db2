"""Pull request endpoints: list, get, files and reviews."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.sandbox.github.context import Context, ctx, repo_owner
from bot.sandbox.github.http import ApiError, json_response, not_found, paginate
from bot.sandbox.github.state import Pull

routes = web.RouteTableDef()
PULL_MAX_FILES = 3000  # "Responses include a maximum of 3000 files"


def pull_or_404(c: Context, number: str) -> Pull:
    """The pull request `number`, or GitHub's 404."""
    pull = c.state.pulls.get(int(number)) if number.isdigit() else None
    if pull is None:
        raise not_found()
    return pull


@routes.get("/repos/{owner}/{repo}/pulls")
async def list_pulls(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls?state=&head=&base=&sort=&direction=."""
    repo_owner(request)
    c = ctx(request)
    q = request.query
    state = q.get("state", "open")
    if state not in ("open", "closed", "all"):
        raise ApiError(422, "Validation Failed")
    pulls = [p for p in c.state.pulls.values() if state == "all" or p.state == state]
    if "head" in q:
        owner, _, ref = q["head"].rpartition(":")
        pulls = [
            p
            for p in pulls
            if p.head_ref == ref
            and (not owner or owner.lower() == (p.user if p.fork else c.state.owner).lower())
        ]
    if "base" in q:
        pulls = [p for p in pulls if p.base_ref == q["base"]]
    by_update = q.get("sort", "created") in ("updated", "popularity")
    pulls.sort(
        key=lambda p: (p.updated_at if by_update else p.created_at, p.number),
        reverse=q.get("direction", "desc") == "desc",
    )
    page, headers = paginate(request, pulls)
    return json_response([c.shapes.pull_simple(p) for p in page], headers=headers)


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}")
async def get_pull(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}."""
    repo_owner(request)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["pull_number"])
    shape = await asyncio.to_thread(c.shapes.pull, pull)
    return json_response(shape)


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}/files")
async def list_pull_files(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}/files (paginated, at most 3000)."""
    repo_owner(request)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["pull_number"])

    def files() -> list[object]:
        stats = c.shapes.pull_stats(pull)
        changes = c.repo.changes(stats.merge_base, pull.head_sha)[:PULL_MAX_FILES]
        return [c.shapes.diff_entry(f, pull.head_sha) for f in changes]

    page, headers = paginate(request, await asyncio.to_thread(files))
    return json_response(page, headers=headers)


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}/commits")
async def list_pull_commits(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}/commits, oldest first (at most 250)."""
    repo_owner(request)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["pull_number"])
    base = c.shapes.pull_stats(pull).merge_base
    shas = c.repo.commits_between(base, pull.head_sha)
    page, headers = paginate(request, shas)
    return json_response([c.shapes.commit(c.repo.commit(s)) for s in page], headers=headers)


@routes.get("/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
async def list_reviews(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews, oldest first."""
    repo_owner(request)
    c = ctx(request)
    pull = pull_or_404(c, request.match_info["pull_number"])
    page, headers = paginate(request, pull.reviews)
    return json_response([c.shapes.review(r, pull) for r in page], headers=headers)
