"""BENCHMARKS.md: the markdown writer (fast), and a smoke run of every benchmark (opt-in).

The writer is fed a recorded run (`tests/samples/bench/run_all.json`, the raw figures of a
real `run_all.py --quick --raw`), changed where a test needs a target missed or a
benchmark broken. The smoke run takes about a minute and needs the 2i2c snapshot: it runs
only with HUBBOT_BENCH_SMOKE=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import AREAS, render
from bench.run_all import Bench, CpuSample, last_json, load_between, main, run_bench

ROOT = Path(__file__).resolve().parents[1]
RECORDED = Path(__file__).parent / "samples" / "bench" / "run_all.json"


@pytest.fixture
def run() -> dict[str, Any]:
    """A real quick run's figures, with every target met, to change per test."""
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    figures = data["sections"]
    figures["validate"]["figures"]["cold"]["median_s"] = 1.9
    for case in figures["plan"]["figures"]["cases"]:
        case["median_s"] = min(case["median_s"], 0.18)
    for section in figures.values():
        section["load"]["others_share"] = 0.02  # a quiet machine
    return data


def results(markdown: str) -> dict[str, str]:
    """The figure and result cells of every row with a target, in the figures' tables."""
    found = {}
    in_figures = False
    for line in markdown.splitlines():
        if line.startswith("| figure | measured | target | result |"):
            in_figures = True
        elif not line.startswith("|"):
            in_figures = False
        elif in_figures and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if cells[3] != "—":
                found[cells[0]] = cells[3]
    return found


def test_every_area_and_fact_is_written_and_every_target_met(run: dict[str, Any]) -> None:
    markdown = render(run)
    for area in AREAS:
        assert f"## {area.title}\n\n| figure |" in markdown
    assert "## Machine" in markdown and "AMD EPYC" in markdown and "helm | v3." in markdown
    assert "## How loaded the machine was" in markdown
    verdicts = results(markdown)
    assert len(verdicts) == 18
    assert set(verdicts.values()) == {"met"}
    assert "**18 of 18 targets met.**" in markdown
    assert "missed" not in markdown and "Not measured" not in markdown
    assert "machine was busy" not in markdown
    assert "Other processes used at most 2% of the machine during a benchmark (quiet)" in markdown


@pytest.mark.parametrize(
    ("section", "path", "value", "row"),
    [
        ("validate", ["cold", "median_s"], 2.4, "`hubbot validate`, whole snapshot, cold"),
        ("budget", ["cold"], 9, "`synchronize`, 100 values files, 2i2c-sized repository"),
        ("budget", ["warm_with_codeload"], 6, "the same, warm, codeload leg counted"),
        ("webhooks", ["hubbot_latency", "p99_ms"], 51.0, "ack latency p99 at 200 deliveries/s"),
        ("webhooks", ["hubbot_throughput", "rps"], 1000.0, "ack throughput, 32 connections"),
        ("deploys", ["first_deploy", "median_s"], 2.0, "push webhook → first deploy started"),
        ("deploys", ["rollout_reported", "ratio"], 0.89, "all-hubs rollout, 201 targets"),
        ("memory", ["serve_peak_rss_mb"], 150.0, "`hubbot serve` peak RSS, planning"),
        ("webhooks", ["hubbot_peak_rss_mb"], 151.0, "`hubbot serve` peak RSS after"),
        ("replicas", ["forwarded", "p99_ms"], 50.0, "ack latency p99, delivery forwarded"),
        ("replicas", ["step_down_seconds"], 2.5, "failover when the leader stops"),
        ("replicas", ["expiry_seconds"], 7.5, "failover when the leader dies"),
    ],
)
def test_a_missed_target_is_written_as_missed_in_its_row_and_the_summary(
    run: dict[str, Any], section: str, path: list[str], value: float, row: str
) -> None:
    holder = run["sections"][section]["figures"]
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    markdown = render(run)
    missed = {figure: r for figure, r in results(markdown).items() if r != "met"}
    assert len(missed) == 1, missed
    ((figure, result),) = missed.items()
    assert figure.startswith(row) and result == "**missed**"
    assert "**17 of 18 targets met.** Missed: " + figure in markdown


def test_a_plan_between_a_third_of_either_end_of_2i2c_is_missed_with_the_reason(
    run: dict[str, Any],
) -> None:
    cases = run["sections"]["plan"]["figures"]["cases"]
    (one,) = [c for c in cases if c["cache"] == "cold" and c["name"] == "one hub"]
    one["median_s"] = 0.25  # a third of 0.91 s but not of 0.57 s
    verdicts = results(render(run))
    assert verdicts["one-hub plan, cold, against 2i2c's planner"] == (
        "**missed** (met against the 0.91 s end only)"
    )
    assert verdicts["`hubbot plan`, one hub, cold"] == "met"  # ≤ 0.3 s


def test_warm_runs_are_reported_beside_but_not_judged(run: dict[str, Any]) -> None:
    for case in run["sections"]["plan"]["figures"]["cases"]:
        if case["cache"] == "warm":
            case["median_s"] = 9.0
    markdown = render(run)
    assert "missed" not in markdown
    assert "| `hubbot plan`, one hub, warm | 9.000 s" in markdown


def test_a_failed_benchmark_is_named_and_the_rest_still_written(run: dict[str, Any]) -> None:
    run["sections"]["webhooks"] = {"error": "timed out after 600 s", "seconds": 600.0}
    del run["sections"]["memory"]["figures"]["serve"]  # figures of another shape
    markdown = render(run)
    assert "**Failed:** `webhooks`: timed out after 600 s." in markdown
    assert (
        "**Not measured:** Webhook acks against bare aiohttp (issue 3); Memory (RSS)." in markdown
    )
    assert "## Webhook acks against bare aiohttp (issue 3)\n\nNot measured in this run" in markdown
    assert "## Memory (RSS)\n\nNot measured in this run" in markdown
    assert "| `hubbot validate`, whole snapshot, cold | 1.900 s" in markdown
    assert "**14 of 14 targets met.**" in markdown


def test_a_quick_run_and_a_busy_machine_say_so(run: dict[str, Any]) -> None:
    run["quick"] = True
    run["sections"]["plan"]["load"]["others_share"] = 0.42
    markdown = render(run)
    assert "quick smoke run with fewer runs, not for publishing" in markdown
    assert "Other processes used at most 42% of the machine" in markdown
    assert "busy: figures may be slower" in markdown
    assert "**The machine was busy:** other processes used up to 42% of it" in markdown
    assert re.search(r"\| plan \| \d+ s \| [\d.]+ → [\d.]+ \| 42% of the machine \|", markdown)


def test_last_json_takes_the_figures_after_any_other_output() -> None:
    assert last_json('noise\n{"a": 1}\n{"b": 2}\n') == {"b": 2}
    with pytest.raises(ValueError):
        last_json("a report without figures\n")


def test_load_between_takes_out_this_runs_own_cpu() -> None:
    before = CpuSample(wall=0.0, busy=100.0, steal=1.0, children=10.0, loadavg=0.5)
    after = CpuSample(wall=10.0, busy=112.0, steal=2.0, children=20.0, loadavg=1.0)
    load = load_between(before, after)
    cpus = os.cpu_count() or 1
    assert load["own_cpu_s"] == 10.0
    assert load["others_share"] == round(2.0 / (10.0 * cpus), 3)
    assert load["steal_share"] == round(1.0 / (10.0 * cpus), 3)


@pytest.mark.parametrize(
    ("script", "timeout", "error"),
    [
        (
            "print('a report, then no figures'); raise SystemExit(3)",
            60.0,
            "exit code 3, no figures",
        ),
        ("import threading; threading.Event().wait()", 0.5, "timed out after 0.5 s"),
    ],
)
def test_a_benchmark_without_figures_is_an_error_not_a_crash(
    tmp_path: Path, script: str, timeout: float, error: str
) -> None:
    path = tmp_path / "bench_broken.py"
    path.write_text(script + "\n")
    section = run_bench(Bench("broken", str(path)), quick=True, timeout=timeout)
    assert section["error"].startswith(error)
    assert "figures" not in section and section["load"]["own_cpu_s"] >= 0


def test_a_benchmark_with_figures_after_its_report(tmp_path: Path) -> None:
    path = tmp_path / "bench_fine.py"
    path.write_text(
        "import sys, json\nprint('report')\nprint(json.dumps({'argv': sys.argv[1:]}))\n"
    )
    section = run_bench(Bench("fine", str(path), quick=("--runs", "2")), quick=True)
    assert section["figures"] == {"argv": ["--runs", "2", "--json"]}
    assert section["exit_code"] == 0 and "error" not in section


def test_from_raw_writes_the_same_markdown_without_running_anything(
    tmp_path: Path, run: dict[str, Any]
) -> None:
    raw, out = tmp_path / "run.json", tmp_path / "BENCHMARKS.md"
    raw.write_text(json.dumps(run))
    assert main(["--from-raw", str(raw), "--out", str(out)]) == 0
    assert out.read_text() == render(run)


@pytest.mark.skipif(
    os.environ.get("HUBBOT_BENCH_SMOKE") != "1", reason="set HUBBOT_BENCH_SMOKE=1 (about a minute)"
)
def test_run_all_quick_writes_every_area(tmp_path: Path, snapshot_2i2c: Path) -> None:
    out, raw = tmp_path / "BENCHMARKS.md", tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "bench/run_all.py", "--quick", "--out", str(out), "--raw", str(raw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    markdown = out.read_text()
    assert "Not measured" not in markdown and "**Failed:**" not in markdown
    for area in AREAS:
        assert f"## {area.title}\n\n| figure |" in markdown
    verdicts = results(markdown)
    assert len(verdicts) == 18
    assert all(v == "met" or v.startswith("**missed**") for v in verdicts.values())
    assert set(json.loads(raw.read_text())["sections"]) == {
        "plan", "validate", "budget", "webhooks", "deploys", "memory", "replicas",
    }  # fmt: skip
