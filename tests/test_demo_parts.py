"""The demo's parts, in-process: the example's copy, tool detection, transcript and HTML page."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.settings import parse_settings
from bot.demo import example, markdown_html, page, pullview, tools, transcript
from tests.conftest import EXAMPLE


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def test_the_package_links_to_the_example_and_lists_its_symlinks() -> None:
    assert example.EXAMPLE.resolve() == EXAMPLE.resolve()
    links = {
        str(p.relative_to(EXAMPLE)): os.readlink(p) for p in EXAMPLE.rglob("*") if p.is_symlink()
    }
    assert links == example.LINKS  # a new link in config/ must be listed for wheels


@pytest.mark.parametrize("as_in_a_wheel", [False, True])
@pytest.mark.parametrize("renderer", ["helm", "hubbot"])
def test_the_repository_is_a_fresh_commit_on_main(
    tmp_path: Path, as_in_a_wheel: bool, renderer: str
) -> None:
    source = EXAMPLE
    if as_in_a_wheel:  # wheels hold copies, not links
        source = Path(shutil.copytree(EXAMPLE, tmp_path / "wheel", symlinks=False))
        (source / "helm-charts/basehub/charts").mkdir()  # a stray helm build, never copied
    commands = example.helm_commands() if renderer == "helm" else example.hubbot_commands()
    repo = tmp_path / "repo"
    sha = example.prepare_repository(repo, commands, source=source)
    assert git(repo, "rev-parse", "main").strip() == sha
    assert git(repo, "status", "--porcelain") == ""
    link = repo / "helm-charts/daskhub/values.jsonnet"
    assert link.is_symlink() and os.readlink(link) == "../basehub/values.jsonnet"
    assert "120000" in git(repo, "ls-files", "-s", "helm-charts/daskhub/values.jsonnet")
    assert not (repo / "helm-charts/basehub/charts").exists()
    settings, findings = parse_settings((repo / "hubbot.yaml").read_bytes())
    assert findings == []
    assert settings.deploy.command == commands.command
    assert settings.deploy.support_command == commands.support_command
    assert "{cluster}" in settings.deploy.command and "{hub}" in settings.deploy.command
    # only the two command lines changed: every comment is kept
    original = (EXAMPLE / "hubbot.yaml").read_text().splitlines()
    changed = (repo / "hubbot.yaml").read_text().splitlines()
    assert len(original) == len(changed)
    assert sum(a != b for a, b in zip(original, changed, strict=True)) == 2


def test_a_quote_in_a_command_survives_yaml() -> None:
    commands = example.DeployCommands("echo 'it''s' {hub}", "echo \\'{cluster}", "helm")
    text = example.with_commands((EXAMPLE / "hubbot.yaml").read_text(), commands)
    deploy = yaml.safe_load(text)["deploy"]
    assert (deploy["command"], deploy["support_command"]) == (
        commands.command,
        commands.support_command,
    )


def test_a_settings_file_of_another_shape_is_refused() -> None:
    with pytest.raises(example.ExampleError, match=r"no single deploy\.command line"):
        example.with_commands("deploy:\n  executor: local\n", example.helm_commands())


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("git version 2.39.5", True),
        ("git version 2.38.0.windows.1", True),
        ("git version 3.0.0", True),
        ("git version 2.37.9", False),
        ("git version 1.99", False),
        ("", False),
    ],
)
def test_git_must_merge_trees(version: str, ok: bool) -> None:
    if ok:
        example.check_git(version)
    else:
        with pytest.raises(example.ExampleError, match=r"git 2\.38 or newer is needed"):
            example.check_git(version)


def test_a_non_empty_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("mine")
    with pytest.raises(example.ExampleError, match="is not empty"):
        example.prepare_repository(tmp_path, example.helm_commands())


def executable(folder: Path, name: str, script: str = "#!/bin/sh\necho v3.99.0+gdeadbee\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize(
    ("has", "renderer", "says"),
    [
        ({"helm", "sops"}, "helm", "helm v3.99.0 found"),
        ({"sops"}, "hubbot", tools.NO_HELM),
        ({"helm"}, "hubbot", "sops is not installed, and the example's deploy.py needs it"),
        (set(), "hubbot", tools.NO_HELM),
    ],
)
def test_the_renderer_follows_what_is_installed(
    tmp_path: Path, has: set[str], renderer: str, says: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in has:
        executable(bin_dir, name)
    python = tmp_path / "venv/bin/python"  # no sops next to it
    found = tools.find_tools({"PATH": str(bin_dir)}, python=str(python))
    assert found.commands.renderer == renderer
    assert any(says in note for note in found.notes), found.notes
    secrets_note = "decrypted with the example's TEST-ONLY" if "sops" in has else "left out"
    assert any(secrets_note in note for note in found.notes)


def test_sops_next_to_the_interpreter_is_put_on_the_deploys_path(tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv/bin"
    executable(venv_bin, "sops")
    found = tools.find_tools({"PATH": "/usr/bin:/bin"}, python=str(venv_bin / "python"))
    assert found.sops == str(venv_bin / "sops")
    env = tools.deploy_environment(found, tmp_path / "repo", {"PATH": "/usr/bin:/bin", "X": "1"})
    assert env["PATH"].split(os.pathsep) == [str(venv_bin), "/usr/bin", "/bin"]
    assert env["SOPS_AGE_KEY_FILE"] == str(tmp_path / "repo/TEST-ONLY-age-key.txt")
    assert env["X"] == "1"


# ---- transcript and page ---------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def view(**changes: Any) -> dict[str, Any]:
    """A pull request as the control API shows it."""
    base: dict[str, Any] = {
        "number": 7,
        "title": "Title " + HOSTILE,
        "body": "Body " + HOSTILE,
        "user": "alice-partner",
        "state": "open",
        "merged": False,
        "head": {"ref": "topic", "sha": "a" * 40},
        "base": {"ref": "main", "sha": "b" * 40},
        "comments": [
            {
                "id": 10,
                "user": "hubbot[bot]",
                "body": "<!-- hubbot:plan -->\n**plan** for <code>uni-a</code>\n" + HOSTILE,
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
                "reactions": [],
            },
            {
                "id": 14,
                "user": "alice-partner",
                "body": "/deploy staging",
                "created_at": "2025-01-01T00:00:01Z",
                "updated_at": "2025-01-01T00:00:01Z",
                "reactions": [
                    {"user": "hubbot[bot]", "content": "eyes"},
                    {"user": "hubbot[bot]", "content": "rocket"},
                ],
            },
        ],
        "reviews": [{"id": 20, "user": "erin-engineer", "state": "APPROVED"}],
        "check_runs": [
            {
                "id": 11,
                "name": "hubbot/plan",
                "head_sha": "a" * 40,
                "status": "completed",
                "conclusion": "failure",
                "output": {"title": HOSTILE, "summary": HOSTILE},
                "annotations": [
                    {
                        "path": "x.yaml",
                        "start_line": 7,
                        "annotation_level": "failure",
                        "message": HOSTILE,
                    }
                ],
            }
        ],
        "deployments": [
            {
                "id": 15,
                "sha": "a" * 40,
                "environment": "uni-a/staging",
                "transient_environment": True,
                "production_environment": False,
                "creator": "hubbot[bot]",
                "statuses": [
                    {"id": 16, "state": "in_progress", "environment_url": None},
                    {"id": 17, "state": "success", "environment_url": "https://s.example.org"},
                ],
            }
        ],
    }
    base.update(changes)
    return base


def test_the_conversation_follows_the_order_things_happened() -> None:
    actions = [
        transcript.Action(0, "alice-partner", "pushed aaaaaaa"),
        transcript.Action(10, "alice-partner", "pushed bbbbbbb"),
        transcript.Action(20, "erin-engineer", "merged"),
    ]
    entries = transcript.conversation(view(), actions)
    order = [e.data.text if e.kind == "action" else f"{e.kind}:{e.data['id']}" for e in entries]
    assert order == [
        "pushed aaaaaaa",
        "comment:10",
        "pushed bbbbbbb",
        "comment:14",
        "deployment:15",
        "review:20",
        "merged",
    ]
    assert transcript.latest_id(view()) == 20


def test_the_text_transcript_reads_like_the_pr() -> None:
    text = transcript.render_text(view(), [], edited={10})
    assert "💬 hubbot[bot] commented (edited):" in text
    assert "hubbot:plan" not in text  # the hidden marker
    assert "**plan** for `uni-a`" in text
    assert "└ 👀 hubbot[bot] · 🚀 hubbot[bot]" in text
    assert "uni-a/staging (preview) at aaaaaaa: in_progress → success" in text
    assert "x.yaml:7: failure:" in text
    assert "✅ erin-engineer approved these changes" in text


def test_the_page_is_self_contained_and_escapes_everything() -> None:
    steps = [
        page.StepReport(1, "opens " + HOSTILE, "passed", 0.5, ("note " + HOSTILE,)),
        page.StepReport(2, "fails", "failed", 1.0, (), "expected " + HOSTILE, "seen " + HOSTILE),
    ]
    html = page.render_page(
        view=view(), actions=[], steps=steps, notes=[HOSTILE], passed=False, seconds=1.5
    )
    assert (
        "<script" not in html
        and "<img" not in html
        and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    )
    assert html.count("&lt;script&gt;") >= 8
    assert not re.search(r"<(link|script|img|iframe)\b", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in html
    assert "<strong>plan</strong> for <code>uni-a</code>" in html
    assert "hubbot:plan" not in html


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("### Staging (1)", "<h3>Staging (1)</h3>"),
        ("a <code>x</code> `y` **z**", "<p>a <code>x</code> <code>y</code> <strong>z</strong></p>"),
        ("<b onclick=x>bold</b>", "<p>&lt;b onclick=x&gt;bold</b></p>"),
        (
            "[log](https://h.test/x) [bad](javascript:alert(1))",
            '<a href="https://h.test/x">log</a>',
        ),
        ("| A | B |\n|---|---|\n| 1 | <code>2</code> |", "<td><code>2</code></td>"),
        ("```diff\n+new\n-old\n```", '<span class="add">+new</span>\n<span class="del">-old'),
        ("<details><summary>more</summary>\n\nx\n\n</details>", "<details><summary>more</summary>"),
        ("> quoted", "<blockquote><p>quoted</p></blockquote>"),
        (
            "_/deploy by @alice on #1_ keep_snake_case",
            "<em>/deploy by @alice on #1</em> keep_snake",
        ),
        ("- one\n- two", "<ul><li>one</li><li>two</li></ul>"),
    ],
)
def test_markdown_subset(markdown: str, html: str) -> None:
    rendered = markdown_html.render(markdown)
    assert html in rendered
    assert "javascript:" not in rendered.replace("(javascript:alert(1))", "")
    assert 'href="javascript' not in rendered


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("| <code>uni-a</code> | <code>staging</code> | values file changed |", True),
        ("deploys `uni-a/staging` now", True),
        ("| <code>uni-a</code> | <code>r-staging</code> |", False),
        ("| <code>uni-a</code> | <code>staging-2</code> |", False),
        ("uni-b/staging", False),
    ],
)
def test_the_plan_names_a_hub(body: str, found: bool) -> None:
    assert pullview.names_hub(body, "uni-a", "staging") is found
