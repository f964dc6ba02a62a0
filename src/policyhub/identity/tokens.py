"""Verifying caller JWTs (the `token` gRPC metadata) into a `Caller`.

Only RS256 and ES256 are accepted. The header is read unverified solely to check
`alg` and pick the key; `none`, HS* (key confusion: an RSA public key used as an HMAC
secret) and every other algorithm are refused before any key is tried. PyJWT checks
the signature; the claims are then checked here against an injected clock so expiry
is testable and every failure carries a fixed, short reason.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import jwt
from jwt.exceptions import InvalidSignatureError, InvalidTokenError, PyJWTError

from policyhub.domain import DOMAIN_ID_MAX, DOMAIN_ID_RE, RoleType, SubjectType, values
from policyhub.identity.errors import AuthenticationError
from policyhub.identity.keys import ALLOWED_ALGORITHMS, KeySource, unsupported_algorithm_reason

CALLER_TYPES = (SubjectType.USER.value, SubjectType.SERVICE_ACCOUNT.value)
ROLE_TYPES = values(RoleType)
REQUIRED_CLAIMS = ("exp", "iss", "aud", "sub", "did", "typ", "rol")

# Longer than any JWT or API key we issue or accept (and below gRPC's own metadata limits).
MAX_TOKEN_LENGTH = 4096
MAX_SUB_LENGTH = 128


@dataclass(frozen=True)
class Caller:
    caller_type: str  # "USER" | "SERVICE_ACCOUNT" (API keys and service tokens are SERVICE_ACCOUNT)
    caller_id: str
    domain_id: str  # the caller's own domain ("" only for SYSTEM callers without a domain)
    role_type: str  # "SYSTEM" | "DOMAIN_ADMIN" | "USER"
    auth: str  # "jwt" | "api_key" | "development"

    @property
    def is_system(self) -> bool:
        return self.role_type == RoleType.SYSTEM


def _fail(reason: str) -> AuthenticationError:
    return AuthenticationError(reason)


def _reject_constant(_name: str) -> Any:
    raise ValueError("NaN/Infinity are not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:  # ambiguous claims: different parsers would pick different values
            raise ValueError("duplicate member")
        out[k] = v
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        clock: Callable[[], float] = time.time,
    ):
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        if not isinstance(leeway_seconds, int) or isinstance(leeway_seconds, bool) or leeway_seconds < 0:
            raise ValueError("leeway_seconds must be a non-negative int")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._clock = clock
        # A JWS instance that only knows the two allowed algorithms (defence in depth:
        # even a bug in the alg check below cannot reach HS*/none).
        self._jws = jwt.PyJWS(
            algorithms=list(ALLOWED_ALGORITHMS),
            options={"verify_signature": True, "enforce_minimum_key_length": True},
        )

    def verify(self, token: str) -> Caller:
        """Verify `token` and return the caller. Raises AuthenticationError."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise _fail("malformed token")
        if token.count(".") != 2:
            raise _fail("malformed token")

        # 1. Unverified header: only to check alg and pick the key.
        try:
            header = self._jws.get_unverified_header(token)
        except PyJWTError:
            raise _fail("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise _fail(unsupported_algorithm_reason(alg))
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise _fail("malformed token")
        if "crit" in header or "b64" in header:  # no JWS extensions are supported
            raise _fail("malformed token")
        candidates = self._keys.for_token(kid, alg)

        # 2. Signature, against each candidate key.
        payload_bytes: bytes | None = None
        for vk in candidates:
            try:
                decoded = self._jws.decode_complete(token, key=vk.key, algorithms=[alg])
            except InvalidSignatureError:
                continue
            except InvalidTokenError:
                raise _fail("malformed token") from None
            except PyJWTError:
                raise _fail("bad signature") from None
            payload_bytes = decoded["payload"]
            break
        if payload_bytes is None:
            raise _fail("bad signature")

        # 3. Claims.
        try:
            claims = json.loads(payload_bytes, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise _fail("malformed token") from None
        if not isinstance(claims, dict):
            raise _fail("malformed token")
        return self._check_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> Caller:
        for name in REQUIRED_CLAIMS:
            if name not in claims or claims[name] is None:
                raise _fail(f"missing claim {name}")

        now = self._clock()
        leeway = self._leeway
        exp = claims["exp"]
        if not _is_number(exp):
            raise _fail("invalid claim exp")
        if exp <= now - leeway:
            raise _fail("token expired")
        if "nbf" in claims:
            nbf = claims["nbf"]
            if not _is_number(nbf):
                raise _fail("invalid claim nbf")
            if nbf > now + leeway:
                raise _fail("token not yet valid")
        if "iat" in claims:
            iat = claims["iat"]
            if not _is_number(iat):
                raise _fail("invalid claim iat")
            if iat > now + leeway:
                raise _fail("token issued in the future")

        iss = claims["iss"]
        if not isinstance(iss, str):
            raise _fail("invalid claim iss")
        if iss != self._issuer:
            raise _fail("wrong issuer")
        aud = claims["aud"]
        if isinstance(aud, str):
            audiences = [aud]
        elif isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
            audiences = aud
        else:
            raise _fail("invalid claim aud")
        if self._audience not in audiences:
            raise _fail("wrong audience")

        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH or not sub.isprintable():
            raise _fail("invalid claim sub")
        typ = claims["typ"]
        if typ not in CALLER_TYPES:
            raise _fail("invalid claim typ")
        rol = claims["rol"]
        if rol not in ROLE_TYPES:
            raise _fail("invalid claim rol")
        did = claims["did"]
        if not isinstance(did, str):
            raise _fail("invalid claim did")
        if did == "":
            if rol != RoleType.SYSTEM:  # only SYSTEM callers may lack a domain
                raise _fail("invalid claim did")
        elif len(did) > DOMAIN_ID_MAX or not DOMAIN_ID_RE.fullmatch(did):
            raise _fail("invalid claim did")

        return Caller(caller_type=typ, caller_id=sub, domain_id=did, role_type=rol, auth="jwt")
