"""The event ring buffer between a source and the pipeline: SPSC, lock-free, in C++.

Policies when full: ``"block"`` (the producer waits; file replay), ``"drop-oldest"`` and
``"drop-newest"`` (live sources: the oldest unread or the newest events are discarded). Every
event is accounted for: ``offered == popped + dropped + len(ring)`` whenever neither side is
mid-call, for every policy. ``offered`` counts the events a push answered for: with the drop
policies all it was given (stored, or counted as dropped); with ``block`` only those it stored,
since a push that times out leaves the rest with the caller, who may push them again without
their being counted twice. ``push`` and ``pop`` release the GIL.

A ring can live in a named shared-memory segment, so that a producer in another process
(another Python process, or any program that maps the segment and follows
``kernels/csrc/ring.hpp``) writes into it.

Example:
    >>> from evstream.runtime.ring import EventRing
    >>> ring = EventRing(1 << 20, policy="drop-oldest")
    >>> ring.push(events)                                   # doctest: +SKIP
    >>> batch = ring.pop(65536, timeout=0.1)                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import _core

POLICIES = ("block", "drop-oldest", "drop-newest")


@dataclass(frozen=True)
class RingStats:
    """Counters of a ring, in events (``offered == popped + dropped + size`` when neither side is
    mid-call; ``offered``: see the module docstring)."""

    capacity: int
    size: int
    offered: int
    popped: int
    dropped: int


class EventRing:
    """A fixed-capacity SPSC ring of events (``EVENT_DTYPE``).

    Args:
        capacity: events the ring holds.
        policy: ``"block"``, ``"drop-oldest"`` or ``"drop-newest"``.
        shared_name: create the ring in a new shared-memory segment of this name (another
            process attaches with :meth:`EventRing.attach`).
    """

    def __init__(self, capacity: int, policy: str = "block", shared_name: str | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._shm = None
        if shared_name is None:
            self._ring = _core.Ring.new(int(capacity), policy)
        else:
            from multiprocessing import shared_memory

            self._shm = shared_memory.SharedMemory(
                name=shared_name, create=True, size=_core.Ring.bytes_for(int(capacity))
            )
            self._owner = True
            self._ring = _core.Ring.create_in(self._shm.buf, int(capacity), policy)

    @classmethod
    def attach(cls, shared_name: str) -> EventRing:
        """Attaches to a ring created in shared memory by another process."""
        from multiprocessing import shared_memory

        self = cls.__new__(cls)
        self._shm = shared_memory.SharedMemory(name=shared_name, create=False)
        self._owner = False
        try:
            self._ring = _core.Ring.attach(self._shm.buf)
        except ValueError:
            self._shm.close()
            raise
        return self

    @property
    def capacity(self) -> int:
        return self._ring.capacity

    @property
    def policy(self) -> str:
        return self._ring.policy

    @property
    def closed(self) -> bool:
        """True once the producer called :meth:`close` (events may still be waiting)."""
        return self._ring.closed

    def __len__(self) -> int:
        return len(self._ring)

    def push(self, events: np.ndarray, timeout: float | None = None) -> int:
        """Stores events; returns how many of them were stored.

        ``block`` waits for room up to ``timeout`` seconds (None: until all are stored) and
        counts only the stored events as offered: the caller keeps the rest (and may push it
        again). ``drop-newest`` stores what fits; ``drop-oldest`` stores all but those pushed out
        by later events of the same call (more than ``capacity``). The drop policies never wait,
        count every event given as offered and what they discard in ``stats().dropped``.
        """
        if not len(events):
            return 0
        return self._ring.push(np.ascontiguousarray(events), -1.0 if timeout is None else float(timeout))

    def pop(self, max_events: int, timeout: float = 0.0) -> np.ndarray:
        """Returns up to ``max_events`` events (oldest first), waiting up to ``timeout`` seconds
        for the first one. An empty array means a timeout, or a closed and drained ring."""
        return self._ring.pop(int(max_events), float(timeout))[0]

    def pop_indexed(self, max_events: int, timeout: float = 0.0) -> tuple[np.ndarray, int]:
        """Like :meth:`pop`, also returning the stream index of the first event (the number of
        events stored before it), which matches :attr:`stored` as seen by the producer."""
        return self._ring.pop(int(max_events), float(timeout))

    @property
    def stored(self) -> int:
        """Events stored so far by the producer."""
        return self._ring.stored

    def close(self) -> None:
        """Marks the end of the stream: pop() returns what is left, then empty arrays."""
        self._ring.close()

    def stats(self) -> RingStats:
        r = self._ring
        return RingStats(r.capacity, len(r), r.offered, r.popped, r.dropped)

    def release(self) -> None:
        """Releases a shared-memory segment (the creator also unlinks it)."""
        if self._shm is not None:
            self._ring = None
            self._shm.close()
            if self._owner:
                self._shm.unlink()
            self._shm = None
