"""Fixtures for the OCPP websocket tests: a self-signed certificate, a recording handler."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.ocpp.connection import LinkClosed, OcppConnection


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    cert: str
    key: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder: Path = tmp_path_factory.mktemp("tls")
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


@dataclass(slots=True)
class Echo:
    """An on_connect handler that records each connection and echoes its frames back."""

    connections: list[OcppConnection] = field(default_factory=list)
    closes: list[LinkClosed] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)

    async def __call__(self, connection: OcppConnection) -> None:
        self.connections.append(connection)
        try:
            while True:
                text = await connection.recv()
                self.frames.append(text)
                await connection.send(text)
        except LinkClosed as exc:
            self.closes.append(exc)


@pytest.fixture
def echo() -> Echo:
    return Echo()
