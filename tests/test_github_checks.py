"""Check runs: annotations in batches of 50, conclusions, and never left in progress."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.findings import error, warning
from bot.github.checks import (
    ANNOTATIONS_PER_REQUEST,
    MAX_ANNOTATIONS,
    CheckRun,
    annotation,
    batches,
    complete_check,
    conclude_with_failure,
    start_check,
)
from bot.github.client import AmbiguousWrite
from tests.conftest import Answers, FakeGH

REPO = "https://api.github.com/repos/octo/infra"
RUN = CheckRun(11, f"{REPO}/check-runs/11")
SHA = "c0ffee" + "0" * 34


def annotations(n: int) -> list[dict[str, Any]]:
    return [annotation(error(f"config/f{i}.yaml", i + 1, "rule", f"problem {i}")) for i in range(n)]


@pytest.mark.parametrize(("count", "requests"), [(0, 1), (1, 1), (50, 1), (51, 2), (120, 3)])
async def test_every_annotation_is_sent_in_batches_of_50(count: int, requests: int) -> None:
    gh = FakeGH({("PATCH", RUN.url): {}})
    items = annotations(count)
    await complete_check(gh, RUN, conclusion="failure", title="t", summary="s", annotations=items)
    bodies = [data for _, _, data in gh.calls]
    assert len(bodies) == requests
    sent = [a for body in bodies for a in body["output"].get("annotations", [])]
    assert sent == items
    assert all(len(b["output"].get("annotations", [])) <= ANNOTATIONS_PER_REQUEST for b in bodies)
    # Only the last request concludes; the earlier ones leave the run in progress.
    assert [b.get("status") for b in bodies] == [None] * (requests - 1) + ["completed"]
    assert bodies[-1]["conclusion"] == "failure"


async def test_thousands_of_findings_cost_at_most_ten_requests() -> None:
    gh = FakeGH({("PATCH", RUN.url): {}})
    items = annotations(1234)
    await complete_check(gh, RUN, conclusion="failure", title="t", summary="s", annotations=items)
    bodies = [data for _, _, data in gh.calls]
    assert len(bodies) == MAX_ANNOTATIONS // ANNOTATIONS_PER_REQUEST == 10
    sent = [a for body in bodies for a in body["output"].get("annotations", [])]
    assert sent == items[:MAX_ANNOTATIONS]  # errors come first: the findings are sorted
    assert "first 500 of 1234 findings" in bodies[-1]["output"]["summary"]


@pytest.mark.parametrize(
    ("finding", "level", "line"),
    [
        (error("a.yaml", 12, "schema", "bad"), "failure", 12),
        (warning("b.yaml", 3, "unused", "meh"), "warning", 3),
        (error("c.yaml", None, "parse", "no line"), "failure", 1),
    ],
)
def test_annotation_fields(finding: Any, level: str, line: int) -> None:
    a = annotation(finding)
    assert a == {
        "path": finding.path,
        "start_line": line,
        "end_line": line,
        "annotation_level": level,
        "title": finding.rule,
        "message": finding.message,
    }


def test_batches_of_nothing_is_one_empty_batch() -> None:
    assert batches([]) == [[]]


async def test_start_creates_an_in_progress_run_on_the_head_sha() -> None:
    gh = FakeGH({("POST", f"{REPO}/check-runs"): {"id": 11, "url": RUN.url}})
    assert await start_check(gh, repo_url=REPO, head_sha=SHA) == RUN
    body = gh.calls[0][2]
    assert (body["name"], body["head_sha"], body["status"]) == ("hubbot/plan", SHA, "in_progress")


async def test_an_ambiguous_create_adopts_the_run_it_made() -> None:
    listing = f"{REPO}/commits/{SHA}/check-runs?check_name=hubbot%2Fplan&filter=latest"
    gh = FakeGH(
        {
            ("POST", f"{REPO}/check-runs"): AmbiguousWrite("POST", "/x", "timed out"),
            ("GET", listing): {"check_runs": [{"id": 11, "url": RUN.url, "status": "in_progress"}]},
        }
    )
    assert await start_check(gh, repo_url=REPO, head_sha=SHA) == RUN
    assert [m for m, _, _ in gh.calls] == ["POST", "GET"]


async def test_an_ambiguous_create_that_made_nothing_is_repeated() -> None:
    listing = f"{REPO}/commits/{SHA}/check-runs?check_name=hubbot%2Fplan&filter=latest"
    gh = FakeGH(
        {
            ("POST", f"{REPO}/check-runs"): Answers(
                AmbiguousWrite("POST", "/x", "502"), {"id": 11, "url": RUN.url}
            ),
            ("GET", listing): {"check_runs": [{"id": 3, "url": "x", "status": "completed"}]},
        }
    )
    assert await start_check(gh, repo_url=REPO, head_sha=SHA) == RUN
    assert [m for m, _, _ in gh.calls] == ["POST", "GET", "POST"]


@pytest.mark.parametrize("failed", [False, True])
async def test_a_run_created_late_by_a_timed_out_request_is_concluded_too(failed: bool) -> None:
    listing = f"{REPO}/commits/{SHA}/check-runs?check_name=hubbot%2Fplan&filter=latest"
    everything = f"{REPO}/commits/{SHA}/check-runs?check_name=hubbot%2Fplan&filter=all"
    stray = f"{REPO}/check-runs/12"
    gh = FakeGH(
        {
            ("POST", f"{REPO}/check-runs"): Answers(
                AmbiguousWrite("POST", "/x", "timed out", settles_at=0.0),
                {"id": 11, "url": RUN.url},
            ),
            ("GET", listing): {"check_runs": []},
            ("PATCH", RUN.url): {},
            ("GET", everything): {
                "check_runs": [
                    {"id": 11, "url": RUN.url, "status": "completed"},
                    {"id": 12, "url": stray, "status": "in_progress"},
                    {"id": 9, "url": "done", "status": "completed"},
                ]
            },
            ("PATCH", stray): {},
        }
    )
    run = await start_check(gh, repo_url=REPO, head_sha=SHA)
    assert (run.id, run.url) == (RUN.id, RUN.url) and run.strays is not None
    if failed:
        await conclude_with_failure(gh, run, "GitHub answered 502")
    else:
        await complete_check(
            gh, run, conclusion="failure", title="t", summary="s", annotations=annotations(2)
        )
    ours, late = [data for method, url, data in gh.calls if method == "PATCH"]
    assert late["conclusion"] == ours["conclusion"] == "failure"
    assert late["output"]["summary"] == ours["output"]["summary"]
    assert "annotations" not in late["output"]  # they belong to the run we made
    assert gh.urls("PATCH") == [RUN.url, stray]


async def test_conclude_with_failure_says_why_and_never_raises() -> None:
    gh = FakeGH({("PATCH", RUN.url): {}})
    await conclude_with_failure(gh, RUN, "GitHub answered 502")
    body = gh.calls[0][2]
    assert (body["status"], body["conclusion"]) == ("completed", "failure")
    assert "GitHub answered 502" in body["output"]["summary"]
    broken = FakeGH({("PATCH", RUN.url): RuntimeError("down")})
    await conclude_with_failure(broken, RUN, "x")  # logged, not raised


async def test_long_texts_are_cut_to_githubs_limits() -> None:
    gh = FakeGH({("PATCH", RUN.url): {}})
    await complete_check(gh, RUN, conclusion="success", title="t" * 1000, summary="s" * 70_000)
    output = gh.calls[0][2]["output"]
    assert len(output["title"]) <= 255 and len(output["summary"]) <= 65535
