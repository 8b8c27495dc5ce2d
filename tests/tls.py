"""Test certificates (made with `cryptography`) and a TLS-terminating proxy (Debian's stunnel) for the broker.

The embedded broker speaks plaintext only; stunnel in front of it terminates TLS,
and the broker advertises the proxy's address, so every connection a client
makes after the bootstrap (to the partition leaders, the group coordinator)
goes through TLS too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams.tools.embedded import free_port, terminate_group, wait_for_port


@dataclass
class Authority:
    """A CA that signs certificates for tests."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate | None = None

    def __post_init__(self) -> None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write_ca(self, path: Path) -> Path:
        assert self.cert is not None
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(
        self,
        directory: Path,
        name: str,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        password: bytes | None = None,
    ) -> tuple[Path, Path]:
        """A certificate for `hosts` (IP and DNS names) and its key, as PEM files: (cert, key)."""
        assert self.cert is not None
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        )
        os.chmod(key_path, 0o600)
        return cert_path, key_path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stunnel_binary() -> str:
    """Debian's stunnel; installed with apt-get when missing (the Makefile does the same before `make test`)."""
    for name in ("stunnel4", "stunnel"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "stunnel4"], check=False, capture_output=True)
        for name in ("stunnel4", "stunnel"):
            found = shutil.which(name)
            if found:
                return found
    raise AssertionError("the TLS tests need stunnel: apt-get install stunnel4 (make test installs it)")


@dataclass
class TlsProxy:
    """stunnel accepting TLS on `port` and forwarding plaintext to `target_port` on 127.0.0.1."""

    target_port: int
    cert: Path
    key: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> TlsProxy:
        config = self.workdir / "stunnel.conf"
        config.write_text(
            "foreground = yes\n"
            "pid =\n"
            f"output = {self.workdir / 'stunnel.log'}\n"
            "debug = notice\n"
            "[kafka]\n"
            f"accept = 127.0.0.1:{self.port}\n"
            f"connect = 127.0.0.1:{self.target_port}\n"
            f"cert = {self.cert}\n"
            f"key = {self.key}\n"
        )
        self.process = subprocess.Popen(
            [stunnel_binary(), str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", self.port)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            terminate_group(proc, timeout=5)
