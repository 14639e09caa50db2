"""Check runs with every finding as an annotation, batched by 50, never left in progress.

https://docs.github.com/en/rest/checks/runs: a request carries at most 50
annotations, and annotations sent in later PATCHes are appended. We create the
run `in_progress`, send all batches but the last while it runs, and send the
last batch with the conclusion. `conclude_with_failure` ends a run whose work
broke, saying why, so no run stays `in_progress`. When creating the run failed
ambiguously (a timeout), GitHub may still create that lost run after we made
another: once it would have landed, any such stray is concluded like ours.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gidgethub.abc import GitHubAPI

from bot.core.findings import Finding
from bot.github.client import AmbiguousWrite, wait_for_late_writes

logger = logging.getLogger(__name__)

PLAN_CHECK = "hubbot/plan"
ANNOTATIONS_PER_REQUEST = 50
# At most 10 requests of annotations: a PR whose file has 100,000 unknown keys must not
# spend the installation's whole rate limit (5,000 requests an hour) on one check run.
MAX_ANNOTATIONS = 500
MAX_SUMMARY_CHARS = 65535
MAX_TITLE_CHARS = 255
MAX_ANNOTATION_MESSAGE = 64 * 1024

Conclusion = Literal["success", "failure", "neutral", "cancelled", "timed_out", "action_required"]


@dataclass(frozen=True, slots=True)
class Strays:
    """Where a lost create of a run may still appear, and when it will have (monotonic)."""

    repo_url: str
    head_sha: str
    name: str
    settles_at: float


@dataclass(frozen=True, slots=True)
class CheckRun:
    """A check run we created: its API URL and id (and, after an ambiguous create, `strays`)."""

    id: int
    url: str
    strays: Strays | None = None


def now_iso() -> str:
    """The current UTC time in GitHub's ISO 8601 form."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def annotation(finding: Finding) -> dict[str, Any]:
    """A check-run annotation for one finding (line 1 when the line is unknown)."""
    line = finding.line if finding.line and finding.line > 0 else 1
    return {
        "path": finding.path,
        "start_line": line,
        "end_line": line,
        "annotation_level": "failure" if finding.is_error else "warning",
        "title": finding.rule[:MAX_TITLE_CHARS],
        "message": finding.message[:MAX_ANNOTATION_MESSAGE],
    }


def batches(
    items: Sequence[dict[str, Any]], size: int = ANNOTATIONS_PER_REQUEST
) -> list[list[Any]]:
    """`items` in lists of at most `size` (one empty list when there are none)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def _output(title: str, summary: str, annotations: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "title": title[:MAX_TITLE_CHARS],
        "summary": summary[:MAX_SUMMARY_CHARS],
    }
    listed = list(annotations)
    if listed:
        out["annotations"] = listed
    return out


async def start_check(
    gh: GitHubAPI,
    *,
    repo_url: str,
    head_sha: str,
    name: str = PLAN_CHECK,
    status: Literal["queued", "in_progress"] = "in_progress",
) -> CheckRun:
    """Create the check run `in_progress` (or `queued`) on `head_sha`.

    A create that failed ambiguously is looked up before it is repeated, so a
    retry never leaves a second run hanging in progress.
    """
    body = {"name": name, "head_sha": head_sha, "status": status}
    if status == "in_progress":
        body["started_at"] = now_iso()
    settles_at: float | None = None
    for _attempt in range(3):
        try:
            created = await gh.post(f"{repo_url}/check-runs", data=body)
        except AmbiguousWrite as exc:
            if exc.settles_at is not None:
                settles_at = max(settles_at or exc.settles_at, exc.settles_at)
            found = await _find_run(gh, repo_url, head_sha, name)
            if found is not None:
                return _watching(found, repo_url, head_sha, name, settles_at)
            continue
        run = CheckRun(int(created["id"]), str(created["url"]))
        return _watching(run, repo_url, head_sha, name, settles_at)
    raise AmbiguousWrite("POST", "/repos/{owner}/{repo}/check-runs", "gave up creating the run")


def _watching(
    run: CheckRun, repo_url: str, head_sha: str, name: str, settles_at: float | None
) -> CheckRun:
    if settles_at is None:
        return run
    return CheckRun(run.id, run.url, Strays(repo_url, head_sha, name, settles_at))


async def _find_run(gh: GitHubAPI, repo_url: str, head_sha: str, name: str) -> CheckRun | None:
    data = await gh.getitem(
        f"{repo_url}/commits/{head_sha}/check-runs{{?check_name,filter}}",
        {"check_name": name, "filter": "latest"},
    )
    runs = data.get("check_runs", []) if isinstance(data, Mapping) else []
    for run in runs:
        if run.get("status") != "completed":
            return CheckRun(int(run["id"]), str(run["url"]))
    return None


async def complete_check(
    gh: GitHubAPI,
    run: CheckRun,
    *,
    conclusion: Conclusion,
    title: str,
    summary: str,
    annotations: Sequence[dict[str, Any]] = (),
) -> None:
    """Send the annotations (50 per request, at most MAX_ANNOTATIONS) and conclude the run."""
    if len(annotations) > MAX_ANNOTATIONS:
        note = (
            f"\n\n_Only the first {MAX_ANNOTATIONS} of {len(annotations)} findings are "
            "annotated on the files; `hubbot validate` lists them all._"
        )
        summary = summary[: MAX_SUMMARY_CHARS - len(note)] + note
        annotations = annotations[:MAX_ANNOTATIONS]
    chunks = batches(annotations)
    for chunk in chunks[:-1]:
        await gh.patch(run.url, data={"output": _output(title, summary, chunk)})
    ending = {"status": "completed", "conclusion": conclusion, "completed_at": now_iso()}
    await gh.patch(run.url, data={**ending, "output": _output(title, summary, chunks[-1])})
    await conclude_strays(gh, run, {**ending, "output": _output(title, summary, ())})


async def conclude_with_failure(gh: GitHubAPI, run: CheckRun, reason: str) -> None:
    """End a run whose work broke, with `reason` in its summary; logs instead of raising."""
    data = {
        "status": "completed",
        "conclusion": "failure",
        "completed_at": now_iso(),
        "output": _output(
            "hubbot could not finish the plan",
            f"hubbot stopped before finishing: {reason}\n\nPush again or comment `/plan` to retry.",
            (),
        ),
    }
    try:
        await gh.patch(run.url, data=data)
        await conclude_strays(gh, run, data)
    except Exception:  # the caller is already handling a failure; do not mask it
        logger.exception("could not conclude check run %s", run.id)


async def conclude_strays(gh: GitHubAPI, run: CheckRun, data: Mapping[str, Any]) -> None:
    """After an ambiguous create: end, as `data` says, any other run of ours left in progress."""
    strays = run.strays
    if strays is None:
        return
    await wait_for_late_writes(gh, strays.settles_at)
    listing = await gh.getitem(
        f"{strays.repo_url}/commits/{strays.head_sha}/check-runs{{?check_name,filter}}",
        {"check_name": strays.name, "filter": "all"},
    )
    runs = listing.get("check_runs", []) if isinstance(listing, Mapping) else []
    for other in runs:
        if other.get("status") != "completed" and int(other["id"]) != run.id:
            logger.info("concluding check run %s, created late by a timed-out request", other["id"])
            await gh.patch(str(other["url"]), data=dict(data))
