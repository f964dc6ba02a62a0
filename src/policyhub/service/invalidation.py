"""When a domain's evaluation caches must be invalidated."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from policyhub.manager.revision_manager import RevisionManager


@contextmanager
def invalidating(revisions: RevisionManager, domain_id: str) -> Iterator[None]:
    """Bumps the domain's revision when the block ends, however it ends: a write that failed
    half-way, or was rolled back, may still have been seen by an index built meanwhile."""
    try:
        yield
    finally:
        revisions.bump(domain_id)


@contextmanager
def invalidating_at_once(revisions: RevisionManager, domain_id: str) -> Iterator[None]:
    """As `invalidating`, for a write of several documents that must be seen all at once (a
    rename moving every assignment that names the old id): no evaluation index is built while
    it is under way, so no check ever answers from half of it (see IndexCache.get)."""
    mark = revisions.begin_write(domain_id)
    try:
        yield
    finally:
        revisions.end_write(domain_id, mark)
