"""The Kafka security settings reach every client's configuration, and bad ones stop the start naming the variable."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.kafka_client import FileTokenProvider, client_kwargs, faust_credentials, kafka_security
from streams.settings import ConfigError, Settings, load_settings


def settings(**values: Any) -> Settings:
    return Settings(kafka_bootstrap="kafka-1:9093,kafka-2:9093", **values)


def make_pem(tmp_path: Path, password: bytes | None = None) -> tuple[Path, Path, Path]:
    """A self-signed CA certificate, and a client certificate and key it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clientpulse")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return ca_file, cert_file, key_file


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    kwargs = client_kwargs(settings())
    assert kwargs == {"bootstrap_servers": ["kafka-1:9093", "kafka-2:9093"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_settings_reach_the_aiokafka_and_faust_clients(tmp_path: Path, mechanism: str) -> None:
    ca, _, _ = make_pem(tmp_path)
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=ca,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc-clientpulse",
        kafka_sasl_password="s3cret-pw",
    )
    kwargs = client_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == "svc-clientpulse"
    assert kwargs["sasl_plain_password"] == "s3cret-pw"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test ca"),),)]

    credentials = faust_credentials(s)
    assert isinstance(credentials, faust.SASLCredentials)
    # What Faust's driver hands its aiokafka consumer and producer:
    faust_kwargs = credentials_to_aiokafka_auth(credentials)
    assert faust_kwargs["security_protocol"] == "SASL_SSL"
    assert faust_kwargs["sasl_mechanism"] == mechanism
    assert (faust_kwargs["sasl_plain_username"], faust_kwargs["sasl_plain_password"]) == (
        "svc-clientpulse",
        "s3cret-pw",
    )
    assert faust_kwargs["ssl_context"] is not None


def test_sasl_plaintext_has_no_tls_context() -> None:
    s = settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p")
    kwargs = client_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in kwargs
    assert credentials_to_aiokafka_auth(faust_credentials(s))["security_protocol"] == "SASL_PLAINTEXT"


def test_secrets_come_from_files_and_never_show_in_a_repr(tmp_path: Path) -> None:
    secret = tmp_path / "sasl-password"
    secret.write_text("from-a-file\n")
    s = settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password_file=secret)
    assert client_kwargs(s)["sasl_plain_password"] == "from-a-file"
    inline = settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="hunter2")
    assert "hunter2" not in repr(inline) and "hunter2" not in str(inline.model_dump())
    assert "hunter2" not in repr(kafka_security(inline))
    assert "hunter2" not in repr(faust_credentials(inline))


def test_the_client_certificate_and_an_encrypted_key_load(tmp_path: Path) -> None:
    ca, cert, key = make_pem(tmp_path, password=b"key-pw")
    password_file = tmp_path / "key-password"
    password_file.write_text("key-pw")
    s = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=ca,
        kafka_ssl_cert_file=cert,
        kafka_ssl_key_file=key,
        kafka_ssl_key_password_file=password_file,
    )
    kwargs = client_kwargs(s)
    assert kwargs["security_protocol"] == "SSL" and isinstance(kwargs["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(s)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["ssl_context"] is credentials.context


def test_oauthbearer_reads_its_token_from_a_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJ-token\n")
    s = settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="OAUTHBEARER", kafka_sasl_oauth_token_file=token
    )
    kwargs = client_kwargs(s)
    assert kwargs["sasl_mechanism"] == "OAUTHBEARER"
    provider = kwargs["sasl_oauth_token_provider"]
    assert isinstance(provider, FileTokenProvider)
    import asyncio

    assert asyncio.run(provider.token()) == "eyJ-token"
    assert credentials_to_aiokafka_auth(faust_credentials(s))["sasl_oauth_token_provider"] is not None


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"}, "KAFKA_SASL_PASSWORD"),
        ({"kafka_ssl_ca_file": Path("/ca.pem")}, "KAFKA_SSL_CA_FILE"),
        ({"kafka_sasl_username": "u"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": Path("/nonexistent/ca.pem")}, "KAFKA_SSL_CA_FILE"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "KAFKA_SASL_OAUTH_TOKEN_FILE",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
                "kafka_sasl_password_file": Path("/p"),
            },
            "KAFKA_SASL_PASSWORD_FILE",
        ),
    ],
)
def test_settings_that_cannot_work_stop_the_start_naming_the_variable(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        client_kwargs(settings(**values))
    message = str(info.value)
    assert named in message and "\n" not in message


def test_a_wrong_key_password_is_named(tmp_path: Path) -> None:
    ca, cert, key = make_pem(tmp_path, password=b"right")
    s = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=ca,
        kafka_ssl_cert_file=cert,
        kafka_ssl_key_file=key,
        kafka_ssl_key_password="wrong",
    )
    with pytest.raises(ConfigError, match=r"KAFKA_SSL_CERT_FILE.*KAFKA_SSL_KEY_PASSWORD"):
        client_kwargs(s)


def test_a_file_that_is_no_ca_certificate_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="KAFKA_SSL_CA_FILE"):
        client_kwargs(settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=junk))


def test_an_unknown_security_protocol_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "KAFKA_SECURITY_PROTOCOL" in str(info.value) and "SASL_SSL" in str(info.value)
