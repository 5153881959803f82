"""Client-style ids, as the web app makes them."""

from __future__ import annotations

import string
import time

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """`conv_1752734987703_j9spjufk` style: milliseconds, then eight random characters."""
    import secrets  # here: reading a store (`chatsync status`) makes no ids

    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{prefix}_{int(time.time() * 1000)}_{suffix}"

