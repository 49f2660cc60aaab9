"""The appliance's own TLS certificate: made once at init for the machine's host names and
addresses (with the `cryptography` package), or supplied by the admin, and its fingerprint, which
clients pin or trust ("alveare init" prints it once).

Pure functions over paths; the caller decides when to make one and where it lives."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from appliance.core.errors import ConfigError

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
# Ten years: an appliance certificate pinned by its clients should not expire under them.
VALID_DAYS = 3650


def machine_names() -> tuple[list[str], list[str]]:
    """DNS names and IP addresses a client on the network may use to reach this machine."""
    names = {"localhost"}
    addresses = {"127.0.0.1", "::1"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name)
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(str(sockaddr[0]).split("%")[0])
    except OSError:  # no resolvable host name: the loopback names still work
        pass
    addresses.update(_route_addresses())
    return sorted(names), sorted(addresses)


def _route_addresses() -> set[str]:
    """The addresses this machine would send from (a host name often resolves to loopback only).
    Connecting a UDP socket sends nothing; it only picks the route."""
    found = set()
    for family, probe in ((socket.AF_INET, "198.51.100.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                address = s.getsockname()[0]
        except OSError:  # no route of this family
            continue
        if not ipaddress.ip_address(address).is_unspecified:
            found.add(address)
    return found


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: where plain HTTP never leaves the machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def make_certificate(
    cert_path: Path, key_path: Path, *, names: list[str] | None = None, addresses: list[str] | None = None
) -> str:
    """A self-signed certificate (ECDSA P-256) for these names and addresses; returns its SHA-256
    fingerprint. The private key file is written 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if names is None or addresses is None:
        found_names, found_addresses = machine_names()
        names = found_names if names is None else names
        addresses = found_addresses if addresses is None else addresses
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "alveare")])
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return fingerprint(cert_path)


def make_certificate_apart(cert_path: Path, key_path: Path) -> str:
    """make_certificate in a child process: `cryptography` loaded into the server process would stay
    there for as long as it serves (docs/decisions/007-host-memory-costs.md). Returns the fingerprint."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "appliance.core.tls", str(cert_path), str(key_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise ConfigError(f"could not make the TLS certificate {cert_path}: {last}")
    return fingerprint(cert_path)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the certificate, as AA:BB:... (what browsers and `openssl x509 -fingerprint` show):
    of the first certificate's DER bytes, with the standard library, because every start prints it
    and `cryptography` would stay in the server process's memory for good (docs/decisions/007-host-memory-costs.md)."""
    import hashlib
    import re
    import ssl

    try:
        text = cert_path.read_text(encoding="ascii")
        block = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
        if block is None:
            raise ValueError("no BEGIN CERTIFICATE block")
        der = ssl.PEM_cert_to_DER_cert(block.group(0))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and binascii.Error are ValueErrors
        raise ConfigError(f"{cert_path}: not a readable PEM certificate ({exc})") from None
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def check_pair(cert_path: Path, key_path: Path) -> None:
    """An admin-supplied certificate and key must load and belong together; ConfigError says why not."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS file not found: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"the TLS certificate {cert_path} and key {key_path} cannot be used: {exc}") from None


if __name__ == "__main__":  # make_certificate_apart's child
    import sys

    make_certificate(Path(sys.argv[1]), Path(sys.argv[2]))
