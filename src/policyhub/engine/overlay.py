"""A read-only mapping that a new version derives from an old one by a few changes.

Each version is a shared base dict, never written after it was made, and its own small dict of
the keys changed since (removals included). Deriving a version copies only the small dict, so
a change costs O(changes since the base), not O(size); once the small dict has grown past a
bound that rises with the base (its square root, times a constant), the next version folds
everything into a new base, a cost of O(size) met once per that many changes. Reads cost one
or two dict lookups. Older versions stay valid and unchanged: readers that hold them keep a
consistent view.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")

_GONE = object()  # a key removed since the base
_MISSING = object()
# The small dict is folded into a new base once it holds more than this many keys, or
# SQRT_FACTOR times the square root of the base's size: copying it on each change then stays far
# cheaper than a whole copy, and whole copies stay rare enough to cost O(1) per change on average.
MIN_CHANGES = 256
SQRT_FACTOR = 4


class Overlay(Mapping[K, V]):
    __slots__ = ("_base", "_top", "_len")

    def __init__(self, base: dict[K, V] | None = None):
        self._base: dict[K, V] = base if base is not None else {}
        self._top: dict[K, object] = {}
        self._len = len(self._base)

    def get(self, key: K, default: Any = None) -> Any:
        found = self._top.get(key, _MISSING)
        if found is _MISSING:
            return self._base.get(key, default)
        return default if found is _GONE else found

    def __getitem__(self, key: K) -> V:
        found = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return cast(V, found)

    def __contains__(self, key: object) -> bool:
        return self.get(cast(K, key), _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[K]:
        top = self._top
        for key in self._base:
            if key not in top:
                yield key
        for key, value in top.items():
            if value is not _GONE:
                yield key

    def __len__(self) -> int:
        return self._len

    def changed(self, changes: Mapping[K, V | None]) -> Overlay[K, V]:
        """A new version with each key set to its value, or removed where the value is None."""
        top = dict(self._top)
        length = self._len
        for key, value in changes.items():
            had = key in self
            if value is None:
                if had:
                    top[key] = _GONE
                    length -= 1
            else:
                top[key] = value
                length += 0 if had else 1
        out: Overlay[K, V] = Overlay.__new__(Overlay)
        out._len = length
        if len(top) > max(MIN_CHANGES, SQRT_FACTOR * math.isqrt(len(self._base))):
            base = {key: value for key, value in self._base.items() if key not in top}
            base.update((key, value) for key, value in top.items() if value is not _GONE)  # type: ignore[misc]
            out._base, out._top = base, {}
        else:
            out._base, out._top = self._base, top
        return out
