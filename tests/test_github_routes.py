"""Route templates keep the metrics' route label bounded: no names, numbers or SHAs."""

from __future__ import annotations

import pytest

from bot.github.routes import route_template

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("url", "template"),
    [
        (
            "https://api.github.com/app/installations/42/access_tokens",
            "/app/installations/{id}/access_tokens",
        ),
        ("https://api.github.com/repos/octo/infra", "/repos/{owner}/{repo}"),
        (f"/repos/octo/infra/compare/{SHA}...{SHA}", "/repos/{owner}/{repo}/compare/{basehead}"),
        (f"/repos/octo/infra/tarball/{SHA}", "/repos/{owner}/{repo}/tarball/{ref}"),
        (f"/repos/octo/infra/git/blobs/{SHA}", "/repos/{owner}/{repo}/git/blobs/{sha}"),
        (
            "/repos/octo/infra/contents/hubbot.yaml?ref=main",
            "/repos/{owner}/{repo}/contents/{path}",
        ),
        (
            "/repos/octo/infra/issues/12/comments?per_page=100",
            "/repos/{owner}/{repo}/issues/{number}/comments",
        ),
        ("/repos/octo/infra/issues/comments/991", "/repos/{owner}/{repo}/issues/comments/{id}"),
        ("/repos/octo/infra/check-runs", "/repos/{owner}/{repo}/check-runs"),
        ("/repos/octo/infra/check-runs/5", "/repos/{owner}/{repo}/check-runs/{id}"),
        (
            f"/repos/octo/infra/commits/{SHA}/check-runs",
            "/repos/{owner}/{repo}/commits/{ref}/check-runs",
        ),
        ("/repos/octo/infra/pulls/3", "/repos/{owner}/{repo}/pulls/{number}"),
        (
            "/repos/octo/infra/collaborators/alice/permission",
            "/repos/{owner}/{repo}/collaborators/{user}/permission",
        ),
        (
            "https://ghe.example/api/v3/repos/octo/infra/pulls/3",
            "/repos/{owner}/{repo}/pulls/{number}",
        ),
        ("/repos/octo/infra/issues/3/secret-sub-resource-of-someones-choice", "other"),
        ("/users/alice/gists", "other"),
    ],
)
def test_route_template(url: str, template: str) -> None:
    assert route_template(url) == template
