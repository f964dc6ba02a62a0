"""Background jobs of an application: the purge sweep and the database health watch."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from policyhub.errors import PolicyHubError
from policyhub.manager.database import Database

log = logging.getLogger(__name__)


class Periodic:
    """Runs `step` every `interval` seconds on a daemon thread, from start() until stop()."""

    def __init__(self, name: str, interval: float, step: Callable[[], None]):
        self.interval = interval
        self.step = step
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.step()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()


def purge_sweep(purges: dict[str, Callable[[], int]]) -> Callable[[], None]:
    """Purges what is past its retention, by what it is (soft-deleted policies, change
    records, ...): each purge returns how many it removed; a failure waits for the next round
    and does not keep the others from running."""

    def step() -> None:
        for what, purge_expired in purges.items():
            try:
                purged = purge_expired()
                if purged:
                    log.info("purged %d %s", purged, what)
            except PolicyHubError as exc:
                log.warning("purge sweep of %s failed: %s", what, exc)

    return step


class DatabaseHealth:
    """Whether the database answers, told to every listener when it changes (pymongo reconnects
    by itself, so reachable again needs no restart)."""

    def __init__(self, database: Database):
        self.database = database
        self.reachable = True
        self._listeners: list[Callable[[bool], None]] = []

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def check(self) -> None:
        reachable = self.database.ping()
        if reachable == self.reachable:
            return
        self.reachable = reachable
        for listener in self._listeners:
            listener(reachable)
