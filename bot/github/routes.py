"""Route templates for GitHub API URLs, so metrics labels stay bounded.

`/repos/octo/hello/issues/12/comments?per_page=100` becomes
`/repos/{owner}/{repo}/issues/{number}/comments`. Paths of no known shape
become "other", never the raw path.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

_SEG = r"[^/]+"
# (regex over the path, template); first match wins.
_ROUTES: tuple[tuple[str, str], ...] = (
    (r"/app", "/app"),
    (r"/app/installations/\d+/access_tokens", "/app/installations/{id}/access_tokens"),
    (r"/app/installations(?:/\d+)?", "/app/installations"),
    (rf"/repos/{_SEG}/{_SEG}", "/repos/{owner}/{repo}"),
    (rf"/repos/{_SEG}/{_SEG}/compare/.+", "/repos/{owner}/{repo}/compare/{basehead}"),
    (rf"/repos/{_SEG}/{_SEG}/tarball(?:/.*)?", "/repos/{owner}/{repo}/tarball/{ref}"),
    (rf"/repos/{_SEG}/{_SEG}/zipball(?:/.*)?", "/repos/{owner}/{repo}/zipball/{ref}"),
    (rf"/repos/{_SEG}/{_SEG}/git/blobs/{_SEG}", "/repos/{owner}/{repo}/git/blobs/{sha}"),
    (rf"/repos/{_SEG}/{_SEG}/git/trees/.+", "/repos/{owner}/{repo}/git/trees/{sha}"),
    (rf"/repos/{_SEG}/{_SEG}/git/(?:ref|refs)/.+", "/repos/{owner}/{repo}/git/refs/{ref}"),
    (rf"/repos/{_SEG}/{_SEG}/contents(?:/.*)?", "/repos/{owner}/{repo}/contents/{path}"),
    (rf"/repos/{_SEG}/{_SEG}/pulls", "/repos/{owner}/{repo}/pulls"),
    (rf"/repos/{_SEG}/{_SEG}/pulls/\d+", "/repos/{owner}/{repo}/pulls/{number}"),
    (rf"/repos/{_SEG}/{_SEG}/pulls/\d+/(\w+)", "/repos/{owner}/{repo}/pulls/{number}/\\1"),
    (rf"/repos/{_SEG}/{_SEG}/issues/\d+/(\w+)", "/repos/{owner}/{repo}/issues/{number}/\\1"),
    (rf"/repos/{_SEG}/{_SEG}/issues/\d+", "/repos/{owner}/{repo}/issues/{number}"),
    (rf"/repos/{_SEG}/{_SEG}/issues/comments/\d+", "/repos/{owner}/{repo}/issues/comments/{id}"),
    (
        rf"/repos/{_SEG}/{_SEG}/issues/comments/\d+/reactions(?:/\d+)?",
        "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
    ),
    (rf"/repos/{_SEG}/{_SEG}/check-runs", "/repos/{owner}/{repo}/check-runs"),
    (rf"/repos/{_SEG}/{_SEG}/check-runs/\d+", "/repos/{owner}/{repo}/check-runs/{id}"),
    (
        rf"/repos/{_SEG}/{_SEG}/check-runs/\d+/annotations",
        "/repos/{owner}/{repo}/check-runs/{id}/annotations",
    ),
    (rf"/repos/{_SEG}/{_SEG}/commits/{_SEG}/(\w[\w-]*)", "/repos/{owner}/{repo}/commits/{ref}/\\1"),
    (rf"/repos/{_SEG}/{_SEG}/commits(?:/{_SEG})?", "/repos/{owner}/{repo}/commits"),
    (rf"/repos/{_SEG}/{_SEG}/deployments", "/repos/{owner}/{repo}/deployments"),
    (rf"/repos/{_SEG}/{_SEG}/deployments/\d+", "/repos/{owner}/{repo}/deployments/{id}"),
    (
        rf"/repos/{_SEG}/{_SEG}/deployments/\d+/statuses(?:/\d+)?",
        "/repos/{owner}/{repo}/deployments/{id}/statuses",
    ),
    (
        rf"/repos/{_SEG}/{_SEG}/collaborators/{_SEG}/permission",
        "/repos/{owner}/{repo}/collaborators/{user}/permission",
    ),
    (
        rf"/orgs/{_SEG}/teams/{_SEG}/memberships/{_SEG}",
        "/orgs/{org}/teams/{team}/memberships/{user}",
    ),
)
_COMPILED = tuple((re.compile(pattern + r"/?\Z"), template) for pattern, template in _ROUTES)
# Known sub-resources for the `\1` captures above; anything else is "other".
_SUBRESOURCES = frozenset(
    {
        "comments",
        "files",
        "commits",
        "reviews",
        "labels",
        "events",
        "reactions",
        "merge",
        "requested_reviewers",
        "check-runs",
        "check-suites",
        "status",
        "statuses",
        "timeline",
    }
)


@functools.lru_cache(maxsize=1024)
def route_template(url: str) -> str:
    """The route template of an API URL (absolute or a path), or "other"."""
    path = urlsplit(url).path
    # GitHub Enterprise Server serves the API under /api/v3.
    if path.startswith("/api/v3/"):
        path = path[len("/api/v3") :]
    for pattern, template in _COMPILED:
        match = pattern.match(path)
        if match is None:
            continue
        if match.groups():
            sub = match.group(1)
            if sub not in _SUBRESOURCES:
                return "other"
            return match.expand(template)
        return template
    return "other"
