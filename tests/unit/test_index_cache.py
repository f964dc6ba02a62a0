"""IndexCache against a scripted revision state: a kept index never holds part of a write of
several documents (policyhub.service.invalidation.invalidating_at_once)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from policyhub.engine import DomainIndex
from policyhub.manager.revision_manager import RevisionState
from policyhub.service.index_cache import BUILD_ATTEMPTS, IndexCache

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
