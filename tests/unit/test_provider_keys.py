"""policyhub.identity.provider_keys: keys fetched from an identity provider's jwks_uri, against
a local HTTPS JWKS server that rotates keys (tests/jwks_server.py). The refresh interval runs
on an injected clock, so nothing here waits for time to pass."""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwks_server import JwksServer
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from policyhub.identity import AuthenticationError, KeyConfigError, ProviderKeys, TokenVerifier
from policyhub.identity.keys import MAX_KEYS_BYTES

ISSUER = "https://idp.test"
AUDIENCE = "policyhub"
INTERVAL = 30.0


@pytest.fixture
def provider(tmp_path):
    server = JwksServer(tmp_path)
    yield server
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keys_of(provider: JwksServer, clock=time.monotonic, tls: ssl.SSLContext | None = None) -> ProviderKeys:
    return ProviderKeys(provider.uri, tls or ssl.create_default_context(cafile=provider.ca_file), INTERVAL, clock)


def token(key, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "did": "d1", "typ": "USER", "rol": "USER"}
    return jwt.encode({**claims, "iat": now, "exp": now + 300}, key, algorithm="ES256", headers={"kid": kid})


def verifier(keys: ProviderKeys) -> TokenVerifier:
    return TokenVerifier(keys, ISSUER, AUDIENCE)


def refused(v: TokenVerifier, tok: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        v.verify(tok)
    return info.value.reason


def start_error(provider: JwksServer, tls: ssl.SSLContext | None = None) -> str:
    with pytest.raises(KeyConfigError) as info:
        keys_of(provider, tls=tls)
    assert provider.uri in str(info.value) and "\n" not in str(info.value)
    return str(info.value)


def test_keys_are_fetched_at_start(provider):
    v = verifier(keys_of(provider))
    assert v.verify(token(provider.signing_keys["key-1"], "key-1")).caller_id == "alice"
    assert provider.requests == 1


def test_a_rotated_key_is_fetched_on_its_first_token(provider):
    clock = Clock()
    v = verifier(keys_of(provider, clock))
    old = provider.signing_keys["key-1"]
    new = provider.rotate("key-2")
    assert v.verify(token(new, "key-2")).caller_id == "alice"
    assert provider.requests == 2
    # key-1 is no longer published: gone with the fetch that brought key-2.
    assert refused(v, token(old, "key-1")) == "unknown key id"
    assert provider.requests == 2


def test_forged_kids_fetch_at_most_once_per_interval(provider):
    clock = Clock()
    v = verifier(keys_of(provider, clock))
    forger = ec.generate_private_key(ec.SECP256R1())
    for _ in range(50):
        assert refused(v, token(forger, uuid.uuid4().hex)) == "unknown key id"
    assert provider.requests == 2
    clock.now += INTERVAL - 0.1
    assert refused(v, token(forger, "still-forged")) == "unknown key id"
    assert provider.requests == 2
    clock.now += 0.1
    assert refused(v, token(forger, "once-more")) == "unknown key id"
    assert provider.requests == 3
    # The published key still verifies, without a fetch.
    assert v.verify(token(provider.signing_keys["key-1"], "key-1")).caller_id == "alice"
    assert provider.requests == 3


def test_concurrent_forged_kids_fetch_once(provider):
    v = verifier(keys_of(provider, Clock()))
    forger = ec.generate_private_key(ec.SECP256R1())
    reasons: list[str] = []

    def flood() -> None:
        for _ in range(10):
            reasons.append(refused(v, token(forger, uuid.uuid4().hex)))

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reasons == ["unknown key id"] * 80
    assert provider.requests == 2


def test_a_token_waiting_behind_a_fetch_sees_its_keys(provider):
    """A rotated key's first tokens arrive together: one fetch, every one of them verified."""
    keys = keys_of(provider, Clock())
    v = verifier(keys)
    new = provider.rotate("key-2")
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(v.verify(token(new, "key-2")).caller_id)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["alice"] * 8
    assert provider.requests == 2


def test_periodic_refresh_replaces_the_keys(provider):
    keys = keys_of(provider, Clock())
    v = verifier(keys)
    new = provider.rotate("key-2", keep_old=True)
    assert keys.refresh() is True
    assert provider.requests == 2
    provider.stop()
    # Verified without a fetch (the provider is down): the refresh brought key-2.
    assert v.verify(token(new, "key-2")).caller_id == "alice"
    assert v.verify(token(provider.signing_keys["key-1"], "key-1")).caller_id == "alice"


def test_an_unreachable_provider_keeps_the_old_keys(provider, caplog):
    clock = Clock()
    keys = keys_of(provider, clock)
    v = verifier(keys)
    provider.stop()
    with caplog.at_level(logging.WARNING, logger="policyhub.identity.provider_keys"):
        assert keys.refresh() is False
        assert refused(v, token(ec.generate_private_key(ec.SECP256R1()), "forged")) == "unknown key id"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(provider.uri in w and "keeping the 1 keys of the last successful fetch" in w for w in warnings)
    assert v.verify(token(provider.signing_keys["key-1"], "key-1")).caller_id == "alice"


def test_a_failed_refresh_keeps_the_old_keys_whatever_it_served(provider):
    keys = keys_of(provider, Clock())
    v = verifier(keys)
    for status, body in ((200, b"<html>maintenance</html>"), (200, b'{"keys": []}'), (503, b"{}")):
        provider.status, provider.body = status, body
        assert keys.refresh() is False
    assert v.verify(token(provider.signing_keys["key-1"], "key-1")).caller_id == "alice"


def test_an_unreachable_provider_at_start_is_one_clear_error(provider):
    provider.stop()
    assert "Connection refused" in start_error(provider)


def test_the_providers_certificate_is_verified(provider):
    # The system's roots do not hold the test CA.
    assert "CERTIFICATE_VERIFY_FAILED" in start_error(provider, ssl.create_default_context())
    assert provider.requests == 0


@pytest.mark.parametrize(
    "status, body, reason",
    [
        (500, b"oops", "HTTP 500"),
        (302, b"", "HTTP 302"),  # redirects are not followed
        (200, b"not json", "cannot fetch keys"),
        (200, b"[1, 2]", "did not return a JSON object"),
        (200, b'{"keys": []}', "JWKS holds no keys"),
        (200, b'{"kty": "RSA"}', '"keys" list'),
        (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "private key material"),
    ],
)
def test_a_bad_answer_at_start_is_one_clear_error(provider, status, body, reason):
    provider.status, provider.body = status, body
    assert reason in start_error(provider)


def test_the_response_size_is_capped(provider):
    provider.body = b'{"keys": [], "padding": "' + b"x" * MAX_KEYS_BYTES + b'"}'
    assert f"response larger than {MAX_KEYS_BYTES} bytes" in start_error(provider)


def test_unusable_published_keys_are_left_out_with_a_warning(provider, caplog):
    """Providers publish encryption keys and other algorithms next to their signing keys."""
    good = provider.signing_keys["key-1"]
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    published = [
        {**RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True), "kid": "weak"},
        {**ECAlgorithm.to_jwk(good.public_key(), as_dict=True), "kid": "enc", "use": "enc"},
        {**ECAlgorithm.to_jwk(good.public_key(), as_dict=True), "kid": "es512", "alg": "ES512"},
        {**json.loads(ECAlgorithm.to_jwk(good)), "kid": "leaked"},
        {**ECAlgorithm.to_jwk(good.public_key(), as_dict=True), "kid": "key-1"},
    ]
    provider.body = json.dumps({"keys": published}).encode()
    with caplog.at_level(logging.WARNING, logger="policyhub.identity.provider_keys"):
        keys = keys_of(provider, Clock())
        keys.refresh()  # the same keys left out again: not warned again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    for kid, why in (
        ("weak", "1024 bits"),
        ("enc", "use 'enc'"),
        ("es512", "alg 'ES512' not supported"),
        ("leaked", "private key material"),
    ):
        assert any(f"(kid {kid!r})" in w and why in w for w in warnings), kid
    v = verifier(keys)
    assert v.verify(token(good, "key-1")).caller_id == "alice"
    assert refused(v, token(good, "enc")) == "unknown key id"


def test_a_duplicate_kid_refuses_the_set(provider):
    jwk = ECAlgorithm.to_jwk(provider.signing_keys["key-1"].public_key(), as_dict=True)
    provider.body = json.dumps({"keys": [{**jwk, "kid": "k"}, {**jwk, "kid": "k"}]}).encode()
    assert "duplicate kid" in start_error(provider)
