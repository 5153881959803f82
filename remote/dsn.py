"""Showing a DSN without its secrets, for logs, status and error messages.

Written without psycopg so that `chatsync status` need not import it (a noticeable part of
a second). Both libpq forms are handled: URIs and `key=value` strings.

The masking is deliberately conservative: a DSN is shown to a person only to tell which
server it names, so when its shape is unclear (a malformed string, a password with `?`,
`/` or a space in it) more is hidden rather than less. libpq's own parse errors quote the
offending text, which may be the password, so they are never shown either (`InvalidDsn`).
"""

from __future__ import annotations

import re

MASK = "****"

# Keys whose values are secrets, in either form.
SECRET_KEYS = ("password", "sslpassword")
_SECRET = "|".join(SECRET_KEYS)
# key=value where the value runs until the next `key=` (or the end): an unquoted password
# with a space (`password=hun ter2`) is hidden whole, not just its first word.
_KEYWORD_SECRET = re.compile(
    rf"(\b(?:{_SECRET})\s*=\s*)('(?:[^'\\]|\\.)*'(?=\s|$)|.*?(?=\s+\w+\s*=|\s*$))",
    re.IGNORECASE | re.DOTALL,
)
_QUERY_SECRET = re.compile(rf"([?&](?:{_SECRET})=)[^&]*", re.IGNORECASE)
_URI = re.compile(r"^(postgres(?:ql)?://)(.*)$", re.IGNORECASE | re.DOTALL)


class InvalidDsn(ValueError):
    """The configured DSN cannot be parsed; the message never quotes it."""

    def __init__(self, dsn: str) -> None:
        super().__init__(
            f"remote.dsn is not a valid PostgreSQL connection string ({mask_dsn(dsn)}); "
            "check its quoting and percent-encoding (libpq's own message is not shown, "
            "since it may quote the password)"
        )


def mask_dsn(dsn: str) -> str:
    """*dsn* with every password replaced by ****."""
    uri = _URI.match(dsn)
    if uri is None:
        return _KEYWORD_SECRET.sub(lambda m: m.group(1) + MASK, dsn)
    scheme, rest = uri.groups()
    # Query secrets first, so that an '@' inside one cannot pass for the user info's end.
    rest = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, rest)
    # libpq ends the user info at the first '@' before the path, but a password may hold
    # '/', '?' or '#' unencoded: everything up to the LAST '@' is taken as user info.
    userinfo, at, hosts = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    return f"{scheme}{userinfo}{at}{hosts}"
