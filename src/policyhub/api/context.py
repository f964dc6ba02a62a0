"""The one place that decides who is calling and for which domain.

- Authenticated mode: exactly one credential (a JWT or an API key) is required and verified,
  sent as SpaceONE's `token` metadata or as `authorization: Bearer <credential>` (the gRPC
  convention; see `bearer_token`). Several `token` values, several `authorization` values, or
  `token` together with `authorization` are ambiguous and UNAUTHENTICATED (never "last one
  wins"); so is an `authorization` value of any other shape, counted as a failed
  authentication like a credential that fails verification. The caller's own
  domain replaces any `domain_id` in the request body (SpaceONE's mutation handler), so a body
  can never widen what a caller sees. Only SYSTEM callers may act for another domain, named in
  the `x_domain_id` metadata (or the request's `domain_id`).
- Development mode (no keys configured): nobody is authenticated, the domain comes from the
  request (or `x_domain_id`), and the caller is treated as SYSTEM. Announced loudly at start.
- Rate limits (policyhub.service.rate_limit): failed authentications per peer address and per
  API-key id (once used up, attempts are refused without verifying), and each domain's calls.
- The SpaceONE listener (`spaceone_port`) only: a call with no credentials (`token`,
  `authorization`) and no domain (`x_domain_id`, the request's `domain_id`) is anonymous. An
  anonymous Policy get/list or Repository get/list reads the public catalogue: the managed
  policies and those of `public_domain_id` (if set), never a remote repository or a deleted
  policy, rate-limited per peer address. Any other anonymous call is refused: UNAUTHENTICATED
  in authenticated mode, PERMISSION_DENIED in development mode (which otherwise trusts the
  request's domain). Every call with a domain or credentials follows the rules above.
- A call carrying HOP_METADATA comes from another policyhub on behalf of its remote repository
  (`from_remote_installation`).
"""

from __future__ import annotations

import uuid

import grpc
from opentelemetry import trace

from policyhub.api.listener import on_spaceone_listener
from policyhub.domain import HOP_METADATA, MANAGED_DOMAIN_ID
from policyhub.errors import InvalidArgument, PermissionDenied, Unauthenticated
from policyhub.identity import AuthenticationError, looks_like_api_key, parse_api_key
from policyhub.identity.tokens import MAX_TOKEN_LENGTH
from policyhub.observability import logs
from policyhub.service import validation
from policyhub.service.authentication_service import Authenticator
from policyhub.service.context import ANONYMOUS, RequestContext
from policyhub.service.rate_limit import RateLimiter

DEVELOPER = "developer"
TOKEN = "token"
AUTHORIZATION = "authorization"
BEARER = "bearer"


class CallerResolver:
    def __init__(self, authenticator: Authenticator | None, limits: RateLimiter, public_domain_id: str = ""):
        self.authenticator = authenticator
        self.limits = limits
        self.public_domain_id = public_domain_id

    def __call__(
        self, request, context: grpc.ServicerContext, *, domain_required: bool = True, public_read: bool = False
    ) -> RequestContext:
        """`public_read`: the call is a read the public catalogue may answer (see the module doc)."""
        metadata = [(key, value) for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)]
        forced = _single(metadata, "x_domain_id")
        if forced:
            validation.domain_id(forced, "x_domain_id")
        body_domain = getattr(request, "domain_id", "")
        if body_domain:
            validation.domain_id(body_domain)
        requested = forced or body_domain
        if on_spaceone_listener() and not requested and not _has_credentials(metadata):
            if public_read:
                return self._anonymous(context.peer() or "")
            if self.authenticator is None:
                raise PermissionDenied(
                    "anonymous callers may only read the public catalogue on this listener; name a domain"
                )
        if self.authenticator is None:
            ctx = RequestContext(
                domain_id=_domain(requested, domain_required),
                caller_type="USER",
                caller_id=DEVELOPER,
                role_type="SYSTEM",
                transaction_id=transaction_id(),
                authenticated=False,
            )
        else:
            caller = self._authenticate(metadata, context.peer() or "")
            if caller.is_system:
                domain = requested or caller.domain_id
            elif forced:
                raise PermissionDenied("only system callers may set x_domain_id")
            else:
                domain = caller.domain_id
            ctx = RequestContext(
                domain_id=_domain(domain, domain_required),
                caller_type=caller.caller_type,
                caller_id=caller.caller_id,
                role_type=caller.role_type,
                transaction_id=transaction_id(),
                authenticated=True,
            )
        _bound(ctx)
        self.limits.call(ctx.domain_id)
        return ctx

    def _anonymous(self, peer: str) -> RequestContext:
        ctx = RequestContext(
            # No tenant but the public one: the managed domain alone holds only managed policies.
            domain_id=self.public_domain_id or MANAGED_DOMAIN_ID,
            caller_type=ANONYMOUS,
            caller_id=ANONYMOUS.lower(),
            role_type=ANONYMOUS,
            transaction_id=transaction_id(),
            authenticated=False,
        )
        _bound(ctx)
        self.limits.anonymous_call(peer_address(peer))
        return ctx

    def _authenticate(self, metadata: list[tuple[str, str]], peer: str):
        name, value = _credential(metadata)
        token, malformed = value, None
        if name == AUTHORIZATION:
            try:
                token = bearer_token(value)
            except Unauthenticated as exc:
                token, malformed = "", exc
        address = peer_address(peer)
        key_id = _api_key_id(token)
        self.limits.before_authentication(address, key_id)
        try:
            if malformed is not None:
                raise malformed
            if len(token) > MAX_TOKEN_LENGTH:
                raise Unauthenticated("token too long")
            return self.authenticator.authenticate(token)
        except Unauthenticated:
            self.limits.authentication_failed(address, key_id)
            raise


def bearer_token(value: str) -> str:
    """The credential of an `authorization` metadata value `Bearer <credential>`: the scheme in
    any case, one space, exactly one credential. Anything else is Unauthenticated with a short
    reason (the value itself is never repeated: it may be a secret)."""
    if not value:
        raise Unauthenticated("empty authorization metadata; send `Bearer <token>`")
    scheme, *credentials = value.split(" ")
    if scheme.lower() != BEARER:
        raise Unauthenticated("authorization metadata must use the Bearer scheme (`Bearer <token>`)")
    if not any(credentials):
        raise Unauthenticated("authorization metadata has no credential after Bearer")
    if len(credentials) != 1:
        raise Unauthenticated("authorization metadata must be `Bearer <token>`: one space, then exactly one credential")
    return credentials[0]


def from_remote_installation(context: grpc.ServicerContext) -> bool:
    """Another policyhub asking on behalf of its remote repository."""
    return any(key == HOP_METADATA for key, _ in (context.invocation_metadata() or ()))


def peer_address(peer: str) -> str:
    """The caller's address without its port (`ipv4:10.0.0.1:53211` -> `ipv4:10.0.0.1`): each new
    connection has a new port, the address is what a limit must follow."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


def _has_credentials(metadata: list[tuple[str, str]]) -> bool:
    return any(key in (TOKEN, AUTHORIZATION) for key, _ in metadata)


def _credential(metadata: list[tuple[str, str]]) -> tuple[str, str]:
    """(metadata name, value) of the one credential the call presents: `token` or
    `authorization`. Unauthenticated when there is none, or more than one."""
    tokens = [value for key, value in metadata if key == TOKEN]
    authorizations = [value for key, value in metadata if key == AUTHORIZATION]
    if len(tokens) + len(authorizations) > 1:
        raise Unauthenticated(
            "ambiguous credentials: send exactly one token or one authorization metadata value, not both or several"
        )
    if authorizations:
        return AUTHORIZATION, authorizations[0]
    if not tokens or not tokens[0]:
        raise Unauthenticated("missing token metadata")
    return TOKEN, tokens[0]


def _single(metadata: list[tuple[str, str]], key: str) -> str:
    values = [value for name, value in metadata if name == key]
    if len(values) > 1:
        raise InvalidArgument(key, "must be sent at most once")
    return values[0] if values else ""


def _api_key_id(token: str) -> str | None:
    """The key id of a well-formed API key (its failures are limited per key id too), else None."""
    if not looks_like_api_key(token):
        return None
    try:
        return parse_api_key(token)
    except AuthenticationError:
        return None


def _bound(ctx: RequestContext) -> RequestContext:
    """The call's log lines and its span carry who and for which domain from here on."""
    caller = f"{ctx.caller_type}:{ctx.caller_id}"
    logs.bind(domain_id=ctx.domain_id, caller=caller)
    span = trace.get_current_span()
    span.set_attribute("policyhub.caller", caller)
    if ctx.domain_id:
        span.set_attribute("policyhub.domain_id", ctx.domain_id)
    return ctx


def _domain(value: str, required: bool) -> str:
    return validation.domain_id(value) if required or value else ""


def transaction_id() -> str:
    """The trace id of the call's span (the observability interceptor continues the caller's
    `traceparent` in it), so audit entries, logs and traces join up; a fresh id outside a span."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return format(span_context.trace_id, "032x")
    return uuid.uuid4().hex
