"""The pure core of the Change service: continuation tokens, the contiguous prefix, holes,
retention (policyhub.service.change_feed)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policyhub.service import change_feed as feed
from policyhub.service.change_feed import EXPIRED, MISMATCH, NEEDS_HEAD, ORIGIN, Head, Limits, Position

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = T0.timestamp()
LIMITS = Limits(grace=10, retention=3600)


def change(kind: str, item_id: str, operation: str = "CREATE") -> dict[str, str]:
    return {"kind": kind, "id": item_id, "operation": operation}


def record(seq: int, *changes: dict[str, str], age: float = 60) -> feed.Record:
    """A record written `age` seconds before NOW."""
    created = T0 - timedelta(seconds=age)
    return feed.Record(seq, list(changes), f"tx-{seq}", created, created + timedelta(seconds=LIMITS.retention))


def read(records, start=ORIGIN, *, now=NOW, head=None, limit=100, kinds=None, complete=True) -> feed.Step:
    return feed.read(records, start, complete=complete, now=now, head=head, limits=LIMITS, limit=limit, kinds=kinds)


def ids(step: feed.Step) -> list[str]:
    return [entry.change["id"] for entry in step.entries]


def taken_from(records, start: Position, **kwargs) -> feed.Step:
    """What a reader at `start` reads of `records` (the query gives those from start.seq on)."""
    return read(sorted((r for r in records if r.seq >= start.seq), key=lambda r: r.seq), start, **kwargs)


# -- tokens ---------------------------------------------------------------------------------


def test_tokens_round_trip_and_empty_is_the_origin():
    assert feed.decode("") == ORIGIN
    for position in (Position(1, 0, 0), Position(42, 7, 1_767_225_600)):
        assert feed.decode(feed.encode(position)) == position
    assert feed.encode(Position(3, 1, 99)) == "cn1.3.1.99"


@pytest.mark.parametrize(
    "token",
    ["junk", "ct1.5", "cn1.", "cn1.1.2", "cn1.1.2.3.4", "cn1.0.0.0", "cn1.-1.0.0", "cn1.a.0.0", "cn1.1. 0.0",
     "cn1.١.0.0", "cn1.1.0." + "9" * 19, "cn1.1.0.0" + "0" * 200],
)  # fmt: skip
def test_malformed_tokens_are_refused(token):
    with pytest.raises(ValueError, match="not a continuation token"):
        feed.decode(token)


# -- order and paging -------------------------------------------------------------------------


def test_origin_reads_every_change_in_order_and_ends_after_the_last():
    records = [
        record(1, change("POLICY", "p", "CREATE")),
        record(2),  # a write that changed nothing: it still moves the position
        record(3, change("ASSIGNMENT", "a1"), change("ASSIGNMENT", "a2")),
    ]
    step = read(records)
    assert ids(step) == ["p", "a1", "a2"]
    assert (step.position.seq, step.position.index, step.more, step.stop) == (4, 0, False, "")
    # each change's own token resumes right after it
    assert [(e.after.seq, e.after.index) for e in step.entries] == [(2, 0), (3, 1), (4, 0)]


def test_paging_by_tokens_gives_every_change_exactly_once():
    records = [record(seq, *[change("ASSIGNMENT", f"a{seq}-{i}") for i in range(seq % 4)]) for seq in range(1, 30)]
    everything = ids(read(records, limit=1000))
    for limit in (1, 2, 3, 5, 100):
        seen, position = [], ORIGIN
        for _ in range(200):
            step = taken_from(records, position, limit=limit)
            seen += ids(step)
            assert len(step.entries) <= limit
            if not step.more and step.position == position:
                break
            position = step.position
        assert seen == everything


def test_kinds_filter_moves_the_position_past_what_it_leaves_out():
    records = [record(1, change("POLICY", "p"), change("GROUP", "g")), record(2, change("POLICY", "q"))]
    step = read(records, kinds={"GROUP"})
    assert ids(step) == ["g"]
    assert step.position.seq == 3


def test_an_index_past_the_record_is_a_mismatch():
    assert read([record(1, change("POLICY", "p"))], Position(1, 5, int(NOW) + 100)).stop == MISMATCH


# -- holes ----------------------------------------------------------------------------------


def test_a_young_hole_is_waited_for_and_nothing_after_it_is_delivered():
    records = [record(1, change("POLICY", "a")), record(3, change("POLICY", "c"), age=2)]
    step = read(records)
    assert ids(step) == ["a"] and step.position.seq == 2 and not step.more and not step.stop
    # the late record arrives: delivered in order
    step = taken_from([*records, record(2, change("POLICY", "b"), age=1)], step.position)
    assert ids(step) == ["b", "c"]


def test_a_hole_older_than_the_grace_is_stepped_over():
    records = [record(1, change("POLICY", "a")), record(3, change("POLICY", "c"), age=LIMITS.grace + 1)]
    assert ids(read(records)) == ["a", "c"]


def test_a_hole_at_the_end_is_waited_for_while_nothing_can_have_expired():
    records = [record(1, change("POLICY", "a"))]
    step = read(records, head=Head(2, NOW))  # revision 2 bumped, its record not there (yet)
    assert step.position.seq == 2 and not step.stop


# -- retention ------------------------------------------------------------------------------


def test_a_missing_record_past_the_bound_is_expired_not_a_hole():
    start = Position(2, 0, int(NOW) - 1)  # read after record 1, which expired by now
    records = [record(3, change("POLICY", "c"), age=LIMITS.retention)]
    assert read(records, start, head=Head(3, NOW)).stop == EXPIRED
    # without the head the answer depends on it
    assert read(records, start).stop == NEEDS_HEAD


def test_a_reader_at_the_head_is_never_expired_however_old_its_position():
    start = Position(6, 0, int(NOW) - 1000)
    step = read([], start, head=Head(5, NOW))
    assert not step.stop and step.position.seq == 6
    assert step.position.bound == int(NOW + LIMITS.retention - LIMITS.grace)  # refreshed from the head
    # a record written after the head read is not expired, even out of order
    step = read([record(7, change("POLICY", "x"), age=1)], start, head=Head(5, NOW))
    assert not step.stop and ids(step) == []


def test_every_record_up_to_the_head_gone_is_expired():
    start = Position(2, 0, int(NOW) - 1)
    assert read([], start, head=Head(5, NOW)).stop == EXPIRED


def test_a_partly_read_record_that_is_gone_is_expired():
    start = Position(2, 1, int(NOW) + 100)
    assert read([record(3, change("POLICY", "c"))], start, head=Head(3, NOW)).stop == EXPIRED
    assert read([], start, head=Head(3, NOW)).stop == EXPIRED


def test_origin_of_a_domain_without_records_is_the_head():
    assert read([]).stop == NEEDS_HEAD
    step = read([], head=Head(9, NOW))
    assert step.position.seq == 10 and not step.stop


def test_ahead_of_the_head():
    assert feed.ahead(Position(7, 0, 0), Head(5, NOW))
    assert not feed.ahead(Position(6, 0, 0), Head(5, NOW))


# -- properties: order, no loss, no duplicates ------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3), min_size=1, max_size=25),
    limit=st.integers(1, 7),
    late=st.sets(st.integers(1, 25), max_size=5),
)
def test_readers_get_each_change_once_in_order_whatever_arrives_late(sizes, limit, late):
    """Records arrive in any order (some late): a reader paging along delivers the changes of
    the records in seq order, each once, never one after a record it has not seen."""
    records = [
        record(seq, *[change("POLICY", f"{seq}.{i}") for i in range(n)], age=1) for seq, n in enumerate(sizes, 1)
    ]
    late = {seq for seq in late if seq <= len(records)}
    stored = [r for r in records if r.seq not in late]
    seen, position = [], ORIGIN
    if 1 in late:  # the reader starts at the first record there is
        position = Position(1, 0, int(NOW) + 100)
    for round_ in range(500):
        if round_ == 50:  # the late records land (young: their holes were waited for)
            stored = records
        step = taken_from(stored, position, limit=limit)
        seen += ids(step)
        assert not step.stop
        if round_ > 50 and not step.more and step.position == position:
            break
        position = step.position
    assert seen == [f"{r.seq}.{i}" for r in records for i in range(len(r.changes))]
