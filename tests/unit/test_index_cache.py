"""IndexCache against a scripted revision state: a kept index never holds part of a write of
several documents (policyhub.service.invalidation.invalidating_at_once); and how each consistency
requirement reads the revision and builds (policyhub.service.consistency)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from policyhub.engine import DomainIndex, Edge, Subject
from policyhub.errors import Unavailable
from policyhub.manager.revision_manager import RevisionState
from policyhub.service.consistency import FULLY_CONSISTENT, Consistency, Requirement
from policyhub.service.index_cache import BUILD_ATTEMPTS, BUILDS_AT_ONCE, Advanced, IndexCache

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


class ScriptedRevisions:
    """One domain's revision, write marks and landed count, changed by the test."""

    def __init__(self):
        self.revision = 0
        self.writing = 0
        self.landed = 0
        self.reads = 0

    def state(self, domain_ids):
        self.reads += 1
        return RevisionState((self.revision, 0), self.writing > 0, self.landed)

    def single_write(self):
        self.revision += 1

    def begin(self):
        self.writing += 1

    def land(self):
        self.writing -= 1
        self.revision += 1
        self.landed += 1


class Builds:
    """Each build returns a fresh index and may run a hook (a write that happens meanwhile)."""

    def __init__(self):
        self.count = 0
        self.during: list = []

    def __call__(self, domain_id, now):
        self.count += 1
        if self.during:
            self.during.pop(0)()
        return DomainIndex([], [], now)


def cache(revisions, builds):
    return IndexCache(builds, revisions, lambda: NOW)


def test_a_kept_index_answers_while_a_write_is_under_way():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    first = indexes.get("d")
    revisions.begin()
    assert indexes.get("d") is first
    assert builds.count == 1


def test_without_a_current_index_a_reader_waits_for_the_write_to_land():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    revisions.begin()
    landed = threading.Timer(0.05, revisions.land)
    landed.start()
    indexes.get("d")
    landed.join()
    assert builds.count == 1
    assert revisions.writing == 0 and revisions.revision == 1
    assert indexes.get("d") is indexes.get("d")  # kept at revision 1
    assert builds.count == 1


def test_a_build_that_overlaps_the_start_of_a_write_is_thrown_away():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    # The write begins while the first build reads, and lands a little later.
    builds.during.append(lambda: (revisions.begin(), threading.Timer(0.05, revisions.land).start()))
    index = indexes.get("d")
    assert builds.count == 2  # the overlapping build was not used
    assert revisions.revision == 1
    assert indexes.get("d") is index


def test_a_build_across_a_whole_write_is_thrown_away():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    builds.during.append(lambda: (revisions.begin(), revisions.land()))
    indexes.get("d")
    assert builds.count == 2


def test_single_writes_during_every_build_give_an_answer_after_a_few_attempts_uncached():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    builds.during.extend([revisions.single_write] * BUILD_ATTEMPTS)
    answered = indexes.get("d")
    assert builds.count == BUILD_ATTEMPTS
    # not kept: the next call builds again (at the revision it then reads)
    assert indexes.get("d") is not answered
    assert builds.count == BUILD_ATTEMPTS + 1


def test_writes_of_several_documents_during_every_build_are_never_answered_from():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    builds.during.extend([lambda: (revisions.begin(), revisions.land())] * (BUILD_ATTEMPTS + 2))
    indexes.get("d")
    # every build that overlapped one was thrown away; the first clean one answered
    assert builds.count == BUILD_ATTEMPTS + 3


# -- consistency requirements ------------------------------------------------------------------

MINIMIZE_LATENCY = Consistency(Requirement.MINIMIZE_LATENCY)
STALENESS = 5.0


def fresh(revision: int) -> Consistency:
    return Consistency(Requirement.AT_LEAST_AS_FRESH, revision)


class Clocks:
    """The wall clock (assignment expiry) and the monotonic clock (staleness), moved by the test."""

    def __init__(self):
        self.now = NOW
        self.seconds = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.seconds += seconds


def timed_cache(revisions, builds, clocks, max_staleness=STALENESS):
    return IndexCache(builds, revisions, lambda: clocks.now, max_staleness, lambda: clocks.seconds)


def counts(revisions, builds) -> tuple[int, int]:
    return revisions.reads, builds.count


def test_fully_consistent_reads_the_revision_on_every_call_and_answers_at_it():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks)
    revisions.revision = 4
    first = indexes.at("d", FULLY_CONSISTENT)
    assert first.revision == 4 and first.token == "ct1.4"
    assert counts(revisions, builds) == (2, 1)  # read, build, read again to keep it
    assert indexes.at("d").index is first.index and indexes.get("d") is first.index
    assert counts(revisions, builds) == (4, 1)  # one read each, no build
    revisions.single_write()
    second = indexes.at("d", FULLY_CONSISTENT)
    assert second.revision == 5 and second.index is not first.index
    assert counts(revisions, builds) == (6, 2)


def test_minimize_latency_answers_from_the_cached_index_without_reading_the_revision():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks)
    # Nothing cached: it reads and builds as usual.
    cached = indexes.at("d", MINIMIZE_LATENCY)
    assert cached.revision == 0 and counts(revisions, builds) == (2, 1)
    revisions.single_write()  # through another process: this one does not know
    for _ in range(10):
        answer = indexes.at("d", MINIMIZE_LATENCY)
        assert answer.index is cached.index and answer.revision == 0  # stale, and its token says so
    assert counts(revisions, builds) == (2, 1)
    # A fully consistent read sees the write.
    assert indexes.at("d").revision == 1
    assert counts(revisions, builds) == (4, 2)


def test_minimize_latency_reads_again_once_the_index_was_confirmed_longer_ago_than_max_staleness():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks)
    first = indexes.at("d", MINIMIZE_LATENCY)
    clocks.advance(STALENESS - 0.5)
    assert indexes.at("d", MINIMIZE_LATENCY).index is first.index
    assert counts(revisions, builds) == (2, 1)
    # A fully consistent read that finds the index current confirms it again...
    indexes.get("d")
    assert counts(revisions, builds) == (3, 1)
    clocks.advance(STALENESS - 0.5)
    assert indexes.at("d", MINIMIZE_LATENCY).index is first.index
    assert counts(revisions, builds) == (3, 1)
    # ... and past the window a MINIMIZE_LATENCY call reads: unchanged, the index stays.
    clocks.advance(1.0)
    assert indexes.at("d", MINIMIZE_LATENCY).index is first.index
    assert counts(revisions, builds) == (4, 1)
    assert indexes.at("d", MINIMIZE_LATENCY).index is first.index  # confirmed by that read
    assert counts(revisions, builds) == (4, 1)
    # Moved on meanwhile: past the window the write is seen.
    revisions.single_write()
    clocks.advance(STALENESS)
    assert indexes.at("d", MINIMIZE_LATENCY).revision == 1
    assert counts(revisions, builds) == (6, 2)


def test_minimize_latency_with_no_staleness_allowed_always_reads():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks, max_staleness=0)
    indexes.at("d", MINIMIZE_LATENCY)
    indexes.at("d", MINIMIZE_LATENCY)
    revisions.single_write()
    assert indexes.at("d", MINIMIZE_LATENCY).revision == 1
    assert counts(revisions, builds) == (5, 2)


def test_at_least_as_fresh_answers_from_a_cached_index_at_or_after_the_token():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks, max_staleness=0)
    revisions.revision = 7
    cached = indexes.at("d", fresh(7))  # nothing cached: read and build
    assert cached.revision == 7 and counts(revisions, builds) == (2, 1)
    revisions.single_write()  # revision 8, elsewhere
    for token in (0, 6, 7):
        answer = indexes.at("d", fresh(token))
        assert answer.index is cached.index and answer.revision == 7
    assert counts(revisions, builds) == (2, 1)  # never read: the cached index is fresh enough
    # The token of the write at 8: read, rebuild, answer at 8.
    answer = indexes.at("d", fresh(8))
    assert answer.revision == 8 and answer.index is not cached.index
    assert counts(revisions, builds) == (4, 2)
    assert indexes.at("d", fresh(8)).index is answer.index
    assert counts(revisions, builds) == (4, 2)


def test_at_least_as_fresh_beyond_the_current_revision_answers_at_the_current_one_without_waiting():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks)
    revisions.revision = 3
    cached = indexes.at("d")
    assert counts(revisions, builds) == (2, 1)
    for _ in range(3):
        # a token of another domain, or made up: one read each time, no build, the current revision
        answer = indexes.at("d", fresh(10**17))
        assert answer.index is cached.index and answer.revision == 3 and answer.token == "ct1.3"
    assert counts(revisions, builds) == (5, 1)


def test_a_cached_index_past_an_assignment_expiry_is_never_answered_from_unread():
    revisions, clocks = ScriptedRevisions(), Clocks()
    expiring = Edge(Subject("USER", "u"), "POLICY", "p", NOW + timedelta(seconds=1))
    indexes = IndexCache(
        lambda domain_id, now: DomainIndex([], [expiring], now), revisions, lambda: clocks.now, STALENESS
    )
    first = indexes.at("d", MINIMIZE_LATENCY)
    assert indexes.at("d", MINIMIZE_LATENCY).index is first.index
    assert indexes.at("d", fresh(0)).index is first.index
    reads = revisions.reads
    clocks.now += timedelta(seconds=2)  # expired: rebuilt whatever the requirement
    for consistency in (MINIMIZE_LATENCY, fresh(0)):
        assert indexes.at("d", consistency).index is not first.index
    assert revisions.reads > reads


def test_the_uncached_answer_is_at_the_revision_read_before_its_build():
    revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
    indexes = timed_cache(revisions, builds, clocks)
    builds.during.extend([revisions.single_write] * BUILD_ATTEMPTS)
    answer = indexes.at("d", fresh(0))
    assert builds.count == BUILD_ATTEMPTS
    # the last build started after the revision read at BUILD_ATTEMPTS - 1 writes
    assert answer.revision == BUILD_ATTEMPTS - 1 and revisions.revision == BUILD_ATTEMPTS


def test_with_no_index_every_requirement_waits_for_a_write_under_way_to_land():
    for consistency in (MINIMIZE_LATENCY, fresh(1), FULLY_CONSISTENT):
        revisions, builds, clocks = ScriptedRevisions(), Builds(), Clocks()
        indexes = timed_cache(revisions, builds, clocks)
        revisions.begin()
        landed = threading.Timer(0.05, revisions.land)
        landed.start()
        answer = indexes.at("d", consistency)
        landed.join()
        # built once, after the write landed: it holds the whole write
        assert answer.revision == 1 and builds.count == 1


@pytest.mark.parametrize("exact, reads", [(True, 1), (False, 2)])
def test_an_index_taken_from_the_log_alone_is_kept_without_reading_the_revision_again(exact, reads):
    """An exact delta is the domain at the revision read: no second read to rule out later writes."""
    revisions, builds = ScriptedRevisions(), Builds()
    advanced = DomainIndex([], [Edge(Subject("USER", "u"), "POLICY", "p")], NOW)
    indexes = IndexCache(builds, revisions, lambda: NOW, advance=lambda *_: Advanced(advanced, exact))
    indexes.get("d")
    revisions.single_write()
    revisions.reads = 0
    assert indexes.get("d") is advanced
    assert revisions.reads == reads
    assert (indexes.builds, indexes.deltas) == (1, 1)
    assert indexes.get("d") is advanced  # kept


# -- one refresh per domain, shared; each caller waits no longer than its own bound ---------------


class HeldBuilds(Builds):
    """Builds that wait for the test to let them finish (or fail)."""

    def __init__(self):
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()
        self.error: Exception | None = None
        self.attempts = 0  # builds begun, failed ones too

    def __call__(self, domain_id, now):
        self.attempts += 1
        self.started.set()
        assert self.release.wait(10)
        if self.error is not None:
            raise self.error
        return super().__call__(domain_id, now)


def joined(revisions, reads):
    """Returns once the caller that makes the `reads`th revision read has had time to join the
    refresh under way (the read is the last thing it does before)."""
    deadline = time.monotonic() + 5
    while revisions.reads < reads and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05)


def in_thread(call):
    """Runs `call` in a thread; the returned function joins it and gives its answer or raises."""
    outcome: dict = {}

    def run():
        try:
            outcome["answer"] = call()
        except Exception as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()

    def join():
        thread.join(10)
        assert not thread.is_alive()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    return join


def test_a_caller_waits_for_a_build_no_longer_than_its_bound_and_the_build_is_kept():
    revisions, builds = ScriptedRevisions(), HeldBuilds()
    indexes = IndexCache(builds, revisions, lambda: NOW, seconds_left=lambda: 0.05)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="not ready within this call's bound"):
        indexes.get("d")
    assert time.monotonic() - started < 5  # released by its bound, not by the build
    assert builds.started.is_set() and builds.count == 0
    builds.release.set()  # the build goes on without its caller, and is kept
    indexes._seconds_left = lambda: None
    index = indexes.get("d")
    assert builds.count == 1 and indexes.get("d") is index and builds.count == 1


def test_callers_that_need_the_same_refresh_share_it():
    revisions, builds = ScriptedRevisions(), HeldBuilds()
    indexes = cache(revisions, builds)
    first = in_thread(lambda: indexes.get("d"))
    assert builds.started.wait(5)
    second = in_thread(lambda: indexes.get("d"))
    joined(revisions, 2)
    builds.release.set()
    assert first() is second()
    assert builds.attempts == 1


class WriteAfterTheConfirmingRead(ScriptedRevisions):
    """A write lands right after the read that confirms the first build; a second caller reads it
    and joins that refresh, still under way."""

    def __init__(self, indexes_of):
        super().__init__()
        self.indexes_of = indexes_of
        self.second = None

    def state(self, domain_ids):
        state = super().state(domain_ids)
        if self.reads == 2:
            self.single_write()
            self.second = in_thread(lambda: self.indexes_of(self).at("d"))
            while self.reads < 3:
                time.sleep(0.001)
            time.sleep(0.05)  # the second caller finds this refresh under way and waits for it
        return state


def test_a_caller_that_read_a_later_revision_does_not_take_an_earlier_refresh():
    builds = Builds()
    made = {}
    revisions = WriteAfterTheConfirmingRead(lambda r: made["indexes"])
    made["indexes"] = cache(revisions, builds)
    assert made["indexes"].at("d").revision == 0
    # the refresh it joined answered at revision 0: it waited for its own, at the revision it read
    assert revisions.second().revision == 1
    assert builds.count == 2


def test_a_failed_refresh_fails_every_caller_waiting_for_it_and_the_next_call_builds_again():
    revisions, builds = ScriptedRevisions(), HeldBuilds()
    indexes = cache(revisions, builds)
    builds.error = Unavailable("database unavailable; retry later")
    first = in_thread(lambda: indexes.get("d"))
    assert builds.started.wait(5)
    second = in_thread(lambda: indexes.get("d"))
    joined(revisions, 2)
    builds.release.set()
    for join in (first, second):
        with pytest.raises(Unavailable, match="database unavailable"):
            join()
    assert builds.attempts == 1  # one build, failed, for both callers
    builds.error = None
    indexes.get("d")
    assert builds.count == 1


def test_a_caller_whose_bound_is_spent_does_not_wait():
    revisions, builds = ScriptedRevisions(), HeldBuilds()
    indexes = IndexCache(builds, revisions, lambda: NOW, seconds_left=lambda: 0.0)
    with pytest.raises(Unavailable):
        indexes.get("d")
    builds.release.set()


def test_a_refresh_without_a_thread_fails_its_caller_and_the_next_call_starts_another(monkeypatch):
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = cache(revisions, builds)
    start = threading.Thread.start

    def refused(thread):
        monkeypatch.setattr(threading.Thread, "start", start)  # once
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        indexes.get("d")
    assert builds.count == 0
    index = indexes.get("d")  # not held back by the refresh that never ran
    assert builds.count == 1 and indexes.get("d") is index


def test_a_few_whole_builds_run_at_once_and_the_others_wait_for_them():
    revisions, builds = ScriptedRevisions(), HeldBuilds()
    indexes = cache(revisions, builds)
    domains = [f"d{i}" for i in range(BUILDS_AT_ONCE + 2)]
    joins = [in_thread(lambda domain=domain: indexes.get(domain)) for domain in domains]
    deadline = time.monotonic() + 5
    while builds.attempts < BUILDS_AT_ONCE and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert builds.attempts == BUILDS_AT_ONCE  # the others wait for a free slot
    builds.release.set()
    assert len({id(join()) for join in joins}) == len(domains)
    assert builds.attempts == len(domains)


def test_a_caller_waiting_for_a_write_under_way_answers_unavailable_once_its_bound_is_spent():
    revisions, builds = ScriptedRevisions(), Builds()
    indexes = IndexCache(builds, revisions, lambda: NOW, seconds_left=lambda: 0.05)
    revisions.begin()
    with pytest.raises(Unavailable):
        indexes.get("d")
    assert builds.count == 0  # the refresh still waits for the write
    revisions.land()
    indexes._seconds_left = lambda: None
    assert indexes.at("d").revision == 1 and builds.count == 1
