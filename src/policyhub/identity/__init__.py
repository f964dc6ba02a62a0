"""Verifying who is calling. Pure: no gRPC, no database.

- `keys`      loads the configured verification keys (JWKS JSON or PEM public keys).
- `tokens`    verifies a JWT from the `token` metadata and yields a `Caller`.
- `api_keys`  formats, parses and hashes `phk_<key_id>_<secret>` API keys.

Every failure to authenticate raises `AuthenticationError`; its `reason` is short,
fixed text that is safe to return to the caller (it never echoes token contents,
key material or other tenants' data). The api layer maps it to UNAUTHENTICATED.
"""
from __future__ import annotations


class AuthenticationError(Exception):
    """The caller could not be authenticated. `reason` is safe to show the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Defined before the submodule imports below: the submodules import it from here.
from policyhub.identity.api_keys import (  # noqa: E402
    API_KEY_PREFIX,
    hash_secret,
    looks_like_api_key,
    matches,
    new_api_key,
    parse_api_key,
)
from policyhub.identity.keys import (  # noqa: E402
    ALLOWED_ALGORITHMS,
    KeyConfigError,
    KeySet,
    VerificationKey,
    load_verification_keys,
)
from policyhub.identity.tokens import (  # noqa: E402
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
