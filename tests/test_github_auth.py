"""Installation tokens: cached, refreshed five minutes before expiry, one request at a time."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from bot.github.auth import (
    FALLBACK_LIFETIME_SECONDS,
    REFRESH_MARGIN_SECONDS,
    InstallationTokens,
    TokenError,
    parse_expiry,
)

T0 = 1_700_000_000.0


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Fetcher:
    def __init__(self, clock: Clock, lifetime: float = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[int] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, installation_id: int) -> dict[str, Any]:
        self.calls.append(installation_id)
        if self.gate is not None:
            await self.gate.wait()
        n = len(self.calls)
        return {
            "token": f"ghs_{installation_id}_{n}",
            "expires_at": iso(self.clock() + self.lifetime),
        }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.parametrize(
    ("elapsed", "fresh"),
    [
        (0, False),
        (3600 - REFRESH_MARGIN_SECONDS - 1, False),  # just before the margin: cached
        (3600 - REFRESH_MARGIN_SECONDS, True),  # five minutes before expiry: refreshed
        (3600 - 60, True),
        (7200, True),
    ],
)
async def test_token_is_refreshed_five_minutes_before_expiry(
    clock: Clock, elapsed: float, fresh: bool
) -> None:
    fetch = Fetcher(clock)
    tokens = InstallationTokens(fetch, clock=clock)
    first = await tokens.get(1)
    clock.now += elapsed
    second = await tokens.get(1)
    assert (second != first) is fresh
    assert len(fetch.calls) == (2 if fresh else 1)


async def test_tokens_are_per_installation(clock: Clock) -> None:
    fetch = Fetcher(clock)
    tokens = InstallationTokens(fetch, clock=clock)
    assert await tokens.get(1) != await tokens.get(2)
    assert await tokens.get(1) == "ghs_1_1"
    assert fetch.calls == [1, 2]


async def test_concurrent_callers_share_one_request(clock: Clock) -> None:
    fetch = Fetcher(clock)
    fetch.gate = asyncio.Event()
    tokens = InstallationTokens(fetch, clock=clock)
    waiting = [asyncio.create_task(tokens.get(5)) for _ in range(10)]
    await asyncio.sleep(0)
    fetch.gate.set()
    assert len(set(await asyncio.gather(*waiting))) == 1
    assert fetch.calls == [5]


async def test_invalidate_drops_only_the_refused_token(clock: Clock) -> None:
    fetch = Fetcher(clock)
    tokens = InstallationTokens(fetch, clock=clock)
    old = await tokens.get(1)
    tokens.invalidate(1, "some-other-token")  # someone else's stale token: keep ours
    assert await tokens.get(1) == old
    tokens.invalidate(1, old)
    assert await tokens.get(1) != old


async def test_a_token_already_within_the_margin_is_used_once_not_cached(clock: Clock) -> None:
    fetch = Fetcher(clock, lifetime=60)
    tokens = InstallationTokens(fetch, clock=clock)
    await tokens.get(1)
    await tokens.get(1)
    assert len(fetch.calls) == 2


@pytest.mark.parametrize("answer", [{}, {"token": ""}, {"token": 5}, []])
async def test_a_bad_answer_is_a_token_error(clock: Clock, answer: Any) -> None:
    async def fetch(installation_id: int) -> Any:
        return answer

    with pytest.raises(TokenError) as info:
        await InstallationTokens(fetch, clock=clock).get(3)
    assert "installation 3" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20+00:00", T0),
        ("2023-11-14T22:13:20", T0),
        ("not a date", T0 + FALLBACK_LIFETIME_SECONDS),
        (None, T0 + FALLBACK_LIFETIME_SECONDS),
    ],
)
def test_parse_expiry(value: Any, expected: float) -> None:
    assert parse_expiry(value, T0) == expected
