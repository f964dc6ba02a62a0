"""Token buckets and the service's rate limits, on an injected clock (no server)."""

from __future__ import annotations

import threading

import pytest

from policyhub.errors import RateLimited
from policyhub.service.rate_limit import ANONYMOUS_PEER, AUTH_API_KEY, AUTH_PEER, DOMAIN, RateLimiter, TokenBuckets


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait():
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.wait("a") == pytest.approx(0.5)
    # Another key has its own bucket.
    assert buckets.take("b") == 0.0
    clock.now += 0.5
    assert buckets.wait("a") == 0.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)


def test_refill_never_exceeds_the_burst_and_a_clock_stepping_back_drains_nothing():
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][-1] > 0
    clock.now -= 100
    assert buckets.wait("a") > 0
    clock.now += 101
    assert buckets.wait("a") == 0.0


def test_wait_takes_nothing():
    buckets = TokenBuckets(rate=1, burst=1, clock=Clock())
    for _ in range(5):
        assert buckets.wait("a") == 0.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_memory_is_bounded_by_expiry_and_by_max_keys():
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, max_keys=100, clock=clock)
    for index in range(10_000):
        buckets.take(f"key-{index}")
    assert len(buckets) == 100
    # The most recent keys are the ones remembered.
    assert buckets.wait("key-9999") > 0
    assert buckets.wait("key-0") == 0.0
    # Buckets that have refilled are dropped as others are used.
    clock.now += 10
    buckets.take("fresh")
    assert len(buckets) == 1


def test_one_bucket_shared_by_threads_gives_out_exactly_its_burst():
    buckets = TokenBuckets(rate=0.001, burst=500, clock=Clock())
    granted = []
    lock = threading.Lock()

    def worker():
        for _ in range(200):
            if buckets.take("shared") == 0.0:
                with lock:
                    granted.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 500


@pytest.mark.parametrize("rate, burst", [(0, 1), (-1, 1), (1, 0)])
def test_bad_bucket_settings_are_refused(rate, burst):
    with pytest.raises(ValueError):
        TokenBuckets(rate=rate, burst=burst)


def test_domains_are_limited_separately_and_reported():
    clock = Clock()
    limited = []
    limits = RateLimiter(1, 2, 0, on_limited=limited.append, clock=clock)
    limits.call("d1")
    limits.call("d1")
    with pytest.raises(RateLimited) as info:
        limits.call("d1")
    assert (info.value.kind, info.value.retry_after) == (DOMAIN, pytest.approx(1.0))
    assert info.value.code == "RESOURCE_EXHAUSTED"
    limits.call("d2")
    assert limited == [DOMAIN]


def test_failed_authentications_are_limited_per_peer_and_per_api_key_id():
    clock = Clock()
    limited = []
    limits = RateLimiter(0, 0, 3, on_limited=limited.append, clock=clock)
    for peer in ("ipv4:10.0.0.1", "ipv4:10.0.0.2", "ipv4:10.0.0.3"):
        limits.before_authentication(peer, "abcdefabcdef")
        limits.authentication_failed(peer, "abcdefabcdef")
    # A fourth peer is refused for that key id, but may try another key, or a JWT.
    with pytest.raises(RateLimited) as info:
        limits.before_authentication("ipv4:10.0.0.4", "abcdefabcdef")
    assert info.value.kind == AUTH_API_KEY
    limits.before_authentication("ipv4:10.0.0.4", "123456123456")
    limits.before_authentication("ipv4:10.0.0.4", None)
    for _ in range(3):
        limits.authentication_failed("ipv4:10.0.0.5", None)
    with pytest.raises(RateLimited) as info:
        limits.before_authentication("ipv4:10.0.0.5", None)
    assert info.value.kind == AUTH_PEER
    assert info.value.retry_after == pytest.approx(20.0)
    assert limited == [AUTH_API_KEY, AUTH_PEER]
    # Failures of the past minute are forgiven as the bucket refills.
    clock.now += 20
    limits.before_authentication("ipv4:10.0.0.5", None)


def test_zero_turns_every_limit_off():
    limits = RateLimiter(0, 0, 0)
    for _ in range(10_000):
        limits.call("d")
        limits.authentication_failed("ipv4:10.0.0.1", "abcdefabcdef")
    limits.before_authentication("ipv4:10.0.0.1", "abcdefabcdef")


def test_anonymous_calls_are_limited_per_peer_apart_from_the_domains():
    clock = Clock()
    limited = []
    limits = RateLimiter(1, 2, 0, on_limited=limited.append, clock=clock)
    limits.anonymous_call("ipv4:10.0.0.1")
    limits.anonymous_call("ipv4:10.0.0.1")
    with pytest.raises(RateLimited) as info:
        limits.anonymous_call("ipv4:10.0.0.1")
    assert info.value.kind == ANONYMOUS_PEER
    # Another peer, and the domains (the public one too), keep their own budgets.
    limits.anonymous_call("ipv4:10.0.0.2")
    limits.call("ipv4:10.0.0.1")
    limits.call("ipv4:10.0.0.1")
    assert limited == [ANONYMOUS_PEER]
    clock.now += 1
    limits.anonymous_call("ipv4:10.0.0.1")
