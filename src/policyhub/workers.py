"""Several server processes on one port (`workers` > 1), in gunicorn's pre-fork model: a parent
that serves no calls starts `workers` server processes, each binding the same ports with
SO_REUSEPORT (the kernel spreads connections over them), keeps them running and stops them
together.

Workers are started as new programs (`python -m policyhub --worker SLOT --link-fd FD`), not
forked from the parent: gRPC and pymongo keep threads and sockets that a forked child cannot
use safely, and a fresh interpreter owes nothing to what the parent had initialised.

Each worker shares a socket pair with the parent, its link: the worker writes `ready <metrics
port>` on it once it serves, and reads end-of-file from it when the parent is gone (even killed
with SIGKILL), then stops as on SIGTERM: workers never outlive their parent.

- Start: slot 0 alone until it serves (it prepares the database: built-in repositories, managed
  policies; the others then find them in place), then the others together. A worker that exits
  before it serves ends the start: the others are stopped and the parent exits with its status
  (the worker said why, in one line).
- Running: a worker that exits is logged and started again in its slot after a back-off (1 s,
  doubling up to 30 s; back to 1 s once a worker has served for a minute).
- Stop: SIGTERM or SIGINT to the parent goes to every worker as SIGTERM; each drains its calls
  within shutdown_grace_seconds. The parent exits 0 when every worker stopped cleanly, else 1 (a
  worker still running STOP_MARGIN_SECONDS after the grace period is killed).
- Only slot 0 runs the purge sweeps; every worker watches the database for its own health.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from prometheus_client import start_http_server

from policyhub.config import Config
from policyhub.observability.worker_metrics import WorkerMetrics

log = logging.getLogger("policyhub")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_WAKE_SIGNALS = STOP_SIGNALS | {signal.SIGCHLD}
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# A worker that served this long before it exited restarts after the first back-off again.
STABLE_SECONDS = 60.0
STOP_MARGIN_SECONDS = 5.0
# How often the parent reads the links of workers that are starting (readiness is not a signal).
_STARTING_TICK_SECONDS = 0.05
# Bounds every other wait, so a lost SIGCHLD costs at most this long.
_IDLE_TICK_SECONDS = 1.0


class WorkerLink:
    """The worker's end of its link to the parent."""

    def __init__(self, slot: int, fd: int):
        self.slot = slot
        self._socket = socket.socket(fileno=fd)

    def stop_with_parent(self) -> None:
        """Sends this process SIGTERM when the parent is gone (its end of the link closed)."""
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()

    def _watch(self) -> None:
        try:
            while self._socket.recv(64):
                pass
        except OSError:
            pass
        log.warning("worker %d: the parent process is gone; stopping", self.slot)
        os.kill(os.getpid(), signal.SIGTERM)

    def ready(self, metrics_port: int) -> None:
        try:
            self._socket.sendall(f"ready {metrics_port}\n".encode())
        except OSError:
            pass  # the parent is gone: the watch stops this worker


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen | None = None
    link: socket.socket | None = None
    received: bytes = b""
    ready: bool = False
    metrics_port: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = BACKOFF_FIRST_SECONDS


class Supervisor:
    """The parent. `argv`: the worker's own command-line arguments (its configuration file)."""

    def __init__(self, config: Config, argv: list[str]):
        self.config = config
        self.argv = argv
        self.slots = [_Slot(index) for index in range(config.workers)]
        self.metrics: WorkerMetrics | None = None

    def run(self) -> int:
        # Blocked before any thread starts (the metrics server's inherits the mask): signals wait
        # for sigtimedwait in the loop below, and exec'd workers start with them blocked too, so
        # a SIGTERM during a worker's start-up waits for its server instead of killing it mid-way.
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE_SIGNALS)
        http = None
        try:
            for port in (self.config.port, self.config.spaceone_port):
                if port:
                    refuse_port_in_use(self.config.host, port)
            if self.config.metrics_port:
                self.metrics = WorkerMetrics(self._running)
                http = start_http_server(
                    self.config.metrics_port, addr=self.config.host, registry=self.metrics.registry
                )
            log.info("%d workers on %s:%d (SO_REUSEPORT)", len(self.slots), self.config.host, self.config.port)
            if http is not None:
                log.info("metrics of every worker on http://%s:%d/metrics", self.config.host, self.config.metrics_port)
            return self._supervise()
        except OSError as exc:
            print(f"policyhub: cannot start: {exc}", file=sys.stderr)
            self._stop_all()
            return 1
        finally:
            if http is not None:
                http[0].shutdown()

    def _running(self) -> list[tuple[int, int, int]]:
        return [(slot.index, slot.process.pid, slot.metrics_port) for slot in self.slots if slot.process is not None]

    def _supervise(self) -> int:
        self._spawn(self.slots[0])
        starting = True
        while True:
            received = signal.sigtimedwait(_WAKE_SIGNALS, self._tick(starting))
            if received is not None and received.si_signo in STOP_SIGNALS:
                log.info("%s, stopping %d workers", signal.Signals(received.si_signo).name, len(self.slots))
                return self._stop_all()
            now = time.monotonic()
            for slot in self.slots:
                self._read_link(slot)
                if slot.process is not None and slot.process.poll() is not None:
                    # Before any worker serves, a failed start is the server's (a port in use, a bad
                    # key file): one line and its exit code. Once one serves, a worker that fails to
                    # start (the database went away meanwhile) is restarted like one that died.
                    if not slot.ready and not any(other.ready for other in self.slots):
                        code = slot.process.returncode
                        self._reap(slot)
                        self._stop_all()
                        return code if code > 0 else 1
                    self._exited(slot, now)
                if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                    self._spawn(slot)
                    if self.metrics is not None:
                        self.metrics.restarts.labels(str(slot.index)).inc()
            if starting and self.slots[0].ready and all(slot.process is None for slot in self.slots[1:]):
                for slot in self.slots[1:]:
                    self._spawn(slot)
            if starting and all(slot.ready for slot in self.slots):
                starting = False
                log.info("%d workers serving", len(self.slots))

    def _tick(self, starting: bool) -> float:
        if starting or any(slot.process is not None and not slot.ready for slot in self.slots):
            return _STARTING_TICK_SECONDS
        now = time.monotonic()
        pending = [slot.restart_at - now for slot in self.slots if slot.restart_at is not None]
        return max(0.0, min([_IDLE_TICK_SECONDS, *pending]))

    def _spawn(self, slot: _Slot) -> None:
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        try:
            slot.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "policyhub",
                    *self.argv,
                    "--worker",
                    str(slot.index),
                    "--link-fd",
                    str(theirs.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                # Its own process group: a Ctrl-C at a terminal reaches the parent only, which
                # then stops every worker the same way.
                process_group=0,
            )
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        slot.link, slot.received, slot.ready, slot.metrics_port = mine, b"", False, 0
        slot.started_at, slot.restart_at = time.monotonic(), None
        log.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _read_link(self, slot: _Slot) -> None:
        if slot.link is None or slot.ready:
            return
        try:
            slot.received += slot.link.recv(64)
        except BlockingIOError:
            return
        except OSError:
            return  # the worker is gone: its exit is seen through its status
        if slot.received.endswith(b"\n") and slot.received.startswith(b"ready "):
            slot.ready, slot.metrics_port = True, int(slot.received.split()[1])

    def _exited(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None
        pid, code = slot.process.pid, slot.process.returncode
        if now - slot.started_at >= STABLE_SECONDS:
            slot.backoff = BACKOFF_FIRST_SECONDS
        self._reap(slot)
        slot.restart_at = now + slot.backoff
        log.error(
            "worker %d (pid %d) exited unexpectedly (%s); restarting it in %g s",
            slot.index,
            pid,
            f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}",
            slot.backoff,
        )
        slot.backoff = min(slot.backoff * 2, BACKOFF_MAX_SECONDS)

    def _reap(self, slot: _Slot) -> None:
        if slot.link is not None:
            slot.link.close()
        slot.process, slot.link, slot.ready, slot.metrics_port = None, None, False, 0

    def _stop_all(self) -> int:
        """SIGTERM to every worker, then waits for them (killing those that outlast the grace
        period and margin); 0 when every one stopped cleanly."""
        running = [slot.process for slot in self.slots if slot.process is not None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace_seconds + STOP_MARGIN_SECONDS
        while any(process.poll() is None for process in running) and time.monotonic() < deadline:
            signal.sigtimedwait(_WAKE_SIGNALS, min(_IDLE_TICK_SECONDS, max(0.0, deadline - time.monotonic())))
        clean = True
        for process in running:
            if process.poll() is None:
                log.error("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
                clean = False
            # A SIGTERM that arrived before the worker's server took over ended it cleanly too.
            elif process.returncode not in (0, -signal.SIGTERM):
                log.error("worker pid %d stopped with status %d", process.pid, process.returncode)
                clean = False
        for slot in self.slots:
            self._reap(slot)
        log.info("policyhub stopped")
        return 0 if clean else 1


def refuse_port_in_use(host: str, port: int) -> None:
    """Raises OSError when something already listens on host:port. The workers bind with
    SO_REUSEPORT, which would silently share a port held by another such server of this user:
    this probe, without it, refuses that too."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
