"""The Kafka connection settings, turned into what every Kafka client of every process is built with.

A bank's Kafka requires TLS, SASL or client certificates; one place builds the
TLS context and the SASL options from the settings (streams/settings.py, the
KAFKA_* block), so that the worker's Faust app, its end-offset probe, the sink,
the topic admin, simulate, demo, bench, redrive and the test helpers all
connect the same way. A setting that cannot work (a file that cannot be read, a
key that does not decrypt, SASL without a password, a TLS file for a plaintext
connection) stops the process at start with one line naming the variable.

`wait_for_kafka` is the start-up check of every process: it connects to the
bootstrap servers (through TLS when configured) until KAFKA_CONNECT_TIMEOUT,
so that an unreachable broker or an untrusted certificate ends in one line and
exit 2 instead of a screen of client retries and a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.abc import AbstractTokenProvider  # type: ignore[import-untyped]

from streams.settings import ENV_NAMES, ConfigError, Settings

SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_HOSTNAME_MISMATCH = 62
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH."""
_CLIENT_LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.client", "aiokafka.admin")


def _name(setting: str) -> str:
    return ENV_NAMES[setting]


def _fail(setting: str, problem: str) -> ConfigError:
    return ConfigError(f"clientpulse: {_name(setting)}: {problem}")


def _read_secret(settings: Settings, value_field: str, file_field: str) -> str | None:
    """A secret from its variable or from its *_FILE (a mounted Secret), never both."""
    value = getattr(settings, value_field)
    path: Path | None = getattr(settings, file_field)
    if value is not None and path is not None:
        raise ConfigError(f"clientpulse: set {_name(value_field)} or {_name(file_field)}, not both")
    if path is None:
        return None if value is None else str(value.get_secret_value())
    try:
        return path.read_text("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise _fail(file_field, f"cannot read {path}: {exc.strerror or exc}") from None


def _readable(settings: Settings, setting: str) -> str | None:
    path: Path | None = getattr(settings, setting)
    if path is None:
        return None
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _fail(setting, f"cannot read {path}: {exc.strerror or exc}") from None
    return str(path)


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER: the token is read from a file at every (re)connection, so a sidecar can keep it fresh."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def token(self) -> str:
        return self.path.read_text("utf-8").strip()

    def __repr__(self) -> str:
        return f"FileTokenProvider({self.path})"


@dataclass(frozen=True)
class KafkaSecurity:
    """How to connect: protocol, TLS context, SASL; `repr` shows no secret."""

    protocol: str
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token_provider: FileTokenProvider | None = None

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.protocol in SASL_PROTOCOLS:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            if self.token_provider is not None:
                kwargs["sasl_oauth_token_provider"] = self.token_provider
            else:
                kwargs["sasl_plain_username"] = self.username
                kwargs["sasl_plain_password"] = self.password
        return kwargs


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    cafile = _readable(settings, "kafka_ssl_ca_file")
    certfile = _readable(settings, "kafka_ssl_cert_file")
    keyfile = _readable(settings, "kafka_ssl_key_file")
    password = _read_secret(settings, "kafka_ssl_key_password", "kafka_ssl_key_password_file")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except ssl.SSLError as exc:
        raise _fail("kafka_ssl_ca_file", f"{cafile} holds no usable CA certificate ({exc.reason or exc})") from None
    context.check_hostname = settings.kafka_ssl_check_hostname
    if keyfile and not certfile:
        raise ConfigError(f"clientpulse: {_name('kafka_ssl_key_file')} is set without {_name('kafka_ssl_cert_file')}")
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile, password)
        except ssl.SSLError as exc:
            hint = (
                f"the key does not decrypt with {_name('kafka_ssl_key_password')} or does not match the certificate"
                if password
                else f"not a certificate and its key (encrypted keys need {_name('kafka_ssl_key_password')})"
            )
            raise _fail("kafka_ssl_cert_file", f"{certfile}: {hint} ({exc.reason or exc})") from None
    return context


def kafka_security(settings: Settings) -> KafkaSecurity:
    """The connection security the settings describe, checked; ConfigError (exit 2) naming the variable if not."""
    protocol = settings.kafka_security_protocol
    if protocol not in SSL_PROTOCOLS:
        for setting in ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file"):
            if getattr(settings, setting) is not None:
                raise ConfigError(
                    f"clientpulse: {_name(setting)} is set but {_name('kafka_security_protocol')} is {protocol}: "
                    "set it to SSL or SASL_SSL (or unset the file)"
                )
    if protocol not in SASL_PROTOCOLS:
        for setting in ("kafka_sasl_username", "kafka_sasl_password", "kafka_sasl_password_file"):
            if getattr(settings, setting) is not None:
                raise ConfigError(
                    f"clientpulse: {_name(setting)} is set but {_name('kafka_security_protocol')} is {protocol}: "
                    "set it to SASL_PLAINTEXT or SASL_SSL (or unset the credential)"
                )
    context = _ssl_context(settings) if protocol in SSL_PROTOCOLS else None
    if protocol not in SASL_PROTOCOLS:
        return KafkaSecurity(protocol, context)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        path = settings.kafka_sasl_oauth_token_file
        if path is None:
            raise ConfigError(
                f"clientpulse: {_name('kafka_sasl_mechanism')} OAUTHBEARER needs {_name('kafka_sasl_oauth_token_file')}"
            )
        _readable(settings, "kafka_sasl_oauth_token_file")
        return KafkaSecurity(protocol, context, mechanism, token_provider=FileTokenProvider(path))
    password = _read_secret(settings, "kafka_sasl_password", "kafka_sasl_password_file")
    if not settings.kafka_sasl_username or password is None:
        raise ConfigError(
            f"clientpulse: {_name('kafka_security_protocol')} {protocol} with {mechanism} needs "
            f"{_name('kafka_sasl_username')} and {_name('kafka_sasl_password')} "
            f"(or {_name('kafka_sasl_password_file')})"
        )
    return KafkaSecurity(protocol, context, mechanism, settings.kafka_sasl_username, password)


def bootstrap_servers(settings: Settings) -> list[str]:
    return [b.strip() for b in settings.kafka_bootstrap.split(",") if b.strip()]


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """bootstrap_servers and the security options, for any aiokafka client."""
    return {"bootstrap_servers": bootstrap_servers(settings), **kafka_security(settings).aiokafka_kwargs()}


def faust_credentials(settings: Settings) -> Any:
    """The Faust app's `broker_credentials` (None for PLAINTEXT)."""
    import faust

    security = kafka_security(settings)
    if security.protocol == "PLAINTEXT":
        return None
    if security.protocol == "SSL":
        return faust.SSLCredentials(security.ssl_context)
    if security.token_provider is not None:
        return faust.OAuthCredentials(oauth_cb=security.token_provider, ssl_context=security.ssl_context)
    credentials = faust.SASLCredentials(
        username=security.username,
        password=security.password,
        ssl_context=security.ssl_context,
        mechanism=security.sasl_mechanism,
    )
    return credentials


def _host_port(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep:
        return server, 9092
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise _fail("kafka_bootstrap", f"{server!r} is not host:port") from None


@contextlib.contextmanager
def _quiet_clients() -> Any:
    """The check reports in one line; the clients' own connection errors would repeat it many times."""
    loggers = [logging.getLogger(name) for name in _CLIENT_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


async def _connect_once(host: str, port: int, context: ssl.SSLContext | None, timeout: float) -> None:
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host if context else None), timeout
    )
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


async def wait_for_kafka(settings: Settings) -> None:
    """Return once Kafka answers with these settings; else ConfigError in one line, after KAFKA_CONNECT_TIMEOUT.

    TCP (and TLS) to a bootstrap server is retried until the timeout; a certificate
    the CA does not vouch for, or a failed TLS handshake, ends at once. Then one
    metadata request through aiokafka checks the protocol and the SASL credentials.
    """
    security = kafka_security(settings)
    servers = [_host_port(s) for s in bootstrap_servers(settings)]
    loop = asyncio.get_running_loop()
    timeout = settings.kafka_connect_timeout
    deadline = loop.time() + timeout
    where = f"Kafka at {settings.kafka_bootstrap} ({_name('kafka_bootstrap')})"
    last = "no answer"
    reached = False
    while not reached:
        for host, port in servers:
            remaining = max(0.1, deadline - loop.time())
            try:
                await _connect_once(host, port, security.ssl_context, min(5.0, remaining))
            except ssl.SSLCertVerificationError as exc:
                ca = settings.kafka_ssl_ca_file
                trusted = f"{_name('kafka_ssl_ca_file')} ({ca})" if ca else "the system's CA certificates"
                problem = f"is not trusted by {trusted}"
                if exc.verify_code == _HOSTNAME_MISMATCH:
                    problem = f"does not name {host} (see {_name('kafka_ssl_check_hostname')})"
                raise ConfigError(
                    f"clientpulse: TLS to {host}:{port} failed (certificate verify failed: {exc.verify_message}): "
                    f"the broker's certificate {problem}"
                ) from None
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"clientpulse: TLS handshake with {host}:{port} failed ({exc.reason or exc}); check "
                    f"{_name('kafka_security_protocol')} and the KAFKA_SSL_* settings"
                ) from None
            except (OSError, TimeoutError) as exc:
                reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else "no answer"
                last = f"{host}:{port}: {reason}"
                continue
            reached = True
            break
        if not reached:
            if loop.time() >= deadline:
                raise ConfigError(
                    f"clientpulse: cannot reach {where} within {timeout:g}s ({_name('kafka_connect_timeout')}): {last}"
                )
            await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
    await _check_protocol(settings, where, max(1.0, deadline - loop.time()))


async def _check_protocol(settings: Settings, where: str, timeout: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=int(timeout * 1000))
    with _quiet_clients():
        try:
            await asyncio.wait_for(admin.start(), timeout)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ConfigError(
                f"clientpulse: {where} accepts connections but does not speak Kafka with these settings ({detail}); "
                f"check {_name('kafka_security_protocol')} ({settings.kafka_security_protocol}), the SASL credentials "
                "and KAFKA_SSL_*"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
