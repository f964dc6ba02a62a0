"""The time values of the query language: relative expressions and ISO-8601 datetimes."""

from datetime import datetime, timedelta, timezone

import pytest

from policyhub.query.timeexpr import TimeExprError, parse_iso_datetime, parse_timediff

UTC = timezone.utc
NOW = datetime(2024, 3, 13, 15, 30, 45, 123456, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("now/d", datetime(2024, 3, 13, tzinfo=UTC)),
        ("now/w", datetime(2024, 3, 11, tzinfo=UTC)),  # Monday of that week
        ("now/m", datetime(2024, 3, 1, tzinfo=UTC)),
        ("now-5d", NOW - timedelta(days=5)),
        ("now+5d", NOW + timedelta(days=5)),
        ("now-30s", NOW - timedelta(seconds=30)),
        ("now-15m", NOW - timedelta(minutes=15)),  # `m` after a sign is minutes, not months
        ("now+2h", NOW + timedelta(hours=2)),
        ("now-2w", NOW - timedelta(weeks=2)),
        ("now/d-1d", datetime(2024, 3, 12, tzinfo=UTC)),
        ("now/w+1h", datetime(2024, 3, 11, 1, tzinfo=UTC)),
        ("now/m-2w", datetime(2024, 2, 16, tzinfo=UTC)),
        ("now/d+1d-1s", datetime(2024, 3, 13, 23, 59, 59, tzinfo=UTC)),  # several offsets apply in order
        ("now-0d", NOW),
        ("now-007h", NOW - timedelta(hours=7)),
        (" now - 5d ", NOW - timedelta(days=5)),  # spaces are ignored, as SpaceONE does
    ],
)
def test_timediff_grammar(text, expected):
    result = parse_timediff(text, NOW)
    assert result == expected
    assert result.tzinfo is not None and result.utcoffset() == timedelta(0)


def test_now_w_on_a_monday_and_sunday():
    monday = datetime(2024, 3, 11, 9, tzinfo=UTC)
    sunday = datetime(2024, 3, 17, 23, 59, tzinfo=UTC)
    assert parse_timediff("now/w", monday) == datetime(2024, 3, 11, tzinfo=UTC)
    assert parse_timediff("now/w", sunday) == datetime(2024, 3, 11, tzinfo=UTC)


def test_now_m_across_a_year_boundary():
    assert parse_timediff("now/m-1d", datetime(2024, 1, 20, tzinfo=UTC)) == datetime(2023, 12, 31, tzinfo=UTC)


def test_naive_now_is_taken_as_utc():
    assert parse_timediff("now/d", datetime(2024, 3, 13, 1, 2)) == datetime(2024, 3, 13, tzinfo=UTC)


def test_non_utc_now_is_converted_before_truncating():
    # 2024-03-13 01:00 at +05:00 is 2024-03-12 20:00 UTC: the UTC day is the 12th.
    now = datetime(2024, 3, 13, 1, tzinfo=timezone(timedelta(hours=5)))
    assert parse_timediff("now/d", now) == datetime(2024, 3, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "now-5x",
        "yesterday",
        "",
        "NOW",
        "now/y",
        "now/",
        "now-",
        "now+5",
        "now5d",
        "now-d",
        "now--5d",
        "now/d/w",
        "now-5d/d",
        "now-1.5h",
        "now-1e3s",
        "5d",
        "now-9999999999d",
        "now\n",
        "now-5D",
    ],
)
def test_timediff_errors(text):
    with pytest.raises(TimeExprError):
        parse_timediff(text, NOW)


@pytest.mark.parametrize("value", [None, 5, 1.5, ["now"], {"now": 1}, b"now"])
def test_timediff_requires_a_string(value):
    with pytest.raises(TimeExprError, match="must be a string"):
        parse_timediff(value, NOW)


@pytest.mark.parametrize("text", ["now+999999999w", "now-999999999w", "now+999999999d+999999999d"])
def test_timediff_out_of_range_is_an_error(text):
    with pytest.raises(TimeExprError, match="out of the supported date range"):
        parse_timediff(text, NOW)


def test_timediff_error_is_a_value_error_with_the_text():
    with pytest.raises(ValueError, match="now-5x"):
        parse_timediff("now-5x", NOW)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-03-13T12:00:00Z", datetime(2024, 3, 13, 12, tzinfo=UTC)),
        ("2024-03-13T12:00:00+00:00", datetime(2024, 3, 13, 12, tzinfo=UTC)),
        ("2024-03-13T21:00:00+09:00", datetime(2024, 3, 13, 12, tzinfo=UTC)),
        ("2024-03-13T12:00:00", datetime(2024, 3, 13, 12, tzinfo=UTC)),  # no offset: UTC
        ("2024-03-13 12:00", datetime(2024, 3, 13, 12, tzinfo=UTC)),
        ("2024-03-13", datetime(2024, 3, 13, tzinfo=UTC)),
        ("2024-03-13T12:00:00.250Z", datetime(2024, 3, 13, 12, 0, 0, 250000, tzinfo=UTC)),
        (" 2024-03-13T12:00:00Z ", datetime(2024, 3, 13, 12, tzinfo=UTC)),
    ],
)
def test_iso_datetime(text, expected):
    result = parse_iso_datetime(text)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "now",
        "2024-13-01",
        "2024-02-30T00:00:00",
        "13/03/2024",
        "2024-03-13T25:00:00",
        "0001-01-01T00:00:00+01:00",  # converting to UTC leaves the supported range
        "2024-03-13T12:00:00" + " " * 100,  # longer than any ISO-8601 datetime
        None,
        1710331200,
        ["2024-03-13"],
        {"$date": 0},
    ],
)
def test_iso_datetime_errors(value):
    with pytest.raises(TimeExprError):
        parse_iso_datetime(value)
