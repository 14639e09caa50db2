"""Shared pieces of the hardening suite: Hypothesis budgets, a loop watch, exchange recording,
secret scanning and bounded waits. Part 2 (deploy-side faults) reuses all of them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings

# HYPOTHESIS_PROFILE=ci (the default: derandomized, small, what CI runs on every push) or
# HYPOTHESIS_PROFILE=long (random, twenty times the examples, for a manual soak).
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_SCALE = {"ci": 1, "long": 20}
if PROFILE not in _SCALE:
    raise RuntimeError(f"HYPOTHESIS_PROFILE must be one of {sorted(_SCALE)}, not {PROFILE!r}")

settings.register_profile(
    "hardening-ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "hardening-long",
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz_settings(examples: int, **overrides: Any) -> settings:
    """Hypothesis settings for one fuzz test: `examples` in CI, scaled up by the long profile."""
    parent = settings.get_profile(f"hardening-{PROFILE}")
    return settings(parent, max_examples=examples * _SCALE[PROFILE], **overrides)


async def wait_until(
    condition: Callable[[], bool], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Poll `condition` on the loop until it holds; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {within} s"
        await asyncio.sleep(0.005)


@dataclass
class LoopWatch:
    """Collects exceptions nobody retrieved (a task that died unseen) on the running loop.

    Several watches may be installed at once (concurrent fault runs share a loop): each
    error goes to every watch installed when it happened, so none is missed, and the
    loop's own handler comes back when the last watch is removed.
    """

    errors: list[dict[str, Any]] = field(default_factory=list)
    _installed: ClassVar[dict[asyncio.AbstractEventLoop, tuple[Any, list[LoopWatch]]]] = {}

    def install(self) -> LoopWatch:
        """Start collecting the running loop's unhandled errors."""
        loop = asyncio.get_running_loop()
        if loop not in self._installed:
            watches: list[LoopWatch] = []

            def collect(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
                for watch in watches:
                    watch.errors.append(context)

            self._installed[loop] = (loop.get_exception_handler(), watches)
            loop.set_exception_handler(collect)
        self._installed[loop][1].append(self)
        return self

    def uninstall(self) -> None:
        """Stop collecting; the last watch gives the loop its previous handler back."""
        loop = asyncio.get_running_loop()
        previous, watches = self._installed[loop]
        watches.remove(self)
        if not watches:
            del self._installed[loop]
            loop.set_exception_handler(previous)

    def describe(self) -> str:
        """The collected errors, one per line."""
        return "\n".join(
            f"{c.get('message')}: {c.get('exception')!r} ({c.get('task') or c.get('future')})"
            for c in self.errors
        )


@dataclass
class Recorded:
    """One request to the double and its answer, as the double saw them."""

    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int = 0
    response_body: bytes = b""


class RecordingChecker:
    """A checker for the double that keeps every exchange (bodies included) and delegates.

    Plugged into `GitHubSandbox(checker=...)`, it sees every REST request the bot makes
    with its body, so a test can scan what the bot sent to GitHub.
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.exchanges: list[Recorded] = []

    def check_request(self, exchange: Any) -> list[str]:
        """Record the request; the inner checker's violations."""
        self.exchanges.append(
            Recorded(
                exchange.method,
                exchange.path,
                dict(exchange.request_headers),
                bytes(exchange.request_body),
            )
        )
        return list(self.inner.check_request(exchange)) if self.inner is not None else []

    def check_response(self, exchange: Any) -> list[str]:
        """Record the answer next to its request; the inner checker's violations."""
        for recorded in reversed(self.exchanges):
            if (recorded.method, recorded.path) == (exchange.method, exchange.path):
                if recorded.status == 0:
                    recorded.status = exchange.status
                    recorded.response_body = bytes(exchange.response_body)
                    break
        return list(self.inner.check_response(exchange)) if self.inner is not None else []

    def issued_tokens(self) -> list[str]:
        """Every installation token the double handed out."""
        tokens = []
        for recorded in self.exchanges:
            if recorded.path.endswith("/access_tokens") and recorded.status == 201:
                tokens.append(str(json.loads(recorded.response_body)["token"]))
        return tokens

    def sent_text(self) -> str:
        """Everything the bot sent: bodies and headers, except the Authorization header."""
        parts = []
        for recorded in self.exchanges:
            headers = {k: v for k, v in recorded.request_headers.items() if k != "Authorization"}
            parts.append(f"{recorded.method} {recorded.path} {headers}")
            parts.append(recorded.request_body.decode("utf-8", "replace"))
        return "\n".join(parts)


class SampledChecker:
    """Checks each distinct kind of exchange once per session, delegating to `inner`.

    Validating against GitHub's OpenAPI description is most of a fault run's CPU, and a
    fault run repeats the clean run's requests. A request's kind is its method, route,
    query keys and body shape (short strings such as states kept, long ones reduced to
    their size class); a response's is its method, route and status. A kind seen once
    is not checked again, so every new request a fault provokes (a lookup, a retry with
    another body) is still checked.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: set[tuple[Any, ...]] = set()

    def check_request(self, exchange: Any) -> list[str]:
        """The inner checker's violations, for a kind of request not seen before."""
        key = ("request", exchange.method, _route(exchange), _query_keys(exchange.query))
        key += (_shape(exchange.request_body),)
        return self._once(key, lambda: self.inner.check_request(exchange))

    def check_response(self, exchange: Any) -> list[str]:
        """The inner checker's violations, for a kind of response not seen before."""
        key = ("response", exchange.method, _route(exchange), exchange.status)
        return self._once(key, lambda: self.inner.check_response(exchange))

    def _once(self, key: tuple[Any, ...], check: Callable[[], list[str]]) -> list[str]:
        if key in self.seen:
            return []
        violations = list(check())
        if not violations:  # a kind that broke a rule is checked (and reported) every time
            self.seen.add(key)
        return violations


def _route(exchange: Any) -> str:
    return str(exchange.template or re.sub(r"/([0-9a-f]{40}|\d+)(?=/|$)", "/*", exchange.path))


def _query_keys(query: str) -> tuple[str, ...]:
    return tuple(sorted(part.partition("=")[0] for part in query.split("&") if part))


def _shape(body: bytes) -> Any:
    """A JSON body's structure: keys, types, short strings as they are, long ones by size."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return ("not json", len(body))

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return tuple(sorted((k, shape(v)) for k, v in value.items()))
        if isinstance(value, list):
            return tuple(sorted({repr(shape(v)) for v in value}))
        if isinstance(value, str) and len(value) > 24:
            return ("str", len(value) <= 140, len(value) <= 65536)
        return value

    return shape(data)


def leaks(secrets: Iterable[str], places: dict[str, str]) -> list[str]:
    """`secret-name in place` for every secret found in a place (empty when none leaked)."""
    found = []
    for secret in secrets:
        if len(secret) < 6:  # too short to mean anything; would match by chance
            continue
        for where, text in places.items():
            if secret in text:
                found.append(f"{secret[:4]}… ({len(secret)} chars) in {where}")
    return found


def handler_errors(metrics: Any) -> int:
    """Background jobs that ended in an exception, from the app's own metrics."""
    total = 0.0
    for metric in metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "hubbot_handler_runs_total" and sample.labels["result"] == "error":
                total += sample.value
    return int(total)
