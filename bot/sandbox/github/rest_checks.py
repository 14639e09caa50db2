"""Check run endpoints, with GitHub's rules on status, conclusion, output and annotations.

https://docs.github.com/en/rest/checks/runs
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from bot.sandbox.github.context import Context, ctx, repo_owner
from bot.sandbox.github.http import ApiError, json_response, not_found, paginate, read_json
from bot.sandbox.github.state import CheckRun, now

routes = web.RouteTableDef()
MAX_ANNOTATIONS = 50  # per request; more are added with further updates
MAX_TEXT = 65535


def _invalid(detail: str) -> ApiError:
    return ApiError(422, f"Invalid request.\n\n{detail}")


def _time(value: Any, name: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise _invalid(f'"{name}" is not a valid ISO 8601 timestamp.') from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def _check_annotations(notes: list[dict[str, Any]]) -> None:
    if len(notes) > MAX_ANNOTATIONS:
        raise _invalid(f"Only {MAX_ANNOTATIONS} annotations are allowed per request.")
    for note in notes:
        if note["start_line"] < 1 or note["end_line"] < note["start_line"]:
            raise _invalid("end_line must be greater than or equal to start_line.")
        has_columns = "start_column" in note or "end_column" in note
        if has_columns and note["start_line"] != note["end_line"]:
            # "Annotations only support start_column and end_column on the same line."
            raise _invalid("start_column and end_column may only be used on a single line.")
        if len(note["message"]) > MAX_TEXT or len(note.get("raw_details", "")) > MAX_TEXT:
            raise _invalid("Annotation message and raw_details are limited to 64 kilobytes.")


def _apply(run: CheckRun, body: dict[str, Any], *, creating: bool) -> None:
    """Apply a create or update body to a run, enforcing what the schema cannot say."""
    if body.get("conclusion") == "stale":
        raise _invalid('"stale" can only be set by GitHub.')
    for key in ("name", "details_url", "external_id"):
        if key in body:
            setattr(run, key, body[key])
    if "started_at" in body:
        run.started_at = _time(body["started_at"], "started_at")
    status = body.get("status")
    conclusion = body.get("conclusion")
    if conclusion is not None:
        status = "completed"  # "Providing conclusion will automatically set the status"
    if (status == "completed" or "completed_at" in body) and conclusion is None:
        raise _invalid('"conclusion" wasn\'t supplied.')
    if status is not None:
        run.status = status
    if conclusion is not None:
        run.conclusion = conclusion
        run.completed_at = (
            _time(body["completed_at"], "completed_at") if "completed_at" in body else now()
        )
    output = body.get("output")
    if output is not None:
        notes = output.get("annotations") or []
        _check_annotations(notes)
        if creating or "title" in output:
            run.output["title"] = output.get("title")
        run.output["summary"] = output["summary"]
        if "text" in output:
            run.output["text"] = output["text"]
        run.annotations.extend(dict(n) for n in notes)


def run_or_404(c: Context, ident: str) -> CheckRun:
    """The check run `ident`, or GitHub's 404."""
    run = c.state.check_runs.get(int(ident)) if ident.isdigit() else None
    if run is None:
        raise not_found()
    return run


@routes.post("/repos/{owner}/{repo}/check-runs")
async def create_check_run(request: web.Request) -> web.Response:
    """POST /repos/{owner}/{repo}/check-runs."""
    repo_owner(request, write=True)
    c = ctx(request)
    body = await read_json(request)
    sha = body["head_sha"]
    if c.repo.object_type(sha) != "commit" or len(sha) != 40:
        raise _invalid(f"No commit found for SHA: {sha}")
    run = CheckRun(
        id=c.state.next_id(),
        name=body["name"],
        head_sha=sha.lower(),
        status="queued",
        conclusion=None,
        started_at=now(),
        completed_at=None,
        suite_id=c.state.suite_id(sha),
    )
    _apply(run, body, creating=True)
    c.state.check_runs[run.id] = run
    return json_response(c.shapes.check_run(run), status=201)


@routes.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}")
async def update_check_run(request: web.Request) -> web.Response:
    """PATCH /repos/{owner}/{repo}/check-runs/{id}: annotations are appended."""
    repo_owner(request, write=True)
    c = ctx(request)
    run = run_or_404(c, request.match_info["check_run_id"])
    body = await read_json(request)
    _apply(run, body, creating=False)
    return json_response(c.shapes.check_run(run))


@routes.get("/repos/{owner}/{repo}/check-runs/{check_run_id}")
async def get_check_run(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/check-runs/{id}."""
    repo_owner(request)
    c = ctx(request)
    return json_response(c.shapes.check_run(run_or_404(c, request.match_info["check_run_id"])))


@routes.get("/repos/{owner}/{repo}/commits/{ref}/check-runs")
async def list_for_ref(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/commits/{ref}/check-runs?check_name=&status=&filter=."""
    repo_owner(request)
    c = ctx(request)
    sha = c.repo.resolve(request.match_info["ref"])
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {request.match_info['ref']}")
    q = request.query
    runs = [r for r in c.state.check_runs.values() if r.head_sha == sha]
    if "check_name" in q:
        runs = [r for r in runs if r.name == q["check_name"]]
    if "status" in q:
        runs = [r for r in runs if r.status == q["status"]]
    if q.get("filter", "latest") == "latest":
        newest: dict[str, CheckRun] = {}
        for r in runs:
            if r.name not in newest or r.id > newest[r.name].id:
                newest[r.name] = r
        runs = list(newest.values())
    runs.sort(key=lambda r: -r.id)
    page, headers = paginate(request, runs)
    body = {"total_count": len(runs), "check_runs": [c.shapes.check_run(r) for r in page]}
    return json_response(body, headers=headers)


@routes.get("/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations")
async def list_annotations(request: web.Request) -> web.Response:
    """GET /repos/{owner}/{repo}/check-runs/{id}/annotations (paginated)."""
    repo_owner(request)
    c = ctx(request)
    run = run_or_404(c, request.match_info["check_run_id"])
    page, headers = paginate(request, run.annotations)
    return json_response([c.shapes.annotation(run, n) for n in page], headers=headers)
