"""Reading a request body under a size cap, gzip or not, without ever holding more.

The cap applies to the bytes received and to the bytes they decompress to: a declared
Content-Length over it is refused before one byte is read, a chunked body is counted as it
streams, and a gzip body is inflated with `max_length`, so a small bomb cannot expand.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator


class TooLarge(Exception):
    pass


class BadEncoding(Exception):
    """The body is not what its Content-Encoding says; the message is safe to show."""


def declared_too_large(content_length: str | None, limit: int) -> bool:
    return content_length is not None and content_length.isdigit() and int(content_length) > limit


async def read_capped(
    chunks: AsyncIterator[bytes], encoding: str | None, limit: int
) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise BadEncoding(f"Content-Encoding {encoding[:20]!r} is not supported (gzip is)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    parts: list[bytes] = []
    received = size = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise TooLarge
        if inflater is None:
            parts.append(chunk)
            size += len(chunk)
            continue
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, limit - size + 1)
            except zlib.error:
                raise BadEncoding("the body is not valid gzip") from None
            size += len(out)
            if size > limit:
                raise TooLarge
            parts.append(out)
            data = inflater.unconsumed_tail
    if inflater is not None and not inflater.eof:
        raise BadEncoding("the gzip body is truncated")
    return b"".join(parts)
