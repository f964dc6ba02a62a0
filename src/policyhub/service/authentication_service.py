"""Turns the `token` metadata (a JWT or an API key) into a verified Caller."""

from __future__ import annotations

from policyhub.errors import Unauthenticated
from policyhub.identity import AuthenticationError, looks_like_api_key, matches, parse_api_key
from policyhub.identity.tokens import Caller, TokenVerifier
from policyhub.manager.api_key_manager import ApiKeyManager


class Authenticator:
    def __init__(self, tokens: TokenVerifier, api_keys: ApiKeyManager):
        self.tokens = tokens
        self.api_keys = api_keys

    def authenticate(self, token: str) -> Caller:
        try:
            if looks_like_api_key(token):
                return self._api_key_caller(token)
            return self.tokens.verify(token)
        except AuthenticationError as exc:
            raise Unauthenticated(exc.reason) from None

    def _api_key_caller(self, plaintext: str) -> Caller:
        stored = self.api_keys.find_for_authentication(parse_api_key(plaintext))
        # One answer for unknown and wrong keys: no oracle for which key ids exist.
        if stored is None or not matches(plaintext, stored["key_hash"]):
            raise AuthenticationError("unknown API key")
        if stored["state"] != "ACTIVE":
            raise AuthenticationError("API key revoked")
        return Caller(
            caller_type="SERVICE_ACCOUNT",
            caller_id=stored["service_account_id"],
            domain_id=stored["domain_id"],
            role_type="USER",
            auth="api_key",
        )
