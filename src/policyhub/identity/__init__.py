"""Verifying who is calling. No gRPC, no database (only `provider_keys` does I/O: HTTPS).

- `errors`    `AuthenticationError` and `KeyConfigError`, which every other submodule raises.
- `keys`      the rules every verification key passes; loads a key file (JWKS JSON or PEM).
- `provider_keys`  fetches and refreshes the keys an identity provider publishes at its jwks_uri.
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
    KeySource,
    VerificationKey,
    load_verification_keys,
)
from policyhub.identity.provider_keys import ProviderKeys
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
    "KeySource",
    "ProviderKeys",
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
