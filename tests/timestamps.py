"""Assertions on the timestamps the API returns."""

import re
from datetime import UTC, datetime, timedelta

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$")


def assert_utc_timestamp(value: str) -> datetime:
    """Check ``value`` is ISO 8601 with microseconds and a +00:00 offset, within a minute of now."""
    assert ISO_UTC.match(value), value
    moment = datetime.fromisoformat(value)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1)
    return moment
