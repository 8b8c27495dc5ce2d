"""Fixtures shared by integration test modules (the session's broker and database are in tests/conftest.py)."""

from __future__ import annotations

from tests.integration.shadow_support import shadow_run

__all__ = ["shadow_run"]
