"""No request can stall the service or the database: unsafe regexes are INVALID_ARGUMENT naming
their field, the worst accepted ones leave other callers' latency near normal, and every
database operation carries a server-side limit no later than the call's deadline."""

from __future__ import annotations

import statistics
import threading
import time

import grpc
import pymongo.monitoring
import pytest
from redos import REDOS_CORPUS

from helpers import expect_error, field_violations, parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2, policy_pb2

LONG = 4096  # the longest description a policy holds

# The published catastrophic corpus, the polynomial shapes, and constructs outside RE2.
REFUSED = [*REDOS_CORPUS, r"^.*.*x", r"^a*a*a*a*b", r"\w+\s", r"(a)\1", r"(?<=a)b", "a{1000}"]

# The worst patterns the subset accepts, with the texts that make them work hardest.
WORST_ACCEPTED = [r"^.*x", r"^\w+\s", r"(?i).*admin.*", r"^[\w.-]+@[\w-]+\.com$", r"prod.*", r"web-\d+-\d+$"]
ADVERSARIAL_TEXTS = [
    "a" * (LONG - 1) + "!",
    "admi" * (LONG // 4),
    "pro" * (LONG // 3),
    "web-1" * (LONG // 5),
    "ab" * (LONG // 2),
]


def list_request(domain, query):
    return parse(policy_pb2.PolicyQuery, {"domain_id": domain, "query": query})


@pytest.mark.parametrize("pattern", REFUSED)
def test_refused_regex_is_invalid_argument_naming_the_field(client, domain, pattern):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.list,
        list_request(domain, {"filter": [{"k": "description", "v": pattern, "o": "regex"}]}),
    )
    assert field_violations(error) == ["query.filter[0].v"]


def test_refused_regex_in_item_and_stat_name_their_paths(client, domain):
    error = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.policy.list,
        list_request(domain, {"filter_or": [{"key": "name", "value": ["^ok", "(a|aa)+"], "operator": "regex_in"}]}),
    )
    assert field_violations(error) == ["query.filter_or[0].value[1]"]
    stat = parse(
        policy_pb2.PolicyStatQuery,
        {"domain_id": domain, "query": {"filter": [{"k": "name", "v": "^(a+)+$", "o": "regex"}], "distinct": "name"}},
    )
    error = expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.policy.stat, stat)
    assert field_violations(error) == ["query.filter[0].v"]


def test_accepted_patterns_still_match(client, domain):
    client.policy.create(
        parse(
            policy_pb2.CreatePolicyRequest,
            {"policy_id": "web-prod", "name": "web-12-7", "domain_id": domain, "description": "runs prod admin"},
        ),
        timeout=10,
    )
    for pattern in (r"web-\d+-\d+$", r".*prod.*", r"(?i).*ADMIN.*", r"^web-"):
        field = "description" if "prod" in pattern or "ADMIN" in pattern else "name"
        query = {"filter": [{"k": field, "v": pattern, "o": "regex"}], "count_only": True}
        assert client.policy.list(list_request(domain, query), timeout=10).total_count == 1, pattern


def _median_latency(call, rounds: int = 15) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def test_worst_regexes_do_not_stall_other_callers(client, domain, other_domain):
    """While a tenant sends refused and the worst accepted patterns against long adversarial
    strings, another tenant's Policy get and Assignment check stay within 10x of their
    latency under the same number of callers sending plain lists, on both backends."""
    for index in range(40):
        client.policy.create(
            parse(
                policy_pb2.CreatePolicyRequest,
                {
                    "policy_id": f"long-{index}",
                    "name": f"long {index}",
                    "domain_id": domain,
                    "description": ADVERSARIAL_TEXTS[index % len(ADVERSARIAL_TEXTS)],
                    "permissions": [ADVERSARIAL_TEXTS[index % len(ADVERSARIAL_TEXTS)][:512]],
                },
            ),
            timeout=30,
        )
    client.policy.create(
        parse(
            policy_pb2.CreatePolicyRequest,
            {"policy_id": "victim", "name": "victim", "domain_id": other_domain, "permissions": ["svc.*"]},
        ),
        timeout=10,
    )
    client.assignment.create(
        parse(
            assignment_pb2.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "alice"},
                "grant": {"type": "POLICY", "id": "victim"},
                "domain_id": other_domain,
            },
        ),
        timeout=10,
    )

    def get():
        client.policy.get(
            parse(policy_pb2.GetRepositoryPolicyRequest, {"policy_id": "victim", "domain_id": other_domain}), timeout=30
        )

    def check():
        result = client.assignment.check(
            parse(
                assignment_pb2.CheckRequest,
                {
                    "subject": {"type": "USER", "id": "alice"},
                    "action": "svc.thing.get",
                    "resource": "x",
                    "domain_id": other_domain,
                },
            ),
            timeout=30,
        )
        assert result.decision == assignment_pb2.CheckResult.ALLOW

    get(), check()  # warm caches and connections
    sent = {"accepted": 0, "refused": 0, "plain": 0}

    def regex_attack(stop: threading.Event) -> None:
        while not stop.is_set():
            for pattern in WORST_ACCEPTED:
                query = {
                    "filter": [{"k": field, "v": pattern, "o": "regex"} for field in ("description", "permissions")]
                }
                client.policy.list(list_request(domain, query), timeout=60)
                sent["accepted"] += 1
            for pattern in REFUSED:
                try:
                    client.policy.list(
                        list_request(domain, {"filter": [{"k": "description", "v": pattern, "o": "regex"}]}), timeout=60
                    )
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                    sent["refused"] += 1

    def plain_load(stop: threading.Event) -> None:
        while not stop.is_set():
            client.policy.list(list_request(domain, {}), timeout=60)
            sent["plain"] += 1

    def latency_while(load) -> dict[str, float]:
        """get and check latency while two threads run `load` (the same concurrency for the
        baseline and the attack, so a busy machine slows both alike)."""
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(stop,), daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)  # the load is under way
            return {"get": _median_latency(get), "check": _median_latency(check)}
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)

    baseline = latency_while(plain_load)
    under_attack = latency_while(regex_attack)
    assert sent["accepted"] > 0 and sent["refused"] > 0 and sent["plain"] > 0
    for name in baseline:
        assert under_attack[name] < 10 * baseline[name], (name, baseline, under_attack)


class _Commands(pymongo.monitoring.CommandListener):
    def __init__(self):
        self.commands: list[tuple[str, dict]] = []

    def started(self, event):
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def recorded(client):
    """The database commands the server sends (wire backend), through a listener added for the test."""
    if client.backend != "wire":
        pytest.skip("the embedded store has no wire commands to inspect")
    database = client.app.database
    listeners = database.listeners
    commands = _Commands()
    database.listeners = (*listeners, commands)
    database.connect()
    try:
        yield commands
    finally:
        database.listeners = listeners
        database.connect()


OPERATIONS = {"find", "aggregate", "count", "insert", "update", "delete", "findAndModify"}


def test_every_database_operation_has_a_server_side_limit(client, recorded, domain):
    """find/aggregate/count/insert/update/delete, whether pymongo or mongoengine sends them."""
    client.policy.create(
        parse(policy_pb2.CreatePolicyRequest, {"policy_id": "p1", "name": "one", "domain_id": domain}), timeout=10
    )
    client.policy.update(
        parse(policy_pb2.UpdatePolicyRequest, {"policy_id": "p1", "name": "uno", "domain_id": domain}), timeout=10
    )
    client.policy.get(
        parse(policy_pb2.GetRepositoryPolicyRequest, {"policy_id": "p1", "domain_id": domain}), timeout=10
    )
    client.policy.list(list_request(domain, {"filter": [{"k": "name", "v": "^u", "o": "regex"}]}), timeout=10)
    client.policy.list(list_request(domain, {"count_only": True}), timeout=10)
    client.policy.delete(parse(policy_pb2.PolicyRequest, {"policy_id": "p1", "domain_id": domain}), timeout=10)
    operations = [(name, command) for name, command in recorded.commands if name in OPERATIONS]
    assert {"aggregate", "insert"} <= {name for name, _ in operations}
    # Point reads and writes within the connection's limit; list and stat within the larger query limit.
    database = client.app.database
    assert database.query_timeout_ms > database.timeout_ms
    for name, command in operations:
        limit = database.query_timeout_ms if name in ("aggregate", "count") else database.timeout_ms
        assert 0 < command.get("maxTimeMS", 0) <= limit, (name, command)


def test_database_work_ends_with_the_calls_deadline(client, recorded, domain):
    """A caller with a short deadline: the database is told to stop by then, not by the
    connection's longer limit."""
    deadline = 0.8
    assert client.app.database.timeout_ms > 2 * deadline * 1000
    client.policy.list(list_request(domain, {"filter": [{"k": "name", "v": "^x", "o": "regex"}]}), timeout=deadline)
    limits = [command["maxTimeMS"] for name, command in recorded.commands if name == "aggregate"]
    assert limits and all(0 < limit <= deadline * 1000 for limit in limits), limits
