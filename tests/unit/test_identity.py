"""policyhub.identity: key loading, JWT verification, API keys. Pure, no server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from policyhub.identity import (
    AuthenticationError,
    Caller,
    KeyConfigError,
    KeySet,
    TokenVerifier,
    api_keys,
    hash_secret,
    load_verification_keys,
    looks_like_api_key,
    matches,
    new_api_key,
    parse_api_key,
)

NOW = 1_750_000_000
ISSUER = "https://identity.test"
AUDIENCE = "policyhub"


# ---------------------------------------------------------------- fixtures / helpers


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pub_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def priv_pem(private_key) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def jwk(private_key, kid: str | None = None, **extra) -> dict:
    pub = private_key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        d = RSAAlgorithm.to_jwk(pub, as_dict=True)
    else:
        d = ECAlgorithm.to_jwk(pub, as_dict=True)
    d.pop("key_ops", None)
    if kid is not None:
        d["kid"] = kid
    d.update(extra)
    return d


def write_json(tmp_path, doc, name="jwks.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def write_bytes(tmp_path, data: bytes, name="keys.pem") -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def claims(**overrides) -> dict:
    c = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "did": "domain-abc",
        "typ": "USER",
        "rol": "USER",
        "iat": NOW,
        "exp": NOW + 300,
    }
    for k, v in overrides.items():
        if v is ...:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def sign(private_key, payload: dict, alg: str = "RS256", kid: str | None = None, headers: dict | None = None) -> str:
    h = dict(headers or {})
    if kid is not None:
        h["kid"] = kid
    return jwt.encode(payload, private_key, algorithm=alg, headers=h or None)


def raw_token(header: dict, payload: dict, signature: bytes = b"") -> str:
    return ".".join([b64u(json.dumps(header).encode()), b64u(json.dumps(payload).encode()), b64u(signature)])


@pytest.fixture()
def keyset(tmp_path, rsa_key, ec_key) -> KeySet:
    return load_verification_keys(write_json(tmp_path, {"keys": [jwk(rsa_key, "rsa-1"), jwk(ec_key, "ec-1")]}))


@pytest.fixture()
def verifier(keyset) -> TokenVerifier:
    return TokenVerifier(keyset, ISSUER, AUDIENCE, clock=lambda: NOW)


def reason_of(verifier: TokenVerifier, token) -> str:
    with pytest.raises(AuthenticationError) as ei:
        verifier.verify(token)
    assert str(ei.value) == ei.value.reason
    return ei.value.reason


# ---------------------------------------------------------------- valid tokens


@pytest.mark.parametrize("kid", ["rsa-1", None])
def test_valid_rs256(verifier, rsa_key, kid):
    caller = verifier.verify(sign(rsa_key, claims(), "RS256", kid))
    assert caller == Caller(
        caller_type="USER", caller_id="user-1", domain_id="domain-abc", role_type="USER", auth="jwt"
    )
    assert not caller.is_system


@pytest.mark.parametrize("kid", ["ec-1", None])
def test_valid_es256(verifier, ec_key, kid):
    caller = verifier.verify(sign(ec_key, claims(typ="SERVICE_ACCOUNT", rol="DOMAIN_ADMIN"), "ES256", kid))
    assert (caller.caller_type, caller.role_type, caller.domain_id) == ("SERVICE_ACCOUNT", "DOMAIN_ADMIN", "domain-abc")


def test_caller_is_frozen(verifier, rsa_key):
    caller = verifier.verify(sign(rsa_key, claims()))
    with pytest.raises(AttributeError):
        caller.domain_id = "other"  # type: ignore[misc]


def test_system_caller_with_empty_did(verifier, rsa_key):
    caller = verifier.verify(sign(rsa_key, claims(did="", rol="SYSTEM", typ="SERVICE_ACCOUNT")))
    assert caller.is_system and caller.domain_id == ""


def test_audience_list_containing_ours(verifier, rsa_key):
    assert verifier.verify(sign(rsa_key, claims(aud=["other", AUDIENCE]))).caller_id == "user-1"


def test_iat_and_nbf_optional(verifier, rsa_key):
    assert verifier.verify(sign(rsa_key, claims(iat=..., nbf=...))).caller_id == "user-1"


# ---------------------------------------------------------------- time


def test_expired(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(exp=NOW - 31, iat=NOW - 600))) == "token expired"


def test_expired_at_exact_leeway_edge(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(exp=NOW - 30, iat=NOW - 600))) == "token expired"


def test_expired_within_leeway_ok(verifier, rsa_key):
    assert verifier.verify(sign(rsa_key, claims(exp=NOW - 29, iat=NOW - 600))).caller_id == "user-1"


def test_not_yet_valid(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(nbf=NOW + 31))) == "token not yet valid"


def test_nbf_within_leeway_ok(verifier, rsa_key):
    assert verifier.verify(sign(rsa_key, claims(nbf=NOW + 30))).caller_id == "user-1"


def test_issued_in_future(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(iat=NOW + 31))) == "token issued in the future"


def test_clock_is_injected(keyset, rsa_key):
    token = sign(rsa_key, claims())
    later = TokenVerifier(keyset, ISSUER, AUDIENCE, clock=lambda: NOW + 331)
    assert reason_of(later, token) == "token expired"
    zero_leeway = TokenVerifier(keyset, ISSUER, AUDIENCE, leeway_seconds=0, clock=lambda: NOW + 300)
    assert reason_of(zero_leeway, token) == "token expired"


@pytest.mark.parametrize(
    "claim,value", [("exp", "tomorrow"), ("exp", True), ("exp", 1e400), ("nbf", "now"), ("iat", [1])]
)
def test_time_claims_must_be_numbers(verifier, rsa_key, claim, value):
    if value == 1e400:  # JSON "1e400" parses to inf: must not mean "never expires"
        header = {"alg": "RS256", "typ": "JWT"}
        body = json.dumps(claims(exp=12345)).replace("12345", "1e400").encode()
        signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(body)}".encode()
        sig = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, rsa_key)
        token = signing_input.decode() + "." + b64u(sig)
    else:
        token = sign(rsa_key, claims(**{claim: value}))
    assert reason_of(verifier, token) == f"invalid claim {claim}"


# ---------------------------------------------------------------- issuer / audience / signature


def test_wrong_audience(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(aud="someone-else"))) == "wrong audience"
    assert reason_of(verifier, sign(rsa_key, claims(aud=["a", "b"]))) == "wrong audience"


def test_invalid_audience_type(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(aud=[]))) == "invalid claim aud"
    assert reason_of(verifier, sign(rsa_key, claims(aud=7))) == "invalid claim aud"


def test_wrong_issuer(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(iss="https://evil.test"))) == "wrong issuer"
    assert reason_of(verifier, _signed_raw(rsa_key, json.dumps(claims(iss=["x"])).encode())) == "invalid claim iss"


def test_signed_by_another_key(verifier, rsa_key2):
    assert reason_of(verifier, sign(rsa_key2, claims())) == "bad signature"
    assert reason_of(verifier, sign(rsa_key2, claims(), kid="rsa-1")) == "bad signature"


def test_other_ec_key(verifier):
    other = ec.generate_private_key(ec.SECP256R1())
    assert reason_of(verifier, sign(other, claims(), "ES256", "ec-1")) == "bad signature"


def test_tampered_payload(verifier, rsa_key):
    h, _, s = sign(rsa_key, claims()).split(".")
    forged = b64u(json.dumps(claims(rol="SYSTEM")).encode())
    assert reason_of(verifier, f"{h}.{forged}.{s}") == "bad signature"


def test_empty_signature(verifier, rsa_key):
    h, p, _ = sign(rsa_key, claims()).split(".")
    assert reason_of(verifier, f"{h}.{p}.") == "bad signature"


def test_alg_none(verifier):
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "none", "kid": "rsa-1"}):
        assert reason_of(verifier, raw_token(header, claims())) == "unsupported algorithm none"
    assert reason_of(verifier, raw_token({"alg": "None"}, claims())) == "unsupported algorithm"
    assert reason_of(verifier, raw_token({"typ": "JWT"}, claims())) == "unsupported algorithm"
    assert reason_of(verifier, raw_token({"alg": ["RS256"]}, claims())) == "unsupported algorithm"


def test_hs256_key_confusion_refused(verifier, rsa_key, monkeypatch):
    """HS256 'signed' with the RSA public key PEM as the HMAC secret must never verify."""
    secret = pub_pem(rsa_key)
    header = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64u(json.dumps(claims(rol="SYSTEM", did="")).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64u(mac)}"

    tried = []
    monkeypatch.setattr(KeySet, "for_token", lambda self, kid, alg: tried.append(alg) or ())
    assert reason_of(verifier, token) == "unsupported algorithm HS256"
    assert tried == []  # refused before any key was looked up


@pytest.mark.parametrize("alg", ["RS512", "PS256", "RS384"])
def test_other_rsa_algorithms_refused(verifier, rsa_key, alg):
    assert reason_of(verifier, sign(rsa_key, claims(), alg, "rsa-1")) == f"unsupported algorithm {alg}"


def test_es384_refused(verifier):
    k = ec.generate_private_key(ec.SECP384R1())
    assert reason_of(verifier, sign(k, claims(), "ES384")) == "unsupported algorithm ES384"


def test_unknown_alg_name_not_echoed(verifier):
    assert reason_of(verifier, raw_token({"alg": "<script>"}, claims())) == "unsupported algorithm"


def test_alg_mismatching_kid_key(verifier, ec_key):
    # An ES256 token pointing at the RSA key's kid.
    assert reason_of(verifier, sign(ec_key, claims(), "ES256", "rsa-1")) == "algorithm does not match key"


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "....",
        "!!!.eyJ9.sig",  # header not base64
        b64u(b"not json") + "." + b64u(b"{}") + ".c2ln",  # header not JSON
        b64u(b"[1,2]") + "." + b64u(b"{}") + ".c2ln",  # header not an object
        "x" * 9000,
        "é.é.é",
    ],
)
def test_malformed(verifier, token):
    assert reason_of(verifier, token) == "malformed token"


def test_non_string_token(verifier):
    assert reason_of(verifier, None) == "malformed token"
    assert reason_of(verifier, b"a.b.c") == "malformed token"


def test_bad_kid_type(verifier, rsa_key):
    assert reason_of(verifier, raw_token({"alg": "RS256", "kid": 5}, claims())) == "malformed token"


def test_crit_header_refused(verifier, rsa_key):
    token = sign(rsa_key, claims(), headers={"crit": ["exp"], "exp": 1})
    assert reason_of(verifier, token) == "malformed token"


def _signed_raw(private_key, body: bytes) -> str:
    signing_input = f"{b64u(json.dumps({'alg': 'RS256'}).encode())}.{b64u(body)}".encode()
    return signing_input.decode() + "." + b64u(RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, private_key))


def test_signed_but_payload_not_object(verifier, rsa_key):
    assert reason_of(verifier, _signed_raw(rsa_key, b"[1]")) == "malformed token"
    assert reason_of(verifier, _signed_raw(rsa_key, b"not json")) == "malformed token"


def test_duplicate_claims_refused(verifier, rsa_key):
    body = json.dumps(claims(rol="USER"))[:-1] + ', "rol": "SYSTEM"}'
    assert reason_of(verifier, _signed_raw(rsa_key, body.encode())) == "malformed token"


def test_unknown_kid(verifier, rsa_key):
    assert reason_of(verifier, sign(rsa_key, claims(), kid="nope")) == "unknown key id"


# ---------------------------------------------------------------- claims


@pytest.mark.parametrize("name", ["exp", "iss", "aud", "sub", "did", "typ", "rol"])
def test_missing_claim(verifier, rsa_key, name):
    assert reason_of(verifier, sign(rsa_key, claims(**{name: ...}))) == f"missing claim {name}"


@pytest.mark.parametrize(
    "name,value",
    [
        ("rol", "ROOT"),
        ("rol", "system"),
        ("rol", 1),
        ("typ", "ROBOT"),
        ("typ", ["USER"]),
        ("did", "domain abc"),
        ("did", "-abc"),
        ("did", "a" * 65),
        ("did", "abc\n"),
        ("did", 42),
        ("sub", ""),
        ("sub", "x" * 129),
        ("sub", 5),
        ("sub", "a\nb"),
    ],
)
def test_bad_claim_values(verifier, rsa_key, name, value):
    assert reason_of(verifier, sign(rsa_key, claims(**{name: value}))) == f"invalid claim {name}"


def test_claim_limits_ok(verifier, rsa_key):
    c = verifier.verify(sign(rsa_key, claims(sub="s" * 128, did="D" + "x_.-" * 15 + "abc")))
    assert len(c.caller_id) == 128 and len(c.domain_id) == 64


@pytest.mark.parametrize("rol", ["USER", "DOMAIN_ADMIN"])
def test_empty_did_refused_for_non_system(verifier, rsa_key, rol):
    assert reason_of(verifier, sign(rsa_key, claims(did="", rol=rol))) == "invalid claim did"


def test_reasons_never_echo_token_content(verifier, rsa_key):
    marker = "SECRET-TENANT-xyz"
    for token in (
        sign(rsa_key, claims(aud=marker)),
        sign(rsa_key, claims(iss=marker)),
        sign(rsa_key, claims(rol=marker)),
        sign(rsa_key, claims(), kid=marker),
        raw_token({"alg": marker}, claims()),
    ):
        assert marker not in reason_of(verifier, token)


def test_verifier_constructor_validation(keyset):
    with pytest.raises(ValueError):
        TokenVerifier(keyset, "", AUDIENCE)
    with pytest.raises(ValueError):
        TokenVerifier(keyset, ISSUER, "")
    with pytest.raises(ValueError):
        TokenVerifier(keyset, ISSUER, AUDIENCE, leeway_seconds=-1)


# ---------------------------------------------------------------- key files


def test_load_jwks(keyset):
    assert len(keyset) == 2
    assert {(k.kid, k.kty, k.alg) for k in keyset.keys} == {("rsa-1", "RSA", "RS256"), ("ec-1", "EC", "ES256")}


def test_for_token_selection(keyset):
    assert [k.kid for k in keyset.for_token("rsa-1", "RS256")] == ["rsa-1"]
    assert [k.kid for k in keyset.for_token(None, "ES256")] == ["ec-1"]
    with pytest.raises(AuthenticationError) as ei:
        keyset.for_token("missing", "RS256")
    assert ei.value.reason == "unknown key id"
    with pytest.raises(AuthenticationError) as ei:
        keyset.for_token(None, "HS256")
    assert ei.value.reason == "unsupported algorithm HS256"


def test_no_key_for_algorithm(tmp_path, rsa_key, ec_key):
    ks = load_verification_keys(write_json(tmp_path, {"keys": [jwk(rsa_key, "r")]}))
    with pytest.raises(AuthenticationError) as ei:
        ks.for_token(None, "ES256")
    assert ei.value.reason == "no key for algorithm ES256"
    v = TokenVerifier(ks, ISSUER, AUDIENCE, clock=lambda: NOW)
    assert reason_of(v, sign(ec_key, claims(), "ES256")) == "no key for algorithm ES256"


def test_jwks_alg_and_use_members(tmp_path, rsa_key):
    ks = load_verification_keys(write_json(tmp_path, {"keys": [jwk(rsa_key, "r", alg="RS256", use="sig")]}))
    assert len(ks) == 1


def test_multi_key_pem(tmp_path, rsa_key, rsa_key2, ec_key):
    path = write_bytes(tmp_path, b"comment line\n" + pub_pem(rsa_key) + pub_pem(ec_key) + pub_pem(rsa_key2))
    ks = load_verification_keys(path)
    assert [(k.kid, k.kty) for k in ks.keys] == [(None, "RSA"), (None, "EC"), (None, "RSA")]
    v = TokenVerifier(ks, ISSUER, AUDIENCE, clock=lambda: NOW)
    # Without kid: every RSA key is tried; the second one verifies.
    assert v.verify(sign(rsa_key2, claims())).caller_id == "user-1"
    assert v.verify(sign(ec_key, claims(), "ES256")).caller_id == "user-1"
    # PEM keys have no kid, so a token's kid falls back to the kid-less keys.
    assert v.verify(sign(rsa_key, claims(), kid="issuer-kid-7")).caller_id == "user-1"
    assert (
        reason_of(v, sign(rsa.generate_private_key(public_exponent=65537, key_size=2048), claims())) == "bad signature"
    )


def test_pkcs1_rsa_public_key_pem(tmp_path, rsa_key):
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert b"BEGIN RSA PUBLIC KEY" in pem
    assert load_verification_keys(write_bytes(tmp_path, pem)).keys[0].kty == "RSA"


def _config_error(path: str) -> str:
    with pytest.raises(KeyConfigError) as ei:
        load_verification_keys(path)
    assert isinstance(ei.value, ValueError)
    assert path in str(ei.value)
    return str(ei.value)


def test_private_key_pem_refused(tmp_path, rsa_key, ec_key):
    assert "PRIVATE key" in _config_error(write_bytes(tmp_path, priv_pem(rsa_key)))
    trad = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert "PRIVATE key" in _config_error(write_bytes(tmp_path, pub_pem(rsa_key) + trad, "mixed.pem"))


def test_private_jwk_refused(tmp_path, rsa_key, ec_key):
    rsa_priv = json.loads(RSAAlgorithm.to_jwk(rsa_key))
    assert "private key material" in _config_error(write_json(tmp_path, {"keys": [rsa_priv]}))
    ec_priv = json.loads(ECAlgorithm.to_jwk(ec_key))
    assert "private key material" in _config_error(write_json(tmp_path, {"keys": [ec_priv]}, "ec.json"))
    assert "private key material" in _config_error(
        write_json(tmp_path, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "oct.json")
    )


def test_weak_rsa_refused(tmp_path):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    msg = _config_error(write_bytes(tmp_path, pub_pem(weak)))
    assert "1024 bits" in msg and "2048" in msg
    msg = _config_error(write_json(tmp_path, {"keys": [jwk(weak, "weak")]}))
    assert "1024 bits" in msg


def test_p384_refused(tmp_path):
    k = ec.generate_private_key(ec.SECP384R1())
    assert "unsupported EC curve secp384r1" in _config_error(write_bytes(tmp_path, pub_pem(k)))
    assert "unsupported EC curve P-384" in _config_error(write_json(tmp_path, {"keys": [jwk(k, "p384")]}))


def test_unsupported_key_types_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    k = ed25519.Ed25519PrivateKey.generate()
    pem = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert "unsupported key type" in _config_error(write_bytes(tmp_path, pem))
    assert "unsupported key type OKP" in _config_error(
        write_json(tmp_path, {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]})
    )


def test_jwks_bad_members(tmp_path, rsa_key, ec_key):
    assert "alg 'RS512' not supported" in _config_error(
        write_json(tmp_path, {"keys": [jwk(rsa_key, "r", alg="RS512")]})
    )
    assert "use 'enc'" in _config_error(write_json(tmp_path, {"keys": [jwk(rsa_key, "r", use="enc")]}, "u.json"))
    assert "duplicate kid" in _config_error(
        write_json(tmp_path, {"keys": [jwk(rsa_key, "same"), jwk(ec_key, "same")]}, "d.json")
    )
    bad_point = jwk(ec_key, "e")
    bad_point["y"] = bad_point["x"]
    assert "not on P-256" in _config_error(write_json(tmp_path, {"keys": [bad_point]}, "p.json"))
    no_n = jwk(rsa_key, "r")
    del no_n["n"]
    assert "'n' missing" in _config_error(write_json(tmp_path, {"keys": [no_n]}, "n.json"))
    assert "no keys" in _config_error(write_json(tmp_path, {"keys": []}, "empty.json"))
    assert '"keys" list' in _config_error(write_json(tmp_path, {"kty": "RSA"}, "single.json"))


def test_certificate_refused(tmp_path):
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert "certificates are not supported" in _config_error(write_bytes(tmp_path, pem))


def test_garbage_files(tmp_path):
    assert "neither JWKS JSON nor PEM" in _config_error(write_bytes(tmp_path, b"hello world", "g.txt"))
    assert "not UTF-8" in _config_error(write_bytes(tmp_path, b"\xff\xfe\x00garbage", "g.bin"))
    assert "not valid JSON" in _config_error(write_bytes(tmp_path, b"{not json", "g.json"))
    assert "file is empty" in _config_error(write_bytes(tmp_path, b"  \n", "e.pem"))
    assert "malformed PEM" in _config_error(write_bytes(tmp_path, b"-----BEGIN PUBLIC KEY-----\nAAAA\n", "t.pem"))
    assert "cannot parse public key" in _config_error(
        write_bytes(tmp_path, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "c.pem")
    )


def test_missing_file(tmp_path):
    assert "cannot read" in _config_error(str(tmp_path / "nope.json"))
    assert "cannot read" in _config_error(str(tmp_path))  # a directory


# ---------------------------------------------------------------- API keys


def test_new_api_key_format():
    key_id, plaintext, stored = new_api_key()
    assert len(key_id) == 12 and all(c in "0123456789abcdef" for c in key_id)
    assert plaintext.startswith(f"phk_{key_id}_")
    assert len(plaintext) == len("phk_") + 12 + 1 + 43
    assert parse_api_key(plaintext) == key_id
    assert stored == hashlib.sha256(plaintext.encode()).hexdigest() == hash_secret(plaintext)
    assert looks_like_api_key(plaintext)
    assert new_api_key()[1] != plaintext


def test_secret_with_underscores_parses():
    text = "phk_0123456789ab_" + "_" * 10 + "-" * 10 + "A" * 23
    assert parse_api_key(text) == "0123456789ab"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "phk_",
        "phk_0123456789ab",
        "phk_0123456789ab_",
        "phk_0123456789AB_" + "a" * 43,
        "phk_0123456789a_" + "a" * 43,
        "phk_0123456789ab_" + "a" * 42,
        "phk_0123456789ab_" + "a" * 44,
        "phk_0123456789ab_" + "a" * 42 + "=",
        "pk_0123456789ab_" + "a" * 43,
        "phk_0123456789ab_" + "a" * 42 + "\n",
        None,
        123,
    ],
)
def test_parse_api_key_errors(text):
    with pytest.raises(AuthenticationError) as ei:
        parse_api_key(text)
    assert ei.value.reason == "malformed API key"


def test_looks_like_api_key_routing(rsa_key):
    assert looks_like_api_key("phk_anything")
    assert not looks_like_api_key(sign(rsa_key, claims()))
    assert not looks_like_api_key(None)
    assert not looks_like_api_key("PHK_0123")


def test_matches(monkeypatch):
    _, plaintext, stored = new_api_key()
    assert matches(plaintext, stored)
    assert not matches(plaintext + "x", stored)
    assert not matches(plaintext, stored.upper())
    assert not matches(plaintext, "")
    assert not matches(plaintext, "ü" * 64)
    assert not matches(plaintext, None)  # type: ignore[arg-type]

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(api_keys.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert matches(plaintext, stored)
    assert len(calls) == 1
