"""A local HTTPS JWKS endpoint standing in for an identity provider: a certificate for
127.0.0.1 from a CA of its own (written to `ca_file`, for `jwks_ca_file`), signing keys that
can be rotated, a count of the requests it answered, and a switch to take it down."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _certificate(subject: str, key, issuer_name: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class JwksServer:
    def __init__(self, directory: Path):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        server_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("policyhub test CA", ca_key, "policyhub test CA", ca_key, ca=True)
        server_cert = _certificate("127.0.0.1", server_key, "policyhub test CA", ca_key, ca=False)
        self.ca_file = str(directory / "jwks-ca.pem")
        Path(self.ca_file).write_bytes(_pem(ca_cert))
        chain, key_file = directory / "jwks-server.pem", directory / "jwks-server.key"
        chain.write_bytes(_pem(server_cert))
        key_file.write_bytes(
            server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self._lock = threading.Lock()
        self.signing_keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.body: bytes | None = None  # set: served instead of the JWKS of signing_keys
        self.status = 200
        self.requests = 0
        self.rotate("key-1")

        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                    body = server.body if server.body is not None else server._jwks()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(chain, key_file)
        self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.uri = f"https://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def rotate(self, kid: str, *, keep_old: bool = False) -> ec.EllipticCurvePrivateKey:
        """Publish a new signing key `kid` (alone, or next to the old ones)."""
        key = ec.generate_private_key(ec.SECP256R1())
        with self._lock:
            if not keep_old:
                self.signing_keys.clear()
            self.signing_keys[kid] = key
        return key

    def _jwks(self) -> bytes:
        keys = [
            {
                **jwt.algorithms.ECAlgorithm.to_jwk(k.public_key(), as_dict=True),
                "kid": kid,
                "use": "sig",
                "alg": "ES256",
            }
            for kid, k in self.signing_keys.items()
        ]
        return json.dumps({"keys": keys}).encode()

    def stop(self) -> None:
        """The provider goes down: connections are refused from now on."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
