"""Client-style ids and timestamps, as the web app makes them."""

from __future__ import annotations

import string
import time
from datetime import UTC, datetime

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """`conv_1752734987703_j9spjufk` style: milliseconds, then eight random characters."""
    import secrets  # here: reading a store (`chatsync status`) makes no ids

    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{prefix}_{int(time.time() * 1000)}_{suffix}"


def utc_now() -> str:
    """ISO-8601 UTC with milliseconds and a Z, the format the store keeps."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
