"""The timestamp formats (localstore/timestamps.py): they are stored and compared, so they
must not drift."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from localstore.timestamps import (
    age_seconds,
    instant,
    iso,
    now_seconds,
    seconds,
    store_time,
    utc_now,
)


def test_utc_now_is_milliseconds_and_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_iso_keeps_microseconds_only_when_there_are_some() -> None:
    assert iso(datetime(2025, 7, 17, 6, 49, 47, 703000, UTC)) == "2025-07-17T06:49:47.703Z"
    assert iso(datetime(2025, 7, 17, 6, 49, 47, 703001, UTC)) == "2025-07-17T06:49:47.703001Z"
    # zero-padded years before 1000 (strftime would drop the padding)
    assert iso(datetime(33, 1, 2, tzinfo=UTC)) == "0033-01-02T00:00:00.000Z"
    # another offset is converted to UTC
    plus2 = timezone(timedelta(hours=2))
    assert iso(datetime(2025, 1, 1, 2, 0, tzinfo=plus2)) == "2025-01-01T00:00:00.000Z"


def test_store_time_reads_postgres_text() -> None:
    assert store_time("2025-07-17 06:49:47.703+00") == "2025-07-17T06:49:47.703Z"
    assert store_time("2025-07-17 06:49:47+00") == "2025-07-17T06:49:47.000Z"
    # what Python cannot hold keeps PostgreSQL's own text
    for text in ("infinity", "-infinity", "0044-03-15 00:00:00+00 BC", "12025-01-01 00:00:00+00"):
        assert store_time(text) == text


def test_instant_compares_moments() -> None:
    assert instant("2025-01-01T00:00:00Z") == instant("2025-01-01 01:00:00+01:00")
    assert instant("2025-01-01T00:00:00") == instant("2025-01-01T00:00:00.000Z")  # naive: UTC
    assert instant("not a time") == "not a time"


def test_age_and_display() -> None:
    now = datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    assert age_seconds("2025-01-01T00:00:00.000Z", now) == 60.0
    assert age_seconds("2025-01-01T00:00:00", now) == 60.0  # naive: UTC
    assert age_seconds("2025-01-01T00:02:00Z", now) == 0.0  # never negative
    assert age_seconds("garbage", now) is None
    assert seconds(now) == "2025-01-01T00:01:00+00:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", now_seconds())
