"""A bounded least-recently-used cache of captured CUDA graphs that says in the log when it evicts.

Each captured graph holds its static buffers (and, for the engine, a share of a memory pool), so
the number kept must be bounded; but a cache smaller than the set of padded shapes a server meets
recaptures again and again (each capture costs milliseconds and a synchronisation). So the owner
sizes it from its buckets (:meth:`GraphCache.reserve`), it never grows past ``limit``, and every
eviction is logged at WARNING on the ``lite_export.kernels`` logger with what was evicted, how
many were before it and how to make room. Pure Python: testable on any machine.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["MAX_GRAPHS", "GraphCache"]

log = logging.getLogger("lite_export.kernels")

#: No graph cache holds more than this many graphs, whatever it is asked for.
MAX_GRAPHS = 1024

_MISSING = object()


class GraphCache:
    """``OrderedDict`` LRU of ``key -> captured graph`` with a bounded capacity.

    Args:
        capacity: graphs kept (clamped to ``[1, limit]``).
        what: what the cache holds, for the log ("topk_projection filter-path graphs").
        hint: how to make room, appended to the eviction message.
        limit: the hard bound (default :data:`MAX_GRAPHS`).
    """

    def __init__(self, capacity: int, what: str, hint: str = "", limit: int = MAX_GRAPHS):
        self.what = what
        self.hint = hint
        self.limit = int(limit)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._capacity = 1
        self.evictions = 0
        self.resize(capacity)

    @property
    def capacity(self) -> int:
        return self._capacity

    def resize(self, capacity: int) -> int:
        """Set the capacity (clamped to ``[1, limit]``, with a log line when clamped); evicts
        the least recently used graphs beyond it. Returns the capacity in force."""
        want = int(capacity)
        cap = max(1, min(want, self.limit))
        if cap != want:
            log.warning(
                "%s: asked to keep %d graphs, keeping %d (the bound is %d)",
                self.what,
                want,
                cap,
                self.limit,
            )
        self._capacity = cap
        self._trim()
        return cap

    def reserve(self, n: int) -> int:
        """Grow to hold at least ``n`` graphs (never shrinks; bounded by ``limit``)."""
        if n > self._capacity:
            return self.resize(n)
        return self._capacity

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (now the most recently used), or ``default``."""
        value = self._items.get(key, _MISSING)
        if value is _MISSING:
            return default
        self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        self._trim()

    def _trim(self) -> None:
        while len(self._items) > self._capacity:
            old, _ = self._items.popitem(last=False)
            self.evictions += 1
            log.warning(
                "%s: cache full at %d graphs, evicted %s (%d evictions so far); it is captured "
                "again when next used%s",
                self.what,
                self._capacity,
                old,
                self.evictions,
                f". {self.hint}" if self.hint else "",
            )

    def keys(self) -> list[Hashable]:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
