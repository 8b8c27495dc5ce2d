"""The HTTP server under the API: slow clients cut off, malformed requests answered in JSON in one log line.

aiohttp has no deadline for a request's headers: a client sending one header
line every few seconds holds a connection as long as it likes. The handler
here gives each request CLIENTPULSE_API_HEADER_TIMEOUT from its first byte to
the end of its headers, then answers 408 and closes. A request aiohttp cannot
parse is answered 400 in JSON, with the security headers, and logged as one
short line naming the client address and the kind of error: never the raw
request line or headers (which may hold a token), never a traceback.
The access log, when enabled, writes method, path, status, size and time:
no query string, no header values.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web, web_protocol
from aiohttp.abc import AbstractAccessLogger

from streams import metrics

log = logging.getLogger("clientpulse.api.http")

SERVER_NAME = "clientpulse"
KEEPALIVE_SECONDS = 60.0
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": code, "message": message})
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        f"Server: {SERVER_NAME}",
        *(f"{k}: {v}" for k, v in SECURITY_HEADERS.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class SafeAccessLogger(AbstractAccessLogger):
    """`<address> <method> <path> <status> <bytes>B <ms>ms`: nothing a caller sent as a credential."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %dB %.1fms",
            request.remote,
            request.method,
            request.rel_url.path[:200],
            response.status,
            response.body_length,
            time * 1000,
        )


class HardenedRequestHandler(web_protocol.RequestHandler):
    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._awaiting_headers = True

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._awaiting_headers = False
            self._disarm()
        elif data and self._awaiting_headers and self._header_deadline is None and not self._force_close:
            self._header_deadline = self._loop.call_later(self._header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        metrics.MALFORMED_REQUESTS.labels(kind="header_timeout").inc()
        log.warning("request headers from %s not complete after %.0fs: closed", self._peer(), self._header_timeout)
        transport.write(
            _raw_error(408, "Request Timeout", "request_timeout", "request headers took too long; connection closed")
        )
        self.force_close()
        transport.close()

    def _peer(self) -> str:
        peer = self.peername
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse, start_time: Any) -> Any:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._awaiting_headers = True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own messages may carry request data in the exception; keep the first line only.
        exc = kw.get("exc_info")
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "error"
        message = str(args[0]) % args[1:] if args else "error"
        log.error("%s (%s)", message.splitlines()[0][:200], kind)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind = type(exc).__name__ if exc is not None else "error"
        if status == 400:
            metrics.MALFORMED_REQUESTS.labels(kind="bad_http").inc()
            log.warning("malformed HTTP request from %s: %s", self._peer(), kind)
            code, text = "bad_request", "malformed HTTP request"
        elif status == 504:
            code, text = "timeout", "the request took too long"
        else:
            log.error("HTTP error %d for a request from %s: %s", status, self._peer(), kind)
            code, text = "internal", "unexpected error"
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        resp = web.Response(
            status=status,
            body=orjson.dumps({"error": code, "message": text}),
            content_type="application/json",
            headers={"Server": SERVER_NAME, "Cache-Control": "no-store", **SECURITY_HEADERS},
        )
        resp.force_close()
        return resp


class _HandlerFactory:
    """What the listening socket calls per connection: aiohttp's server, with the hardened handler."""

    def __init__(self, server: web.Server, header_timeout: float) -> None:
        self._server = server
        self._header_timeout = header_timeout

    def __call__(self) -> HardenedRequestHandler:
        server = self._server
        return HardenedRequestHandler(
            server,
            loop=server._loop,
            header_timeout=self._header_timeout,
            **server._kwargs,
        )


class ApiRunner(web.AppRunner):
    """An AppRunner whose connections get HardenedRequestHandler; use it with web.TCPSite as usual."""

    def __init__(self, app: web.Application, *, header_timeout: float, access_log: logging.Logger | None = None):
        super().__init__(
            app,
            access_log=access_log,
            access_log_class=SafeAccessLogger,
            keepalive_timeout=KEEPALIVE_SECONDS,
            max_line_size=8190,
            max_field_size=8190,
            max_headers=64,
            # After an answer given before the whole body arrived (413, 408), read and drop the rest for at
            # most this long, then close: a slow client cannot hold the connection with a trickle.
            lingering_time=1.0,
        )
        self._header_timeout = header_timeout

    @property
    def server(self) -> Any:
        real = self._server
        return None if real is None else _HandlerFactory(real, self._header_timeout)
