"""What people and the app do to the repository, with the webhooks GitHub would send.

Shared by the control API (a user acting) and the REST routes (the app acting), so a
comment, a label or a push has one implementation. Each action returns the futures of
the deliveries it queued: the control API waits for them, REST routes do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bot.core.snapshot import GitError
from bot.sandbox.github import payloads
from bot.sandbox.github.context import Context
from bot.sandbox.github.gitrepo import MergeConflict, Person
from bot.sandbox.github.http import ApiError, validation_failed
from bot.sandbox.github.state import Comment, Delivery, Pull, Review, iso, now

Futures = list["asyncio.Future[Delivery]"]
ZERO = "0" * 40
GITHUB = Person("GitHub", "noreply@github.com", "")


def person(c: Context, login: str) -> Person:
    """The commit identity of a user, dated now."""
    user = c.state.ensure_user(login)
    return Person(user.login, user.email, iso(now()))


def _committer() -> Person:
    return Person(GITHUB.name, GITHUB.email, iso(now()))


async def push_files(
    c: Context,
    branch: str,
    files: Mapping[str, str | None],
    *,
    message: str,
    user: str,
    create_from: str | None = None,
) -> tuple[str, Futures]:
    """Commit `files` onto `branch` (or create it from `create_from`); sends push, synchronize."""
    async with c.lock:
        before = c.repo.branch_sha(branch)
        if create_from is not None:
            if before is not None:
                raise validation_failed("Reference", "ref", "Reference already exists")
            parent = c.repo.resolve(create_from)
            if parent is None:
                raise validation_failed("Reference", "from", f"No commit found for {create_from}")
        else:
            if before is None:
                raise ApiError(404, f"Branch not found: {branch}")
            parent = before
        try:
            sha = parent
            if files:
                sha = c.repo.commit_files(parent, files, message=message, author=person(c, user))
            c.repo.update_ref(f"refs/heads/{branch}", sha, before or "")
        except (GitError, ValueError) as exc:
            raise validation_failed("Commit", "files", str(exc)) from exc
        futures = announce_push(c, branch, before, sha, user)
    return sha, futures


def announce_push(c: Context, branch: str, before: str | None, after: str, user: str) -> Futures:
    """Send `push` for a branch that moved, and `synchronize` for the open pulls it heads."""
    c.state.pushed_at = now()
    futures = [_push_event(c, branch, before or ZERO, after, user)]
    return futures + _synchronize(c, branch, before, after, user)


def _push_event(c: Context, branch: str, before: str, after: str, user: str) -> Any:
    payload = payloads.push(
        c.shapes, ref=f"refs/heads/{branch}", before=before, after=after, sender=user
    )
    return c.hooks.enqueue("push", payload)


def _synchronize(c: Context, branch: str, before: str | None, after: str, user: str) -> Futures:
    futures: Futures = []
    for pull in c.state.pulls.values():
        if pull.state != "open" or pull.head_ref != branch or pull.head_sha == after:
            continue
        old = pull.head_sha
        pull.head_sha = after
        pull.head_history.append(after)
        pull.updated_at = now()
        c.repo.update_ref(f"refs/pull/{pull.number}/head", after)
        payload = payloads.pull_request(
            c.shapes, pull, "synchronize", user, before=before or old, after=after
        )
        futures.append(c.hooks.enqueue("pull_request", payload))
    return futures


async def open_pull(
    c: Context,
    *,
    head: str,
    base: str,
    title: str,
    user: str,
    body: str | None = None,
    draft: bool = False,
    fork: bool = False,
) -> tuple[Pull, Futures]:
    """Open a pull request from branch `head` into `base`; sends `opened`."""
    async with c.lock:
        head_sha, base_sha = c.repo.branch_sha(head), c.repo.branch_sha(base)
        if head_sha is None:
            raise validation_failed("PullRequest", "head", "invalid", code="invalid")
        if base_sha is None:
            raise validation_failed("PullRequest", "base", "invalid", code="invalid")
        owner = user if fork else c.state.owner
        for other in c.state.pulls.values():
            if other.state == "open" and (other.head_ref, other.base_ref) == (head, base):
                raise validation_failed(
                    "PullRequest", "head", f"A pull request already exists for {owner}:{head}."
                )
        if c.repo.count_between(base_sha, head_sha) == 0:
            raise validation_failed("PullRequest", "head", f"No commits between {base} and {head}")
        c.state.ensure_user(user)
        moment = now()
        pull = Pull(
            number=c.state.next_number(),
            id=c.state.next_id(),
            title=title,
            body=body,
            user=user,
            head_ref=head,
            base_ref=base,
            head_sha=head_sha,
            base_sha=base_sha,
            created_at=moment,
            updated_at=moment,
            draft=draft,
            fork=fork,
            head_history=[head_sha],
        )
        c.state.pulls[pull.number] = pull
        c.repo.update_ref(f"refs/pull/{pull.number}/head", head_sha)
        future = c.hooks.enqueue(
            "pull_request", payloads.pull_request(c.shapes, pull, "opened", user)
        )
    return pull, [future]


def add_comment(
    c: Context, pull: Pull, user: str, body: str, *, via_app: bool = False
) -> tuple[Comment, Futures]:
    """A new comment on a pull request; sends `issue_comment` created."""
    check_body(body, "IssueComment")
    moment = now()
    comment = Comment(
        id=c.state.next_id(),
        number=pull.number,
        user=c.state.ensure_user(user).login,
        body=body,
        created_at=moment,
        updated_at=moment,
        via_app=via_app,
    )
    c.state.comments[comment.id] = comment
    payload = payloads.issue_comment(c.shapes, pull, comment, "created", comment.user)
    return comment, [c.hooks.enqueue("issue_comment", payload)]


def edit_comment(c: Context, comment: Comment, body: str, sender: str) -> Futures:
    """Change a comment's body; sends `issue_comment` edited."""
    check_body(body, "IssueComment")
    previous = comment.body
    comment.body, comment.updated_at = body, now()
    pull = c.state.pulls[comment.number]
    payload = payloads.issue_comment(
        c.shapes, pull, comment, "edited", sender, previous_body=previous
    )
    return [c.hooks.enqueue("issue_comment", payload)]


def delete_comment(c: Context, comment: Comment, sender: str) -> Futures:
    """Delete a comment; sends `issue_comment` deleted."""
    del c.state.comments[comment.id]
    pull = c.state.pulls[comment.number]
    payload = payloads.issue_comment(c.shapes, pull, comment, "deleted", sender)
    return [c.hooks.enqueue("issue_comment", payload)]


def check_body(body: str, resource: str) -> None:
    """GitHub's limit on comment bodies: 65,536 characters."""
    if len(body) > 65536:
        raise validation_failed(resource, "body", "body is too long (maximum is 65536 characters)")


def change_labels(
    c: Context, pull: Pull, *, add: list[str], remove: list[str], sender: str
) -> Futures:
    """Add and remove labels; one `labeled`/`unlabeled` event per label that changed."""
    futures: Futures = []
    for name in add:
        label = c.state.label(name)
        if label.name.lower() in (n.lower() for n in pull.labels):
            continue
        pull.labels.append(label.name)
        pull.updated_at = now()
        payload = payloads.pull_request(
            c.shapes, pull, "labeled", sender, label=c.shapes.label(label)
        )
        futures.append(c.hooks.enqueue("pull_request", payload))
    for name in remove:
        present = next((n for n in pull.labels if n.lower() == name.lower()), None)
        if present is None:
            continue
        pull.labels.remove(present)
        pull.updated_at = now()
        payload = payloads.pull_request(
            c.shapes, pull, "unlabeled", sender, label=c.shapes.label(c.state.label(present))
        )
        futures.append(c.hooks.enqueue("pull_request", payload))
    return futures


def submit_review(
    c: Context, pull: Pull, user: str, state: str, body: str
) -> tuple[Review, Futures]:
    """A submitted review; sends `pull_request_review` submitted."""
    review = Review(
        id=c.state.next_id(),
        user=c.state.ensure_user(user).login,
        state=state,
        body=body,
        commit_id=pull.head_sha,
        submitted_at=now(),
    )
    pull.reviews.append(review)
    payload = payloads.pull_request_review(c.shapes, pull, review)
    return review, [c.hooks.enqueue("pull_request_review", payload)]


async def merge(
    c: Context, pull: Pull, user: str, message: str | None = None
) -> tuple[str, Futures]:
    """Merge a pull with a real two-parent commit; sends `closed` (merged) and the push."""
    async with c.lock:
        if pull.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        base_tip = c.repo.branch_sha(pull.base_ref)
        if base_tip is None:
            raise ApiError(404, f"Branch not found: {pull.base_ref}")
        try:
            tree = c.repo.merge_tree(base_tip, pull.head_sha)
        except MergeConflict as exc:
            raise ApiError(409, f"Merge conflict in: {', '.join(exc.paths)}") from exc
        head_owner = pull.user if pull.fork else c.state.owner
        text = message or f"Merge pull request #{pull.number} from {head_owner}/{pull.head_ref}"
        text += f"\n\n{pull.title}"
        sha = c.repo.commit_tree(
            tree,
            [base_tip, pull.head_sha],
            message=text,
            author=person(c, user),
            committer=_committer(),
        )
        c.repo.update_ref(f"refs/heads/{pull.base_ref}", sha, base_tip)
        moment = now()
        pull.state, pull.merged, pull.merged_by = "closed", True, c.state.ensure_user(user).login
        pull.merged_at = pull.closed_at = pull.updated_at = moment
        pull.merge_commit_sha, pull.base_sha = sha, base_tip
        c.state.pushed_at = moment
        futures = [
            c.hooks.enqueue("pull_request", payloads.pull_request(c.shapes, pull, "closed", user)),
            _push_event(c, pull.base_ref, base_tip, sha, user),
        ]
    return sha, futures


async def update_pull(c: Context, pull: Pull, changes: dict[str, Any], sender: str) -> Futures:
    """Close, reopen, retitle, rebase or mark ready a pull; sends the matching events."""
    async with c.lock:
        futures: Futures = []
        edits: dict[str, Any] = {}
        if "title" in changes and changes["title"] != pull.title:
            edits["title"] = {"from": pull.title}
            pull.title = str(changes["title"])
        if "body" in changes and changes["body"] != pull.body:
            edits["body"] = {"from": pull.body or ""}
            pull.body = changes["body"]
        if "base" in changes and changes["base"] != pull.base_ref:
            new_base = c.repo.branch_sha(str(changes["base"]))
            if new_base is None:
                raise validation_failed("PullRequest", "base", "invalid", code="invalid")
            edits["base"] = {"ref": {"from": pull.base_ref}, "sha": {"from": pull.base_sha}}
            pull.base_ref, pull.base_sha = str(changes["base"]), new_base
        if edits:
            pull.updated_at = now()
            futures.append(_pull_event(c, pull, "edited", sender, changes=edits))
        if "draft" in changes and bool(changes["draft"]) != pull.draft:
            pull.draft = bool(changes["draft"])
            action = "converted_to_draft" if pull.draft else "ready_for_review"
            futures.append(_pull_event(c, pull, action, sender))
        state = changes.get("state")
        if state == "closed" and pull.state == "open":
            pull.state, pull.closed_at = "closed", now()
            futures.append(_pull_event(c, pull, "closed", sender))
        elif state == "open" and pull.state == "closed":
            if pull.merged:
                raise validation_failed("PullRequest", "state", "merged pull requests stay closed")
            head = c.repo.branch_sha(pull.head_ref)
            if head is None:
                raise validation_failed("PullRequest", "state", "the head branch is gone")
            pull.state, pull.closed_at, pull.head_sha = "open", None, head
            if head not in pull.head_history:
                pull.head_history.append(head)
            futures.append(_pull_event(c, pull, "reopened", sender))
    return futures


def _pull_event(c: Context, pull: Pull, action: str, sender: str, **extra: Any) -> Any:
    pull.updated_at = now()
    return c.hooks.enqueue(
        "pull_request", payloads.pull_request(c.shapes, pull, action, sender, **extra)
    )
