"""Showing a DSN without its password, for logs and status.

Written without psycopg so that `chatsync status` need not import it (a noticeable part of
a second). Both libpq forms are handled: URIs and `key=value` strings.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "****"

# password=secret, password = 'sec ret', password='it\'s' — libpq's key=value quoting.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# ?password=secret in a URI's query
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """*dsn* with any password replaced by ****."""
    if re.match(r"^postgres(ql)?://", dsn, re.IGNORECASE):
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            netloc = f"{userinfo}@{hosts}"
        query = _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)
