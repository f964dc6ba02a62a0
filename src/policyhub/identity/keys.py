"""The public keys that verify caller tokens, and the rules every such key must pass.

Keys come as a JWKS document (`{"keys": [{"kty": "RSA"|"EC", ...}]}`, parsed by PyJWT's
`PyJWK`), from a file or from an identity provider's `jwks_uri` (see `provider_keys`), or as
a PEM file of `-----BEGIN PUBLIC KEY-----` blocks (parsed by `cryptography`). Only RSA keys
of at least 2048 bits (used with RS256) and EC P-256 keys (used with ES256) are accepted.
Anything else, including private keys, certificates and symmetric keys, is refused with a
`KeyConfigError` naming the source and the problem, so a misconfiguration stops the service
at start instead of silently weakening it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from policyhub.identity.errors import AuthenticationError, KeyConfigError

# The only signature algorithms ever accepted, and the key type each one needs.
ALLOWED_ALGORITHMS: dict[str, str] = {"RS256": "RSA", "ES256": "EC"}

MIN_RSA_BITS = 2048
# The most a key file or a provider's JWKS document may hold.
MAX_KEYS_BYTES = 1024 * 1024

# Well-known JWA names we may name back in a refusal. Anything else in a token's
# `alg` is attacker-controlled text and is not echoed.
_KNOWN_ALG_NAMES = frozenset(
    "none HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 ES256K EdDSA Ed25519 Ed448".split()
)

_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_PUBLIC_JWK_MEMBERS = {"RSA": ("n", "e"), "EC": ("x", "y")}
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


def unsupported_algorithm_reason(alg: Any) -> str:
    if isinstance(alg, str) and alg in _KNOWN_ALG_NAMES:
        return f"unsupported algorithm {alg}"
    return "unsupported algorithm"


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None  # None for PEM keys and JWKs without a kid
    kty: str  # "RSA" | "EC"
    alg: str  # "RS256" | "ES256"
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)
    source: str  # "<path or URI>#<index>", for logs and error messages


class KeySource(Protocol):
    """Where a TokenVerifier finds the candidate keys of a token: a fixed KeySet, or the
    keys of an identity provider that change over time."""

    def for_token(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]: ...


@dataclass(frozen=True)
class KeySet:
    keys: tuple[VerificationKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a KeySet needs at least one key")
        kids = [k.kid for k in self.keys if k.kid is not None]
        if len(kids) != len(set(kids)):
            raise ValueError("duplicate kid in KeySet")

    def __len__(self) -> int:
        return len(self.keys)

    def has_kid(self, kid: str) -> bool:
        return any(k.kid == kid for k in self.keys)

    def for_token(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        """Candidate keys for a token with this header `kid` and `alg`.

        With a kid: the key with that kid. If no key has it, keys that carry no kid
        at all (PEM keys) remain candidates, since they cannot be addressed by kid;
        without any such key the result is "unknown key id". Without a kid: every
        key whose type fits the algorithm. Raises AuthenticationError.
        """
        kty = ALLOWED_ALGORITHMS.get(alg) if isinstance(alg, str) else None
        if kty is None:
            raise AuthenticationError(unsupported_algorithm_reason(alg))
        if kid is not None:
            for k in self.keys:
                if k.kid == kid:
                    if k.kty != kty:
                        raise AuthenticationError("algorithm does not match key")
                    return (k,)
            candidates = tuple(k for k in self.keys if k.kid is None and k.kty == kty)
            if not candidates:
                raise AuthenticationError("unknown key id")
            return candidates
        candidates = tuple(k for k in self.keys if k.kty == kty)
        if not candidates:
            raise AuthenticationError(f"no key for algorithm {alg}")
        return candidates


def load_verification_keys(path: str) -> KeySet:
    """Read a JWKS JSON file or a PEM file of public keys. Raises KeyConfigError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_KEYS_BYTES + 1)
    except OSError as e:
        raise KeyConfigError(f"key file {path}: cannot read ({e.strerror or e})") from e
    if len(raw) > MAX_KEYS_BYTES:
        raise KeyConfigError(f"key file {path}: larger than {MAX_KEYS_BYTES} bytes")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyConfigError(f"key file {path}: neither JWKS JSON nor PEM (not UTF-8 text)") from None
    if not text:
        raise KeyConfigError(f"key file {path}: file is empty")

    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise KeyConfigError(f"key file {path}: not valid JSON ({e})") from None
        keys, _ = jwks_keys(doc, f"key file {path}", path, strict=True)
        return keys
    if "-----BEGIN " in text:
        return KeySet(tuple(_load_pem(path, text)))
    raise KeyConfigError(f"key file {path}: neither JWKS JSON nor PEM")


# ---------------------------------------------------------------- JWKS


def jwks_keys(doc: Any, where: str, source: str, strict: bool) -> tuple[KeySet, list[str]]:
    """The keys of a JWKS document and why any were left out. `strict` (a key file the
    operator wrote) refuses the whole document for one bad key; otherwise (a provider's
    published set, which may also hold encryption keys or algorithms we do not accept) bad
    keys are left out and the set is refused only when none is usable. Raises KeyConfigError."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyConfigError(f'{where}: expected a JWKS object with a "keys" list')
    if not doc["keys"]:
        raise KeyConfigError(f"{where}: JWKS holds no keys")
    out: list[VerificationKey] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for i, jwk in enumerate(doc["keys"]):
        here = f"{where}, key #{i}"
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if isinstance(kid, str) and kid:
            here += f" (kid {kid!r})"
            if kid in seen:  # never left out: which of the two keys is meant cannot be known
                raise KeyConfigError(f"{here}: duplicate kid")
        try:
            out.append(_jwk_to_key(here, jwk, f"{source}#{i}"))
        except KeyConfigError as e:
            if strict:
                raise
            skipped.append(str(e))
            continue
        if isinstance(kid, str):
            seen.add(kid)
    if not out:
        raise KeyConfigError(f"{where}: no usable key ({'; '.join(skipped)})")
    return KeySet(tuple(out)), skipped


def _jwk_to_key(where: str, jwk: Any, source: str) -> VerificationKey:
    if not isinstance(jwk, dict):
        raise KeyConfigError(f"{where}: not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise KeyConfigError(f"{where}: kid must be a non-empty string")
    kty = jwk.get("kty")
    private = [m for m in _PRIVATE_JWK_MEMBERS if m in jwk]
    if private:
        raise KeyConfigError(
            f"{where}: contains private key material ({', '.join(private)}); "
            "configure the PUBLIC key only and keep the private key secret"
        )
    if kty not in ("RSA", "EC"):
        shown = kty if isinstance(kty, str) else repr(kty)
        raise KeyConfigError(f"{where}: unsupported key type {shown} (only RSA and EC P-256)")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise KeyConfigError(f"{where}: use {use!r} is not 'sig'")
    expected_alg = "RS256" if kty == "RSA" else "ES256"
    alg = jwk.get("alg")
    if alg is not None and alg != expected_alg:
        raise KeyConfigError(f"{where}: alg {alg!r} not supported (only {expected_alg} for {kty} keys)")
    crv = jwk.get("crv")
    if kty == "EC" and crv != "P-256":
        shown = crv if isinstance(crv, str) else repr(crv)
        raise KeyConfigError(f"{where}: unsupported EC curve {shown} (only P-256)")
    for member in _PUBLIC_JWK_MEMBERS[kty]:
        if not isinstance(jwk.get(member), str):
            raise KeyConfigError(f"{where}: member {member!r} missing or not base64url")
    try:
        # The algorithm is pinned by the key type: PyJWK never picks one from the document.
        parsed = PyJWK(jwk, algorithm=expected_alg)
    except PyJWTError as e:
        if kty == "EC":
            raise KeyConfigError(f"{where}: invalid EC public key, not on P-256 ({e})") from None
        raise KeyConfigError(f"{where}: invalid RSA public key ({e})") from None
    return _checked(where, parsed.key, kid, source)


# ---------------------------------------------------------------- PEM


def _load_pem(path: str, text: str) -> list[VerificationKey]:
    blocks = list(_PEM_BLOCK.finditer(text))
    if len(blocks) != text.count("-----BEGIN "):
        raise KeyConfigError(f"key file {path}: malformed PEM (a BEGIN line without its END line)")
    out: list[VerificationKey] = []
    for i, m in enumerate(blocks):
        label = m.group(1)
        where = f"key file {path}, PEM block #{i} ({label})"
        if "PRIVATE KEY" in label:
            raise KeyConfigError(
                f"{where}: is a PRIVATE key; configure the PUBLIC key only and keep the private key secret"
            )
        if label == "CERTIFICATE":
            raise KeyConfigError(f"{where}: certificates are not supported; extract the public key")
        if label not in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            raise KeyConfigError(f"{where}: unsupported PEM block (expected PUBLIC KEY)")
        try:
            key = load_pem_public_key(m.group(0).encode("ascii"))
        except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError) as e:
            raise KeyConfigError(f"{where}: cannot parse public key ({e})") from None
        out.append(_checked(where, key, None, f"{path}#{i}"))
    return out


# ---------------------------------------------------------------- common


def _checked(where: str, key: Any, kid: str | None, source: str) -> VerificationKey:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyConfigError(f"{where}: RSA key is {key.key_size} bits; at least {MIN_RSA_BITS} bits required")
        return VerificationKey(kid=kid, kty="RSA", alg="RS256", key=key, source=source)
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyConfigError(f"{where}: unsupported EC curve {key.curve.name} (only P-256)")
        return VerificationKey(kid=kid, kty="EC", alg="ES256", key=key, source=source)
    raise KeyConfigError(f"{where}: unsupported key type {type(key).__name__} (only RSA and EC P-256)")
