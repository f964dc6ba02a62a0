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
