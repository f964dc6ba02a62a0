"""Configuration: defaults, then a YAML file, then POLICYHUB_* environment variables.

Validated once at start-up; unknown keys and bad values are ConfigError with a clear message.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from policyhub.domain import DOMAIN_ID_MAX, DOMAIN_ID_RE
from policyhub.errors import ConfigError

ENV_PREFIX = "POLICYHUB_"
# Names the YAML file itself; not a configuration key.
CONFIG_FILE_ENV = "POLICYHUB_CONFIG"
# The command-line client's (policyhub.cli): where the server is and the caller's token. Not
# settings of the server, which ignores them (a shell may set them for both).
CLIENT_ENDPOINT_ENV = "POLICYHUB_ENDPOINT"
CLIENT_TOKEN_ENV = "POLICYHUB_TOKEN"
NOT_SETTINGS_ENV = frozenset({CONFIG_FILE_ENV, CLIENT_ENDPOINT_ENV, CLIENT_TOKEN_ENV})

# Kubernetes gives every pod (unless its spec sets enableServiceLinks: false) variables for each
# Service of its namespace, named after the Service: `policyhub` (or `policyhub-<x>`) yields
# POLICYHUB[_<X>]_SERVICE_HOST, _SERVICE_PORT, _SERVICE_PORT_<PORT NAME>, _PORT and
# _PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]. They share our prefix but are no settings, and refusing
# them would stop the server in any namespace with such a Service.
_SERVICE_LINK_NAME = re.compile(
    r"POLICYHUB(?:_[A-Z0-9_]+)?_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT_[0-9]+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)"
)
# <SERVICE>_PORT carries the Service's first port as tcp://<cluster ip>:<port>, under the name of a
# port setting (POLICYHUB_PORT; POLICYHUB_METRICS_PORT for a Service named policyhub-metrics). A
# port setting is a plain number, so a value of this form can only be the link, and is ignored.
_SERVICE_LINK_URL = re.compile(r"(?:tcp|udp|sctp)://(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):[0-9]+")


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 50051
    # Empty: the embedded in-memory store (mongomock). Any mongodb:// or mongodb+srv:// URI otherwise.
    mongodb_uri: str = ""
    database: str = "policyhub"
    # Bounds every database call so a dead database answers UNAVAILABLE instead of hanging.
    db_timeout_ms: int = 5000
    # The bound of list and stat calls and of the batch writes instead: they read a page and
    # count, or aggregate, over what a filter matches, which can be a large domain's every policy,
    # or write up to 10,000 pairs or 1,000 ids in several round trips (at least db_timeout_ms).
    db_query_timeout_ms: int = 20000
    # The bound of the read of a whole domain that builds its evaluation index (every policy and
    # assignment of it, in a thread of its own that no call waits for longer than its own bound):
    # it grows with the domain, as no call's work does (db_query_timeout_ms when that is larger).
    index_build_timeout_ms: int = 300000
    max_workers: int = 16
    # Server processes sharing the port (SO_REUSEPORT). 0 (the default): one per CPU this process may
    # run on with a MongoDB URI, 1 on the embedded store (it lives inside one process).
    workers: int = 0
    max_message_bytes: int = 4 * 1024 * 1024
    # list/stat return at most this many results per page (page.limit above it is capped).
    page_max_limit: int = 1000
    shutdown_grace_seconds: float = 10.0
    # How often health re-checks the database (NOT_SERVING while it is unreachable).
    health_interval_seconds: float = 2.0
    # Soft-deleted policies stay restorable this long (30 days), then they are purged.
    soft_delete_retention_seconds: int = 30 * 24 * 3600
    # How often the purge sweep runs (MongoDB's TTL index purges too; the embedded store has none).
    purge_interval_seconds: float = 60.0
    # The change log (Change service, consistency tokens) keeps each domain's changes this long
    # (7 days); a continuation token older than that must resync.
    change_retention_seconds: int = 7 * 24 * 3600
    # A MINIMIZE_LATENCY authorization question is answered from this process's cached evaluation
    # index without reading the domain's revision for at most this long after a read found that
    # index current: it may miss the writes of that window (0: always read, as FULLY_CONSISTENT).
    max_staleness_seconds: float = 5.0
    log_level: str = "INFO"
    # json: one JSON object per line (trace id, domain, caller, method; secrets masked). text: for people.
    log_format: str = "json"
    # Prometheus metrics over HTTP on this port (0: off).
    metrics_port: int = 0
    # A second gRPC listener for SpaceONE's own client (0: off): the same Policy, Repository,
    # ServerInfo and Health services, reflection listing only what spaceone-api 1.12 has, and
    # domain-less reads answered anonymously from the public catalogue.
    spaceone_port: int = 0
    # Whose policies the SpaceONE listener's anonymous reads see besides the managed ones
    # (empty: the managed policies only).
    public_domain_id: str = ""
    # OpenTelemetry tracing: spans per RPC, `traceparent` propagated; printed ("console"), sent to an
    # OTLP collector ("otlp") or not exported ("none": the trace id still ties logs and audit
    # entries together).
    tracing_exporter: str = "none"
    # Where "otlp" sends. Each one set here wins over its standard OTEL_EXPORTER_OTLP_* variable;
    # empty: that variable, else the exporter's default. otlp_endpoint is the collector's base URL
    # (as OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces is appended over http/protobuf); otlp_headers is
    # key=value pairs separated by commas.
    otlp_endpoint: str = ""
    otlp_protocol: str = ""
    otlp_headers: str = ""
    # Caller identity: the public keys that verify tokens, from at most one of jwks_file (a JWKS
    # JSON or PEM file, read at start) and jwks_uri (an identity provider's https:// JWKS URL).
    # Neither: DEVELOPMENT MODE (no authentication, the domain comes from the request, announced
    # loudly at start).
    jwks_file: str = ""
    jwks_uri: str = ""
    # PEM bundle of CA certificates trusted for jwks_uri; empty: the system's roots.
    jwks_ca_file: str = ""
    # jwks_uri's keys are fetched at start (unreachable: the server does not start), again every
    # jwks_refresh_seconds, and when a token names an unknown kid, at most once per
    # jwks_refresh_min_seconds (a flood of forged kids cannot hammer the provider). A failed fetch
    # keeps the keys of the last successful one.
    jwks_refresh_seconds: float = 300.0
    jwks_refresh_min_seconds: float = 30.0
    jwt_issuer: str = ""
    jwt_audience: str = ""
    # Remote repositories (another installation's Policy API). One remote operation, retries
    # included, takes at most remote_timeout_seconds; then the call answers UNAVAILABLE.
    remote_timeout_seconds: float = 3.0
    # Retries of a remote call that answered UNAVAILABLE (exponential backoff, within the deadline).
    remote_retries: int = 2
    # Remote answers are cached this long: a change on a remote is visible here at most this many
    # seconds later (0: no cache).
    remote_cache_seconds: float = 10.0
    # Sent as `token` metadata to every remote (a service token of the remote installation); empty: none.
    remote_token: str = ""
    # PEM bundle of CA certificates trusted for grpc+ssl:// remotes; empty: the system's roots.
    remote_ca_file: str = ""
    # Each domain's calls: a token bucket refilled at this rate, holding at most burst calls
    # (0: no limit). Far above what one tenant needs, far below what would starve the others.
    rate_limit_domain_per_second: float = 1000.0
    rate_limit_domain_burst: int = 2000
    # Bulk/import_domain: at most this many items, and this many bytes of messages, per import
    # (read into memory, checked whole, then written at once).
    import_max_items: int = 200_000
    import_max_bytes: int = 64 * 1024 * 1024
    # Failed authentications allowed per minute per peer address and per API-key id (0: no limit);
    # once used up, further attempts are refused without being verified.
    auth_failure_per_minute: int = 60

    def __post_init__(self) -> None:
        if self.workers == 0:
            object.__setattr__(self, "workers", 1 if self.embedded_store else len(os.sched_getaffinity(0)))

    @property
    def embedded_store(self) -> bool:
        return not self.mongodb_uri

    @property
    def development_mode(self) -> bool:
        return not (self.jwks_file or self.jwks_uri)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
TRACING_EXPORTERS = ("none", "console", "otlp")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
_OTLP_ENDPOINT = re.compile(r"https?://[^\s/]+(?:/\S*)?")
# One header of otlp_headers: a token, "=", a value without commas (W3C baggage's shape, as
# OTEL_EXPORTER_OTLP_HEADERS).
_OTLP_HEADER = re.compile(r"\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*=\s*[^,]*")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
WORKERS_MAX = 128


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = path or env.get(CONFIG_FILE_ENV)
    if path:
        values.update(_read_yaml(path))
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if _is_service_link(name, key, raw):
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown environment variable {name} (known: {_known_env()})")
        values[key] = raw
    return _build(values)


def _is_service_link(name: str, key: str, value: str) -> bool:
    if name.endswith("_PORT") and _SERVICE_LINK_URL.fullmatch(value):
        return True
    # A configuration key always wins over the shape of a link (no key has that shape today).
    return key not in _FIELDS and _SERVICE_LINK_NAME.fullmatch(name) is not None


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of keys to values")
    unknown = sorted(set(map(str, data)) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {unknown} (known: {sorted(_FIELDS)})")
    return data


def _build(values: dict[str, Any]) -> Config:
    converted = {key: _convert(key, value) for key, value in values.items()}
    config = Config(**converted)
    _validate(config)
    return config


def _convert(key: str, value: Any) -> Any:
    kind = _FIELDS[key].type
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key}: expected {kind}, got {value!r}") from None


def _validate(config: Config) -> None:
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"config key port: {config.port} is not a TCP port")
    for key in (
        "db_timeout_ms",
        "db_query_timeout_ms",
        "index_build_timeout_ms",
        "max_workers",
        "max_message_bytes",
        "page_max_limit",
        "import_max_items",
        "import_max_bytes",
    ):
        if getattr(config, key) < 1:
            raise ConfigError(f"config key {key}: must be at least 1")
    if not 1 <= config.workers <= WORKERS_MAX:
        raise ConfigError(f"config key workers: must be between 0 (one per CPU) and {WORKERS_MAX}")
    if config.workers > 1 and config.embedded_store:
        raise ConfigError(
            "config key workers: the embedded store lives inside one process, so it cannot serve "
            f"{config.workers} workers; set mongodb_uri or workers: 1"
        )
    if config.workers > 1 and config.port == 0:
        raise ConfigError("config key workers: several workers share one port, so port must not be 0")
    if config.db_query_timeout_ms < config.db_timeout_ms:
        raise ConfigError(
            f"config key db_query_timeout_ms: {config.db_query_timeout_ms} is below db_timeout_ms "
            f"({config.db_timeout_ms}); list and stat get at least the bound of a point read"
        )
    if config.soft_delete_retention_seconds < 1:
        raise ConfigError("config key soft_delete_retention_seconds: must be at least 1")
    if config.health_interval_seconds <= 0:
        raise ConfigError("config key health_interval_seconds: must be positive")
    if config.change_retention_seconds < 60:
        raise ConfigError("config key change_retention_seconds: must be at least 60")
    if not 0 <= config.max_staleness_seconds <= 3600:
        raise ConfigError("config key max_staleness_seconds: must be between 0 and 3600")
    if config.purge_interval_seconds <= 0:
        raise ConfigError("config key purge_interval_seconds: must be positive")
    if config.shutdown_grace_seconds < 0:
        raise ConfigError("config key shutdown_grace_seconds: must not be negative")
    if config.log_format not in ("json", "text"):
        raise ConfigError(f"config key log_format: {config.log_format!r} is not one of ['json', 'text']")
    if not 0 <= config.metrics_port <= 65535:
        raise ConfigError(f"config key metrics_port: {config.metrics_port} is not a TCP port")
    if not 0 <= config.spaceone_port <= 65535:
        raise ConfigError(f"config key spaceone_port: {config.spaceone_port} is not a TCP port")
    if config.spaceone_port and config.spaceone_port in (config.port, config.metrics_port):
        raise ConfigError("config key spaceone_port: must differ from port and metrics_port")
    if config.public_domain_id:
        if not config.spaceone_port:
            raise ConfigError("config key public_domain_id: only the SpaceONE listener reads it; set spaceone_port")
        if len(config.public_domain_id) > DOMAIN_ID_MAX or not DOMAIN_ID_RE.fullmatch(config.public_domain_id):
            raise ConfigError(f"config key public_domain_id: {config.public_domain_id!r} is not a domain id")
    if config.tracing_exporter not in TRACING_EXPORTERS:
        raise ConfigError(
            f"config key tracing_exporter: {config.tracing_exporter!r} is not one of {list(TRACING_EXPORTERS)}"
        )
    otlp_keys = [key for key in ("otlp_endpoint", "otlp_protocol", "otlp_headers") if getattr(config, key)]
    if otlp_keys and config.tracing_exporter != "otlp":
        raise ConfigError(
            f"config keys {', '.join(otlp_keys)}: only the otlp tracing exporter reads them; set tracing_exporter: otlp"
        )
    if config.otlp_protocol and config.otlp_protocol not in OTLP_PROTOCOLS:
        raise ConfigError(f"config key otlp_protocol: {config.otlp_protocol!r} is not one of {list(OTLP_PROTOCOLS)}")
    if config.otlp_endpoint and not _OTLP_ENDPOINT.fullmatch(config.otlp_endpoint):
        raise ConfigError(
            f"config key otlp_endpoint: {config.otlp_endpoint!r} is not an http:// or https:// URL of a collector"
        )
    if config.otlp_headers:
        _check_headers(config.otlp_headers)
    if config.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"config key log_level: {config.log_level!r} is not one of {sorted(_LOG_LEVELS)}")
    _validate_identity(config)
    if config.mongodb_uri and not config.mongodb_uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("config key mongodb_uri: must start with mongodb:// or mongodb+srv://")
    if not 0 < config.remote_timeout_seconds <= 300:
        raise ConfigError("config key remote_timeout_seconds: must be positive and at most 300")
    if not 0 <= config.remote_retries <= 10:
        raise ConfigError("config key remote_retries: must be between 0 and 10")
    if not 0 <= config.remote_cache_seconds <= 3600:
        raise ConfigError("config key remote_cache_seconds: must be between 0 and 3600")
    if config.rate_limit_domain_per_second < 0 or config.auth_failure_per_minute < 0:
        raise ConfigError(
            "config keys rate_limit_domain_per_second and auth_failure_per_minute: "
            "must not be negative (0 turns the limit off)"
        )
    if config.rate_limit_domain_per_second > 0 and config.rate_limit_domain_burst < 1:
        raise ConfigError("config key rate_limit_domain_burst: must be at least 1")


def _validate_identity(config: Config) -> None:
    if config.jwks_file and config.jwks_uri:
        raise ConfigError("config keys jwks_file and jwks_uri: set one of them, not both")
    if not config.development_mode and not (config.jwt_issuer and config.jwt_audience):
        raise ConfigError("config keys jwt_issuer and jwt_audience are required when jwks_file or jwks_uri is set")
    if config.jwks_uri and not config.jwks_uri.startswith("https://"):
        raise ConfigError("config key jwks_uri: must start with https:// (keys are never fetched unencrypted)")
    if config.jwks_ca_file and not config.jwks_uri:
        raise ConfigError("config key jwks_ca_file: only jwks_uri reads it; set jwks_uri")
    if not 1 <= config.jwks_refresh_seconds <= 86400:
        raise ConfigError("config key jwks_refresh_seconds: must be between 1 and 86400")
    if not 1 <= config.jwks_refresh_min_seconds <= config.jwks_refresh_seconds:
        raise ConfigError("config key jwks_refresh_min_seconds: must be at least 1 and at most jwks_refresh_seconds")


def _check_headers(headers: str) -> None:
    for pair in headers.split(","):
        if not _OTLP_HEADER.fullmatch(pair):
            raise ConfigError(
                f"config key otlp_headers: {pair.split('=')[0].strip()!r} is not a key=value pair "
                "(pairs separated by commas)"
            )


def _known_env() -> str:
    return ", ".join(ENV_PREFIX + name.upper() for name in _FIELDS)
