"""The rollout schedule: order, staging gate, caps and coalescing, without any I/O."""

from __future__ import annotations

import heapq

import pytest

from bot.deploys.schedule import Schedule, Step, ideal_makespan


def steps(
    cluster: str, *, support: bool = True, staging=("staging",), prod=("prod",)
) -> list[Step]:
    out = [Step(cluster, None, "support")] if support else []
    out += [Step(cluster, h, "staging") for h in staging]
    out += [Step(cluster, h, "prod") for h in prod]
    return out


def run(schedule: Schedule, fail: set[str] = frozenset()) -> list[tuple[float, str, str]]:
    """Drive the schedule with unit-time steps; returns (start time, key, stage) in start order."""
    t = 0.0
    started: list[tuple[float, str, str]] = []
    running: list[tuple[float, str, Step]] = []
    while not schedule.idle:
        for step in schedule.ready():
            schedule.start(step)
            started.append((t, step.key, step.sha))
            heapq.heappush(running, (t + 1, step.key, step))
        assert running, "schedule stalled"
        t, _, step = heapq.heappop(running)
        schedule.finish(step, step.key not in fail)
    return started


def test_support_then_staging_then_prod() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add(steps("a", prod=("p1", "p2")), sha="s1")
    times = {key: t for t, key, _ in run(s)}
    assert times == {"a/support": 0, "a/staging": 1, "a/p1": 2, "a/p2": 2}


def test_staging_failure_blocks_only_that_clusters_prod() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add(steps("a") + steps("b"), sha="s1")
    started = {key for _, key, _ in run(s, fail={"a/staging"})}
    assert "a/prod" not in started
    assert "b/prod" in started


def test_gate_uses_exact_names_not_substrings() -> None:
    # cluster "a" and cluster "a-2": a failure on "a" must not block "a-2".
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add(steps("a") + steps("a-2"), sha="s1")
    started = {key for _, key, _ in run(s, fail={"a/staging"})}
    assert "a-2/prod" in started and "a/prod" not in started


def test_every_staging_target_must_succeed() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add(steps("a", staging=("staging", "r-staging")), sha="s1")
    assert "a/prod" not in {key for _, key, _ in run(s, fail={"a/r-staging"})}


def test_support_failure_blocks_hubs() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    (wave,) = s.add(steps("a"), sha="s1")
    assert {key for _, key, _ in run(s, fail={"a/support"})} == {"a/support"}
    assert wave.state["a/prod"] == "blocked"
    assert "support failed" in wave.detail["a/prod"]


@pytest.mark.parametrize(("glob", "per"), [(1, 1), (2, 1), (4, 2), (10, 3)])
def test_caps_are_never_exceeded(glob: int, per: int) -> None:
    s = Schedule(max_parallel=glob, max_parallel_per_cluster=per)
    for c in "abcde":
        s.add(steps(c, prod=tuple(f"p{i}" for i in range(7))), sha="s1")
    running: dict[str, int] = {}
    total = 0
    pending: list[Step] = []
    while not s.idle:
        for step in s.ready():
            s.start(step)
            running[step.cluster] = running.get(step.cluster, 0) + 1
            total += 1
            pending.append(step)
            assert total <= glob and running[step.cluster] <= per
        step = pending.pop(0)
        s.finish(step, True)
        running[step.cluster] -= 1
        total -= 1


def test_pushes_coalesce_into_one_wave_at_the_newest_sha() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add(steps("a", prod=("p1",)), sha="s1", source="push 1")
    first = s.ready()
    for step in first:
        s.start(step)
    # two more pushes arrive while s1's support runs: one wave at s3, union of targets
    s.add([Step("a", "p2", "prod"), Step("a", "staging", "staging")], sha="s2", source="push 2")
    (wave,) = s.add([Step("a", "p3", "prod")], sha="s3", source="push 3")
    assert wave.sources == ["push 2", "push 3"]
    assert wave.sha == "s3"
    assert {k for k in wave.steps} == {"a/p2", "a/p3", "a/staging"}
    for step in first:
        s.finish(step, True)
    started = run(s)
    assert {(key, sha) for _, key, sha in started} >= {
        ("a/staging", "s1"),
        ("a/p1", "s1"),
        ("a/staging", "s3"),
        ("a/p2", "s3"),
        ("a/p3", "s3"),
    }
    # per hub order is kept: a/staging at s1 before a/staging at s3
    order = [sha for _, key, sha in started if key == "a/staging"]
    assert order == ["s1", "s3"]


def test_a_not_started_wave_takes_the_newer_sha() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add([Step("a", "p1", "prod")], sha="s1")
    (wave,) = s.add([Step("a", "p2", "prod")], sha="s2")
    assert len(s.waves()) == 1 and wave.sha == "s2"
    assert {st.sha for st in wave.steps.values()} == {"s2"}


def test_pr_previews_never_coalesce_with_main() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add([Step("a", "staging", "staging")], sha="pr-head", stream="pr#3")
    s.add([Step("a", "staging", "staging")], sha="main-sha")
    assert [(w.stream, w.sha) for w in s.waves()] == [("pr#3", "pr-head"), ("main", "main-sha")]


def test_cancel_queued_steps() -> None:
    s = Schedule(max_parallel=10, max_parallel_per_cluster=10)
    s.add([Step("a", "staging", "staging")], sha="x", stream="pr#3")
    s.add([Step("b", "staging", "staging")], sha="y", stream="pr#4")
    cancelled = s.cancel(lambda step, wave: wave.stream == "pr#3")
    assert [c.key for c in cancelled] == ["a/staging"]
    assert [w.stream for w in s.waves()] == ["pr#4"]


def test_finish_requires_running() -> None:
    s = Schedule(max_parallel=1, max_parallel_per_cluster=1)
    (wave,) = s.add([Step("a", "staging", "staging")], sha="x")
    step = wave.steps["a/staging"]
    with pytest.raises(ValueError, match="not running"):
        s.finish(step, True)


def test_ideal_makespan_is_reached_on_a_skewed_repository() -> None:
    # one big cluster (like cloudbank) and many small ones, 2i2c's caps
    all_steps = steps("big", prod=tuple(f"p{i}" for i in range(94)))
    for i in range(29):
        all_steps += steps(f"c{i}", prod=("p1", "p2"))
    s = Schedule(max_parallel=10, max_parallel_per_cluster=3)
    s.add(all_steps, sha="x")
    started = run(s)
    makespan = max(t for t, _, _ in started) + 1
    ideal = ideal_makespan(all_steps, max_parallel=10, max_parallel_per_cluster=3, duration=1)
    assert ideal / makespan >= 0.9
