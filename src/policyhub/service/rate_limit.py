"""Rate limits: token buckets per key (a domain, a peer address, an API-key id).

Pure (no gRPC, no database), thread-safe, in bounded memory, with an injectable clock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable

from policyhub.errors import RateLimited

MAX_KEYS = 100_000
DOMAIN = "domain"
ANONYMOUS_PEER = "anonymous_peer"
AUTH_PEER = "auth_failure_peer"
AUTH_API_KEY = "auth_failure_api_key"


class TokenBuckets:
    """One bucket per key, holding at most `burst` tokens and refilled at `rate` tokens a second.

    Memory stays bounded: a bucket that has refilled completely is the same as no bucket and is
    dropped, and beyond `max_keys` buckets the least recently used one is forgotten, so a flood of
    new keys cannot exhaust memory (the limit that matters then is the flooder's peer limit).
    """

    def __init__(
        self, rate: float, burst: float, *, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ):
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        # key -> (tokens, when they were counted); least recently used first.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float:
        """Takes a token: 0.0 when there was one, else the seconds until there is one (nothing is taken)."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(key, now)
            if tokens >= 1:
                self._store(key, tokens - 1, now)
                return 0.0
            self._store(key, tokens, now)
            return (1 - tokens) / self.rate

    def wait(self, key: Hashable) -> float:
        """Seconds until a token is available (0.0 when one is); takes nothing."""
        with self._lock:
            tokens = self._tokens(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: Hashable, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return self.burst
        tokens, counted_at = found
        # max(): a clock that steps back must not drain a bucket.
        return min(self.burst, tokens + max(0.0, now - counted_at) * self.rate)

    def _store(self, key: Hashable, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        # Oldest first: drop those refilled by now (amortized: each key is dropped once per store).
        while self._buckets:
            oldest, (old_tokens, counted_at) = next(iter(self._buckets.items()))
            if oldest == key or old_tokens + (now - counted_at) * self.rate < self.burst:
                break
            del self._buckets[oldest]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class RateLimiter:
    """The service's limits: each domain's calls, anonymous calls per peer address (at the
    domain rate), and failed authentications per peer address and per API-key id. A limit of 0
    is off. Every refusal is RateLimited (RESOURCE_EXHAUSTED with the delay after which a retry
    can pass) and is reported to `on_limited(kind)`."""

    def __init__(
        self,
        domain_per_second: float,
        domain_burst: int,
        auth_failures_per_minute: int,
        *,
        on_limited: Callable[[str], None] = lambda kind: None,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.on_limited = on_limited
        self.domains = (
            TokenBuckets(domain_per_second, domain_burst, max_keys=max_keys, clock=clock)
            if domain_per_second > 0
            else None
        )
        # Apart from the domains': anonymous callers never spend a domain's budget.
        self.anonymous_peers = (
            TokenBuckets(domain_per_second, domain_burst, max_keys=max_keys, clock=clock)
            if domain_per_second > 0
            else None
        )
        self.failures = None
        self.key_failures = None
        if auth_failures_per_minute > 0:
            rate = auth_failures_per_minute / 60
            self.failures = TokenBuckets(rate, auth_failures_per_minute, max_keys=max_keys, clock=clock)
            self.key_failures = TokenBuckets(rate, auth_failures_per_minute, max_keys=max_keys, clock=clock)

    def call(self, domain_id: str) -> None:
        """Counts one call of a domain; RateLimited when the domain is over its budget."""
        if self.domains is not None:
            self._refuse(DOMAIN, self.domains.take(domain_id))

    def anonymous_call(self, peer: str) -> None:
        """Counts one anonymous call of a peer address; RateLimited when it is over its budget."""
        if self.anonymous_peers is not None:
            self._refuse(ANONYMOUS_PEER, self.anonymous_peers.take(peer))

    def before_authentication(self, peer: str, api_key_id: str | None) -> None:
        """RateLimited, without verifying anything, while the peer (or the API-key id) has used up
        its failed attempts."""
        if self.failures is None:
            return
        self._refuse(AUTH_PEER, self.failures.wait(peer))
        if api_key_id:
            self._refuse(AUTH_API_KEY, self.key_failures.wait(api_key_id))

    def authentication_failed(self, peer: str, api_key_id: str | None) -> None:
        if self.failures is None:
            return
        self.failures.take(peer)
        if api_key_id:
            self.key_failures.take(api_key_id)

    def _refuse(self, kind: str, delay: float) -> None:
        if delay > 0:
            self.on_limited(kind)
            raise RateLimited(kind, delay)
