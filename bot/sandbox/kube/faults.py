"""Fault injection for the Kubernetes API double, and a log of the requests it served.

Tests arm a rule ("answer the next 2 POSTs to .../jobs with 500"), run the code under test,
then read `requests` to see what the client did about it (retried? adopted? gave up?).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Reasons a real API server gives with each status code.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Rule:
    """Answer matching requests with `status` instead of serving them, `times` times.

    `status` 0 drops the connection with no answer. With `after=True` the request is served
    first and only its answer is replaced: the write happened, but the client cannot know.
    """

    status: int
    method: str | None = None
    path: str = ""
    watch: bool | None = None
    times: int = 1
    after: bool = False
    message: str = "injected fault"
    hits: int = 0

    def matches(self, method: str, path: str, watch: bool) -> bool:
        """Whether this rule applies to a request."""
        return (
            self.times > 0
            and (self.method is None or self.method == method)
            and (self.watch is None or self.watch == watch)
            and re.search(self.path, path) is not None
        )


@dataclass
class WatchDrop:
    """Cut matching watch streams abruptly after `after_events` events, `times` times."""

    after_events: int
    path: str = ""
    times: int = 1


@dataclass(frozen=True, slots=True)
class Served:
    """One request as the double saw it."""

    method: str
    path: str
    query: str
    status: int
    watch: bool = False


@dataclass
class Faults:
    """The armed faults and the request log of one double."""

    rules: list[Rule] = field(default_factory=list)
    drops: list[WatchDrop] = field(default_factory=list)
    requests: list[Served] = field(default_factory=list)

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str = "",
        watch: bool | None = None,
        times: int = 1,
        after: bool = False,
        message: str = "injected fault",
    ) -> Rule:
        """Answer the next `times` matching requests (regex `path`) with `status`."""
        rule = Rule(status, method, path, watch, times, after, message)
        self.rules.append(rule)
        return rule

    def drop_watch(self, after_events: int, *, path: str = "", times: int = 1) -> WatchDrop:
        """Cut the next `times` matching watch streams after `after_events` events."""
        drop = WatchDrop(after_events, path, times)
        self.drops.append(drop)
        return drop

    def take(self, method: str, path: str, watch: bool) -> Rule | None:
        """The first armed rule for this request, consumed once."""
        for rule in self.rules:
            if rule.matches(method, path, watch):
                rule.times -= 1
                rule.hits += 1
                return rule
        return None

    def take_drop(self, path: str) -> WatchDrop | None:
        """The first armed watch drop for this path, consumed once."""
        for drop in self.drops:
            if drop.times > 0 and re.search(drop.path, path):
                drop.times -= 1
                return drop
        return None

    def count(self, method: str, path: str = "", *, status: int | None = None) -> int:
        """How many served requests match (regex `path`, optional answer status)."""
        return sum(
            1
            for r in self.requests
            if r.method == method
            and re.search(path, r.path)
            and (status is None or r.status == status)
        )

    def clear(self) -> None:
        """Disarm every fault (the request log is kept)."""
        self.rules.clear()
        self.drops.clear()
