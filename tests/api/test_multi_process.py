"""Two server processes on one database (wire protocol): a write through one is seen by the
next check of the other, whose compiled evaluation index was already warm, and by a watcher of
the change log on the other; a check with the consistency token of a write through the other
process always sees it, where MINIMIZE_LATENCY (the cached index, unread) does not."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import grpc
import pytest
from conftest import free_port

from helpers import parse
from policyhub._gen.spaceone.api.repository.v1 import assignment_pb2 as apb
from policyhub._gen.spaceone.api.repository.v1 import (
    assignment_pb2_grpc,
    change_pb2,
    change_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)
from policyhub.api.consistency import TOKEN_METADATA

# Write/check rounds of the consistency test, alternating the processes.
ROUNDS = 50


@contextlib.contextmanager
def policyhub_processes(client, count: int, **settings: str):
    """`count` `python -m policyhub` processes on `client`'s database (started together)."""
    if client.backend != "wire":
        pytest.skip("needs a database shared between processes")
    started = []
    try:
        for _ in range(count):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYHUB_")}
            env.update(
                POLICYHUB_PORT=str(port),
                POLICYHUB_MONGODB_URI=client.app.config.mongodb_uri,
                POLICYHUB_DATABASE=client.app.config.database,
                POLICYHUB_LOG_LEVEL="WARNING",
                **{f"POLICYHUB_{key.upper()}": value for key, value in settings.items()},
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "policyhub"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            started.append((process, grpc.insecure_channel(f"127.0.0.1:{port}")))
        for _, channel in started:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield [
            SimpleNamespace(
                check=assignment_pb2_grpc.AssignmentStub(channel).check,
                assignment=assignment_pb2_grpc.AssignmentStub(channel),
                change=change_pb2_grpc.ChangeStub(channel),
                group=group_pb2_grpc.GroupStub(channel),
                policy=policy_pb2_grpc.PolicyStub(channel),
            )
            for _, channel in started
        ]
    finally:
        for process, channel in started:
            channel.close()
            process.terminate()
        for process, _ in started:
            process.wait(timeout=30)


@pytest.fixture
def second_process(client):
    with policyhub_processes(client, 1) as (process,):
        yield process


def test_write_in_one_process_is_seen_by_check_in_the_other(client, second_process, domain):
    question = parse(
        apb.CheckRequest,
        {"subject": {"type": "USER", "id": "dave"}, "action": "a.read", "resource": "r/1", "domain_id": domain},
    )
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.DENY  # warms its index
    client.policy.create(
        policy_pb2.CreatePolicyRequest(policy_id="reader", name="r", domain_id=domain, permissions=["a.read"]),
        timeout=10,
    )
    client.assignment.create(
        parse(
            apb.CreateAssignmentRequest,
            {
                "subject": {"type": "USER", "id": "dave"},
                "grant": {"type": "POLICY", "id": "reader"},
                "domain_id": domain,
            },
        ),
        timeout=10,
    )
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.ALLOW
    client.policy.update(
        parse(policy_pb2.UpdatePolicyRequest, {"policy_id": "reader", "domain_id": domain, "permissions": ["a.write"]}),
        timeout=10,
    )
    assert second_process.check(question, timeout=10).decision == apb.CheckResult.DENY


def test_write_in_one_process_is_seen_by_get_and_list_in_the_other(client, second_process, domain):
    client.policy.create(policy_pb2.CreatePolicyRequest(policy_id="seen", name="v1", domain_id=domain), timeout=10)
    assert (
        second_process.policy.get(
            policy_pb2.GetRepositoryPolicyRequest(policy_id="seen", domain_id=domain), timeout=10
        ).name
        == "v1"
    )
    client.policy.update(policy_pb2.UpdatePolicyRequest(policy_id="seen", name="v2", domain_id=domain), timeout=10)
    listed = second_process.policy.list(policy_pb2.PolicyQuery(domain_id=domain, exclude_managed=True), timeout=10)
    assert [(p.policy_id, p.name) for p in listed.results] == [("seen", "v2")]


def test_concurrent_creates_of_one_id_through_both_processes_give_one_success(client, second_process, domain):
    stubs = [client.policy, second_process.policy] * 4

    def create(index: int):
        try:
            stubs[index].create(
                policy_pb2.CreatePolicyRequest(policy_id="race", name=f"from-{index}", domain_id=domain), timeout=20
            )
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(len(stubs)) as pool:
        codes = list(pool.map(create, range(len(stubs))))
    assert codes.count(grpc.StatusCode.OK) == 1
    assert codes.count(grpc.StatusCode.ALREADY_EXISTS) == len(stubs) - 1


def test_a_check_with_the_token_of_a_write_through_the_other_process_always_sees_it(client, domain):
    """ROUNDS writes, alternating the two processes, each followed by a check in the other one,
    whose index is warm (checked just before the write). Each write flips alice's decision (a
    grant and its removal, directly or through a group), so an answer that misses it is wrong.
    Answered with the write's token (AT_LEAST_AS_FRESH) every check sees it; answered from the
    cached index (MINIMIZE_LATENCY, staleness allowed for an hour) every one misses it: the same
    setup, so the test would fail if the token were not honoured."""
    with policyhub_processes(client, 2, max_staleness_seconds="3600") as processes:
        first = processes[0]
        first.policy.create(
            policy_pb2.CreatePolicyRequest(policy_id="reader", name="r", permissions=["a.read"], domain_id=domain),
            timeout=10,
        )
        first.group.create(group_pb2.CreateGroupRequest(group_id="readers", name="r", domain_id=domain), timeout=10)
        first.assignment.create(
            parse(
                apb.CreateAssignmentRequest,
                {
                    "subject": {"type": "GROUP", "id": "readers"},
                    "grant": {"type": "POLICY", "id": "reader"},
                    "domain_id": domain,
                },
            ),
            timeout=10,
        )
        alice = {"subject": {"type": "USER", "id": "alice"}, "action": "a.read", "resource": "r", "domain_id": domain}

        def check(process, consistency=None) -> apb.CheckResult:
            body = {**alice, **({"consistency": consistency} if consistency else {})}
            return process.check(parse(apb.CheckRequest, body), timeout=10)

        def flip(writer, round_number: int, granted: str) -> tuple[str, str]:
            """Grants alice the policy (directly, or through the group) or takes it back; returns
            the write's consistency token and the assignment id of a direct grant."""
            users = group_pb2.GroupUsersRequest(group_id="readers", user_ids=["alice"], domain_id=domain)
            if (round_number // 2) % 2:  # through the group
                if granted:
                    return writer.group.remove_users(users, timeout=10).consistency_token, ""
                return writer.group.add_users(users, timeout=10).consistency_token, "group"
            if granted:
                request = apb.AssignmentRequest(assignment_id=granted, domain_id=domain)
                _, call = writer.assignment.delete.with_call(request, timeout=10)
                return dict(call.trailing_metadata())[TOKEN_METADATA], ""
            created = writer.assignment.create(
                parse(
                    apb.CreateAssignmentRequest,
                    {
                        "subject": {"type": "USER", "id": "alice"},
                        "grant": {"type": "POLICY", "id": "reader"},
                        "domain_id": domain,
                    },
                ),
                timeout=10,
            )
            return created.consistency_token, created.assignment_id

        granted = ""  # the direct grant's assignment id, "group" for the membership, "" for none
        missed = 0
        for round_number in range(ROUNDS):
            writer, checker = processes[round_number % 2], processes[(round_number + 1) % 2]
            before = check(checker)  # the checker's index: warm, at the state before the write
            token, granted = flip(writer, round_number, granted)
            expected = apb.CheckResult.ALLOW if granted else apb.CheckResult.DENY
            assert before.decision != expected
            missed += check(checker, {"requirement": "MINIMIZE_LATENCY"}).decision != expected
            seen = check(checker, {"requirement": "AT_LEAST_AS_FRESH", "token": token})
            assert seen.decision == expected, f"round {round_number}: the write at {token} was not seen"
            assert int(seen.consistency_token[4:]) >= int(token[4:])
        assert missed == ROUNDS


def test_a_watcher_on_one_process_sees_the_writes_made_through_the_other(client, second_process, domain):
    seen = []
    call = second_process.change.watch(change_pb2.WatchChangesRequest(domain_id=domain), timeout=60)
    try:
        first = next(call)
        assert first.HasField("heartbeat")  # caught up: the watch is live
        for i in range(3):
            client.policy.create(
                policy_pb2.CreatePolicyRequest(policy_id=f"p{i}", name="p", domain_id=domain), timeout=10
            )
        client.policy.delete(policy_pb2.PolicyRequest(policy_id="p1", domain_id=domain), timeout=10)
        second_process.policy.create(
            policy_pb2.CreatePolicyRequest(policy_id="theirs", name="t", domain_id=domain), timeout=10
        )
        for message in call:
            if message.HasField("change"):
                seen.append(message.change)
            if len(seen) == 5:
                break
    finally:
        call.cancel()
    operation = change_pb2.ChangeInfo.Operation
    assert [(c.id, operation.Name(c.operation)) for c in seen] == [
        ("p0", "CREATE"),
        ("p1", "CREATE"),
        ("p2", "CREATE"),
        ("p1", "DELETE"),
        ("theirs", "CREATE"),
    ]
    # both processes list the same log
    listed = client.change.list(change_pb2.ChangeQuery(domain_id=domain), timeout=10).results
    assert [c.continuation_token for c in listed] == [c.continuation_token for c in seen]
