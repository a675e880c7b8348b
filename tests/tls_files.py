"""A self-signed certificate for the loopback address, for tests of TLS listeners (made with the
openssl CLI; a test that needs one is skipped where it is not installed)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    cert: str
    key: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


def self_signed(folder: Path) -> TlsFiles:
    """cert.pem and key.pem in ``folder``: 127.0.0.1 and localhost, valid for two days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return TlsFiles(cert=str(cert), key=str(key))
