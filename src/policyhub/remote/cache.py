"""A small TTL cache for answers of remote repositories.

Staleness bound: an answer served from this cache was produced by the remote at most
`seconds` (config `remote_cache_seconds`) before it is served. The age is counted from the
moment the call to the remote *started* (not when it answered), so the bound holds even for
slow answers: a change made on the remote becomes visible here at most `seconds` later.
`seconds` = 0 turns the cache off. Only answers are cached (a policy, "no such policy", a
page of a list, a stat result); failures never are, so an unreachable remote is asked again
on the next call.

Entries are per process, keyed by everything that shapes the answer (endpoint, method and
the full request, which includes the caller's domain), so tenants never share an entry.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

DEFAULT_MAX_ENTRIES = 10_000
_MISSING = object()


class TTLCache:
    def __init__(
        self, seconds: float, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ):
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self.seconds = seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def now(self) -> float:
        """Take this before calling the remote and pass it to `put` as `started_at`."""
        return self.clock()

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) for a fresh entry, else (False, None)."""
        if not self.enabled:
            return False, None
        with self._lock:
            entry = self._entries.get(key, _MISSING)
            if entry is _MISSING:
                return False, None
            expires_at, value = entry
            if self.clock() >= expires_at:
                del self._entries[key]
                return False, None
            return True, value

    def put(self, key: Hashable, value: Any, started_at: float) -> None:
        """Stores an answer whose call started at `started_at` (from `now()`)."""
        if not self.enabled:
            return
        expires_at = started_at + self.seconds
        with self._lock:
            if self.clock() >= expires_at:
                return  # already older than the bound
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drops the entries whose key matches (e.g. all of one endpoint at deregistration)."""
        with self._lock:
            doomed = [key for key in self._entries if predicate(key)]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
