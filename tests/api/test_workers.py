"""`workers: 2` through real processes on the MongoDB wire protocol: one port served by two worker
processes (both answer), the parent's metrics port showing each worker's series, a killed worker
restarted in its slot, SIGTERM stopping all of them with exit 0, workers that never outlive their
parent, and start-up errors that are one line and a non-zero exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

from policyhub._gen.spaceone.api.repository.v1 import policy_pb2, policy_pb2_grpc

GET = {"grpc_service": "spaceone.api.repository.v1.Policy", "grpc_method": "get", "grpc_type": "unary"}
# Bounds every wait of these tests (start-up of two workers on a loaded machine included).
PATIENCE = 60.0


def wait_for(condition: Callable[[], object], what: str, timeout: float = PATIENCE):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Parent:
    """`python -m policyhub` with `workers` set; stderr goes to a file (nobody reads a pipe meanwhile)."""

    def __init__(self, tmp_path: Path, settings: dict[str, str]):
        env = {key: value for key, value in os.environ.items() if not key.startswith("POLICYHUB_")}
        env.update(POLICYHUB_LOG_LEVEL="ERROR", POLICYHUB_LOG_FORMAT="text", **settings)
        self.stderr_path = tmp_path / f"stderr-{uuid.uuid4().hex[:6]}.log"
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "policyhub"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self) -> int:
        return self.process.wait(timeout=PATIENCE)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=PATIENCE)


@pytest.fixture
def parents(tmp_path):
    started: list[Parent] = []

    def start(**settings: str) -> Parent:
        parent = Parent(tmp_path, {f"POLICYHUB_{key.upper()}": value for key, value in settings.items()})
        started.append(parent)
        return parent

    yield start
    for parent in started:
        parent.kill()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def per_worker(samples: dict, name: str, **labels: str) -> dict[str, float]:
    """{worker slot: value} of the samples named `name` carrying `labels`."""
    found = {}
    for (sample, sample_labels), value in samples.items():
        as_dict = dict(sample_labels)
        if sample == name and labels.items() <= as_dict.items():
            found[as_dict["worker"]] = value
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper has stopped already)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def serving_workers(metrics_port: int, count: int) -> dict[str, int]:
    """Waits until `count` workers are up; their pids by slot."""

    def up():
        try:
            samples = scrape(metrics_port)
        except OSError:
            return None
        ups = per_worker(samples, "policyhub_worker_up")
        if len(ups) == count and all(value == 1 for value in ups.values()):
            return {slot: int(pid) for slot, pid in per_worker(samples, "policyhub_worker_pid").items()}
        return None

    return wait_for(up, f"{count} workers serving")


@pytest.fixture
def database(wire_mongodb_uri):
    return {"mongodb_uri": wire_mongodb_uri, "database": f"policyhub_workers_{uuid.uuid4().hex[:8]}"}


def test_two_workers_share_the_port_restart_when_killed_and_stop_together_on_sigterm(parents, database):
    port, metrics_port = free_port(), free_port()
    parent = parents(workers="2", port=str(port), metrics_port=str(metrics_port), **database)
    pids = serving_workers(metrics_port, 2)
    assert set(pids) == {"0", "1"} and len(set(pids.values())) == 2
    assert all(parent_of(pid) == parent.process.pid for pid in pids.values())

    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        policy_pb2_grpc.PolicyStub(channel).create(
            policy_pb2.CreatePolicyRequest(policy_id="p", name="n", domain_id="d-workers"), timeout=20
        )
    request = policy_pb2.GetRepositoryPolicyRequest(policy_id="p", domain_id="d-workers")

    def get_on_a_new_connection() -> str:
        # Its own subchannel pool: a new TCP connection, which the kernel gives to either worker.
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            return policy_pb2_grpc.PolicyStub(channel).get(request, timeout=20).name

    def both_workers_answered():
        assert get_on_a_new_connection() == "n"
        samples = scrape(metrics_port)
        gets = per_worker(samples, "grpc_server_handled_total", **GET, grpc_code="OK")
        # Histograms and the process metrics come through per worker as well.
        latencies = per_worker(samples, "grpc_server_handling_seconds_count", **GET)
        memory = per_worker(samples, "process_resident_memory_bytes")
        return set(gets) == set(latencies) == {"0", "1"} and set(memory) == {"0", "1"}

    wait_for(both_workers_answered, "gets answered by both workers")

    os.kill(pids["1"], signal.SIGKILL)
    restarted = wait_for(
        lambda: (now := serving_workers(metrics_port, 2))["1"] != pids["1"] and now, "worker 1 restarted"
    )
    assert restarted["0"] == pids["0"] and parent_of(restarted["1"]) == parent.process.pid
    assert per_worker(scrape(metrics_port), "policyhub_worker_restarts_total") == {"1": 1.0}
    assert f"worker 1 (pid {pids['1']}) exited unexpectedly (signal SIGKILL)" in parent.stderr
    assert get_on_a_new_connection() == "n"

    parent.process.send_signal(signal.SIGTERM)
    assert parent.wait() == 0
    assert not any(alive(pid) for pid in (*pids.values(), restarted["1"]))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_workers_stop_when_their_parent_is_killed(parents, database):
    port, metrics_port = free_port(), free_port()
    parent = parents(workers="2", port=str(port), metrics_port=str(metrics_port), **database)
    pids = serving_workers(metrics_port, 2)
    parent.kill()  # SIGKILL: the parent cannot stop them itself
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), "the workers to stop")


def test_workers_with_the_embedded_store_are_a_one_line_configuration_error(parents):
    parent = parents(workers="2", port=str(free_port()))
    assert parent.wait() == 2
    assert parent.stderr.splitlines() == [
        "policyhub: configuration error: config key workers: the embedded store lives inside one process, "
        "so it cannot serve 2 workers; set mongodb_uri or workers: 1"
    ]


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_port_in_use_is_one_line_and_starts_no_worker(parents, database, reuse_port):
    """Also when the holder set SO_REUSEPORT (another server's workers), which the workers' own
    sockets would otherwise silently share."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        parent = parents(workers="2", port=str(port), **database)
        assert parent.wait() == 1
    [line] = parent.stderr.splitlines()
    assert line.startswith(f"policyhub: cannot start: cannot listen on 127.0.0.1:{port}: ")


def test_a_worker_that_cannot_start_ends_the_start_with_its_one_line(parents, database, tmp_path):
    parent = parents(
        workers="2",
        port=str(free_port()),
        jwks_file=str(tmp_path / "missing.json"),
        jwt_issuer="https://idp.test",
        jwt_audience="policyhub",
        **database,
    )
    assert parent.wait() == 1
    [line] = parent.stderr.splitlines()
    assert line.startswith("policyhub: cannot start: config key jwks_file: ")
