"""Request bodies read with a size limit and a deadline, so a slow or huge upload costs little."""

from __future__ import annotations

import asyncio

from aiohttp import web


class BodyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole body, at most `limit` bytes, within `timeout` seconds; BodyError (413, 408) otherwise."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "body_too_large", f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, "body_too_large", f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(408, "request_timeout", f"the request body did not arrive within {timeout:g}s") from None
    return b"".join(chunks)
