"""Compensation in one place: what a multi-step write must undo when a later step fails."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Callable

from policyhub.manager.database import beyond_the_deadline

log = logging.getLogger(__name__)


class Undo:
    """`with Undo() as undo:` ... `undo.push(fn, *args)` after each step that succeeded. When the
    block raises, the pushed compensations run newest first and the block's exception propagates;
    a compensation that fails is logged and the others still run. When the block succeeds,
    nothing runs. Compensations run beyond the caller's deadline (a call that timed out half-way
    is still undone)."""

    def __init__(self) -> None:
        self._steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def push(self, fn: Callable[..., Any], *args: Any) -> None:
        self._steps.append((fn, args))

    def __enter__(self) -> Undo:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            return
        while self._steps:
            fn, args = self._steps.pop()
            try:
                beyond_the_deadline(fn, *args)
            except Exception:
                # The original failure is what the caller must see; this one is only logged.
                log.exception("compensation %s failed", getattr(fn, "__qualname__", fn))
