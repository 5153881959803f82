"""Timestamps as chatsync writes, reads and shows them: the one place for their formats.

The store keeps time as ISO-8601 UTC text ending in `Z`. The formats below are stored and
compared (a pulled row equal to the local one writes nothing), so they must not drift:

- `utc_now`: what the store writes for a new row, `2025-07-17T06:49:47.703Z`;
- `iso`: a remote instant as the store keeps it, milliseconds or, when the value has them,
  microseconds (`store_time` for PostgreSQL's timestamptz text);
- `instant`: a stored text as a comparable instant;
- `seconds`: a moment shown to people (status, control socket), `2025-07-17T06:49:47+00:00`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """Now as ISO-8601 UTC with milliseconds and a Z, the format the store keeps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def iso(value: datetime) -> str:
    """`2025-07-17T06:49:47.703Z`; microseconds only when the value has them."""
    value = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat, not strftime: strftime drops the zero-padding of years before 1000.
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.isoformat(timespec=spec) + "Z"


def store_time(text: str) -> str:
    """PostgreSQL's timestamptz text as the store keeps time (`iso`), when Python can read
    it; otherwise ('infinity', a year past 9999, a BC date) PostgreSQL's own text."""
    value = None if text.endswith(" BC") else _read(text)
    if value is None:
        return text
    try:
        return iso(value)
    except OverflowError:  # only with an offset other than UTC, at the edges of the range
        return text


def instant(text: str) -> datetime | str:
    """An ISO-8601 text as an aware UTC datetime (naive means UTC); unparseable stays text."""
    value = _read(text)
    return text if value is None else value.astimezone(UTC)


def _read(text: str) -> datetime | None:
    # Python's reading of an ISO-8601 text, aware (a time without a zone is UTC's).
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def age_seconds(text: str, now: datetime | None = None) -> float | None:
    """How long ago the stored time *text* was (never negative); None if it is no time."""
    then = instant(text)
    if isinstance(then, str):
        return None
    return max(0.0, ((now or datetime.now(UTC)) - then).total_seconds())


def seconds(value: datetime) -> str:
    """A moment as shown to people: ISO-8601 to the second, with its offset."""
    return value.isoformat(timespec="seconds")


def now_seconds() -> str:
    """Now (UTC) as `seconds` shows it."""
    return seconds(datetime.now(UTC))
