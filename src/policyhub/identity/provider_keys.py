"""Verification keys an identity provider publishes at its `jwks_uri` (HTTPS only).

Fetched at construction (a failure is a KeyConfigError: the service does not start), then
refreshed by `refresh()` (run periodically by a background job) and when a token names a kid
the current set lacks, at most once per `refresh_min_seconds`, so a flood of forged kids
cannot make the service hammer the provider. A failed refresh keeps the keys of the last
successful fetch and logs a warning. PyJWT's `PyJWKClient` fetches (the TLS context verifies
the provider's certificate; redirects are not followed; every socket operation has a
timeout); each key passes the same rules as a key file (`keys.jwks_keys`), except that a key
that fails them is left out instead of refusing the set, since providers also publish
encryption keys and algorithms this service does not accept.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from typing import Any, Callable
from urllib.error import HTTPError, URLError

from jwt import PyJWKClient
from jwt.exceptions import PyJWKClientError

import policyhub
from policyhub.identity.errors import KeyConfigError
from policyhub.identity.keys import MAX_KEYS_BYTES, KeySet, VerificationKey, jwks_keys

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5.0


class ResponseTooLarge(http.client.HTTPException):
    """An HTTPException, so PyJWKClient reports it as a failed fetch like any other."""


class _CappedSocket(ssl.SSLSocket):
    """Stops a response at MAX_KEYS_BYTES while it is read: PyJWKClient reads the whole body
    with no limit of its own. One connection per fetch, so the count is per response."""

    received = 0

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        count = super().recv_into(buffer, nbytes, flags)  # type: ignore[arg-type]
        self.received += count
        if self.received > MAX_KEYS_BYTES:
            raise ResponseTooLarge(f"response larger than {MAX_KEYS_BYTES} bytes")
        return count


class ProviderKeys:
    """A KeySource over a provider's published keys. `tls` verifies the provider (its socket
    class is replaced to cap the response size); `clock` is monotonic seconds."""

    def __init__(
        self,
        uri: str,
        tls: ssl.SSLContext,
        refresh_min_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        tls.sslsocket_class = _CappedSocket
        self.uri = uri
        self._client = PyJWKClient(
            uri,
            cache_jwk_set=False,  # this class keeps the keys, and keeps them when a fetch fails
            timeout=FETCH_TIMEOUT_SECONDS,
            ssl_context=tls,
            headers={"User-Agent": f"policyhub/{policyhub.__version__}"},
        )
        self._refresh_min_seconds = refresh_min_seconds
        self._clock = clock
        self._lock = threading.Lock()  # one fetch at a time; callers queued behind it see its keys
        self._last_kid_refresh: float | None = None
        self._skipped: list[str] = []
        self._keys = self._fetch()
        log.info("verification keys from %s: kids %s", uri, _kids(self._keys))

    def for_token(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        if kid is not None and not self._keys.has_kid(kid):
            self._refresh_for_unknown_kid()
        return self._keys.for_token(kid, alg)

    def refresh(self) -> bool:
        """Fetch the keys again; on failure keep the current ones. True when the fetch worked."""
        with self._lock:
            return self._refresh()

    def _refresh_for_unknown_kid(self) -> None:
        with self._lock:
            now = self._clock()
            last = self._last_kid_refresh
            if last is not None and now - last < self._refresh_min_seconds:
                return
            self._last_kid_refresh = now
            self._refresh()

    def _refresh(self) -> bool:
        try:
            keys = self._fetch()
        except KeyConfigError as exc:
            log.warning("%s; keeping the %d keys of the last successful fetch", exc, len(self._keys))
            return False
        if _kids(keys) != _kids(self._keys):
            log.info("verification keys from %s: kids %s (were %s)", self.uri, _kids(keys), _kids(self._keys))
        self._keys = keys
        return True

    def _fetch(self) -> KeySet:
        try:
            document = self._client.fetch_data()
        # PyJWKClient wraps failures to connect or of HTTP; a body that breaks off or is not
        # JSON surfaces as the OSError or ValueError of the read.
        except (PyJWKClientError, OSError, ValueError) as exc:
            raise KeyConfigError(f"cannot fetch keys from {self.uri} ({_reason(exc)})") from None
        keys, skipped = jwks_keys(document, f"keys from {self.uri}", self.uri, strict=False)
        if skipped != self._skipped:  # once per change, not on every refresh
            for why in skipped:
                log.warning("%s; key left out", why)
            self._skipped = skipped
        return keys


def _kids(keys: KeySet) -> list[str | None]:
    return [k.kid for k in keys.keys]


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, HTTPError):
        return f"HTTP {cause.code} {cause.reason}"
    if isinstance(cause, URLError):
        return str(cause.reason)
    return " ".join(str(cause).split()) or type(cause).__name__
