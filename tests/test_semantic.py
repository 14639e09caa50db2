"""Semantic mode on a git repository built from the real snapshot: meaning, not file names."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.planner import Plan
from bot.core.semantic import canonical, changed_paths, plan_snapshots
from bot.core.settings import Settings, build_settings
from bot.core.snapshot import DictSnapshot, GitSnapshot
from tests.conftest import SNAPSHOT_2I2C

CLUSTERS = "config/clusters"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A git repository whose first commit is the real snapshot; each change commits on it."""

    def __init__(self, path: Path):
        self.path = path

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV}
        proc = subprocess.run(
            ["git", "-C", str(self.path), *args], env=env, capture_output=True, check=True
        )
        return proc.stdout.decode().strip()

    def commit(self, change: Callable[[Path], None]) -> str:
        """A commit on top of the base with `change` applied to the working tree."""
        self.git("checkout", "-q", "--detach", "base")
        self.git("clean", "-qfdx")
        change(self.path)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", "change")
        return self.git("rev-parse", "HEAD")

    def plan(
        self, change: Callable[[Path], None], settings: Settings | None = None, **kw: Any
    ) -> Plan:
        kw.setdefault("validate", False)  # validation has its own test below
        head = self.commit(change)
        base = GitSnapshot(self.path, "base")
        return plan_snapshots(base, GitSnapshot(self.path, head), settings or Settings(), **kw)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRepo]:
    if not SNAPSHOT_2I2C.is_dir():
        pytest.skip("../shared/fixtures is absent")
    path = tmp_path_factory.mktemp("infra")
    shutil.copytree(SNAPSHOT_2I2C, path, dirs_exist_ok=True, copy_function=shutil.copy)
    for p in path.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    git = GitRepo(path)
    git.git("init", "-q", "-b", "main")
    git.git("add", "-A")
    git.git("commit", "-q", "-m", "base")
    git.git("tag", "base")
    yield git


def edit(rel: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / rel
        path.write_text(fn(path.read_text()))

    return change


def both(*changes: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        for c in changes:
            c(root)

    return change


def names(targets: Any) -> list[str]:
    return sorted(t.name for t in targets)


def deployed(plan: Plan) -> list[str]:
    return names((*plan.support, *plan.staging, *plan.prod))


def reasons(plan: Plan, name: str) -> tuple[str, ...]:
    found = {t.name: t for t in (*plan.support, *plan.staging, *plan.prod, *plan.skipped)}
    return found[name].reasons


UTORONTO = f"{CLUSTERS}/utoronto"


def test_no_change_plans_nothing(repo: GitRepo) -> None:
    plan = repo.plan(lambda root: None)
    assert plan.is_empty and not plan.skipped and not plan.removed
    assert plan.base and plan.head and plan.base != plan.head  # an empty commit


def test_comment_only_values_change_is_skipped(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/r-prod.values.yaml", lambda t: "# why\n" + t + "\n\n"))
    assert plan.is_empty
    assert names(plan.skipped) == ["utoronto/r-prod"]
    assert reasons(plan, "utoronto/r-prod") == (
        "values file r-prod.values.yaml changed only in comments or formatting",
    )


def test_comment_only_change_deploys_when_setting_is_off(repo: GitRepo) -> None:
    settings = build_settings({"skip_unchanged_values": False})
    plan = repo.plan(edit(f"{UTORONTO}/r-prod.values.yaml", lambda t: "# why\n" + t), settings)
    assert deployed(plan) == ["utoronto/r-prod", "utoronto/r-staging", "utoronto/staging"]
    assert "(comments or formatting only)" in reasons(plan, "utoronto/r-prod")[0]


def test_real_values_change_deploys(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/r-prod.values.yaml", lambda t: t + "extra: 1\n"))
    assert deployed(plan) == ["utoronto/r-prod", "utoronto/r-staging", "utoronto/staging"]
    assert reasons(plan, "utoronto/r-prod") == ("values file r-prod.values.yaml changed",)


@pytest.mark.parametrize(
    ("before", "after", "outcome"),
    [
        ("x: 1\n", "x: true\n", "deploy"),
        ("x: 1\n", "x: 1.0\n", "deploy"),
        ("x: 1\n", "x: '1'\n", "deploy"),
        ("x: [a, b]\n", "x: [b, a]\n", "deploy"),
        ("x: 1\n", "x: 0x1  # same int\n", "skip"),
        ("a: 1\nb: 2\n", "b: 2\na: 1\n", "skip"),
        ("x: {a: 1}\n", "x:\n  a: 1\n", "skip"),
        ("x: 1\n", "x: [unclosed\n", "deploy"),
    ],
)
def test_parsed_comparison_keeps_types(before: str, after: str, outcome: str) -> None:
    from tests.test_planner import FILES

    rel = "config/clusters/beta/prod.values.yaml"
    base = DictSnapshot({**FILES, rel: before})
    head = DictSnapshot({**FILES, rel: after})
    plan = plan_snapshots(base, head, Settings(), validate=False)
    assert (deployed(plan), names(plan.skipped)) == (
        (["beta/prod"], []) if outcome == "deploy" else ([], ["beta/prod"])
    )
    assert canonical({"a": 1}) != canonical({"a": True}) != canonical({"a": 1.0})


def test_hub_entry_change_redeploys_only_that_hub(repo: GitRepo) -> None:
    plan = repo.plan(
        edit(
            f"{UTORONTO}/cluster.yaml", lambda t: t.replace("jupyter.utoronto.ca", "j.utoronto.ca")
        )
    )
    assert deployed(plan) == ["utoronto/prod", "utoronto/r-staging", "utoronto/staging"]
    assert reasons(plan, "utoronto/prod") == ("cluster.yaml: hub entry changed (domain)",)


def test_cluster_level_key_redeploys_all_hubs_and_support(repo: GitRepo) -> None:
    plan = repo.plan(
        edit(
            f"{UTORONTO}/cluster.yaml",
            lambda t: t.replace("hubspot_deal_id: 8", "hubspot_deal_id: 9"),
        )
    )
    assert deployed(plan) == [
        "utoronto",
        "utoronto/highmem",
        "utoronto/prod",
        "utoronto/r-prod",
        "utoronto/r-staging",
        "utoronto/staging",
    ]
    assert reasons(plan, "utoronto") == ("cluster.yaml: cluster settings changed (metadata)",)


def test_all_hubs_setting_redeploys_on_any_cluster_file_change(repo: GitRepo) -> None:
    settings = build_settings({"cluster_file_changes": "all-hubs"})
    plan = repo.plan(
        edit(
            f"{UTORONTO}/cluster.yaml", lambda t: t.replace("jupyter.utoronto.ca", "j.utoronto.ca")
        ),
        settings,
    )
    assert len(deployed(plan)) == 6
    assert reasons(plan, "utoronto/highmem") == ("cluster.yaml changed",)


def test_cluster_file_comment_only_change_is_skipped(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/cluster.yaml", lambda t: "# a note\n" + t))
    assert plan.is_empty
    assert len(plan.skipped) == 6


def test_support_block_change_redeploys_only_support(repo: GitRepo) -> None:
    plan = repo.plan(
        edit(
            f"{UTORONTO}/cluster.yaml", lambda t: t.replace("support:\n", "support:\n  extra: 1\n")
        )
    )
    assert deployed(plan) == ["utoronto"]
    assert reasons(plan, "utoronto") == ("cluster.yaml: support settings changed (extra)",)


def _drop_hub(text: str, name: str) -> str:
    start = text.index(f"- name: {name}\n")
    end = text.find("\n- name:", start + 1)
    return text[:start] + (text[end + 1 :] if end != -1 else "")


def test_removed_hub_is_listed_not_deployed(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/cluster.yaml", lambda t: _drop_hub(t, "highmem")))
    assert plan.is_empty
    assert plan.removed == (("utoronto", "highmem"),)
    assert plan.to_json()["removed"] == [{"cluster": "utoronto", "hub": "highmem"}]
    assert any("never uninstalls" in n for n in plan.notes)


def test_removed_cluster_lists_every_release(repo: GitRepo) -> None:
    plan = repo.plan(lambda root: shutil.rmtree(root / UTORONTO))
    assert plan.is_empty
    assert plan.removed[0] == ("utoronto", None)
    assert len(plan.removed) == 6


def test_new_hub_deploys(repo: GitRepo) -> None:
    entry = (
        "- name: new\n  display_name: New\n  domain: new.utoronto.ca\n  helm_chart: basehub\n"
        "  helm_chart_values_files:\n  - common.values.yaml\n"
    )
    plan = repo.plan(edit(f"{UTORONTO}/cluster.yaml", lambda t: t + entry))
    assert deployed(plan) == ["utoronto/new", "utoronto/r-staging", "utoronto/staging"]
    assert reasons(plan, "utoronto/new") == ("new hub",)


def test_new_cluster_deploys_everything_on_it(repo: GitRepo) -> None:
    def copy(root: Path) -> None:
        shutil.copytree(root / UTORONTO, root / f"{CLUSTERS}/utoronto2")

    plan = repo.plan(copy)
    assert len(deployed(plan)) == 6
    assert reasons(plan, "utoronto2") == ("new cluster",)


def _daskhub_hubs() -> set[str]:
    from bot.core.model import load_repository
    from bot.core.snapshot import DirSnapshot

    loaded = load_repository(DirSnapshot(SNAPSHOT_2I2C), Settings())
    return {h.key for h in loaded.hubs() if h.chart == "daskhub"}


def test_daskhub_only_change_leaves_basehub_hubs_alone(repo: GitRepo) -> None:
    plan = repo.plan(
        edit(
            "helm-charts/daskhub/Chart.yaml",
            lambda t: t.replace('version: "0.1.0"', 'version: "0.1.1"', 1),
        )
    )
    dask = _daskhub_hubs()
    assert len(dask) == 18
    # 2i2c-aws-us/showcase is its cluster's only daskhub hub: the staging gate adds its staging
    assert set(deployed(plan)) == dask | {"2i2c-aws-us/staging"}
    assert reasons(plan, "nasa-cryo/prod") == ("chart daskhub changed (Chart.yaml)",)
    assert reasons(plan, "2i2c-aws-us/staging") == ("staging gate: prod hubs deploy (showcase)",)


def test_basehub_change_reaches_daskhub_hubs_through_the_dependency(repo: GitRepo) -> None:
    plan = repo.plan(edit("helm-charts/basehub/values.yaml", lambda t: t + "\nextra: 1\n"))
    assert len(plan.hubs) == 171 and not plan.support
    assert reasons(plan, "nasa-cryo/prod") == ("chart basehub changed (values.yaml)",)


def test_chart_values_comment_change_is_skipped(repo: GitRepo) -> None:
    plan = repo.plan(edit("helm-charts/support/values.yaml", lambda t: "# note\n" + t))
    assert plan.is_empty and len(plan.skipped) == 30
    assert reasons(plan, "utoronto") == (
        "support chart values.yaml changed only in comments or formatting",
    )


def test_chart_template_change_is_never_cosmetic(repo: GitRepo) -> None:
    def add(root: Path) -> None:
        (root / "helm-charts/support/templates").mkdir()
        (root / "helm-charts/support/templates/x.yaml").write_text("# comment\n")

    plan = repo.plan(add)
    assert len(plan.support) == 30 and not plan.hubs


def _rename(
    old: str, new: str, *, content: Callable[[str], str] = lambda t: t
) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        src = root / UTORONTO / old
        text = src.read_text()
        src.unlink()
        (root / UTORONTO / new).write_text(content(text))
        cluster = root / UTORONTO / "cluster.yaml"
        cluster.write_text(cluster.read_text().replace(f"- {old}\n", f"- {new}\n"))

    return change


def test_rename_with_identical_content_is_no_change(repo: GitRepo) -> None:
    plan = repo.plan(_rename("highmem.values.yaml", "high-memory.values.yaml"))
    assert plan.is_empty
    assert reasons(plan, "utoronto/highmem") == (
        "values file highmem.values.yaml renamed to high-memory.values.yaml, same content",
    )


def test_rename_of_shared_secret_with_identical_content_is_no_change(repo: GitRepo) -> None:
    plan = repo.plan(
        _rename("enc-common-canvas.secret.values.yaml", "enc-canvas.secret.values.yaml")
    )
    assert plan.is_empty
    assert len(plan.skipped) == 5


def test_rename_with_changed_content_deploys(repo: GitRepo) -> None:
    plan = repo.plan(
        _rename("highmem.values.yaml", "high-memory.values.yaml", content=lambda t: t + "x: 1\n")
    )
    assert deployed(plan) == ["utoronto/highmem", "utoronto/r-staging", "utoronto/staging"]
    assert reasons(plan, "utoronto/highmem") == (
        "values file high-memory.values.yaml (was highmem.values.yaml) changed",
    )


def test_deleted_referenced_file_deploys_and_says_missing(repo: GitRepo) -> None:
    plan = repo.plan(lambda root: (root / UTORONTO / "highmem.values.yaml").unlink())
    assert reasons(plan, "utoronto/highmem") == ("values file highmem.values.yaml is missing",)


def test_values_file_added_and_dropped(repo: GitRepo) -> None:
    def change(root: Path) -> None:
        cluster = root / UTORONTO / "cluster.yaml"
        text = cluster.read_text().replace("  - highmem.values.yaml\n", "", 1)
        cluster.write_text(
            text.replace("  - r-prod.values.yaml\n", "  - r-prod.values.yaml\n  - x.yaml\n")
        )
        (root / UTORONTO / "x.yaml").write_text("x: 1\n")

    plan = repo.plan(change)
    assert reasons(plan, "utoronto/highmem") == ("values file highmem.values.yaml no longer used",)
    assert reasons(plan, "utoronto/r-prod") == ("values file x.yaml added",)


def test_values_files_reordered(repo: GitRepo) -> None:
    def change(root: Path) -> None:
        cluster = root / UTORONTO / "cluster.yaml"
        text = cluster.read_text()
        old = "  - highmem.values.yaml\n  - enc-common-canvas.secret.values.yaml\n"
        new = "  - enc-common-canvas.secret.values.yaml\n  - highmem.values.yaml\n"
        cluster.write_text(text.replace(old, new))

    plan = repo.plan(change)
    assert reasons(plan, "utoronto/highmem") == ("values files reordered",)


def test_secret_change_says_encrypted_file_changed(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/enc-prod.secret.values.yaml", lambda t: t + "\n"))
    assert reasons(plan, "utoronto/prod") == ("encrypted file enc-prod.secret.values.yaml changed",)


def test_redeploy_all_path(repo: GitRepo) -> None:
    plan = repo.plan(lambda root: (root / "requirements.txt").write_text("pyyaml\n"))
    assert len(plan.hubs) == 171
    assert reasons(plan, "utoronto/prod") == ("requirements.txt changed (redeploys every hub)",)


def test_ignored_paths_trigger_nothing(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{CLUSTERS}/templates/common/hub.values.yaml", lambda t: t + "x: 1\n"))
    assert plan.is_empty and not plan.skipped


@pytest.mark.parametrize(
    ("labels", "counts"),
    [
        (["deployer:skip-deploy"], (0, 0, 0, 3)),
        (["deployer:skip-deploy-hubs"], (0, 0, 0, 3)),
        (["deployer:deploy-support"], (30, 2, 1, 0)),
        (["deployer:deploy-hubs"], (0, 29, 142, 0)),
    ],
)
def test_labels_apply_as_in_file_mode(
    repo: GitRepo, labels: list[str], counts: tuple[int, int, int, int]
) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/r-prod.values.yaml", lambda t: t + "x: 1\n"), labels=labels)
    got = (len(plan.support), len(plan.staging), len(plan.prod), len(plan.skipped))
    assert got == counts


@pytest.mark.parametrize(
    ("base", "head", "expected"),
    [
        ({"a": "1"}, {"a": "1"}, []),
        ({"a": "1"}, {"a": "2"}, ["a"]),
        ({"a": "1"}, {}, ["a"]),
        ({}, {"b": "1"}, ["b"]),
    ],
)
def test_changed_paths_by_blob(
    base: dict[str, str], head: dict[str, str], expected: list[str]
) -> None:
    assert changed_paths(DictSnapshot(base), DictSnapshot(head)) == expected


def test_findings_point_at_the_changed_file_and_line(repo: GitRepo) -> None:
    rel = f"{UTORONTO}/r-prod.values.yaml"
    plan = repo.plan(edit(rel, lambda t: t + "nfs:\n  enabled: 'yes'\n"), validate=True)
    errors = [(f.path, f.rule) for f in plan.errors]
    assert errors and set(errors) == {(rel, "values-schema")}
    text = (repo.path / rel).read_text()
    assert plan.errors[0].line == text.splitlines().index("  enabled: 'yes'") + 1
    assert plan.blocked and plan.hub_keys("prod") == {"utoronto/r-prod"}


def test_broken_cluster_file_is_not_a_removal(repo: GitRepo) -> None:
    plan = repo.plan(edit(f"{UTORONTO}/cluster.yaml", lambda t: t + "hubs: again\n"), validate=True)
    assert not plan.removed and plan.is_empty
    assert any("does not load at head" in n for n in plan.notes)
    assert [(f.path, f.rule) for f in plan.errors] == [
        (f"{UTORONTO}/cluster.yaml", "yaml-duplicate-key")
    ]


def test_cluster_file_fixed_after_a_broken_base() -> None:
    from tests.test_planner import FILES

    rel = "config/clusters/beta/cluster.yaml"
    base = DictSnapshot({**FILES, rel: "name: [\n"})
    plan = plan_snapshots(base, DictSnapshot(FILES), Settings(), validate=False)
    assert deployed(plan) == ["beta/prod"]
    assert reasons(plan, "beta/prod") == ("cluster.yaml did not load at base",)


def test_a_changed_cluster_file_is_parsed_once_per_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading the head, comparing it with the base and validating it share one parse: a
    # 1 MB cluster.yaml (legal: the limit is 5 MB) took three parses, 7 s, to plan.
    from bot.core import filecache, model, semantic, yamlload
    from tests.test_planner import FILES

    path = "config/clusters/alpha/cluster.yaml"
    changed = FILES[path] + "".join(f"\nk{i}: {i}" for i in range(2000))
    parsed: list[int] = []
    real = yamlload.load_yaml

    def counting(data: bytes | str) -> Any:
        parsed.append(len(data))
        return real(data)

    for module in (filecache, model, semantic):  # wherever it is imported by name
        monkeypatch.setattr(module, "load_yaml", counting, raising=False)
    base = DictSnapshot(FILES)
    plan_snapshots(base, base.with_changes({path: changed}), Settings())
    assert parsed.count(len(changed.encode())) == 1
