"""The rollout schedule: a pure state machine of targets, order, gates and caps.

Each cluster has a lane: a queue of waves run one after another. A wave is what
one or more pushes (or one PR preview) deploy on that cluster, pinned to one SHA:
its support release first, then its staging hubs, then its prod hubs, and prod
only when every staging target of that wave succeeded. Clusters run in parallel
under a global cap and a per-cluster cap.

Pushes to the default branch that arrive while a lane is busy coalesce into the
lane's pending wave: the union of their targets at the newest SHA, which already
contains the older changes. Nothing is dropped, and each hub keeps its order
because a lane runs its waves in sequence.

The driver (`rollout.py`) asks `ready()`, starts those steps, and reports each end
with `finish()`; this module does no I/O, so the benchmark can compare its
makespan with the ideal critical path for the same caps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

Stage = Literal["support", "staging", "prod"]
State = Literal["queued", "running", "success", "failure", "blocked", "cancelled"]
STAGES: tuple[Stage, ...] = ("support", "staging", "prod")
MAIN = "main"  # the stream of default-branch pushes; PR previews use "pr#<n>"
ADOPTED = "adopted:"  # the stream prefix of a job adopted after a restart (`adopted:<job id>`)


@dataclass(frozen=True, slots=True)
class Step:
    """One target of a wave: a cluster's support release or one hub, at one SHA."""

    cluster: str
    hub: str | None  # None for the support release
    stage: Stage
    sha: str = ""
    reasons: tuple[str, ...] = ()
    wave: int = 0

    @property
    def key(self) -> str:
        """`cluster/hub`, or `cluster/support`."""
        return f"{self.cluster}/{self.hub or 'support'}"


@dataclass(slots=True)
class Wave:
    """What one lane deploys in one go, pinned to one SHA."""

    id: int
    cluster: str
    stream: str
    sha: str
    steps: dict[str, Step] = field(default_factory=dict)
    state: dict[str, State] = field(default_factory=dict)
    detail: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def remaining(self, stage: Stage) -> list[Step]:
        """Queued steps of a stage, in name order."""
        return sorted(
            (s for k, s in self.steps.items() if s.stage == stage and self.state[k] == "queued"),
            key=lambda s: s.key,
        )

    def unfinished(self, stage: Stage) -> bool:
        """Whether a stage still has queued or running steps."""
        return any(
            s.stage == stage and self.state[k] in ("queued", "running")
            for k, s in self.steps.items()
        )

    def failed(self, stage: Stage) -> bool:
        """Whether a step of a stage did not succeed."""
        return any(
            s.stage == stage and self.state[k] in ("failure", "blocked", "cancelled")
            for k, s in self.steps.items()
        )

    @property
    def done(self) -> bool:
        """Whether no step is queued or running."""
        return all(st not in ("queued", "running") for st in self.state.values())


@dataclass(slots=True)
class Lane:
    """A cluster's queue of waves; only the first one runs."""

    waves: list[Wave] = field(default_factory=list)
    running: int = 0


class Schedule:
    """Order, gates and caps for every rollout of one repository."""

    def __init__(self, *, max_parallel: int, max_parallel_per_cluster: int):
        if max_parallel < 1 or max_parallel_per_cluster < 1:
            raise ValueError("caps must be at least 1")
        self.max_parallel = max_parallel
        self.max_parallel_per_cluster = max_parallel_per_cluster
        self.lanes: dict[str, Lane] = {}
        self.running = 0
        self._ids = itertools.count(1)

    def add(
        self, steps: Iterable[Step], *, sha: str, stream: str = MAIN, source: str = ""
    ) -> list[Wave]:
        """Queue steps at `sha`; same-stream steps waiting on a busy lane coalesce into one wave.

        Returns the waves that received the steps (new or coalesced).
        """
        by_cluster: dict[str, list[Step]] = {}
        for step in steps:
            by_cluster.setdefault(step.cluster, []).append(step)
        touched = []
        for cluster, cluster_steps in sorted(by_cluster.items()):
            lane = self.lanes.setdefault(cluster, Lane())
            wave = self._pending_wave(lane, stream)
            if wave is None:
                wave = Wave(id=next(self._ids), cluster=cluster, stream=stream, sha=sha)
                lane.waves.append(wave)
            else:
                wave.sha = sha  # the newest SHA contains the older changes
                wave.steps = {k: replace(s, sha=sha) for k, s in wave.steps.items()}
            for step in cluster_steps:
                old = wave.steps.get(step.key)
                reasons = tuple(dict.fromkeys((old.reasons if old else ()) + step.reasons))
                wave.steps[step.key] = replace(step, sha=sha, wave=wave.id, reasons=reasons)
                wave.state[step.key] = "queued"
            if source:
                wave.sources.append(source)
            touched.append(wave)
        return touched

    def _pending_wave(self, lane: Lane, stream: str) -> Wave | None:
        """The lane's last waiting (not running) wave of the same stream, to coalesce into."""
        for wave in reversed(lane.waves[1:] if lane.waves else []):
            if wave.stream == stream:
                return wave
        if lane.waves and lane.waves[0].stream == stream and not _started(lane.waves[0]):
            return lane.waves[0]
        return None

    def ready(self) -> list[Step]:
        """Steps that may start now, most urgent cluster first; caller must `start()` them."""
        free = self.max_parallel - self.running
        chosen: list[Step] = []
        for cluster in sorted(self.lanes, key=lambda c: (-self._remaining_path(c), c)):
            if free <= 0:
                break
            lane = self.lanes[cluster]
            slots = min(free, self.max_parallel_per_cluster - lane.running)
            if slots <= 0 or not lane.waves:
                continue
            picked = self._next_steps(lane.waves[0])[:slots]
            chosen.extend(picked)
            free -= len(picked)
        return chosen

    def _next_steps(self, wave: Wave) -> list[Step]:
        for stage in STAGES:
            queued = wave.remaining(stage)
            if wave.unfinished(stage) and not queued:
                return []  # this stage is still running: later stages wait
            if queued:
                return queued
        return []

    def _remaining_path(self, cluster: str) -> float:
        """Remaining work of a lane in rounds of its cap: its critical path, for priority."""
        lane = self.lanes[cluster]
        total = 0.0
        for wave in lane.waves:
            for stage in STAGES:
                n = len(wave.remaining(stage))
                total += math.ceil(n / self.max_parallel_per_cluster)
        return total

    def start(self, step: Step) -> None:
        """Mark a ready step as running."""
        wave = self._wave(step)
        if wave.state[step.key] != "queued":
            raise ValueError(f"{step.key} is not queued")
        wave.state[step.key] = "running"
        self.lanes[step.cluster].running += 1
        self.running += 1

    def finish(self, step: Step, ok: bool, detail: str = "") -> list[tuple[Step, str]]:
        """Record how a running step ended; returns the steps this blocked, and why."""
        wave = self._wave(step)
        if wave.state[step.key] != "running":
            raise ValueError(f"{step.key} is not running")
        wave.state[step.key] = "success" if ok else "failure"
        if detail:
            wave.detail[step.key] = detail
        self.lanes[step.cluster].running -= 1
        self.running -= 1
        blocked: list[tuple[Step, str]] = []
        later: tuple[Stage, ...] = ()
        why = ""
        if not ok and step.stage == "support":
            later, why = ("staging", "prod"), f"support failed on {step.cluster}"
        elif not ok and step.stage == "staging":
            later, why = ("prod",), f"staging failed on {step.cluster}: {step.key}"
        if later:
            blocked = self._block(wave, later, why)
        if later and wave.stream.startswith(ADOPTED):
            # An adopted job is its stage of a wave a restart cut; that wave's later stages
            # were requeued as another wave at the same SHA, and wait on it just the same.
            for other in self.lanes[step.cluster].waves:
                if other.sha == wave.sha and not other.stream.startswith(ADOPTED):
                    blocked += self._block(other, later, why)
        self._advance(step.cluster)
        return blocked

    def cancel(self, match: Callable[[Step, Wave], bool], detail: str = "cancelled") -> list[Step]:
        """Cancel queued steps that `match`; running ones are the executor's to stop."""
        cancelled = []
        for cluster, lane in list(self.lanes.items()):
            for wave in lane.waves:
                for key, step in wave.steps.items():
                    if wave.state[key] == "queued" and match(step, wave):
                        wave.state[key] = "cancelled"
                        wave.detail[key] = detail
                        cancelled.append(step)
            self._advance(cluster)
        return cancelled

    def _block(self, wave: Wave, stages: tuple[Stage, ...], why: str) -> list[tuple[Step, str]]:
        blocked = []
        for key, step in wave.steps.items():
            if step.stage in stages and wave.state[key] == "queued":
                wave.state[key] = "blocked"
                wave.detail[key] = why
                blocked.append((step, why))
        return blocked

    def _advance(self, cluster: str) -> None:
        lane = self.lanes[cluster]
        while lane.waves and lane.waves[0].done:
            lane.waves.pop(0)
        if not lane.waves and lane.running == 0:
            del self.lanes[cluster]

    def _wave(self, step: Step) -> Wave:
        for wave in self.lanes[step.cluster].waves:
            if wave.id == step.wave:
                return wave
        raise KeyError(f"no wave {step.wave} on {step.cluster}")

    def waves(self) -> list[Wave]:
        """Every wave still queued or running, lane by lane."""
        return [w for c in sorted(self.lanes) for w in self.lanes[c].waves]

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or running."""
        return not self.lanes


def _started(wave: Wave) -> bool:
    return any(st != "queued" for st in wave.state.values())


def ideal_makespan(
    steps: Iterable[Step], *, max_parallel: int, max_parallel_per_cluster: int, duration: float
) -> float:
    """A lower bound on the wall time of one rollout with equal step durations.

    No schedule beats the longest cluster chain (support, then its staging and
    prod hubs in rounds of the per-cluster cap) nor the total work spread over the
    global cap.
    """
    per_cluster: dict[str, dict[str, int]] = {}
    total = 0
    for step in steps:
        counts = per_cluster.setdefault(step.cluster, {"support": 0, "staging": 0, "prod": 0})
        counts[step.stage] += 1
        total += 1
    chain = max(
        (
            sum(math.ceil(n / max_parallel_per_cluster) for n in counts.values())
            for counts in per_cluster.values()
        ),
        default=0,
    )
    return max(chain, math.ceil(total / max_parallel)) * duration
