"""The remote-repository client's pure parts: endpoint parsing, retries/backoff within the
deadline, error mapping, and the TTL cache's staleness bound (fake clocks, fake stubs). Reading
its answers into records is policyhub.api.info's, tested in test_info.py."""

from __future__ import annotations

import grpc
import pytest

from policyhub._gen.spaceone.api.repository.v1 import policy_pb2
from policyhub.errors import InvalidArgument, NotFound, RequiredParameter, Unavailable
from policyhub.remote.cache import TTLCache
from policyhub.remote.client import RemotePolicyClient
from policyhub.remote.endpoint import Endpoint, parse_endpoint


@pytest.mark.parametrize(
    "value, expected",
    [
        ("grpc://127.0.0.1:50051", Endpoint("grpc://127.0.0.1:50051", False, "127.0.0.1", 50051)),
        (
            "grpc+ssl://policy.example.com:443",
            Endpoint("grpc+ssl://policy.example.com:443", True, "policy.example.com", 443),
        ),
        ("grpc://localhost:1", Endpoint("grpc://localhost:1", False, "localhost", 1)),
        ("grpc://[::1]:65535", Endpoint("grpc://[::1]:65535", False, "[::1]", 65535)),
        (
            "grpc://repo-1.svc.cluster.local:50051",
            Endpoint("grpc://repo-1.svc.cluster.local:50051", False, "repo-1.svc.cluster.local", 50051),
        ),
    ],
)
def test_parse_endpoint(value, expected):
    assert parse_endpoint(value) == expected
    assert expected.target == value.split("://", 1)[1]


@pytest.mark.parametrize(
    "value",
    [
        "http://x",
        "grpc://",
        "grpc://host",
        "grpc://host:",
        "grpc://host:99999",
        "grpc://host:0",
        "grpc://host:123456",
        "grpc://:1",
        "grpc://host:1/",
        "grpc://host:1?x=1",
        "grpc://u@host:1",
        "grpc://ho st:1",
        "grpc://-a:1",
        "grpc://a-:1",
        "grpc://a..b:1",
        "grpc://256.1.1.1:1",
        "grpc://[::g]:1",
        "grpc://[::1:1",
        "GRPC://host:1",
        "grpc+tls://host:1",
        "dns:///host:1",
        "host:1",
        " grpc://host:1",
        "grpc://host:1 ",
        "grpc://host:-1",
        "grpc://" + "a" * 64 + ":1",
        "grpc://" + "a." * 127 + "a:1",
        "grpc://host:1\n",
    ],
)
def test_parse_endpoint_refuses(value):
    with pytest.raises(InvalidArgument) as info:
        parse_endpoint(value)
    assert info.value.field == "endpoint"


def test_parse_endpoint_requires_a_value():
    with pytest.raises(RequiredParameter):
        parse_endpoint("")


# -- retries, backoff, deadline, error mapping -------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "boom"):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class FakeStub:
    """Answers each call from a script: an exception is raised, anything else returned."""

    def __init__(self, clock: FakeClock, script: list, cost: float = 0.0):
        self.clock, self.script, self.cost = clock, list(script), cost
        self.calls: list[dict] = []

    def get(self, request, timeout, metadata):
        self.calls.append({"timeout": timeout, "metadata": dict(metadata)})
        self.clock.now += min(self.cost, timeout)  # gRPC ends an attempt at its timeout
        outcome = self.script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def client_with(clock: FakeClock, retries: int = 2, timeout: float = 3.0, token: str = "") -> RemotePolicyClient:
    return RemotePolicyClient(timeout, retries, token, clock=clock, sleep=clock.sleep)


def call(client: RemotePolicyClient, stub: FakeStub):
    endpoint = parse_endpoint("grpc://remote:50051")
    request = policy_pb2.GetRepositoryPolicyRequest(policy_id="p", domain_id="d")
    return client._call(endpoint, stub, "get", request, client._deadline())


def test_unavailable_is_retried_with_exponential_backoff_then_succeeds():
    clock = FakeClock()
    answer = policy_pb2.PolicyInfo(policy_id="p")
    stub = FakeStub(clock, [FakeError(grpc.StatusCode.UNAVAILABLE)] * 2 + [answer])
    assert call(client_with(clock), stub) is answer
    assert len(stub.calls) == 3
    first, second = clock.sleeps
    assert 0.025 <= first <= 0.05 and 0.05 <= second <= 0.1
    # each attempt gets what is left of the one deadline
    assert stub.calls[0]["timeout"] == 3.0 and stub.calls[2]["timeout"] == pytest.approx(3.0 - first - second)


def test_retries_are_bounded_and_the_answer_names_the_endpoint():
    clock = FakeClock()
    stub = FakeStub(clock, [FakeError(grpc.StatusCode.UNAVAILABLE, "connection refused")] * 3)
    with pytest.raises(Unavailable) as info:
        call(client_with(clock, retries=2), stub)
    assert len(stub.calls) == 3
    assert "grpc://remote:50051" in info.value.message and "connection refused" in info.value.message
    assert info.value.metadata == {"endpoint": "grpc://remote:50051", "remote_code": "UNAVAILABLE"}


def test_no_retry_past_the_deadline():
    clock = FakeClock()
    # every attempt burns 1.4 s of a 3 s budget: the third gets what is left, there is no fourth
    stub = FakeStub(clock, [FakeError(grpc.StatusCode.UNAVAILABLE)] * 5, cost=1.4)
    with pytest.raises(Unavailable):
        call(client_with(clock, retries=5, timeout=3.0), stub)
    assert len(stub.calls) == 3 and stub.calls[2]["timeout"] < 0.2
    assert clock.now - 100.0 == pytest.approx(3.0)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    ],
)
def test_other_codes_are_not_retried_and_become_unavailable_naming_the_code(code):
    clock = FakeClock()
    stub = FakeStub(clock, [FakeError(code)])
    with pytest.raises(Unavailable) as info:
        call(client_with(clock), stub)
    assert len(stub.calls) == 1
    assert info.value.code == "UNAVAILABLE" and info.value.metadata["remote_code"] == code.name
    assert code.name in info.value.message


def test_not_found_is_not_found():
    clock = FakeClock()
    with pytest.raises(NotFound):
        call(client_with(clock), FakeStub(clock, [FakeError(grpc.StatusCode.NOT_FOUND)]))


def test_token_and_hop_metadata():
    clock = FakeClock()
    stub = FakeStub(clock, [policy_pb2.PolicyInfo()])
    call(client_with(clock, token="secret"), stub)
    assert stub.calls[0]["metadata"] == {"token": "secret", "policyhub-remote-hop": "1"}
    stub = FakeStub(clock, [policy_pb2.PolicyInfo()])
    call(client_with(clock), stub)
    assert stub.calls[0]["metadata"] == {"policyhub-remote-hop": "1"}


# -- cache -------------------------------------------------------------------------------------


def test_cache_serves_within_the_bound_counted_from_the_call_start():
    clock = FakeClock()
    cache = TTLCache(10, clock=clock)
    started = cache.now()
    clock.now += 4  # a slow remote answer
    cache.put("k", "v", started)
    assert cache.get("k") == (True, "v")
    clock.now = started + 9.99
    assert cache.get("k") == (True, "v")
    clock.now = started + 10
    assert cache.get("k") == (False, None)
    assert len(cache) == 0


def test_cache_keeps_no_answer_already_older_than_the_bound():
    clock = FakeClock()
    cache = TTLCache(1, clock=clock)
    started = cache.now()
    clock.now += 2
    cache.put("k", "v", started)
    assert cache.get("k") == (False, None)


def test_cache_off_evicts_oldest_and_invalidates():
    clock = FakeClock()
    off = TTLCache(0, clock=clock)
    off.put("k", "v", off.now())
    assert off.get("k") == (False, None) and not off.enabled
    cache = TTLCache(10, max_entries=2, clock=clock)
    for key in ("a", "b", "c"):
        cache.put(("e1", key), key, cache.now())
    assert cache.get(("e1", "a")) == (False, None) and cache.get(("e1", "c")) == (True, "c")
    cache.put(("e2", "x"), None, cache.now())  # a cached "not found"
    assert cache.get(("e2", "x")) == (True, None)
    assert cache.invalidate(lambda key: key[0] == "e1") == 1
    assert len(cache) == 1


def test_client_keeps_an_empty_cache():
    cache = TTLCache(5)
    assert RemotePolicyClient(1, 0, cache=cache).cache is cache


# -- configuration -----------------------------------------------------------------------------


def test_remote_config_defaults_and_environment():
    from policyhub.config import load_config

    config = load_config(env={})
    assert (
        config.remote_timeout_seconds,
        config.remote_retries,
        config.remote_cache_seconds,
        config.remote_token,
        config.remote_ca_file,
    ) == (3.0, 2, 10.0, "", "")
    config = load_config(
        env={
            "POLICYHUB_REMOTE_TIMEOUT_SECONDS": "0.5",
            "POLICYHUB_REMOTE_RETRIES": "0",
            "POLICYHUB_REMOTE_CACHE_SECONDS": "0",
            "POLICYHUB_REMOTE_TOKEN": "t",
        }
    )
    assert (config.remote_timeout_seconds, config.remote_retries, config.remote_cache_seconds, config.remote_token) == (
        0.5,
        0,
        0.0,
        "t",
    )


@pytest.mark.parametrize(
    "key, value",
    [
        ("REMOTE_TIMEOUT_SECONDS", "0"),
        ("REMOTE_TIMEOUT_SECONDS", "-1"),
        ("REMOTE_TIMEOUT_SECONDS", "301"),
        ("REMOTE_RETRIES", "-1"),
        ("REMOTE_RETRIES", "11"),
        ("REMOTE_RETRIES", "1.5"),
        ("REMOTE_CACHE_SECONDS", "-1"),
        ("REMOTE_CACHE_SECONDS", "3601"),
    ],
)
def test_remote_config_is_validated(key, value):
    from policyhub.config import load_config
    from policyhub.errors import ConfigError

    with pytest.raises(ConfigError, match=key.lower()):
        load_config(env={f"POLICYHUB_{key}": value})


def test_unreadable_remote_ca_file_stops_the_start(tmp_path):
    from policyhub.bootstrap import _remote_client
    from policyhub.config import Config
    from policyhub.errors import ConfigError

    with pytest.raises(ConfigError, match="remote_ca_file"):
        _remote_client(Config(remote_ca_file=str(tmp_path / "missing.pem")))


# -- answers that do not convert, unexpected failures: UNAVAILABLE naming the endpoint ------------

ENDPOINT = "grpc://remote:50051"
# (endpoint, the remote's local repository id)
REMOTE = (ENDPOINT, "repo-remote-local")


def nan_info(policy_id: str = "p") -> policy_pb2.PolicyInfo:
    info = policy_pb2.PolicyInfo(policy_id=policy_id, name="remote")
    info.tags.update({"x": float("nan")})
    return info


class ScriptedStub:
    """get/list/stat each answer from their own script: an exception is raised, anything else returned."""

    def __init__(self, **scripts):
        self.scripts = {method: list(outcomes) for method, outcomes in scripts.items()}
        self.calls: list[str] = []
        self.requests: list = []

    def _answer(self, method: str, request):
        self.calls.append(method)
        self.requests.append(request)
        outcome = self.scripts[method].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def get(self, request, timeout, metadata):
        return self._answer("get", request)

    def list(self, request, timeout, metadata):
        return self._answer("list", request)

    def stat(self, request, timeout, metadata):
        return self._answer("stat", request)


def client_on(stubs: dict, cache_seconds: float = 10) -> tuple[RemotePolicyClient, FakeClock]:
    clock = FakeClock()
    client = RemotePolicyClient(3.0, 0, cache=TTLCache(cache_seconds, clock=clock), clock=clock, sleep=clock.sleep)
    client._stub = lambda endpoint: stubs[endpoint.url]
    return client, clock


def stat_answer(body: dict):
    from google.protobuf import struct_pb2

    answer = struct_pb2.Struct()
    answer.update(body)
    return answer


def assert_invalid_response(info, method: str, endpoint: str = ENDPOINT):
    error = info.value
    assert isinstance(error, Unavailable) and error.code == "UNAVAILABLE"
    assert error.metadata == {"endpoint": endpoint, "remote_code": "INVALID_RESPONSE"}
    assert endpoint in error.message and f"unusable {method} answer" in error.message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_struct_values_are_unavailable_and_never_cached(bad):
    info = policy_pb2.PolicyInfo(policy_id="p", name="remote")
    info.tags.update({"x": bad})
    with_statement = policy_pb2.PolicyInfo(policy_id="q", statements=[policy_pb2.Statement()])
    with_statement.statements[0].conditions.update({"c": [bad]})
    good = policy_pb2.PolicyInfo(policy_id="p", name="remote")
    stub = ScriptedStub(
        get=[info, with_statement, good],
        list=[
            policy_pb2.PoliciesInfo(results=[good, info], total_count=2),
            policy_pb2.PoliciesInfo(results=[good], total_count=1),
        ],
        stat=[
            stat_answer({"results": [{"v": bad}], "total_count": 1}),
            stat_answer({"results": [{"v": 2}], "total_count": 1}),
        ],
    )
    client, _ = client_on({ENDPOINT: stub})

    with pytest.raises(Unavailable) as failure:
        client.get(REMOTE, "d", "p")
    assert_invalid_response(failure, "get")
    with pytest.raises(Unavailable) as failure:  # a Struct nested in a statement
        client.get(REMOTE, "d", "p")
    assert_invalid_response(failure, "get")
    with pytest.raises(Unavailable) as failure:
        client.list(REMOTE, "d", {})
    assert_invalid_response(failure, "list")
    with pytest.raises(Unavailable) as failure:
        client.stat(REMOTE, "d", {"distinct": "name"})
    assert_invalid_response(failure, "stat")
    assert len(client.cache) == 0  # failures are never cached ...

    # ... so the next call asks the remote again, and its good answer is cached
    assert client.get(REMOTE, "d", "p")["name"] == "remote"
    records, total = client.list(REMOTE, "d", {})
    assert [r["policy_id"] for r in records] == ["p"] and total == 1
    assert client.stat(REMOTE, "d", {"distinct": "name"}) == ([{"v": 2}], 1)
    assert stub.calls == ["get", "get", "list", "stat", "get", "list", "stat"]
    assert len(client.cache) == 3
    first = client.get(REMOTE, "d", "p")
    first["tags"]["mutated"] = True  # every hit converts anew: callers get records of their own
    assert "mutated" not in client.get(REMOTE, "d", "p")["tags"]
    assert len(stub.calls) == 7


@pytest.mark.parametrize(
    "body",
    [
        {"results": "not a list", "total_count": 1},
        {"results": [], "total_count": "many"},
        {"results": [], "total_count": True},
        {"results": {"a": 1}},
    ],
)
def test_stat_answers_of_the_wrong_shape_are_unavailable(body):
    client, _ = client_on({ENDPOINT: ScriptedStub(stat=[stat_answer(body)])})
    with pytest.raises(Unavailable) as failure:
        client.stat(REMOTE, "d", {"distinct": "name"})
    assert_invalid_response(failure, "stat")
    assert len(client.cache) == 0


@pytest.mark.parametrize(
    "error", [RuntimeError("surprise"), TypeError("bad argument"), KeyError("k"), OverflowError("too big")]
)
def test_an_unexpected_failure_of_the_call_is_unavailable(error):
    stub = ScriptedStub(get=[error], list=[error], stat=[error])
    client, _ = client_on({ENDPOINT: stub})
    for operation in (
        lambda: client.get(REMOTE, "d", "p"),
        lambda: client.list(REMOTE, "d", {}),
        lambda: client.stat(REMOTE, "d", {"distinct": "name"}),
    ):
        with pytest.raises(Unavailable) as failure:
            operation()
        assert failure.value.metadata == {"endpoint": ENDPOINT, "remote_code": "CLIENT_ERROR"}
        assert ENDPOINT in failure.value.message and type(error).__name__ in failure.value.message
    assert len(client.cache) == 0


def test_get_each_reports_an_unconvertible_answer_per_endpoint():
    other = "grpc://other:50051"
    gone = "grpc://gone:50051"
    stubs = {
        ENDPOINT: ScriptedStub(get=[nan_info()]),
        other: ScriptedStub(get=[policy_pb2.PolicyInfo(policy_id="p", name="fine")]),
        gone: ScriptedStub(get=[FakeError(grpc.StatusCode.NOT_FOUND)]),
    }
    client, _ = client_on(stubs)
    try:
        bad, fine, missing = client.get_each([(e, "repo-x") for e in (ENDPOINT, other, gone)], "d", "p")
    finally:
        client.close()
    assert isinstance(bad, Unavailable) and bad.metadata == {"endpoint": ENDPOINT, "remote_code": "INVALID_RESPONSE"}
    assert fine["name"] == "fine" and missing is None


def test_get_each_never_lets_an_unexpected_exception_through(monkeypatch):
    client, _ = client_on({})

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(client, "get", broken)
    try:
        [outcome] = client.get_each([REMOTE], "d", "p")
    finally:
        client.close()
    assert isinstance(outcome, Unavailable)
    assert outcome.metadata == {"endpoint": ENDPOINT, "remote_code": "CLIENT_ERROR"} and ENDPOINT in outcome.message
    # after close, the pool refuses work: still an answer per endpoint, not an exception
    [outcome] = client.get_each([REMOTE], "d", "p")
    assert isinstance(outcome, Unavailable) and outcome.metadata["remote_code"] == "CLIENT_ERROR"


def test_every_policy_call_names_the_remotes_local_repository():
    """SpaceONE refuses Policy.list/get without repository_id: each call carries the remote's own."""
    info = policy_pb2.PolicyInfo(policy_id="p", name="remote")
    stub = ScriptedStub(
        get=[info],
        list=[policy_pb2.PoliciesInfo(results=[info], total_count=1)],
        stat=[stat_answer({"results": []})],
    )
    client, _ = client_on({ENDPOINT: stub})
    client.get(REMOTE, "d", "p")
    client.list(REMOTE, "d", {"policy_id": "p"})
    client.stat(REMOTE, "d", {"distinct": "name"})
    assert [(r.repository_id, r.domain_id) for r in stub.requests] == [("repo-remote-local", "d")] * 3
