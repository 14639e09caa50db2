"""The double's REST endpoints, driven with gidgethub as the bot drives them."""

from __future__ import annotations

import base64
import io
import re
import tarfile
from urllib.parse import parse_qs, urlsplit

import cachetools
import gidgethub
import pytest

from tests.sandbox_support import app_jwt, git, installation_client, repo_path

pytestmark = pytest.mark.usefixtures("github_sandbox")
PROD_VALUES = "jupyterhub:\n  singleuser:\n    cpu: 2\n"  # as in DEFAULT_FILES: a pure rename


@pytest.fixture
async def gh(github_sandbox, sandbox_ctl):
    return await installation_client(sandbox_ctl.session, github_sandbox)


@pytest.fixture
def repo(github_sandbox) -> str:
    return repo_path(github_sandbox)


async def test_comment_pagination_with_link_headers(gh, repo, sandbox_ctl, github_sandbox):
    number = await sandbox_ctl.open_pull({"x": "x"})
    for i in range(45):
        await gh.post(f"{repo}/issues/{number}/comments", data={"body": f"c{i}"})
    bodies = [c["body"] async for c in gh.getiter(f"{repo}/issues/{number}/comments")]
    assert bodies == [f"c{i}" for i in range(45)]
    pages = [r for r in github_sandbox.requests if r.method == "GET"]
    assert len(pages) == 2  # default per_page is 30
    async with sandbox_ctl.session.get(
        f"{github_sandbox.api_url}{repo}/issues/{number}/comments?per_page=500&page=1",
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as resp:
        assert len(await resp.json()) == 45  # capped at 100, all on one page
        assert "Link" not in resp.headers
    async with sandbox_ctl.session.get(
        f"{github_sandbox.api_url}{repo}/issues/{number}/comments?per_page=10&page=2",
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as resp:
        link = resp.headers["Link"]
    rels = {
        rel: parse_qs(urlsplit(url).query)
        for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', link)
    }
    assert {rel: q["page"] for rel, q in rels.items()} == {
        "next": ["3"],
        "last": ["5"],
        "first": ["1"],
        "prev": ["1"],
    }
    assert all(q["per_page"] == ["10"] for q in rels.values())


async def test_etag_304_with_gidgethub_cache_costs_no_rate_limit(github_sandbox, sandbox_ctl):
    cache: cachetools.LRUCache = cachetools.LRUCache(maxsize=50)
    gh = await installation_client(sandbox_ctl.session, github_sandbox, cache=cache)
    repo = repo_path(github_sandbox)
    first = await gh.getitem(repo)
    remaining = gh.rate_limit.remaining
    second = await gh.getitem(repo)
    assert first == second
    assert [r.status for r in github_sandbox.requests[-2:]] == [200, 304]
    assert gh.rate_limit is not None and gh.rate_limit.limit == 5000
    await gh.getitem(f"{repo}/branches/main")
    assert gh.rate_limit.remaining == remaining - 1  # the 304 was free


async def test_every_answer_has_githubs_headers(gh, repo, sandbox_ctl, github_sandbox):
    async with sandbox_ctl.session.get(
        f"{github_sandbox.api_url}{repo}", headers={"Authorization": f"token {gh.oauth_token}"}
    ) as resp:
        h = resp.headers
        assert h["Content-Type"] == "application/json; charset=utf-8"
        assert h["ETag"].startswith('W/"')
        for name in (
            "X-GitHub-Request-Id",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
            "X-RateLimit-Used",
            "X-RateLimit-Resource",
        ):
            assert name in h
    async with sandbox_ctl.session.get(
        f"{github_sandbox.api_url}/repos/nobody/nothing",
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as resp:
        assert resp.status == 404
        body = await resp.json()
        assert body["message"] == "Not Found" and "documentation_url" in body
        assert "X-GitHub-Request-Id" in resp.headers


async def test_comment_crud_limits_and_reactions(gh, repo, sandbox_ctl):
    number = await sandbox_ctl.open_pull({"x": "x"})
    made = await gh.post(f"{repo}/issues/{number}/comments", data={"body": "plan"})
    assert made["user"]["login"] == "hubbot[bot]" and made["user"]["type"] == "Bot"
    url = f"{repo}/issues/comments/{made['id']}"
    updated = await gh.patch(url, data={"body": "plan v2"})
    assert updated["body"] == "plan v2"
    assert (await gh.getitem(url))["body"] == "plan v2"
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.post(f"{repo}/issues/{number}/comments", data={"body": "x" * 65537})
    assert caught.value.status_code == 422
    assert (await gh.post(f"{url}/reactions", data={"content": "eyes"}))["content"] == "eyes"
    statuses = []
    for _ in range(2):
        async with sandbox_ctl.session.post(
            f"{sandbox_ctl.base.removesuffix('/_sandbox')}{url}/reactions",
            json={"content": "rocket"},
            headers={"Authorization": f"token {gh.oauth_token}"},
        ) as resp:
            statuses.append(resp.status)
    assert statuses == [201, 200]
    listed = [r["content"] async for r in gh.getiter(f"{url}/reactions")]
    assert listed == ["eyes", "rocket"]
    (rocket,) = [r async for r in gh.getiter(f"{url}/reactions?content=rocket")]
    await gh.delete(f"{url}/reactions/{rocket['id']}")
    view = await sandbox_ctl.get(f"/pulls/{number}")
    assert view["comments"][0]["reactions"] == [{"user": "hubbot[bot]", "content": "eyes"}]
    await gh.delete(url)
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem(url)


async def test_labels_add_and_remove(gh, repo, sandbox_ctl):
    number = await sandbox_ctl.open_pull({"x": "x"})
    labels = await gh.post(f"{repo}/issues/{number}/labels", data={"labels": ["a", "b"]})
    assert [x["name"] for x in labels] == ["a", "b"]
    await gh.delete(f"{repo}/issues/{number}/labels/a")  # gidgethub drops the answer
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.delete(f"{repo}/issues/{number}/labels/a")
    assert caught.value.status_code == 404
    assert (await sandbox_ctl.get(f"/pulls/{number}"))["labels"] == ["b"]


async def test_compare_statuses_and_files(gh, repo, sandbox_ctl, github_sandbox):
    await sandbox_ctl.post(
        "/branches",
        {
            "name": "feature",
            "files": {
                "config/clusters/alpha/prod.values.yaml": None,
                "config/clusters/alpha/renamed.values.yaml": PROD_VALUES,
                "added.txt": "new\n",
                "README.md": "# changed\n",
            },
        },
    )
    cmp = await gh.getitem(f"{repo}/compare/main...feature")
    assert (cmp["status"], cmp["ahead_by"], cmp["behind_by"]) == ("ahead", 1, 0)
    files = {f["filename"]: f for f in cmp["files"]}
    assert files["added.txt"]["status"] == "added"
    assert files["README.md"]["status"] == "modified"
    renamed = files["config/clusters/alpha/renamed.values.yaml"]
    assert renamed["status"] == "renamed"
    assert renamed["previous_filename"] == "config/clusters/alpha/prod.values.yaml"
    assert renamed["sha"] == git(
        github_sandbox.context.repo.path,
        "rev-parse",
        "feature:config/clusters/alpha/renamed.values.yaml",
    )
    assert cmp["merge_base_commit"]["sha"] == git(
        github_sandbox.context.repo.path, "rev-parse", "main"
    )
    await sandbox_ctl.post("/push", {"branch": "main", "files": {"other.txt": "o"}})
    assert (await gh.getitem(f"{repo}/compare/main...feature"))["status"] == "diverged"
    assert (await gh.getitem(f"{repo}/compare/feature...main"))["status"] == "diverged"
    assert (await gh.getitem(f"{repo}/compare/main...main"))["status"] == "identical"
    behind = await gh.getitem(f"{repo}/compare/main...main~1")
    assert (behind["status"], behind["behind_by"]) == ("behind", 1)
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(f"{repo}/compare/main...nope")
    assert caught.value.status_code == 404


async def test_compare_caps_files_at_300(gh, repo, sandbox_ctl):
    await sandbox_ctl.post(
        "/branches", {"name": "big", "files": {f"f/{i:03}.txt": "x" for i in range(310)}}
    )
    cmp = await gh.getitem(f"{repo}/compare/main...big")
    assert len(cmp["files"]) == 300
    number = (await sandbox_ctl.post("/pulls", {"head": "big"}))["number"]
    files = [f async for f in gh.getiter(f"{repo}/pulls/{number}/files?per_page=100")]
    assert len(files) == 310  # the pull request files API goes up to 3000


async def test_contents_trees_and_blobs(gh, repo, github_sandbox):
    content = await gh.getitem(f"{repo}/contents/config/clusters/alpha/cluster.yaml?ref=main")
    assert base64.b64decode(content["content"]) == b"name: alpha\nprovider: gcp\n"
    assert content["encoding"] == "base64" and content["type"] == "file"
    listing = await gh.getitem(f"{repo}/contents/config/clusters/alpha")
    assert sorted(e["name"] for e in listing) == [
        "cluster.yaml",
        "prod.values.yaml",
        "staging.values.yaml",
    ]
    link = await gh.getitem(f"{repo}/contents/cluster-link.yaml")
    assert (link["type"], link["target"]) == ("symlink", "config/clusters/alpha/cluster.yaml")
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem(f"{repo}/contents/absent.yaml")
    head = git(github_sandbox.context.repo.path, "rev-parse", "main")
    tree = await gh.getitem(f"{repo}/git/trees/{head}?recursive=1")
    entries = {e["path"]: e for e in tree["tree"]}
    assert entries["config/clusters"]["type"] == "tree"
    assert entries["cluster-link.yaml"]["mode"] == "120000"
    assert tree["truncated"] is False
    shallow = await gh.getitem(f"{repo}/git/trees/main")
    assert {e["path"] for e in shallow["tree"]} == {"README.md", "cluster-link.yaml", "config"}
    blob = await gh.getitem(f"{repo}/git/blobs/{entries['README.md']['sha']}")
    assert base64.b64decode(blob["content"]) == b"# infrastructure\n"
    assert blob["size"] == len(b"# infrastructure\n")
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(f"{repo}/git/blobs/{'0' * 40}")
    assert caught.value.status_code == 404


async def test_tarball_redirects_to_a_codeload_archive(gh, repo, sandbox_ctl, github_sandbox):
    head = git(github_sandbox.context.repo.path, "rev-parse", "main")
    async with sandbox_ctl.session.get(
        f"{github_sandbox.api_url}{repo}/tarball/main",
        headers={"Authorization": f"token {gh.oauth_token}"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    async with sandbox_ctl.session.get(location) as resp:  # no token needed, as on codeload
        assert resp.status == 200
        data = await resp.read()
    top = f"hubbot-sandbox-{github_sandbox.state.name}-{head[:7]}"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = archive.getnames()
        link = archive.getmember(f"{top}/cluster-link.yaml")
    assert f"{top}/config/clusters/alpha/cluster.yaml" in names
    assert link.issym() and link.linkname == "config/clusters/alpha/cluster.yaml"


async def test_commits_branches_and_pulls_of_a_commit(gh, repo, sandbox_ctl, github_sandbox):
    number = await sandbox_ctl.open_pull({"x.txt": "x"})
    head = (await sandbox_ctl.get(f"/pulls/{number}"))["head"]["sha"]
    commit = await gh.getitem(f"{repo}/commits/{head}")
    assert commit["sha"] == head and [f["filename"] for f in commit["files"]] == ["x.txt"]
    assert commit["author"]["login"] == "alice"
    open_pulls = await gh.getitem(f"{repo}/commits/{head}/pulls")
    assert [p["number"] for p in open_pulls] == [number]
    merged = await sandbox_ctl.post(f"/pulls/{number}/merge")
    for sha in (head, merged["sha"]):
        assert [p["number"] for p in await gh.getitem(f"{repo}/commits/{sha}/pulls")] == [number]
    branch = await gh.getitem(f"{repo}/branches/main")
    assert branch["commit"]["sha"] == merged["sha"]
    assert len(branch["commit"]["parents"]) == 2
    await sandbox_ctl.post("/branches", {"name": "team/feature"})
    assert (await gh.getitem(f"{repo}/branches/team/feature"))["name"] == "team/feature"
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(f"{repo}/commits/{'f' * 40}")
    assert caught.value.status_code == 422


async def test_pulls_list_get_and_reviews(gh, repo, sandbox_ctl):
    one = await sandbox_ctl.open_pull({"a": "a"}, branch="one")
    two = await sandbox_ctl.open_pull({"b": "b"}, branch="two")
    await sandbox_ctl.patch(f"/pulls/{one}", {"state": "closed"})
    assert [p["number"] for p in await gh.getitem(f"{repo}/pulls")] == [two]
    assert [p["number"] for p in await gh.getitem(f"{repo}/pulls?state=all")] == [two, one]
    assert [p["number"] for p in await gh.getitem(f"{repo}/pulls?state=closed")] == [one]
    head = "hubbot-sandbox:two"
    assert [p["number"] for p in await gh.getitem(f"{repo}/pulls?head={head}")] == [two]
    pull = await gh.getitem(f"{repo}/pulls/{two}")
    assert (pull["mergeable"], pull["changed_files"], pull["commits"]) == (True, 1, 1)
    await sandbox_ctl.post(f"/pulls/{two}/reviews", {"user": "bob", "state": "CHANGES_REQUESTED"})
    reviews = await gh.getitem(f"{repo}/pulls/{two}/reviews")
    assert [(r["user"]["login"], r["state"]) for r in reviews] == [("bob", "CHANGES_REQUESTED")]
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem(f"{repo}/pulls/99")


@pytest.mark.parametrize(
    ("level", "permission"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
async def test_collaborator_permission_per_level(gh, repo, sandbox_ctl, level, permission):
    await sandbox_ctl.post("/users", {"login": "pat", "permission": level})
    answer = await gh.getitem(f"{repo}/collaborators/pat/permission")
    assert (answer["permission"], answer["role_name"]) == (permission, level)
    assert answer["user"]["permissions"]["push"] is (level in ("admin", "maintain", "write"))


async def test_unknown_users_and_team_membership(gh, repo, sandbox_ctl):
    with pytest.raises(gidgethub.BadRequest) as caught:
        await gh.getitem(f"{repo}/collaborators/ghost/permission")
    assert caught.value.status_code == 404
    await sandbox_ctl.post(
        "/teams", {"org": "hubbot-sandbox", "slug": "partners", "members": {"carol": "maintainer"}}
    )
    member = await gh.getitem("/orgs/hubbot-sandbox/teams/partners/memberships/carol")
    assert (member["state"], member["role"]) == ("active", "maintainer")
    for who in ("dave", "carol"):
        slug = "partners" if who == "dave" else "nobody"
        with pytest.raises(gidgethub.BadRequest) as caught:
            await gh.getitem(f"/orgs/hubbot-sandbox/teams/{slug}/memberships/{who}")
        assert caught.value.status_code == 404
    user = await gh.getitem("/users/carol")
    assert (user["login"], user["type"]) == ("carol", "User")
    with pytest.raises(gidgethub.BadRequest):
        await gh.getitem("/users/ghost")


async def test_fork_head_repository_is_readable(gh, sandbox_ctl, github_sandbox):
    await sandbox_ctl.open_pull({"x": "x"}, branch="patch", user="eve", fork=True)
    fork = f"/repos/eve/{github_sandbox.state.name}"
    repo = await gh.getitem(fork)
    assert repo["fork"] is True and repo["parent"]["full_name"] == github_sandbox.state.full_name
    content = await gh.getitem(f"{fork}/contents/x?ref=patch")
    assert base64.b64decode(content["content"]) == b"x"
    with pytest.raises(gidgethub.BadRequest) as caught:  # writes only on the repository itself
        await gh.post(f"{fork}/issues/1/comments", data={"body": "no"})
    assert caught.value.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/contents/%00",
        "/contents/../../etc/passwd",
        "/contents/config?ref=--help",
        "/git/trees/main%00",
        "/git/trees/--output=x",
        "/git/blobs/zz",
        "/compare/...",
        "/compare/main...-x",
        "/commits/-n",
        "/tarball/--format=zip",
        "/branches/-d",
        "/pulls/abc",
        "/issues/1/comments?since=garbage",
        "/deployments?per_page=abc",
        "/check-runs/1/annotations?page=-1&per_page=0",
        "/collaborators/%20/permission",
    ],
)
async def test_hostile_paths_get_4xx_never_5xx(gh, repo, sandbox_ctl, github_sandbox, path):
    async with sandbox_ctl.session.get(
        f"{github_sandbox.api_url}{repo}{path}",
        headers={"Authorization": f"token {gh.oauth_token}"},
    ) as resp:
        assert resp.status < 500
        if resp.status >= 400:
            assert "message" in await resp.json()
    github_sandbox.violations.clear()  # some of these break the description on purpose


async def test_installation_listing_and_pull_commits(gh, repo, sandbox_ctl, github_sandbox):
    app = await gh.getitem("/app/installations", jwt=app_jwt(github_sandbox))
    assert [i["id"] for i in app] == [github_sandbox.installation_id]
    reachable = await gh.getitem("/installation/repositories")
    assert [r["full_name"] for r in reachable["repositories"]] == [github_sandbox.state.full_name]
    number = await sandbox_ctl.open_pull({"a": "a"})
    pushed = await sandbox_ctl.post(f"/pulls/{number}/commits", {"files": {"b": "b"}})
    commits = await gh.getitem(f"{repo}/pulls/{number}/commits")
    assert [c["sha"] for c in commits][-1] == pushed["sha"] and len(commits) == 2
