"""A throwaway certificate authority for the security tests, made with the `openssl` command line
(present wherever PostgreSQL and Kafka are): a CA, server certificates for 127.0.0.1/localhost and
client certificates, as PEM files with PKCS#8 keys (what Kafka's PEM keystores and PostgreSQL read).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path  # CA certificate (trust anchor)

    def issue(self, name: str, *, server: bool = False, ca_name: str = "ca") -> tuple[Path, Path]:
        """A certificate and key signed by the CA `ca_name`: CN=name; a server certificate also
        names 127.0.0.1 and localhost. Returns (certificate, key)."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        _openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
        extensions = self.directory / f"{name}.ext"
        usage = "serverAuth" if server else "clientAuth"
        text = f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
        if server:
            text += "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        extensions.write_text(text)
        ca_dir = self.directory
        _openssl(
            "x509", "-req", "-in", csr, "-CA", ca_dir / f"{ca_name}.crt",
            "-CAkey", ca_dir / f"{ca_name}.key", "-CAcreateserial", "-days", "2",
            "-extfile", extensions, "-out", cert,
        )  # fmt: skip
        key.chmod(0o600)
        return cert, key


def make_pki(directory: Path, ca_name: str = "ca") -> Pki:
    """A new CA in `directory` (`<ca_name>.crt`, `<ca_name>.key`)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{ca_name}.key", directory / f"{ca_name}.crt"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-subj", f"/CN=driftline test {ca_name}",
        "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert,
    )  # fmt: skip
    return Pki(directory, cert)


def _openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
