"""Jsonnet rendering: 2i2c's variables and symlink trick, and bounds on untrusted input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.core import jsonnet_pool
from bot.core.findings import Finding
from bot.core.jsonnet import JsonnetJob, RenderResult, ext_vars_for, make_job
from bot.core.jsonnet_cache import DiskCache, user_cache_dir
from bot.core.jsonnet_pool import ProcessRenderer
from bot.core.settings import JsonnetSettings, Settings
from bot.core.snapshot import DictSnapshot, Symlink
from tests.core_support import real_files

SETTINGS = Settings().jsonnet
AWS = {"name": "nasa", "provider": "aws", "aws": {"account": 123456789012, "clusterName": "eks1"}}
GCP = {"name": "leap", "provider": "gcp", "gcp": {"project": "leap-pangeo"}}
KUBE = {"name": "utoronto", "provider": "kubeconfig"}
HUB = {"name": "staging", "domain": "staging.example.org"}


@pytest.fixture(scope="module")
def renderer() -> Iterator[ProcessRenderer]:
    """Two worker processes for the whole module."""
    pool = ProcessRenderer()
    yield pool
    pool.close()


@pytest.mark.parametrize(
    ("cluster", "hub", "expected"),
    [
        (
            AWS,
            HUB,
            {
                "VARS_2I2C_CLUSTER_NAME": "eks1",
                "VARS_2I2C_PROVIDER": "aws",
                "VARS_2I2C_ACCOUNT_ID": "123456789012",
                "VARS_2I2C_HUB_NAME": "staging",
                "VARS_2I2C_HUB_DOMAIN": "staging.example.org",
            },
        ),
        (
            GCP,
            None,
            {
                "VARS_2I2C_CLUSTER_NAME": "leap",
                "VARS_2I2C_PROVIDER": "gcp",
                "VARS_2I2C_ACCOUNT_ID": "leap-pangeo",
            },
        ),
        (
            KUBE,
            HUB,
            {
                "VARS_2I2C_CLUSTER_NAME": "utoronto",
                "VARS_2I2C_PROVIDER": "kubeconfig",
                "VARS_2I2C_ACCOUNT_ID": "None",
                "VARS_2I2C_HUB_NAME": "staging",
                "VARS_2I2C_HUB_DOMAIN": "staging.example.org",
            },
        ),
        (
            {"provider": "gcp", "gcp": {}},
            None,
            {"VARS_2I2C_CLUSTER_NAME": "folder", "VARS_2I2C_PROVIDER": "gcp"}
            | {"VARS_2I2C_ACCOUNT_ID": "None"},
        ),
    ],
)
def test_ext_vars_take_the_first_candidate_whose_lookups_exist(
    cluster: dict[str, Any], hub: dict[str, Any] | None, expected: dict[str, str]
) -> None:
    assert ext_vars_for(SETTINGS, cluster_name="folder", cluster=cluster, hub=hub) == expected


def test_ext_var_templates_mix_literal_text_and_lookups() -> None:
    settings = JsonnetSettings(ext_vars={"URL": ("https://{hub.domain}/{cluster.name}",)})
    found = ext_vars_for(settings, cluster_name="c", cluster={}, hub=HUB)
    assert found == {"URL": "https://staging.example.org/c"}


def job(snapshot: DictSnapshot, path: str, root: str, **ext_vars: str) -> JsonnetJob:
    """A job, asserting it could be made."""
    made = make_job(snapshot, path, root=root, ext_vars=ext_vars, settings=SETTINGS)
    assert isinstance(made, JsonnetJob), made
    return made


def render(renderer: ProcessRenderer, files: dict[str, Any], path: str, root: str) -> RenderResult:
    """Render one file of a small snapshot."""
    return renderer.render(job(DictSnapshot(files), path, root))


def hub_vars(provider: str = "aws") -> dict[str, str]:
    """2i2c's variables for a hub."""
    cluster = AWS if provider == "aws" else GCP
    return ext_vars_for(SETTINGS, cluster_name="c", cluster=cluster, hub=HUB)


@pytest.mark.parametrize(("chart", "nested"), [("basehub", False), ("daskhub", True)])
def test_daskhub_link_renders_basehub_under_its_key(
    renderer: ProcessRenderer, chart: str, nested: bool
) -> None:
    snapshot = DictSnapshot(real_files())
    path = f"helm-charts/{chart}/values.jsonnet"
    made = job(snapshot, path, f"helm-charts/{chart}", **hub_vars())
    assert made.content_path == "helm-charts/basehub/values.jsonnet"  # read through the link
    result = renderer.render(made)
    assert result.finding is None
    values = result.value["basehub"] if nested else result.value
    assert set(result.value) == ({"basehub"} if nested else set(values))
    assert values["jupyterhub"]["ingress"]["hosts"] == ["staging.example.org"]
    role = values["userServiceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role == "arn:aws:iam::123456789012:role/eks1-staging"


def test_a_real_symlink_renders_the_same(renderer: ProcessRenderer) -> None:
    files = real_files()
    files["helm-charts/daskhub/values.jsonnet"] = Symlink("../basehub/values.jsonnet")
    snapshot = DictSnapshot(files)
    made = job(snapshot, "helm-charts/daskhub/values.jsonnet", "helm-charts/daskhub", **hub_vars())
    assert set(renderer.render(made).value) == {"basehub"}


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ("{\n  a: 1,\n  b: error 'boom',\n}\n", 3, "boom"),
        ("{\n  a: 1,,\n}\n", 2, "Unexpected"),
        ("local x = std.extVar('NOPE');\n{ a: x }\n", 1, "NOPE"),
        ("{\n a: [1][5],\n}\n", 2, "bounds"),
    ],
)
def test_errors_are_findings_at_the_line(
    renderer: ProcessRenderer, source: str, line: int, words: str
) -> None:
    result = render(
        renderer, {"charts/x/values.jsonnet": source}, "charts/x/values.jsonnet", "charts/x"
    )
    assert result.value is None
    assert isinstance(result.finding, Finding)
    assert (result.finding.path, result.finding.line, result.finding.rule) == (
        "charts/x/values.jsonnet",
        line,
        "jsonnet",
    )
    assert words in result.finding.message
    assert "/repo/" not in result.finding.message


def test_errors_in_an_imported_file_point_at_it(renderer: ProcessRenderer) -> None:
    files = {
        "charts/x/values.jsonnet": "local lib = import 'lib/util.libsonnet';\nlib.f(1)\n",
        "charts/x/lib/util.libsonnet": "{\n  f(x):: error 'bad ' + x,\n}\n",
    }
    result = render(renderer, files, "charts/x/values.jsonnet", "charts/x")
    assert result.finding is not None
    assert (result.finding.path, result.finding.line) == ("charts/x/lib/util.libsonnet", 2)


def test_imports_inside_the_root_work(renderer: ProcessRenderer) -> None:
    files = {
        "charts/x/values.jsonnet": (
            "local lib = import 'lib/a.libsonnet';\n"
            "{ a: lib.a, s: importstr 'notes.txt', v: @'x' }\n"
        ),
        "charts/x/lib/a.libsonnet": "{ a: (import 'b.libsonnet').b }\n",
        "charts/x/lib/b.libsonnet": "{ b: 42 }\n",
        "charts/x/notes.txt": "hello",
    }
    result = render(renderer, files, "charts/x/values.jsonnet", "charts/x")
    assert result.value == {"a": 42, "s": "hello", "v": "x"}


@pytest.mark.parametrize(
    "target",
    [
        "../other/lib.libsonnet",
        "/etc/passwd",
        "enc-values.secret.libsonnet",
        "escape.libsonnet",
    ],
)
def test_imports_outside_the_root_or_of_secrets_are_refused(
    renderer: ProcessRenderer, target: str
) -> None:
    files: dict[str, Any] = {
        "charts/x/values.jsonnet": f"import '{target}'\n",
        "charts/other/lib.libsonnet": "{ leaked: true }\n",
        "charts/x/enc-values.secret.libsonnet": "{ password: 'hunter2' }\n",
        "charts/x/escape.libsonnet": Symlink("../other/lib.libsonnet"),
    }
    result = render(renderer, files, "charts/x/values.jsonnet", "charts/x")
    assert result.value is None
    assert result.finding is not None
    assert "cannot import" in result.finding.message
    assert "hunter2" not in result.finding.message and "leaked" not in result.finding.message


def test_an_endless_loop_is_stopped_and_the_renderer_recovers() -> None:
    settings = JsonnetSettings(timeout_seconds=1.0)
    # 2^60 calls at a stack depth of 60: endless for practical purposes, little memory.
    looping = "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1);\nf(60)\n"
    files = {"x/values.jsonnet": looping, "x/ok.jsonnet": "{ ok: true }\n"}
    snapshot = DictSnapshot(files)
    pool = ProcessRenderer(workers=1)
    try:
        loop = make_job(snapshot, "x/values.jsonnet", root="x", ext_vars={}, settings=settings)
        ok = make_job(snapshot, "x/ok.jsonnet", root="x", ext_vars={}, settings=settings)
        assert isinstance(loop, JsonnetJob) and isinstance(ok, JsonnetJob)
        pool.prefetch([loop, ok])
        stopped = pool.render(loop)
        assert stopped.finding is not None
        assert "longer than 1 s" in stopped.finding.message
        assert pool.render(ok).value == {"ok": True}  # a fresh worker took over
    finally:
        pool.close()


def test_a_file_that_ran_out_of_time_is_not_rendered_again_for_other_releases() -> None:
    # One endless loop in a chart's values.jsonnet, rendered for many hubs (each with its own
    # variables): one timeout, not one per hub, or any PR could hold a plan for hours.
    settings = JsonnetSettings(timeout_seconds=0.5)
    looping = "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1);\nf(60)\n"
    files = {"c/values.jsonnet": looping, "d/values.jsonnet": "../c/values.jsonnet"}
    snapshot = DictSnapshot(files)
    jobs = []
    for n in range(12):
        for chart in ("c", "d"):  # d's file is a link to c's: the same content
            made = make_job(
                snapshot,
                f"{chart}/values.jsonnet",
                root=chart,
                ext_vars={"HUB": str(n)},
                settings=settings,
            )
            assert isinstance(made, JsonnetJob)
            jobs.append(made)
    pool = ProcessRenderer(workers=1)
    try:
        started = time.monotonic()
        pool.prefetch(jobs)
        results = [pool.render(j) for j in jobs]
        took = time.monotonic() - started
    finally:
        pool.close()
    assert all(r.finding is not None and "longer than 0.5 s" in r.finding.message for r in results)
    assert {r.finding.path for r in results if r.finding} == {"c/values.jsonnet"}
    assert took < 3 * 0.5 + 2, f"{took:.1f} s: the loop was rendered more than once"
    # Other limits are other files: the same text under a longer timeout is tried again.
    longer = make_job(
        snapshot,
        "c/values.jsonnet",
        root="c",
        ext_vars={},
        settings=JsonnetSettings(timeout_seconds=0.6),
    )
    assert isinstance(longer, JsonnetJob) and longer.source_key != jobs[0].source_key


def test_runaway_memory_is_stopped() -> None:
    files = {"x/values.jsonnet": "std.length(std.range(0, 200000000))\n"}
    pool = ProcessRenderer(workers=1, memory_limit=256 << 20)
    try:
        result = pool.render(job(DictSnapshot(files), "x/values.jsonnet", "x"))
    finally:
        pool.close()
    assert result.finding is not None
    assert "memory" in result.finding.message


def test_output_size_is_bounded(renderer: ProcessRenderer) -> None:
    settings = JsonnetSettings(max_output_bytes=1024)
    snapshot = DictSnapshot({"x/values.jsonnet": "{ big: std.repeat('x', 5000) }\n"})
    made = make_job(snapshot, "x/values.jsonnet", root="x", ext_vars={}, settings=settings)
    assert isinstance(made, JsonnetJob)
    result = renderer.render(made)
    assert result.finding is not None and "limit is 1,024" in result.finding.message


def test_results_are_cached_by_content(renderer: ProcessRenderer) -> None:
    files = {"x/values.jsonnet": "{ n: std.extVar('N') }\n"}
    first = job(DictSnapshot(files), "x/values.jsonnet", "x", N="1")
    again = job(DictSnapshot(dict(files)), "x/values.jsonnet", "x", N="1")
    other = job(DictSnapshot(files), "x/values.jsonnet", "x", N="2")
    assert first.key == again.key != other.key
    assert renderer.render(first) is renderer.render(again)
    assert renderer.render(other).value == {"n": "2"}


def test_missing_file_is_a_finding() -> None:
    made = make_job(DictSnapshot({}), "x/values.jsonnet", root="x", ext_vars={}, settings=SETTINGS)
    assert isinstance(made, Finding) and made.rule == "jsonnet"


def test_disk_cache_serves_later_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"x/values.jsonnet": "{ n: std.extVar('N') }\n", "x/bad.jsonnet": "error 'no'\n"}
    snapshot = DictSnapshot(files)
    first = ProcessRenderer(workers=1, cache=DiskCache(tmp_path))
    try:
        assert first.render(job(snapshot, "x/values.jsonnet", "x", N="1")).value == {"n": "1"}
        assert first.render(job(snapshot, "x/bad.jsonnet", "x")).finding is not None
    finally:
        first.close()
    # A later renderer whose workers cannot start: only the disk can answer.
    monkeypatch.setattr(jsonnet_pool, "WORKER_SCRIPT", tmp_path / "missing.py")
    later = ProcessRenderer(workers=1, cache=DiskCache(tmp_path))
    try:
        assert later.render(job(snapshot, "x/values.jsonnet", "x", N="1")).value == {"n": "1"}
        other = later.render(job(snapshot, "x/values.jsonnet", "x", N="2"))
        failed = later.render(job(snapshot, "x/bad.jsonnet", "x"))  # errors are not stored
    finally:
        later.close()
    assert other.finding is not None and "stopped" in other.finding.message
    assert failed.finding is not None and "stopped" in failed.finding.message


def test_a_worker_that_answers_garbage_gives_a_finding_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    script = tmp_path / "garbage.py"
    script.write_text("import sys\nsys.stdin.readline()\nprint('not json', flush=True)\n")
    monkeypatch.setattr(jsonnet_pool, "WORKER_SCRIPT", script)
    pool = ProcessRenderer(workers=1)
    answers: list[RenderResult] = []
    task = job(DictSnapshot({"x/v.jsonnet": "{}"}), "x/v.jsonnet", "x")
    # A daemon thread: if render() hangs, the test fails instead of hanging too.
    waiter = threading.Thread(target=lambda: answers.append(pool.render(task)), daemon=True)
    waiter.start()
    try:
        waiter.join(30)
        assert answers, "render() never returned"
    finally:
        pool.close()
    assert answers[0].finding is not None and "stopped" in answers[0].finding.message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HUBBOT_CACHE_DIR": "/c"}, Path("/c")),
        ({"HUBBOT_CACHE_DIR": "off"}, None),
        ({"HUBBOT_CACHE_DIR": ""}, None),
        ({"XDG_CACHE_HOME": "/x"}, Path("/x/hubbot")),
        ({}, Path.home() / ".cache" / "hubbot"),
    ],
)
def test_user_cache_dir(environ: dict[str, str], expected: Path | None) -> None:
    assert user_cache_dir(environ) == expected


def test_a_worker_that_cannot_start_gives_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonnet_pool.sys, "executable", "/nonexistent/python")
    pool = ProcessRenderer(workers=1)
    try:
        result = pool.render(job(DictSnapshot({"x/a.jsonnet": "{}"}), "x/a.jsonnet", "x"))
    finally:
        pool.close()
    assert result.finding is not None and "could not start" in result.finding.message
