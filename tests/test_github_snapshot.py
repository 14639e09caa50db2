"""Reading repositories from GitHub: tarball safety, content addressing, fewest calls."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from bot.core.snapshot import GitSnapshot, git_blob_id
from bot.github.snapshot import (
    COMPARE_FILE_CAP,
    BlobSnapshot,
    Comparison,
    RepoRef,
    SnapshotError,
    SnapshotReader,
)
from bot.github.tarball import TarballError, unpack
from tests.conftest import FakeGH

REPO = RepoRef("octo", "infra", "https://api.github.com/repos/octo/infra")


def make_tar(members: list[tuple[str, Any]], *, comment: str | None = None) -> bytes:
    """A gzipped tar; a member is (name, bytes) or (name, tarfile.TarInfo-type, extra)."""
    buf = io.BytesIO()
    pax = {"comment": comment} if comment else {}
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax) as tar:
        for name, spec in members:
            info = tarfile.TarInfo(name)
            if isinstance(spec, bytes):
                info.size = len(spec)
                tar.addfile(info, io.BytesIO(spec))
            else:
                kind, extra = spec
                info.type = kind
                if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = extra
                tar.addfile(info)
    return buf.getvalue()


# -- the tarball reader -----------------------------------------------------------------------


def test_unpack_keeps_files_and_symlinks_under_the_top_folder() -> None:
    data = make_tar(
        [
            ("octo-infra-abc/", (tarfile.DIRTYPE, None)),
            ("octo-infra-abc/a/values.yaml", b"x: 1\n"),
            ("octo-infra-abc/a/link.jsonnet", (tarfile.SYMTYPE, "../b/real.jsonnet")),
            ("octo-infra-abc/b/real.jsonnet", b"{}"),
        ],
        comment="a" * 40,
    )
    out = unpack(data)
    assert out.files == {
        "a/values.yaml": (b"x: 1\n", False),
        "a/link.jsonnet": (b"../b/real.jsonnet", True),
        "b/real.jsonnet": (b"{}", False),
    }
    assert out.commit == "a" * 40
    assert out.rejected == []


@pytest.mark.parametrize(
    "name",
    [
        "octo-infra-abc/../escape.yaml",
        "octo-infra-abc/a/../../escape.yaml",
        "/etc/passwd",
        "elsewhere/file.yaml",
        "octo-infra-abc/a\\b.yaml",
    ],
)
def test_unpack_rejects_members_outside_the_top_folder(name: str) -> None:
    data = make_tar([("octo-infra-abc/ok.yaml", b"ok"), (name, b"evil")])
    out = unpack(data)
    assert out.files == {"ok.yaml": (b"ok", False)}
    assert out.rejected == [name]


@pytest.mark.parametrize(
    "kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.LNKTYPE]
)
def test_unpack_rejects_special_members(kind: bytes) -> None:
    data = make_tar([("top/ok", b"1"), ("top/odd", (kind, "top/ok"))])
    out = unpack(data)
    assert set(out.files) == {"ok"} and out.rejected == ["top/odd"]


def test_unpack_caps_size_and_member_count() -> None:
    data = make_tar([("top/a", b"x" * 600), ("top/b", b"y" * 600)])
    with pytest.raises(TarballError, match="more than 1000 bytes"):
        unpack(data, max_unpacked=1000)
    with pytest.raises(TarballError, match="more than 2 members"):
        unpack(
            make_tar([("top/", (tarfile.DIRTYPE, None)), ("top/a", b""), ("top/b", b"")]),
            max_members=2,
        )


@pytest.mark.parametrize("data", [b"", b"not a tarball", b"\x1f\x8b\x08\x00garbage"])
def test_unpack_rejects_garbage(data: bytes) -> None:
    with pytest.raises(TarballError):
        unpack(data)


def test_unpack_reads_git_archive_output_exactly(tmp_path: Path) -> None:
    repo = git_repo(tmp_path, {"config/a.yaml": "a: 1\n", "charts/x/values.yaml": "x: 2\n"})
    (tmp_path / "repo" / "config" / "link").symlink_to("a.yaml")
    commit(repo, "link")
    head = rev(repo, "HEAD")
    out = unpack(archive(repo, head))
    assert out.commit == head
    snap = GitSnapshot(repo, head)
    assert sorted(out.files) == list(snap.paths())
    for path, (content, is_link) in out.files.items():
        assert git_blob_id(content) == snap.blob_id(path)
        assert is_link == snap.is_symlink(path)


# -- the snapshot reader ----------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def git_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, files)
    commit(repo, "initial")
    return repo


def write(repo: Path, files: dict[str, str | None]) -> None:
    for path, text in files.items():
        target = repo / path
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", message)


def rev(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", ref).strip()


def archive(repo: Path, sha: str) -> bytes:
    return subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "archive",
            "--format=tar.gz",
            f"--prefix=octo-infra-{sha[:7]}/",
            sha,
        ],
        check=True,
        capture_output=True,
    ).stdout


def compare_answer(repo: Path, base: str, head: str, *, patches: bool = False) -> dict[str, Any]:
    """What GitHub's compare would say, computed by git (with `patch` texts if asked)."""
    merge_base = git(repo, "merge-base", base, head).strip()
    files = []
    for line in git(repo, "diff", "--name-status", "-M", f"{base}...{head}").splitlines():
        status, *paths = line.split("\t")
        kind = {"A": "added", "D": "removed", "M": "modified", "R": "renamed"}[status[0]]
        path = paths[-1]
        entry: dict[str, Any] = {"filename": path, "status": kind}
        if kind != "removed":
            entry["sha"] = git(repo, "rev-parse", f"{head}:{path}").strip()
        if kind == "renamed":
            entry["previous_filename"] = paths[0]
        if patches and kind != "removed":
            text = git(repo, "diff", "--no-color", "-M", merge_base, head, "--", *paths)
            entry["patch"] = text[text.index("@@") :] if "@@" in text else ""
        files.append(entry)
    return {"merge_base_commit": {"sha": merge_base}, "files": files}


def blob_answer(repo: Path, sha: str) -> dict[str, Any]:
    content = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "blob", sha], check=True, capture_output=True
    ).stdout
    return {"sha": sha, "encoding": "base64", "content": base64.encodebytes(content).decode()}


class World:
    """A git repository served through FakeGH the way GitHub would answer."""

    def __init__(self, tmp_path: Path, files: dict[str, str]) -> None:
        self.repo = git_repo(tmp_path, files)
        self.gh = FakeGH()
        self.serve(rev(self.repo, "HEAD"))

    def push(self, files: dict[str, str | None], message: str = "change") -> str:
        write(self.repo, files)
        commit(self.repo, message)
        sha = rev(self.repo, "HEAD")
        self.serve(sha)
        return sha

    def serve(self, sha: str) -> None:
        self.gh.responses[("DOWNLOAD", f"{REPO.url}/tarball/{sha}")] = archive(self.repo, sha)
        for line in git(self.repo, "ls-tree", "-r", sha).splitlines():
            blob = line.split()[2]
            self.gh.responses[("GET", f"{REPO.url}/git/blobs/{blob}")] = blob_answer(
                self.repo, blob
            )

    def compare(self, base: str, head: str, *, patches: bool = False) -> None:
        self.gh.responses[("GET", f"{REPO.url}/compare/{base}...{head}")] = compare_answer(
            self.repo, base, head, patches=patches
        )

    def count(self, kind: str) -> int:
        return sum(1 for m, u, _ in self.gh.calls if kind in u)


def same_files(snapshot: BlobSnapshot, repo: Path, sha: str) -> None:
    truth = GitSnapshot(repo, sha)
    assert snapshot.paths() == truth.paths()
    for path in truth.paths():
        assert snapshot.read(path) == truth.read(path), path
        assert snapshot.blob_id(path) == truth.blob_id(path)


async def test_a_commit_costs_one_tarball_then_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, {"a.yaml": "a: 1\n", "b/c.yaml": "c: 2\n"})
    sha = rev(world.repo, "HEAD")
    reader = SnapshotReader()
    snap = await reader.at_commit(world.gh, REPO, sha)
    same_files(snap, world.repo, sha)
    assert await reader.at_commit(world.gh, REPO, sha) is snap
    assert world.gh.calls == [("DOWNLOAD", f"{REPO.url}/tarball/{sha}", None)]
    assert reader.blobs.get(git_blob_id(b"a: 1\n")) == b"a: 1\n"


@pytest.mark.parametrize("changed", [1, 2])
async def test_a_few_changed_files_cost_one_blob_call_each(tmp_path: Path, changed: int) -> None:
    files = {f"hubs/h{n}.yaml": f"n: {n}\n" for n in range(10)}
    world = World(tmp_path, files)
    base = rev(world.repo, "HEAD")
    head = world.push({f"hubs/h{n}.yaml": f"n: {n}0\n" for n in range(changed)})
    world.compare(base, head)
    reader = SnapshotReader()
    base_snap = await reader.at_commit(world.gh, REPO, base)
    comparison = await reader.compare(world.gh, REPO, base, head)
    head_snap = await reader.at_head(world.gh, REPO, base_snap, comparison)
    same_files(head_snap, world.repo, head)
    assert world.count("/git/blobs/") == changed and world.count("/tarball/") == 1
    # The same blobs are never fetched twice, even for another snapshot.
    reader.forget_snapshots()
    await reader.at_head(world.gh, REPO, base_snap, comparison)
    assert world.count("/git/blobs/") == changed


async def test_many_changed_files_cost_one_head_tarball(tmp_path: Path) -> None:
    world = World(tmp_path, {f"hubs/h{n}.yaml": f"n: {n}\n" for n in range(10)})
    base = rev(world.repo, "HEAD")
    head = world.push(
        {
            "hubs/h0.yaml": None,
            "hubs/h1.yaml": "changed\n",
            "hubs/new.yaml": "new\n",
            "hubs/h2.yaml": "also\n",
        }
    )
    world.compare(base, head)
    reader = SnapshotReader()
    base_snap = await reader.at_commit(world.gh, REPO, base)
    comparison = await reader.compare(world.gh, REPO, base, head)
    head_snap = await reader.at_head(world.gh, REPO, base_snap, comparison)
    same_files(head_snap, world.repo, head)
    assert world.count("/git/blobs/") == 0 and world.count("/tarball/") == 2


async def test_renames_deletions_and_known_blobs_cost_nothing(tmp_path: Path) -> None:
    world = World(tmp_path, {"a.yaml": "same\n", "b.yaml": "bee\n", "c.yaml": "sea\n"})
    base = rev(world.repo, "HEAD")
    git(world.repo, "mv", "a.yaml", "renamed.yaml")
    head = world.push({"c.yaml": None, "copy.yaml": "bee\n"})
    world.compare(base, head)
    reader = SnapshotReader()
    base_snap = await reader.at_commit(world.gh, REPO, base)
    comparison = await reader.compare(world.gh, REPO, base, head)
    head_snap = await reader.at_head(world.gh, REPO, base_snap, comparison)
    same_files(head_snap, world.repo, head)
    assert world.count("/git/blobs/") == 0 and world.count("/tarball/") == 1


async def test_a_capped_compare_falls_back_to_the_head_tarball(tmp_path: Path) -> None:
    world = World(tmp_path, {"a.yaml": "1\n"})
    base = rev(world.repo, "HEAD")
    head = world.push({"a.yaml": "2\n"})
    files = [
        {"filename": f"f{n}", "status": "added", "sha": "0" * 40} for n in range(COMPARE_FILE_CAP)
    ]
    comparison = Comparison.from_api({"merge_base_commit": {"sha": base}, "files": files}, head)
    assert not comparison.complete
    reader = SnapshotReader()
    base_snap = await reader.at_commit(world.gh, REPO, base)
    head_snap = await reader.at_head(world.gh, REPO, base_snap, comparison)
    same_files(head_snap, world.repo, head)


async def test_blob_lru_is_bounded_by_bytes() -> None:
    reader = SnapshotReader(blob_cache_bytes=100)
    gh = FakeGH()
    blobs = [bytes([n]) * 40 for n in range(4)]
    for blob in blobs:
        sha = git_blob_id(blob)
        gh.responses[("GET", f"{REPO.url}/git/blobs/{sha}")] = {
            "content": base64.b64encode(blob).decode(),
            "encoding": "base64",
        }
        assert await reader.blob(gh, REPO, sha) == blob
    assert reader.blobs.currsize <= 100
    assert git_blob_id(blobs[0]) not in reader.blobs  # least recently used went first
    assert git_blob_id(blobs[3]) in reader.blobs


async def test_a_blob_that_does_not_match_its_id_is_refused() -> None:
    gh = FakeGH()
    sha = git_blob_id(b"expected")
    gh.responses[("GET", f"{REPO.url}/git/blobs/{sha}")] = {
        "content": base64.b64encode(b"tampered").decode(),
        "encoding": "base64",
    }
    with pytest.raises(SnapshotError, match="does not match"):
        await SnapshotReader().blob(gh, REPO, sha)


async def test_a_tarball_of_another_commit_is_refused() -> None:
    gh = FakeGH(
        {
            ("DOWNLOAD", f"{REPO.url}/tarball/{'a' * 40}"): make_tar(
                [("top/x", b"1")], comment="b" * 40
            )
        }
    )
    with pytest.raises(SnapshotError, match="holds commit"):
        await SnapshotReader().at_commit(gh, REPO, "a" * 40)


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"merge_base_commit": {}},
        {"merge_base_commit": {"sha": "x"}, "files": [{"status": "added"}]},
    ],
)
def test_an_odd_compare_answer_is_a_snapshot_error(answer: dict[str, Any]) -> None:
    with pytest.raises(SnapshotError):
        Comparison.from_api(answer, "h")


async def test_patches_from_compare_make_the_head_free(tmp_path: Path) -> None:
    files = {f"hubs/h{n}.yaml": f"n: {n}\nname: hub{n}\n" for n in range(10)}
    world = World(tmp_path, {**files, "old-name.yaml": "moved: true\n"})
    base = rev(world.repo, "HEAD")
    git(world.repo, "mv", "old-name.yaml", "new-name.yaml")
    changes: dict[str, str | None] = {
        f"hubs/h{n}.yaml": f"n: {n}0\nname: hub{n}\n" for n in range(8)
    }
    changes |= {
        "hubs/h9.yaml": None,
        "hubs/added.yaml": "brand: new",
        "new-name.yaml": "moved: yes\n",
    }
    head = world.push(changes)
    world.compare(base, head, patches=True)
    reader = SnapshotReader()
    base_snap = await reader.at_commit(world.gh, REPO, base)
    comparison = await reader.compare(world.gh, REPO, base, head)
    head_snap = await reader.at_head(world.gh, REPO, base_snap, comparison)
    same_files(head_snap, world.repo, head)
    assert world.count("/git/blobs/") == 0 and world.count("/tarball/") == 1
    assert reader.patched == 10


async def test_a_wrong_patch_costs_a_fetch_not_a_wrong_file(tmp_path: Path) -> None:
    world = World(tmp_path, {"a.yaml": "a: 1\n", "b.yaml": "b: 1\n"})
    base = rev(world.repo, "HEAD")
    head = world.push({"a.yaml": "a: 2\n"})
    world.compare(base, head, patches=True)
    answer = world.gh.responses[("GET", f"{REPO.url}/compare/{base}...{head}")]
    answer["files"][0]["patch"] = "@@ -1 +1 @@\n-a: 1\n+a: 3"  # applies, but to the wrong text
    reader = SnapshotReader()
    base_snap = await reader.at_commit(world.gh, REPO, base)
    comparison = await reader.compare(world.gh, REPO, base, head)
    head_snap = await reader.at_head(world.gh, REPO, base_snap, comparison)
    same_files(head_snap, world.repo, head)
    assert world.count("/git/blobs/") == 1 and reader.patched == 0
