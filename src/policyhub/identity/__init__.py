"""Verifying who is calling. Pure: no gRPC, no database.

- `errors`    `AuthenticationError` and `KeyConfigError`, which every other submodule raises.
- `keys`      loads the configured verification keys (JWKS JSON or PEM public keys).
- `tokens`    verifies a JWT from the `token` metadata and yields a `Caller`.
- `api_keys`  formats, parses and hashes `phk_<key_id>_<secret>` API keys.

Every failure to authenticate raises `AuthenticationError`; its `reason` is short,
fixed text that is safe to return to the caller (it never echoes token contents,
key material or other tenants' data). The api layer maps it to UNAUTHENTICATED.
"""

from __future__ import annotations

from policyhub.identity.api_keys import (
    API_KEY_PREFIX,
    hash_secret,
    looks_like_api_key,
    matches,
    new_api_key,
    parse_api_key,
)
from policyhub.identity.errors import AuthenticationError, KeyConfigError
from policyhub.identity.keys import (
    ALLOWED_ALGORITHMS,
    KeySet,
    VerificationKey,
    load_verification_keys,
)
from policyhub.identity.tokens import (
    CALLER_TYPES,
    ROLE_TYPES,
    Caller,
    TokenVerifier,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "API_KEY_PREFIX",
    "AuthenticationError",
    "CALLER_TYPES",
    "Caller",
    "KeyConfigError",
    "KeySet",
    "ROLE_TYPES",
    "TokenVerifier",
    "VerificationKey",
    "hash_secret",
    "load_verification_keys",
    "looks_like_api_key",
    "matches",
    "new_api_key",
    "parse_api_key",
]
