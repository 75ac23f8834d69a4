"""A bounded, thread-safe memo: the least recently used entry goes first.

For what gitops keeps by content (rendered bootstrap files by profile, parsed route files by blob
id, route indexes by tree id): a hit is always what making the value again would give.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class Memo:
    """At most ``size`` values by key; ``get`` makes a missing one outside the lock."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: Hashable) -> Any | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        value = self.peek(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value


__all__ = ["Memo"]
