"""A small client of a remote installation's Repository and Policy APIs (another policyhub, or
SpaceONE's repository service), used for `remote` repositories.

- Protocol (SpaceONE's, which a policyhub answers too): at registration the remote's
  `Repository.list {repository_type: local}` names its local repository; every Policy call
  then carries that id as `repository_id` (SpaceONE refuses Policy.list/get without one).
- Endpoints: see policyhub.remote.endpoint.
- One channel per endpoint, cached (the registration probe uses a throw-away one).
- Deadline: one remote operation, retries included, takes at most `timeout_seconds`
  (config `remote_timeout_seconds`). UNAVAILABLE is retried up to `retries` times (config
  `remote_retries`) with exponential backoff (50 ms, 100 ms, 200 ms, ... at most 1 s, jittered
  to 50-100 %), never past that deadline. Nothing else is retried.
- Calls carry the caller's domain in the request body (SpaceONE semantics) and, when
  configured, the service token of config `remote_token` as `token` metadata. They also carry
  `policyhub-remote-hop: 1` (policyhub.domain.HOP_METADATA): a policyhub answering such a
  call answers from its own policies only (they name its local repository anyway), so two
  installations that are each other's remote never loop.
- Errors of the remote never surface as INTERNAL: NOT_FOUND becomes NotFound; everything
  else (UNAVAILABLE, DEADLINE_EXCEEDED, a refused token, ...) becomes Unavailable naming the
  endpoint and the remote's status code. So does an answer that cannot be turned into our
  records by policyhub.api.info (e.g. NaN or Infinity inside a Struct such as `tags`):
  INVALID_RESPONSE; and any unexpected failure of the call itself: CLIENT_ERROR.
- Answers are cached for `remote_cache_seconds` (see policyhub.remote.cache for the bound);
  an answer is converted before it is cached, so an unconvertible one is never cached.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import grpc
from google.protobuf import json_format

from policyhub._gen.spaceone.api.repository.v1 import (
    policy_pb2,
    policy_pb2_grpc,
    repository_pb2,
    repository_pb2_grpc,
)
from policyhub.api.info.common import from_stat_struct
from policyhub.api.info.policy import from_policies_info, from_policy_info
from policyhub.domain import HOP_METADATA, RepositoryType
from policyhub.errors import FailedPrecondition, NotFound, PolicyHubError, Unavailable
from policyhub.remote.cache import TTLCache
from policyhub.remote.endpoint import Endpoint, parse_endpoint

__all__ = ["Remote", "RemotePolicyClient"]

# Where a remote repository's policies are: (endpoint, the remote's local repository id). An
# empty id (a registration older than the id) is left out of the calls: a policyhub answers
# that with its managed and local policies.
Remote = tuple[str, str]

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.05
MAX_BACKOFF = 1.0
DETAILS_MAX = 300


class RemotePolicyClient:
    def __init__(
        self,
        timeout_seconds: float,
        retries: int,
        token: str = "",
        cache: TTLCache | None = None,
        root_certificates: bytes | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        *,
        max_parallel: int = 16,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.cache = cache if cache is not None else TTLCache(0)
        self.root_certificates = root_certificates
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.sleep = sleep
        self._metadata = ((("token", token),) if token else ()) + ((HOP_METADATA, "1"),)
        self._stubs: dict[str, tuple[grpc.Channel, policy_pb2_grpc.PolicyStub]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="remote")

    # -- operations ---------------------------------------------------------------------------

    def probe(self, endpoint: str, domain_id: str = "") -> str:
        """The id of the remote's local repository (the first `Repository.list {repository_type:
        local}` result), within the deadline, on a throw-away channel (nothing is cached for an
        endpoint that is not registered). FAILED_PRECONDITION naming the endpoint when the remote
        has no local repository."""
        parsed = parse_endpoint(endpoint)
        channel = self._new_channel(parsed)
        try:
            request = repository_pb2.RepositoryQuery(repository_type=RepositoryType.LOCAL, domain_id=domain_id)
            stub = repository_pb2_grpc.RepositoryStub(channel)
            answer = self._call(parsed, stub, "list", request, self._deadline())
        finally:
            channel.close()
        local = [info.repository_id for info in answer.results if info.repository_id]
        if not local:
            raise FailedPrecondition(
                f"remote repository {parsed.url} has no local repository to serve",
                metadata={"endpoint": parsed.url},
            )
        return local[0]

    def get(
        self,
        remote: Remote,
        domain_id: str,
        policy_id: str,
        include_deleted: bool = False,
        deadline: float | None = None,
    ) -> dict[str, Any] | None:
        """The remote's policy, or None when it has none with this id."""
        endpoint, repository_id = remote
        request = policy_pb2.GetRepositoryPolicyRequest(
            policy_id=policy_id, domain_id=domain_id, repository_id=repository_id, include_deleted=include_deleted
        )
        return self._cached(endpoint, "get", request, from_policy_info, deadline, not_found_is_answer=True)

    def get_each(
        self, remotes: list[Remote], domain_id: str, policy_id: str, include_deleted: bool = False
    ) -> list[dict[str, Any] | None | PolicyHubError]:
        """`get` on every remote in parallel, all within one deadline; per remote the
        policy, None (not there) or the error."""
        deadline = self._deadline()
        futures: list[Future | Exception] = []
        for remote in remotes:
            try:
                futures.append(self._pool.submit(self.get, remote, domain_id, policy_id, include_deleted, deadline))
            except RuntimeError as error:  # the client is closing
                futures.append(error)
        outcomes: list[dict[str, Any] | None | PolicyHubError] = []
        for (endpoint, _), future in zip(remotes, futures, strict=True):
            try:
                if isinstance(future, Exception):
                    raise future
                outcomes.append(future.result())
            except PolicyHubError as error:
                outcomes.append(error)
            except Exception as error:  # never INTERNAL: whatever went wrong, this remote did not answer
                outcomes.append(_unexpected(endpoint, error))
        return outcomes

    def list(self, remote: Remote, domain_id: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
        """The remote's list; params: query (dict of spaceone.api.core.v1.Query), policy_id, name,
        project_id, state (name), exclude_managed, include_deleted."""
        endpoint, repository_id = remote
        request = policy_pb2.PolicyQuery(
            domain_id=domain_id,
            repository_id=repository_id,
            policy_id=params.get("policy_id") or "",
            name=params.get("name") or "",
            project_id=params.get("project_id") or "",
            state=params.get("state") or "NONE",
            exclude_managed=bool(params.get("exclude_managed")),
            include_deleted=bool(params.get("include_deleted")),
        )
        if params.get("query") is not None:
            json_format.ParseDict(params["query"], request.query)
        return self._cached(endpoint, "list", request, from_policies_info)

    def stat(self, remote: Remote, domain_id: str, query: dict[str, Any]) -> tuple[list, int | None]:
        endpoint, repository_id = remote
        request = policy_pb2.PolicyStatQuery(domain_id=domain_id, repository_id=repository_id)
        json_format.ParseDict(query, request.query)
        return self._cached(endpoint, "stat", request, from_stat_struct)

    def forget(self, endpoint: str) -> None:
        """At deregistration: closes the endpoint's channel and drops its cached answers."""
        with self._lock:
            entry = self._stubs.pop(endpoint, None)
        if entry is not None:
            entry[0].close()
        self.cache.invalidate(lambda key: key[0] == endpoint)

    def close(self) -> None:
        with self._lock:
            entries, self._stubs = list(self._stubs.values()), {}
        for channel, _ in entries:
            channel.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- plumbing -----------------------------------------------------------------------------

    def _deadline(self) -> float:
        return self.clock() + self.timeout_seconds

    def _cached(
        self,
        endpoint: str,
        method: str,
        request,
        convert: Callable[[Any], Any],
        deadline: float | None = None,
        *,
        not_found_is_answer: bool = False,
    ):
        """The remote's answer converted by `convert` (None for "not found" when that is an
        answer). The remote's message is cached only once it converted, so a bad answer (like a
        failure) is asked again next time; a cached one is converted anew on every hit (callers
        get records of their own)."""
        parsed = parse_endpoint(endpoint)
        key = (parsed.url, method, request.SerializeToString(deterministic=True))
        hit, response = self.cache.get(key)
        if hit:
            return None if response is None else _convert(parsed, method, convert, response)
        started = self.cache.now()
        try:
            response = self._call(parsed, self._stub(parsed), method, request, deadline or self._deadline())
        except NotFound:
            if not not_found_is_answer:
                raise
            response = None
        value = None if response is None else _convert(parsed, method, convert, response)
        self.cache.put(key, response, started)
        return value

    def _stub(self, endpoint: Endpoint) -> policy_pb2_grpc.PolicyStub:
        with self._lock:
            entry = self._stubs.get(endpoint.url)
            if entry is None:
                channel = self._new_channel(endpoint)
                entry = self._stubs[endpoint.url] = (channel, policy_pb2_grpc.PolicyStub(channel))
        return entry[1]

    def _new_channel(self, endpoint: Endpoint) -> grpc.Channel:
        options = [
            # Reconnect soon after a remote comes back (gRPC's default backoff grows to 2 minutes).
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]
        if endpoint.secure:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.root_certificates)
            return grpc.secure_channel(endpoint.target, credentials, options=options)
        return grpc.insecure_channel(endpoint.target, options=options)

    def _call(self, endpoint: Endpoint, stub, method: str, request, deadline: float):
        # Retried here, not by a gRPC retry policy: that caps attempts at 5 (remote_retries
        # allows 10), jitters over 0-100 % of the backoff, and cannot follow the injected clock.
        attempt = 0
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise _unavailable(
                    endpoint, "DEADLINE_EXCEEDED", f"no answer within remote_timeout_seconds={self.timeout_seconds:g}"
                )
            try:
                return getattr(stub, method)(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as error:
                code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
                details = (error.details() if callable(getattr(error, "details", None)) else "") or ""
                if code == grpc.StatusCode.NOT_FOUND:
                    if method == "get":
                        raise NotFound("Policy", "policy_id", request.policy_id) from None
                    raise NotFound("Policy", "endpoint", endpoint.url) from None
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    backoff = min(MAX_BACKOFF, INITIAL_BACKOFF * 2**attempt) * random.uniform(0.5, 1.0)
                    if self.clock() + backoff < deadline:
                        attempt += 1
                        self.sleep(backoff)
                        continue
                raise _unavailable(endpoint, code.name, details) from None
            except ValueError as error:  # the channel was closed by a concurrent deregistration
                raise _unavailable(endpoint, "CANCELLED", str(error)) from None
            except Exception as error:  # never INTERNAL: whatever went wrong, the remote did not answer
                raise _unexpected(endpoint, error) from None


def _convert(endpoint: Endpoint, method: str, convert: Callable[[Any], Any], response):
    """`convert(response)`; an answer that does not convert (NaN or Infinity in a Struct, a
    stat body of the wrong shape, ...) is the remote's fault: Unavailable, INVALID_RESPONSE."""
    try:
        return convert(response)
    except PolicyHubError:
        raise
    except Exception as error:  # ValueError, TypeError, OverflowError, json_format.Error, ...
        log.debug("remote repository %s: unconvertible %s answer", endpoint.url, method, exc_info=True)
        raise _unavailable(
            endpoint, "INVALID_RESPONSE", f"unusable {method} answer ({type(error).__name__}: {error})"
        ) from None


def _unexpected(endpoint: Endpoint | str, error: BaseException) -> Unavailable:
    url = endpoint.url if isinstance(endpoint, Endpoint) else endpoint
    log.warning("remote repository %s: unexpected failure of the call", url, exc_info=error)
    return _unavailable(endpoint, "CLIENT_ERROR", f"{type(error).__name__}: {error}")


def _unavailable(endpoint: Endpoint | str, code: str, details: str) -> Unavailable:
    url = endpoint.url if isinstance(endpoint, Endpoint) else endpoint
    details = details if len(details) <= DETAILS_MAX else details[:DETAILS_MAX] + "..."
    log.warning("remote repository %s: %s %s", url, code, details)
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "CLIENT_ERROR"):
        message = f"remote repository {url} is unavailable ({code}: {details}); retry later"
    else:
        message = f"remote repository {url} answered {code}: {details}"
    return Unavailable(message, metadata={"endpoint": url, "remote_code": code})
