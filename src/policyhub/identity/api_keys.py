"""API keys: `phk_<key_id>_<secret>`.

`key_id` is 12 lowercase hex characters (public: it is how the stored key is looked
up); `secret` is `secrets.token_urlsafe(32)` (32 random bytes, 43 url-safe chars).
Only a hash of the whole plaintext key is stored.

API-key callers are SERVICE_ACCOUNT callers (auth "api_key"); resolving the key to
its owner and domain is the caller's job (a database lookup by key_id).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from policyhub.identity.errors import AuthenticationError

API_KEY_PREFIX = "phk_"
KEY_ID_HEX_CHARS = 12
SECRET_BYTES = 32
_API_KEY_RE = re.compile(r"phk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def new_api_key() -> tuple[str, str, str]:
    """Return (key_id, plaintext, hash). Show the plaintext once; store only the hash."""
    key_id = secrets.token_hex(KEY_ID_HEX_CHARS // 2)
    plaintext = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return key_id, plaintext, hash_secret(plaintext)


def hash_secret(plaintext: str) -> str:
    """SHA-256 hex digest of the whole plaintext key.

    A fast, unsalted hash is appropriate here (unlike for passwords): the secret is
    256 bits of randomness, so there is nothing to brute-force or look up in a
    dictionary, and a slow KDF would only add latency to every authenticated call.
    """
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_api_key(text: object) -> bool:
    """Cheap routing check: API key (→ key lookup) or anything else (→ JWT verifier)."""
    return isinstance(text, str) and text.startswith(API_KEY_PREFIX)


def parse_api_key(text: object) -> str:
    """Return the key_id of a well-formed API key; raise AuthenticationError otherwise."""
    if not isinstance(text, str):
        raise AuthenticationError("malformed API key")
    m = _API_KEY_RE.fullmatch(text)
    if m is None:
        raise AuthenticationError("malformed API key")
    return m.group(1)


def matches(plaintext: str, stored_hash: str) -> bool:
    """Constant-time comparison of the plaintext key's hash with the stored hash."""
    if not isinstance(plaintext, str) or not isinstance(stored_hash, str):
        return False
    return hmac.compare_digest(hash_secret(plaintext).encode("ascii"), stored_hash.encode("utf-8", "surrogatepass"))
