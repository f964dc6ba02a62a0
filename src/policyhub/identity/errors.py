"""What the identity modules raise."""

from __future__ import annotations


class AuthenticationError(Exception):
    """The caller could not be authenticated. `reason` is safe to show the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class KeyConfigError(ValueError):
    """The configured key file cannot be used. The message names the file and the problem."""
