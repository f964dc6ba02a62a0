"""What the identity modules raise."""

from __future__ import annotations


class AuthenticationError(Exception):
    """The caller could not be authenticated. `reason` is safe to show the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class KeyConfigError(ValueError):
    """The configured keys cannot be used (a key file, or what a provider's jwks_uri serves).
    The message names the file or URI and the problem."""
