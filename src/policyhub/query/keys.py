"""The keys a resource's queries may name: the fields its answers show, each resolved to where
it is stored. Pure data, declared once per resource by its manager and given to the compiler.

A key is valid when it is one of `fields`, lies inside one of `maps` (free-form objects such as
`tags`: `tags` and `tags.<anything>`), is an alias of a stored field under the name answers show
it by (`subject.type` for `subject_type`), or is a field of another collection an answer joins
in (`repository_info.name`). A field answers show but nothing stores (it is computed when the
answer is built) is refused with the reason, and any other key is refused with the valid ones:
a typo must not silently match nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class UnknownKey(ValueError):
    """A key that names no field; the message says why and lists the valid keys."""


@dataclass(frozen=True)
class Join:
    """Fields of another collection that answers show under `prefix` (e.g. a policy's
    `repository_info`). A query naming one of them runs `stages` first, which put the joined
    document at `prefix` as an object (absent when nothing joins)."""

    prefix: str
    fields: frozenset[str]  # the joined document's fields, without the prefix
    # The field of this collection the join matches on: `only` keeps it so the answer can show
    # the joined document.
    local_field: str
    stages: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Resolved:
    path: str  # where the value is stored (or joined to)
    join: Join | None = None


@dataclass(frozen=True)
class QueryKeys:
    fields: frozenset[str]
    maps: frozenset[str] = frozenset()
    aliases: Mapping[str, str] = field(default_factory=dict)
    # shown field -> why a query cannot name it
    computed: Mapping[str, str] = field(default_factory=dict)
    joins: tuple[Join, ...] = ()
    # What a key outside these names: "field" of a resource, or the outputs of a stat stage.
    kind: str = "field"

    def resolve(self, key: str) -> Resolved:
        if key in self.aliases:
            return Resolved(self.aliases[key])
        if key in self.fields or any(key == name or key.startswith(name + ".") for name in self.maps):
            return Resolved(key)
        for join in self.joins:
            head, _, rest = key.partition(".")
            if head == join.prefix and rest in join.fields:
                return Resolved(key, join)
        if key in self.computed:
            raise UnknownKey(f"{key!r} is {self.computed[key]}; it cannot be filtered, sorted or grouped by")
        raise UnknownKey(f"{key!r} names no {self.kind}; valid keys: {self.listing()}")

    def listing(self) -> str:
        names = [
            *self.fields,
            *self.aliases,
            *self.maps,
            *(f"{name}.<key>" for name in self.maps),
            *(f"{join.prefix}.{name}" for join in self.joins for name in join.fields),
        ]
        return ", ".join(sorted(set(names)))


def outputs(names: frozenset[str]) -> QueryKeys:
    """The keys after a stat stage that reshapes documents (group, project, count): its output
    names, and anything inside them (an output may hold an object or an array of objects)."""
    return QueryKeys(fields=frozenset(), maps=names, kind="output of the stages before it")
