"""A bounded in-memory log of recent webhook deliveries, for the status page.

Each entry says when a delivery arrived, what it was (event, action,
repository), how it was answered (202, 401, 400, 413, 503; accepted, duplicate,
ignored...) and, for a queued one, how its handling ended (queued, running, ok,
failed, superseded). It holds no payload, no headers beyond the event and
delivery id, and nothing from a body whose signature was not checked. Losing it
(a restart) loses only history.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.web.queue import Handler, Job, Observer

DEFAULT_SIZE = 200
# Header and payload strings are cut to these lengths, so a hostile value cannot bloat the page.
_MAX_ID = 100
_MAX_NAME = 200

# The queue's results, as the page words them.
# How handling starts, by answer: queued here, or held until a leader answers (a standby).
_FIRST = {"accepted": "queued", "held": "held"}
_ENDINGS = {
    "ok": "ok",
    "error": "failed",
    "superseded": "superseded",
    "handed_over": "handed over",  # to the next leader, by a replica that stopped leading
}


@dataclass(slots=True)
class Delivery:
    """One received delivery and what became of it."""

    received_at: float  # seconds since the epoch
    delivery_id: str
    event: str
    action: str
    repository: str
    status: int  # the HTTP status of the answer
    answer: str  # accepted, duplicate, ignored, invalid_signature, bad_request, too_large...
    # queued, running, ok, failed, superseded, handed over; on a standby held, then passed
    # on; "" when never queued or held
    handling: str = ""
    seconds: float | None = None  # handling time, once it ended

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON-ready data."""
        return {
            "received_at": self.received_at,
            "delivery_id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "repository": self.repository,
            "status": self.status,
            "answer": self.answer,
            "handling": self.handling,
            "seconds": self.seconds,
        }


def _text(value: object, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def describe(data: object) -> tuple[str, str]:
    """The action and repository full name of a (verified) payload, "" where absent."""
    if not isinstance(data, dict):
        return "", ""
    repository = data.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    return _text(data.get("action"), _MAX_NAME), _text(name, _MAX_NAME)


class DeliveryLog:
    """The last `size` deliveries, newest first, with their handling kept up to date."""

    def __init__(self, size: int = DEFAULT_SIZE, *, clock: Callable[[], float] = time.time):
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._clock = clock
        self._entries: collections.deque[Delivery] = collections.deque(maxlen=size)
        # The queued entry of each delivery id still in the log, for handling updates.
        self._queued: dict[str, Delivery] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def record(
        self,
        *,
        delivery_id: str,
        event: str | None,
        status: int,
        answer: str,
        payload: object = None,
    ) -> Delivery:
        """Remember one answered delivery; `payload` only when its signature was checked."""
        action, repository = describe(payload)
        entry = Delivery(
            received_at=self._clock(),
            delivery_id=_text(delivery_id, _MAX_ID),
            event=_text(event, _MAX_ID),
            action=action,
            repository=repository,
            status=status,
            answer=answer,
            handling=_FIRST.get(answer, ""),
        )
        if len(self._entries) == self.size:
            self._forget(self._entries[-1])
        self._entries.appendleft(entry)
        if entry.handling:
            self._queued[entry.delivery_id] = entry
        return entry

    def _forget(self, oldest: Delivery) -> None:
        if self._queued.get(oldest.delivery_id) is oldest:
            del self._queued[oldest.delivery_id]

    def handling(self, delivery_id: str, state: str, seconds: float | None = None) -> None:
        """Update how a queued delivery's handling stands (no-op once it left the log)."""
        entry = self._queued.get(delivery_id[:_MAX_ID])
        if entry is not None:
            entry.handling = state
            entry.seconds = seconds

    def recent(self) -> list[Delivery]:
        """The entries, newest first."""
        return list(self._entries)

    def running(self, handler: Handler) -> Handler:
        """`handler`, marking each job's delivery `running` when it starts."""

        def handle(job: Job) -> Awaitable[None]:
            self.handling(job.delivery_id, "running")
            return handler(job)

        return handle

    def observer(self, inner: Observer | None = None) -> Observer:
        """A queue observer recording how each job ended, then calling `inner`."""

        def observe(job: Job, result: str, seconds: float | None) -> None:
            self.handling(job.delivery_id, _ENDINGS.get(result, result), seconds)
            if inner is not None:
                inner(job, result, seconds)

        return observe
