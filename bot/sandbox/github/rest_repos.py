"""Repository endpoints: the repository, contents, comparisons, commits and branches."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.sandbox.github.context import Context, ctx, repo_owner
from bot.sandbox.github.gitrepo import EMPTY_TREE
from bot.sandbox.github.http import ApiError, json_response, not_found, paginate

routes = web.RouteTableDef()
COMPARE_MAX_FILES = 300  # GitHub lists at most 300 files in a comparison
COMPARE_MAX_COMMITS = 250
LIST_MAX_COMMITS = 1000  # the double lists at most this many commits of a ref
CONTENTS_MAX_INLINE = 1024 * 1024  # above 1 MB the contents API sends no content


@routes.get("/repos/{owner}/{repo}")
async def get_repo(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}."""
    fork = repo_owner(request)
    return json_response(ctx(request).shapes.full_repository(fork_owner=fork))


def resolve_or_404(c: Context, ref: str, message: str | None = None) -> str:
    """The commit a ref names; 404 (or 422 with `message`) when there is none."""
    sha = c.repo.resolve(ref)
    if sha is None:
        if message is not None:
            raise ApiError(422, message)
        raise not_found()
    return sha


@routes.get("/repos/{owner}/{repo}/contents/{path:.*}")
async def get_contents(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/contents/{path}?ref=: a file (base64), symlink or folder."""
    repo_owner(request)
    c = ctx(request)
    ref = request.query.get("ref") or c.repo.default_branch
    sha = c.repo.resolve(ref)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    path = request.match_info["path"].strip("/")
    entry = c.repo.entry(sha, path)
    if entry is None:
        raise not_found()
    sh = c.shapes
    if entry.type == "tree":
        children = [
            replace(e, path=f"{path}/{e.path}" if path else e.path)
            for e in c.repo.tree(entry.sha, recursive=False)
        ]
        return json_response([sh.content(e, ref, with_content=False) for e in children])
    shape = sh.content(entry, ref, with_content=(entry.size or 0) <= CONTENTS_MAX_INLINE)
    if shape["type"] == "file" and "content" not in shape:
        shape.update(content="", encoding="none")
    return json_response(shape)


def parse_basehead(value: str) -> tuple[str, str]:
    """`BASE...HEAD` (or `BASE..HEAD`) into its two refs, without `owner:` prefixes."""
    sep = "..." if "..." in value else ".."
    base, found, head = value.partition(sep)
    if not found or not base or not head:
        raise not_found()
    return base.split(":", 1)[-1], head.split(":", 1)[-1]


@routes.get("/repos/{owner}/{repo}/compare/{basehead:.+}")
async def compare(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/compare/{base}...{head}: three-dot comparison."""
    repo_owner(request)
    c = ctx(request)
    base_ref, head_ref = parse_basehead(request.match_info["basehead"])
    base, head = resolve_or_404(c, base_ref), resolve_or_404(c, head_ref)
    body, headers = await asyncio.to_thread(_comparison, c, request, base, head)
    return json_response(body, headers=headers)


def _comparison(
    c: Context, request: web.Request, base: str, head: str
) -> tuple[dict[str, Any], dict[str, str]]:
    repo, sh = c.repo, c.shapes
    mb = repo.merge_base(base, head)
    if mb is None:
        raise not_found()  # unrelated histories: GitHub answers 404 "No common ancestor"
    ahead, behind = repo.count_between(base, head), repo.count_between(head, base)
    status = (
        "identical"
        if ahead == behind == 0
        else "ahead"
        if behind == 0
        else "behind"
        if ahead == 0
        else "diverged"
    )
    shas = repo.commits_between(mb, head, limit=10_000)
    headers: dict[str, str] = {}
    if "page" in request.query or "per_page" in request.query:
        shas, headers = paginate(request, shas)
    else:
        shas = shas[:COMPARE_MAX_COMMITS]
    files = repo.changes(mb, head)[:COMPARE_MAX_FILES]
    full, html = c.state.full_name, f"{sh.html}/{c.state.full_name}"
    basehead = request.match_info["basehead"]
    body = {
        "url": f"{sh.repo_url()}/compare/{basehead}",
        "html_url": f"{html}/compare/{basehead}",
        "permalink_url": f"{sh.html}/{full}/compare/{full.split('/')[0]}:{base[:7]}...{head[:7]}",
        "diff_url": f"{html}/compare/{basehead}.diff",
        "patch_url": f"{html}/compare/{basehead}.patch",
        "base_commit": sh.commit(repo.commit(base)),
        "merge_base_commit": sh.commit(repo.commit(mb)),
        "status": status,
        "ahead_by": ahead,
        "behind_by": behind,
        "total_commits": ahead,
        "commits": [sh.commit(repo.commit(s)) for s in shas],
        "files": [sh.diff_entry(f, head) for f in files],
    }
    return body, headers


@routes.get("/repos/{owner}/{repo}/commits")
async def list_commits(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/commits?sha=: the commits reachable from a ref, newest first."""
    repo_owner(request)
    c = ctx(request)
    ref = request.query.get("sha") or c.repo.default_branch
    sha = c.repo.resolve(ref)
    if sha is None:
        raise not_found()
    shas = await asyncio.to_thread(c.repo.history, sha, LIST_MAX_COMMITS)
    page, headers = paginate(request, shas)
    return json_response([c.shapes.commit(c.repo.commit(s)) for s in page], headers=headers)


@routes.get("/repos/{owner}/{repo}/commits/{ref}")
async def get_commit(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/commits/{ref}: one commit with its stats and files."""
    repo_owner(request)
    c = ctx(request)
    ref = request.match_info["ref"]
    sha = resolve_or_404(c, ref, f"No commit found for SHA: {ref}")
    info = c.repo.commit(sha)
    parent = info.parents[0] if info.parents else EMPTY_TREE
    files = await asyncio.to_thread(c.repo.changes, parent, sha)
    return json_response(c.shapes.commit(info, files=files[:COMPARE_MAX_FILES]))


@routes.get("/repos/{owner}/{repo}/commits/{commit_sha}/pulls")
async def commit_pulls(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/commits/{sha}/pulls: the merged PR that brought a commit to
    the default branch, or the open PRs that contain it."""
    repo_owner(request)
    c = ctx(request)
    ref = request.match_info["commit_sha"]
    sha = resolve_or_404(c, ref, f"No commit found for SHA: {ref}")
    main = c.repo.branch_sha(c.repo.default_branch)
    on_default = main is not None and c.repo.is_ancestor(sha, main)
    found = []
    for pull in sorted(c.state.pulls.values(), key=lambda p: -p.number):
        if on_default != pull.merged or (not on_default and pull.state != "open"):
            continue
        if (
            sha == pull.merge_commit_sha
            or sha in pull.head_history
            or (
                c.repo.is_ancestor(sha, pull.head_sha)
                and not c.repo.is_ancestor(sha, pull.base_sha)
            )
        ):
            found.append(c.shapes.pull_simple(pull))
    page, headers = paginate(request, found)
    return json_response(page, headers=headers)


@routes.get("/repos/{owner}/{repo}/branches/{branch:.+}")
async def get_branch(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/branches/{branch}."""
    repo_owner(request)
    c = ctx(request)
    name = request.match_info["branch"]
    sha = c.repo.branch_sha(name)
    if sha is None:
        raise ApiError(404, "Branch not found")
    url = f"{c.shapes.repo_url()}/branches/{name}"
    return json_response(
        {
            "name": name,
            "commit": c.shapes.commit(c.repo.commit(sha)),
            "_links": {"self": url, "html": f"{c.shapes.html}/{c.state.full_name}/tree/{name}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {
                    "enforcement_level": "off",
                    "contexts": [],
                    "checks": [],
                },
            },
            "protection_url": f"{url}/protection",
        }
    )
