"""Where a remote repository is: `grpc://host:port` (plaintext) or `grpc+ssl://host:port` (TLS:
system roots, or the PEM bundle of config `remote_ca_file`), validated strictly."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from policyhub.errors import InvalidArgument, RequiredParameter

ENDPOINT_MAX = 255
ENDPOINT_FORM = "must be grpc://host:port or grpc+ssl://host:port"
_ENDPOINT_RE = re.compile(
    r"(?P<scheme>grpc|grpc\+ssl)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})"
)
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Endpoint:
    url: str  # as registered: grpc://host:port or grpc+ssl://host:port
    secure: bool
    host: str  # IPv6 literals keep their brackets
    port: int

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(value: str, field: str = "endpoint") -> Endpoint:
    """Strict: scheme grpc or grpc+ssl, a host name or IP literal, a port 1-65535, nothing else."""
    if not value:
        raise RequiredParameter(field)
    if len(value) > ENDPOINT_MAX:
        raise InvalidArgument(field, f"{ENDPOINT_FORM} (at most {ENDPOINT_MAX} characters)")
    match = _ENDPOINT_RE.fullmatch(value)
    if match is None:
        raise InvalidArgument(field, ENDPOINT_FORM)
    host = match.group("host")
    if not _valid_host(host):
        raise InvalidArgument(field, f"{ENDPOINT_FORM}: {host!r} is not a host name or IP address")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise InvalidArgument(field, f"{ENDPOINT_FORM}: port {port} is not between 1 and 65535")
    return Endpoint(url=value, secure=match.group("scheme") == "grpc+ssl", host=host, port=port)


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
            return True
        except ValueError:
            return False
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
            return True
        except ValueError:
            return False
    return len(host) <= 253 and all(_LABEL_RE.fullmatch(label) for label in host.split("."))
