"""A memory budget shared by all sessions: least recently used first out.

Objects that hold memory for a session (its prefix KV cache, engine/kv.py; its picture, image features and
photo facts, chat/image_slot.py) report their size with `stored(obj)` each time they grow or are used.
When the total passes the limit, the least recently stored objects are told to `drop()` what they hold;
they stay usable and recompute it when next needed, only slower. Objects are held weakly: a session that
is garbage-collected no longer counts.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class Droppable(Protocol):
    nbytes: int  # what it holds now, in bytes

    def drop(self) -> None: ...  # free what it holds (it recomputes it when needed)


class Budget:
    """Keeps the bytes of all stored objects under a limit, dropping the least recently stored."""

    def __init__(self, limit_bytes: int | None = None, limit_from: Callable[[], int] | None = None,
                 after_drop: Callable[[], object] | None = None):  # fmt: skip
        self.limit = limit_bytes  # None: `limit_from()` (a setting), read when first needed
        self.limit_from = limit_from
        self.after_drop = after_drop  # called (outside the lock) after objects were dropped
        self.sizes: OrderedDict[int, int] = OrderedDict()  # id(obj) -> bytes, least recent first
        self.refs: dict[int, weakref.ref] = {}
        self.total = 0
        self.lock = threading.RLock()  # re-entrant: a weakref callback may run inside `stored` (GC)

    def stored(self, obj: Droppable) -> None:
        """`obj` now holds `obj.nbytes` and was just used: count it, and drop older objects past the limit."""
        key, size = id(obj), obj.nbytes
        if self.limit is None:
            self.limit = self.limit_from() if self.limit_from else 2**63
        dropped = False
        with self.lock:
            self.total += size - self.sizes.pop(key, 0)
            self.sizes[key] = size
            if key not in self.refs:
                self.refs[key] = weakref.ref(obj, lambda _, key=key: self._forget(key))
            while self.total > self.limit and len(self.sizes) > 1:
                old = next(iter(self.sizes))
                if old == key:
                    break
                self.total -= self.sizes.pop(old)
                victim = self.refs.pop(old)()
                if victim is not None:
                    victim.drop()
                    dropped = True
        if dropped and self.after_drop is not None:
            self.after_drop()

    def forget(self, obj: Droppable) -> None:
        """`obj` is closed: it no longer counts."""
        self._forget(id(obj))

    def _forget(self, key: int) -> None:
        with self.lock:
            self.total -= self.sizes.pop(key, 0)
            self.refs.pop(key, None)

    def holds(self, obj: Droppable) -> bool:
        return id(obj) in self.sizes
