"""The RM API as the sink serves it (hardened handler, security headers) on a real loopback port."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.api.server import ApiRunner
from streams.settings import Settings

GENEROUS = {
    "auth_failure_burst": 10_000,
    "auth_global_failure_burst": 100_000,
    "session_cookie_secure": False,
}
"""Tests that send many bad tokens on purpose are not about the budgets: give them plenty."""


def api_settings(**overrides: Any) -> Settings:
    return Settings(**{**GENEROUS, **overrides})


class ApiTestServer(TestServer):
    """aiohttp's TestServer, with the runner the sink uses."""

    def __init__(self, app: web.Application, *, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._header_timeout = header_timeout

    async def _make_runner(self, **kwargs: Any) -> ApiRunner:
        return ApiRunner(self.app, header_timeout=self._header_timeout, access_log=kwargs.get("access_log"))
