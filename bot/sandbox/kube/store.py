"""The double's object store: one `resourceVersion` counter, like etcd, and a watch history.

Every write bumps the global resourceVersion, records an event (kept up to `history`
entries; older watch starting points get 410 Gone, as after an etcd compaction), and wakes
the watchers and anyone waiting on a condition.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bot.sandbox.kube.objects import JSON, ApiError, deep_copy, now, rfc3339

Key = tuple[str, str, str]  # (resource, namespace, name)


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ADDED, MODIFIED or DELETED, with the object before it (None when added)."""

    rv: int
    type: str
    resource: str
    namespace: str
    obj: JSON
    before: JSON | None


class Store:
    """Objects by (resource, namespace, name), with optimistic concurrency and watch events."""

    def __init__(self, *, history: int = 10_000) -> None:
        self.rv = 100
        self.compacted = self.rv  # watches from a resourceVersion older than this get 410
        self._objects: dict[Key, JSON] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self._watchers: set[asyncio.Queue[Event | None]] = set()
        self._tick = asyncio.Event()
        self.listeners: list[Callable[[Event], None]] = []

    # -- reads --------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> JSON | None:
        """A copy of one object, or None."""
        obj = self._objects.get((resource, namespace, name))
        return deep_copy(obj) if obj is not None else None

    def items(self, resource: str, namespace: str | None = None) -> Iterator[JSON]:
        """Copies of every object of a resource (in one namespace, or all)."""
        for (res, ns, _), obj in sorted(self._objects.items()):
            if res == resource and (namespace is None or ns == namespace):
                yield deep_copy(obj)

    def require(self, resource: str, namespace: str, name: str, group: str) -> JSON:
        """The object, or a 404 NotFound error."""
        obj = self.get(resource, namespace, name)
        if obj is None:
            plural = f"{resource}.{group}" if group else resource
            raise ApiError(
                404,
                "NotFound",
                f'{plural} "{name}" not found',
                {"name": name, "group": group, "kind": resource},
            )
        return obj

    # -- writes -------------------------------------------------------------------------

    def create(self, resource: str, namespace: str, obj: JSON, group: str) -> JSON:
        """Store a new object with uid, creationTimestamp and resourceVersion; 409 if it exists."""
        meta = obj.setdefault("metadata", {})
        name = meta["name"]
        if (resource, namespace, name) in self._objects:
            plural = f"{resource}.{group}" if group else resource
            raise ApiError(
                409,
                "AlreadyExists",
                f'{plural} "{name}" already exists',
                {"name": name, "group": group, "kind": resource},
            )
        meta.update(namespace=namespace, creationTimestamp=rfc3339(now()))
        meta.setdefault("uid", str(uuid.uuid4()))
        return self._write(resource, namespace, obj, "ADDED", None)

    def update(self, resource: str, namespace: str, obj: JSON) -> JSON:
        """Replace an existing object (the caller checked preconditions); bumps resourceVersion."""
        key = (resource, namespace, obj["metadata"]["name"])
        before = self._objects[key]
        obj["metadata"]["uid"] = before["metadata"]["uid"]
        obj["metadata"]["creationTimestamp"] = before["metadata"]["creationTimestamp"]
        return self._write(resource, namespace, obj, "MODIFIED", before)

    def mutate(
        self, resource: str, namespace: str, name: str, change: Callable[[JSON], None]
    ) -> JSON | None:
        """Apply `change` to a copy of an object and store it; None if the object is gone."""
        obj = self.get(resource, namespace, name)
        if obj is None:
            return None
        change(obj)
        return self.update(resource, namespace, obj)

    def delete(self, resource: str, namespace: str, name: str) -> JSON | None:
        """Remove an object; returns its last state (with the deleting resourceVersion)."""
        before = self._objects.pop((resource, namespace, name), None)
        if before is None:
            return None
        gone = deep_copy(before)
        self.rv += 1
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(Event(self.rv, "DELETED", resource, namespace, gone, before))
        return deep_copy(gone)

    def compact(self) -> None:
        """Forget the watch history, as an etcd compaction does: old watches get 410 Gone."""
        self._history.clear()
        self.compacted = self.rv

    def _write(
        self, resource: str, namespace: str, obj: JSON, kind: str, before: JSON | None
    ) -> JSON:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        stored = deep_copy(obj)
        self._objects[(resource, namespace, obj["metadata"]["name"])] = stored
        self._emit(Event(self.rv, kind, resource, namespace, deep_copy(stored), before))
        return deep_copy(stored)

    def _emit(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self.compacted = self._history[0].rv
        self._history.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)
        for listener in list(self.listeners):
            listener(event)
        self.touch()

    def touch(self) -> None:
        """Wake everyone in `wait_for` (also called when something outside the store changed)."""
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    # -- watching -----------------------------------------------------------------------

    def subscribe(self, since: int | None) -> tuple[list[Event], asyncio.Queue[Event | None]]:
        """Events after `since` (None: none) and a queue of live ones; 410 if `since` is too old.

        Taking the backlog and registering the queue happen with no await in between, so no
        event is missed or duplicated.
        """
        if since is not None and since < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {since} ({self.compacted})")
        backlog = [e for e in self._history if since is not None and e.rv > since]
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._watchers.add(queue)
        return backlog, queue

    def unsubscribe(self, queue: asyncio.Queue[Event | None]) -> None:
        """Stop delivering events to `queue`."""
        self._watchers.discard(queue)

    def end_watches(self) -> None:
        """End every open watch stream (None is the end-of-stream mark)."""
        for queue in self._watchers:
            queue.put_nowait(None)

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking after every write; TimeoutError if not."""
        async with asyncio.timeout(seconds):
            while not predicate():
                await self._tick.wait()
