"""Client-style ids, as the web app makes them."""

from __future__ import annotations

import secrets
import string
import time

# utc_now lives in localstore.timestamps; importable from here too (daemon/engine.py).
from localstore.timestamps import utc_now as utc_now

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    """`conv_1752734987703_j9spjufk` style: milliseconds, then eight random characters."""
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{prefix}_{int(time.time() * 1000)}_{suffix}"

