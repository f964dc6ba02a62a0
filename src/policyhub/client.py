"""A small Python SDK over the generated stubs: what the `policyhub` command line and the tests use.

    with PolicyHub("127.0.0.1:50051", token=jwt, domain_id="domain-demo", timeout=10) as hub:
        hub.create_policy({"policy_id": "ops", "name": "Ops", "permissions": ["inventory.*"]})
        result = hub.check(("USER", "alice"), "inventory.Server.get", "srv/1")

- Requests are built from dicts in the JSON form the API documents (what grpcurl users write);
  answers are the generated messages (typed by their `.pyi` stubs; `as_dict` turns one into the
  JSON form). One schema, no copy of it to drift.
- The token travels as `authorization: Bearer <token>`; `domain_id` is each request's domain
  (every method also takes `domain_id=` to override it for one call).
- Every call has a deadline: `timeout` seconds (each method takes `timeout=` too).
- A call answered UNAVAILABLE (server not reachable yet, restarting, database down) is retried
  by gRPC itself (the channel's retry policy, RETRY_POLICY: up to 4 attempts with backoff)
  within the call's deadline. Writes are retried too: a retried create whose first attempt
  landed answers ALREADY_EXISTS.
- Failures raise CallError: the status code, its message and the fields a BadRequest names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from policyhub._gen.spaceone.api.repository.v1 import (
    assignment_pb2,
    assignment_pb2_grpc,
    bulk_pb2,
    bulk_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)

DEFAULT_ENDPOINT = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# `"name": [{}]`: every method of every service.
SERVICE_CONFIG = json.dumps({"methodConfig": [{"name": [{}], "retryPolicy": RETRY_POLICY}]})
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Reference = tuple[str, str]
"""A subject or grant: (type, id), e.g. ("USER", "alice"), ("POLICY", "ops-admin")."""


@dataclass
class CallError(Exception):
    """A call the server refused or could not answer."""

    code: grpc.StatusCode
    message: str
    # the fields a BadRequest detail names (e.g. ["policy_id"])
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @classmethod
    def of(cls, error: grpc.RpcError) -> CallError:
        fields: list[str] = []
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        for detail in status.details if status else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields.extend(violation.field for violation in bad.field_violations)
        return cls(error.code(), error.details() or "", fields)  # type: ignore[attr-defined]


def as_dict(message: Message) -> dict[str, Any]:
    """The JSON form of an answer (field names as in the protos, enums by name)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class PolicyHub:
    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        token: str = "",
        domain_id: str = "",
        timeout: float = DEFAULT_TIMEOUT,
    ):
        """`endpoint`: host:port (plaintext). `token`: a JWT or API key (empty: none, for a
        server in development mode)."""
        self.endpoint = endpoint
        self.domain_id = domain_id
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.channel = grpc.insecure_channel(
            endpoint,
            options=[
                ("grpc.service_config", SERVICE_CONFIG),
                ("grpc.enable_retries", 1),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._policy = policy_pb2_grpc.PolicyStub(self.channel)
        self._assignment = assignment_pb2_grpc.AssignmentStub(self.channel)
        self._bulk = bulk_pb2_grpc.BulkStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> PolicyHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """SERVING or NOT_SERVING (the database is unreachable), of the server or of one service."""
        request = health_pb2.HealthCheckRequest(service=service)
        reply = self._call(self._health.Check, request, timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    # Policies

    def create_policy(
        self, policy: Mapping[str, Any], *, domain_id: str | None = None, timeout: float | None = None
    ) -> policy_pb2.PolicyInfo:
        """`policy` in the JSON form of Policy/create (policy_id, name, permissions, statements, …)."""
        request = self._request(policy_pb2.CreatePolicyRequest, policy, domain_id)
        return self._call(self._policy.create, request, timeout)

    def get_policy(
        self, policy_id: str, *, domain_id: str | None = None, timeout: float | None = None
    ) -> policy_pb2.PolicyInfo:
        request = policy_pb2.GetRepositoryPolicyRequest(policy_id=policy_id, domain_id=self._domain(domain_id))
        return self._call(self._policy.get, request, timeout)

    def list_policies(
        self,
        query: Mapping[str, Any] | None = None,
        *,
        exclude_managed: bool = False,
        domain_id: str | None = None,
        timeout: float | None = None,
    ) -> policy_pb2.PoliciesInfo:
        """`query`: SpaceONE's Query in its JSON form ({"filter": [...], "page": {...}, …})."""
        request = self._request(
            policy_pb2.PolicyQuery, {"query": dict(query or {}), "exclude_managed": exclude_managed}, domain_id
        )
        return self._call(self._policy.list, request, timeout)

    def delete_policy(
        self, policy_id: str, *, cascade: bool = False, domain_id: str | None = None, timeout: float | None = None
    ) -> None:
        request = policy_pb2.PolicyRequest(policy_id=policy_id, cascade=cascade, domain_id=self._domain(domain_id))
        self._call(self._policy.delete, request, timeout)

    # Assignments and checks

    def create_assignment(
        self,
        subject: Reference,
        grant: Reference,
        *,
        expires_at: str = "",
        domain_id: str | None = None,
        timeout: float | None = None,
    ) -> assignment_pb2.AssignmentInfo:
        request = self._request(
            assignment_pb2.CreateAssignmentRequest,
            {"subject": _ref(subject), "grant": _ref(grant), "expires_at": expires_at},
            domain_id,
        )
        return self._call(self._assignment.create, request, timeout)

    def add_assignments(
        self,
        subject_type: str,
        subject_ids: Iterable[str],
        grants: Iterable[Reference],
        *,
        expires_at: str = "",
        domain_id: str | None = None,
        timeout: float | None = None,
    ) -> assignment_pb2.AssignmentChangesInfo:
        """Every grant to every subject (all or nothing); pairs that exist are reported
        ALREADY_EXISTS, not an error."""
        request = self._request(
            assignment_pb2.AssignmentsRequest,
            {
                "subject_type": subject_type,
                "subject_ids": list(subject_ids),
                "grants": [_ref(grant) for grant in grants],
                "expires_at": expires_at,
            },
            domain_id,
        )
        return self._call(self._assignment.add, request, timeout)

    def check(
        self,
        subject: Reference | None,
        action: str,
        resource: str,
        *,
        context: Mapping[str, Any] | None = None,
        domain_id: str | None = None,
        timeout: float | None = None,
    ) -> assignment_pb2.CheckResult:
        """ALLOW, DENY or CONDITIONAL, with the reason and the deciding chain (policy_id,
        statement_index, via). `subject` None: the caller itself (its token)."""
        body: dict[str, Any] = {"action": action, "resource": resource, "context": dict(context or {})}
        if subject is not None:
            body["subject"] = _ref(subject)
        request = self._request(assignment_pb2.CheckRequest, body, domain_id)
        return self._call(self._assignment.check, request, timeout)

    # Bulk

    def export_domain(
        self, *, domain_id: str | None = None, timeout: float | None = None
    ) -> Iterator[bulk_pb2.BulkChunk]:
        """The domain's messages as the server streams them: the header (token, counts), then items."""
        request = bulk_pb2.ExportDomainRequest(domain_id=self._domain(domain_id))
        try:
            yield from self._bulk.export_domain(request, timeout=self._timeout(timeout), metadata=self._metadata)
        except grpc.RpcError as error:
            raise CallError.of(error) from None

    def import_domain(
        self,
        chunks: Iterable[bulk_pb2.BulkChunk],
        *,
        mode: str = "",
        dry_run: bool = False,
        domain_id: str | None = None,
        timeout: float | None = None,
    ) -> bulk_pb2.ImportDomainInfo:
        """Imports a stream as export_domain gives it (its first message carries the header).
        The header's domain becomes the target domain (this client's, or `domain_id`; a caller
        that is not SYSTEM imports into its own anyway); `mode` (MERGE, REPLACE) and `dry_run`
        are set on it when given."""
        return self._call(self._bulk.import_domain, self._import_stream(chunks, mode, dry_run, domain_id), timeout)

    def _import_stream(
        self, chunks: Iterable[bulk_pb2.BulkChunk], mode: str, dry_run: bool, domain_id: str | None
    ) -> Iterator[bulk_pb2.BulkChunk]:
        for index, chunk in enumerate(chunks):
            if index == 0 and chunk.HasField("header"):
                chunk = _copy(chunk)
                chunk.header.domain_id = self._domain(domain_id) or chunk.header.domain_id
                if mode:
                    chunk.header.mode = bulk_pb2.BulkHeader.Mode.Value(mode.upper())
                chunk.header.dry_run = chunk.header.dry_run or dry_run
            yield chunk

    # Plumbing

    def _domain(self, domain_id: str | None) -> str:
        return self.domain_id if domain_id is None else domain_id

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _request(self, message_type: type, body: Mapping[str, Any], domain_id: str | None) -> Any:
        """A request from its JSON form; a malformed one is CallError INVALID_ARGUMENT before any call."""
        data = {key: value for key, value in body.items() if value not in ("", None, False, [], {})}
        domain = self._domain(domain_id)
        if domain and "domain_id" not in data:
            data["domain_id"] = domain
        try:
            return json_format.ParseDict(data, message_type())
        except json_format.ParseError as exc:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=self._timeout(timeout), metadata=self._metadata)
        except grpc.RpcError as error:
            raise CallError.of(error) from None


def _ref(reference: Reference) -> dict[str, str]:
    kind, ident = reference
    return {"type": kind.upper(), "id": ident}


def _copy(chunk: bulk_pb2.BulkChunk) -> bulk_pb2.BulkChunk:
    copy = bulk_pb2.BulkChunk()
    copy.CopyFrom(chunk)
    return copy
