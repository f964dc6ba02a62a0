"""Reading the caller's credential from request metadata (policyhub.api.context): SpaceONE's
`token`, or `authorization: Bearer <credential>`. Pure: a fake authenticator, no server."""

from __future__ import annotations

import pytest

from policyhub.api.context import CallerResolver, bearer_token
from policyhub.errors import RateLimited, Unauthenticated
from policyhub.identity import new_api_key
from policyhub.identity.tokens import Caller
from policyhub.service.rate_limit import RateLimiter

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(scheme):
    assert bearer_token(f"{scheme} {JWT}") == JWT


def test_the_credential_is_taken_as_sent():
    key = new_api_key()[1]
    assert bearer_token(f"Bearer {key}") == key
    # Whatever the credential is, it is the verifier's to judge, not the header parser's.
    assert bearer_token("Bearer not-a-jwt") == "not-a-jwt"


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "empty authorization metadata"),
        ("Basic dXNlcjpwYXNzd29yZA==", "must use the Bearer scheme"),
        (f"Token {JWT}", "must use the Bearer scheme"),
        (JWT, "must use the Bearer scheme"),
        (f"Bearer{JWT}", "must use the Bearer scheme"),
        (f" Bearer {JWT}", "must use the Bearer scheme"),
        (f"Bearer\t{JWT}", "must use the Bearer scheme"),
        ("Bearer", "no credential after Bearer"),
        ("Bearer ", "no credential after Bearer"),
        ("Bearer   ", "no credential after Bearer"),
        (f"Bearer {JWT} {JWT}", "exactly one credential"),
        (f"Bearer  {JWT}", "exactly one credential"),
        (f"Bearer {JWT} ", "exactly one credential"),
    ],
)
def test_anything_but_bearer_and_one_credential_is_refused(value, reason):
    with pytest.raises(Unauthenticated) as info:
        bearer_token(value)
    assert reason in info.value.message
    assert JWT not in info.value.message  # a credential is never repeated


class FakeAuthenticator:
    def __init__(self):
        self.seen: list[str] = []

    def authenticate(self, token: str) -> Caller:
        self.seen.append(token)
        if token != JWT:
            raise Unauthenticated("bad signature")
        return Caller(caller_type="USER", caller_id="alice", domain_id="d", role_type="USER", auth="jwt")


def resolver(failures_per_minute: int = 0):
    authenticator = FakeAuthenticator()
    return CallerResolver(authenticator, RateLimiter(0, 0, failures_per_minute)), authenticator  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "metadata",
    [
        [("token", JWT)],
        [("authorization", f"Bearer {JWT}")],
        [("authorization", f"bearer {JWT}")],
    ],
)
def test_either_metadata_carries_the_credential(metadata):
    caller_resolver, authenticator = resolver()
    assert caller_resolver._authenticate(metadata, "ipv4:10.0.0.1:5000").caller_id == "alice"
    assert authenticator.seen == [JWT]


@pytest.mark.parametrize(
    "metadata, reason",
    [
        ([], "missing token metadata"),
        ([("token", "")], "missing token metadata"),
        ([("token", JWT), ("token", JWT)], "ambiguous credentials"),
        ([("authorization", f"Bearer {JWT}"), ("authorization", f"Bearer {JWT}")], "ambiguous credentials"),
        ([("token", JWT), ("authorization", f"Bearer {JWT}")], "ambiguous credentials"),
        ([("token", ""), ("authorization", f"Bearer {JWT}")], "ambiguous credentials"),
        ([("authorization", "")], "empty authorization metadata"),
        ([("authorization", "Bearer " + "e" * 5000)], "token too long"),
    ],
)
def test_no_credential_several_or_a_bad_one_is_refused_unverified(metadata, reason):
    caller_resolver, authenticator = resolver()
    with pytest.raises(Unauthenticated) as info:
        caller_resolver._authenticate(metadata, "ipv4:10.0.0.1:5000")
    assert reason in info.value.message
    assert authenticator.seen == []


def test_malformed_authorization_counts_as_a_failed_authentication():
    caller_resolver, authenticator = resolver(failures_per_minute=3)
    for value in ["Basic dXNlcjpwYXNz", "Bearer", f"Bearer {JWT} {JWT}"]:
        with pytest.raises(Unauthenticated):
            caller_resolver._authenticate([("authorization", value)], "ipv4:10.0.0.1:5000")
    # The peer used up its failures: even a good credential is refused, without being verified.
    with pytest.raises(RateLimited):
        caller_resolver._authenticate([("authorization", f"Bearer {JWT}")], "ipv4:10.0.0.1:5001")
    assert authenticator.seen == []
    # Another peer is not affected.
    assert caller_resolver._authenticate([("authorization", f"Bearer {JWT}")], "ipv4:10.0.0.2:5000")


def test_an_api_key_in_bearer_is_limited_per_key_id_too():
    caller_resolver, _ = resolver(failures_per_minute=2)
    wrong = new_api_key()[1][:-4] + "AAAA"
    for peer in ["ipv4:10.0.0.1:1", "ipv4:10.0.0.2:1"]:
        with pytest.raises(Unauthenticated):
            caller_resolver._authenticate([("authorization", f"Bearer {wrong}")], peer)
    # A third address, the same key id: refused without verifying.
    with pytest.raises(RateLimited):
        caller_resolver._authenticate([("authorization", f"Bearer {wrong}")], "ipv4:10.0.0.3:1")
