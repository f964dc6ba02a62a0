"""Configuration loading and validation (no server)."""

from __future__ import annotations

import os

import pytest

from policyhub.config import Config, load_config
from policyhub.errors import ConfigError


def test_defaults_serve_loopback_on_50051_with_embedded_store():
    config = load_config(env={})
    assert (config.host, config.port, config.embedded_store) == ("127.0.0.1", 50051, True)


def test_yaml_then_env_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("port: 6000\nlog_level: DEBUG\nmongodb_uri: mongodb://db:27017\n")
    config = load_config(str(path), env={"POLICYHUB_PORT": "7000"})
    assert config == Config(port=7000, log_level="DEBUG", mongodb_uri="mongodb://db:27017")
    assert not config.embedded_store


def test_config_file_from_env(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("page_max_limit: 50\n")
    assert load_config(env={"POLICYHUB_CONFIG": str(path)}).page_max_limit == 50


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("prot: 1\n", "unknown keys ['prot']"),
        ("port: abc\n", "config key port: expected int"),
        ("port: true\n", "config key port: expected int"),
        ("port: 70000\n", "not a TCP port"),
        ("page_max_limit: 0\n", "page_max_limit: must be at least 1"),
        ("log_level: LOUD\n", "log_level"),
        ("mongodb_uri: postgres://x\n", "mongodb_uri: must start with mongodb://"),
        ("host: [a]\n", "config key host: expected str"),
        ("rate_limit_domain_per_second: -1\n", "must not be negative"),
        ("auth_failure_per_minute: -5\n", "must not be negative"),
        ("rate_limit_domain_burst: 0\n", "rate_limit_domain_burst: must be at least 1"),
        ("max_staleness_seconds: -1\n", "max_staleness_seconds: must be between 0 and 3600"),
        ("max_staleness_seconds: 3601\n", "max_staleness_seconds: must be between 0 and 3600"),
        ("workers: -1\nmongodb_uri: mongodb://db\n", "config key workers: must be between 0 (one per CPU) and 128"),
        ("workers: 129\nmongodb_uri: mongodb://db\n", "config key workers: must be between 0 (one per CPU) and 128"),
        ("workers: two\n", "config key workers: expected int"),
        ("workers: 2\n", "config key workers: the embedded store lives inside one process"),
        ("workers: 2\nport: 0\nmongodb_uri: mongodb://db\n", "config key workers: several workers share one port"),
        ("- a\n", "must be a mapping"),
        ("port: [\n", "not valid YAML"),
    ],
)
def test_bad_files_are_config_errors(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=None) as info:
        load_config(str(path), env={})
    assert message in str(info.value)


def test_missing_file_and_unknown_env_var(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.yaml"), env={})
    with pytest.raises(ConfigError, match="POLICYHUB_PROT"):
        load_config(env={"POLICYHUB_PROT": "1"})


def test_the_command_line_clients_variables_are_not_settings():
    """POLICYHUB_ENDPOINT and POLICYHUB_TOKEN belong to the `policyhub` client subcommands: a shell
    that sets them can still start the server, and neither becomes a setting."""
    config = load_config(env={"POLICYHUB_ENDPOINT": "10.0.0.1:50051", "POLICYHUB_TOKEN": "t", "POLICYHUB_PORT": "7"})
    assert config == Config(port=7)
    with pytest.raises(ConfigError, match="POLICYHUB_ENDPOINTS"):
        load_config(env={"POLICYHUB_ENDPOINTS": "x"})


def test_rate_limits_from_env_and_zero_turns_them_off():
    config = load_config(
        env={
            "POLICYHUB_RATE_LIMIT_DOMAIN_PER_SECOND": "2.5",
            "POLICYHUB_AUTH_FAILURE_PER_MINUTE": "0",
            "POLICYHUB_RATE_LIMIT_DOMAIN_BURST": "5",
        }
    )
    assert (config.rate_limit_domain_per_second, config.rate_limit_domain_burst, config.auth_failure_per_minute) == (
        2.5,
        5,
        0,
    )
    assert (
        load_config(
            env={"POLICYHUB_RATE_LIMIT_DOMAIN_PER_SECOND": "0", "POLICYHUB_RATE_LIMIT_DOMAIN_BURST": "0"}
        ).rate_limit_domain_per_second
        == 0
    )


def test_spaceone_listener_keys():
    config = load_config(env={"POLICYHUB_SPACEONE_PORT": "50061", "POLICYHUB_PUBLIC_DOMAIN_ID": "domain-public"})
    assert (config.spaceone_port, config.public_domain_id) == (50061, "domain-public")
    assert load_config(env={}).spaceone_port == 0


@pytest.mark.parametrize(
    "env, message",
    [
        ({"POLICYHUB_SPACEONE_PORT": "70000"}, "spaceone_port: 70000 is not a TCP port"),
        ({"POLICYHUB_SPACEONE_PORT": "50051"}, "spaceone_port: must differ from port and metrics_port"),
        ({"POLICYHUB_PUBLIC_DOMAIN_ID": "domain-public"}, "public_domain_id: only the SpaceONE listener reads it"),
        (
            {"POLICYHUB_SPACEONE_PORT": "50061", "POLICYHUB_PUBLIC_DOMAIN_ID": "not a domain"},
            "public_domain_id: 'not a domain' is not a domain id",
        ),
    ],
)
def test_bad_spaceone_listener_keys(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_max_staleness_default_and_env():
    assert load_config(env={}).max_staleness_seconds == 5.0
    assert load_config(env={"POLICYHUB_MAX_STALENESS_SECONDS": "0"}).max_staleness_seconds == 0.0
    assert load_config(env={"POLICYHUB_MAX_STALENESS_SECONDS": "0.25"}).max_staleness_seconds == 0.25


# What Kubernetes injects for a Service named `policyhub` with ports grpc 50051 and metrics 9090.
SERVICE_LINKS = {
    "POLICYHUB_SERVICE_HOST": "10.0.0.1",
    "POLICYHUB_SERVICE_PORT": "50051",
    "POLICYHUB_SERVICE_PORT_GRPC": "50051",
    "POLICYHUB_SERVICE_PORT_METRICS": "9090",
    "POLICYHUB_PORT": "tcp://10.0.0.1:50051",
    "POLICYHUB_PORT_50051_TCP": "tcp://10.0.0.1:50051",
    "POLICYHUB_PORT_50051_TCP_PROTO": "tcp",
    "POLICYHUB_PORT_50051_TCP_PORT": "50051",
    "POLICYHUB_PORT_50051_TCP_ADDR": "10.0.0.1",
    "POLICYHUB_PORT_9090_TCP": "tcp://10.0.0.1:9090",
    "POLICYHUB_PORT_9090_TCP_PROTO": "tcp",
    "POLICYHUB_PORT_9090_TCP_PORT": "9090",
    "POLICYHUB_PORT_9090_TCP_ADDR": "10.0.0.1",
}


def test_kubernetes_service_links_are_not_settings():
    assert load_config(env=SERVICE_LINKS) == Config()
    # Real settings next to them still apply.
    config = load_config(env={**SERVICE_LINKS, "POLICYHUB_METRICS_PORT": "9090", "POLICYHUB_HOST": "0.0.0.0"})
    assert (config.host, config.port, config.metrics_port) == ("0.0.0.0", 50051, 9090)


def test_a_plain_number_in_policyhub_port_is_the_port_setting():
    assert load_config(env={**SERVICE_LINKS, "POLICYHUB_PORT": "6000"}).port == 6000


def test_a_link_url_under_a_port_setting_is_ignored(tmp_path):
    """Services named policyhub-metrics or policyhub-spaceone give POLICYHUB_METRICS_PORT=tcp://…: not settings."""
    path = tmp_path / "c.yaml"
    path.write_text("port: 6000\nmetrics_port: 6001\nspaceone_port: 6002\n")
    env = {
        "POLICYHUB_PORT": "tcp://[fd00::1]:50051",
        "POLICYHUB_METRICS_PORT": "tcp://10.0.0.2:9090",
        "POLICYHUB_METRICS_SERVICE_HOST": "10.0.0.2",
        "POLICYHUB_METRICS_PORT_9090_TCP_ADDR": "10.0.0.2",
        "POLICYHUB_SPACEONE_PORT": "udp://10.0.0.3:50061",
        "POLICYHUB_SPACEONE_SERVICE_PORT_SPACEONE": "50061",
        "POLICYHUB_CANARY_PORT_50051_SCTP_PROTO": "sctp",
    }
    config = load_config(str(path), env=env)
    assert (config.port, config.metrics_port, config.spaceone_port) == (6000, 6001, 6002)


@pytest.mark.parametrize(
    "name, value, message",
    [
        # Not quite a link: still unknown settings.
        ("POLICYHUB_SERVICE_HOSTNAME", "x", "unknown environment variable POLICYHUB_SERVICE_HOSTNAME"),
        ("POLICYHUB_PORT_50051_HTTP", "x", "unknown environment variable POLICYHUB_PORT_50051_HTTP"),
        ("POLICYHUB_PORT_GRPC_TCP", "x", "unknown environment variable POLICYHUB_PORT_GRPC_TCP"),
        ("POLICYHUB_LOG_LEVL", "DEBUG", "unknown environment variable POLICYHUB_LOG_LEVL"),
        # A link URL under a name that is neither a port setting nor a link name is no link.
        ("POLICYHUB_DATABASE_URL", "tcp://10.0.0.1:1", "unknown environment variable POLICYHUB_DATABASE_URL"),
        # A port setting that is neither a number nor a link URL is a bad value, not a link.
        ("POLICYHUB_PORT", "tcp://10.0.0.1", "config key port: expected int"),
        ("POLICYHUB_PORT", "http://10.0.0.1:50051", "config key port: expected int"),
        ("POLICYHUB_METRICS_PORT", "tcp://10.0.0.1:x", "config key metrics_port: expected int"),
    ],
)
def test_near_links_are_still_refused(name, value, message):
    with pytest.raises(ConfigError) as info:
        load_config(env={name: value})
    assert message in str(info.value)


def test_no_configuration_key_looks_like_a_service_link():
    """A key of that shape would still be read (keys win), but Kubernetes could inject it by accident."""
    from policyhub.config import _SERVICE_LINK_NAME

    for key in Config.__dataclass_fields__:
        assert not _SERVICE_LINK_NAME.fullmatch("POLICYHUB_" + key.upper()), key


def test_workers_default_to_one_per_cpu_with_a_database_and_one_on_the_embedded_store(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    assert load_config(env={}).workers == 1
    assert load_config(env={"POLICYHUB_MONGODB_URI": "mongodb://db"}).workers == cpus
    path = tmp_path / "c.yaml"
    path.write_text("workers: 0\nmongodb_uri: mongodb://db\n")
    assert load_config(str(path), env={}).workers == cpus
    assert load_config(str(path), env={"POLICYHUB_WORKERS": "3"}).workers == 3
    assert load_config(env={"POLICYHUB_WORKERS": "1"}).workers == 1


def test_query_timeout_default_and_env():
    config = load_config(env={})
    assert (config.db_timeout_ms, config.db_query_timeout_ms, config.index_build_timeout_ms) == (5000, 20000, 300000)
    assert load_config(env={"POLICYHUB_INDEX_BUILD_TIMEOUT_MS": "600000"}).index_build_timeout_ms == 600000
    config = load_config(env={"POLICYHUB_DB_QUERY_TIMEOUT_MS": "60000", "POLICYHUB_DB_TIMEOUT_MS": "2000"})
    assert (config.db_timeout_ms, config.db_query_timeout_ms) == (2000, 60000)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"POLICYHUB_DB_QUERY_TIMEOUT_MS": "soon"}, "config key db_query_timeout_ms: expected int, got 'soon'"),
        ({"POLICYHUB_DB_QUERY_TIMEOUT_MS": "0"}, "config key db_query_timeout_ms: must be at least 1"),
        ({"POLICYHUB_DB_QUERY_TIMEOUT_MS": "4999"}, "db_query_timeout_ms: 4999 is below db_timeout_ms (5000)"),
        ({"POLICYHUB_DB_QUERY_TIMEOUT_MS": "9000", "POLICYHUB_DB_TIMEOUT_MS": "10000"}, "is below db_timeout_ms"),
        ({"POLICYHUB_DB_QUERY_TIMEOUTMS": "9000"}, "unknown environment variable POLICYHUB_DB_QUERY_TIMEOUTMS"),
        ({"POLICYHUB_INDEX_BUILD_TIMEOUT_MS": "0"}, "config key index_build_timeout_ms: must be at least 1"),
        ({"POLICYHUB_INDEX_BUILD_TIMEOUT_MS": "2m"}, "config key index_build_timeout_ms: expected int, got '2m'"),
    ],
)
def test_bad_query_timeouts(env, message):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert message in str(info.value)


IDENTITY = {"POLICYHUB_JWT_ISSUER": "https://idp.example", "POLICYHUB_JWT_AUDIENCE": "policyhub"}


def test_keys_from_a_jwks_uri():
    config = load_config(
        env={
            **IDENTITY,
            "POLICYHUB_JWKS_URI": "https://idp.example/.well-known/jwks.json",
            "POLICYHUB_JWKS_CA_FILE": "/etc/ssl/private-ca.pem",
            "POLICYHUB_JWKS_REFRESH_SECONDS": "600",
            "POLICYHUB_JWKS_REFRESH_MIN_SECONDS": "10",
        }
    )
    assert not config.development_mode
    assert (config.jwks_refresh_seconds, config.jwks_refresh_min_seconds) == (600.0, 10.0)
    defaults = load_config(env={**IDENTITY, "POLICYHUB_JWKS_URI": "https://idp.example/jwks"})
    assert (defaults.jwks_refresh_seconds, defaults.jwks_refresh_min_seconds) == (300.0, 30.0)
    assert load_config(env={}).development_mode


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {**IDENTITY, "POLICYHUB_JWKS_FILE": "/keys/jwks.json", "POLICYHUB_JWKS_URI": "https://idp.example/jwks"},
            "config keys jwks_file and jwks_uri: set one of them, not both",
        ),
        ({"POLICYHUB_JWKS_URI": "https://idp.example/jwks"}, "jwt_issuer and jwt_audience are required"),
        ({**IDENTITY, "POLICYHUB_JWKS_URI": "http://idp.example/jwks"}, "jwks_uri: must start with https://"),
        ({**IDENTITY, "POLICYHUB_JWKS_URI": "file:///etc/jwks.json"}, "jwks_uri: must start with https://"),
        ({"POLICYHUB_JWKS_CA_FILE": "/ca.pem"}, "jwks_ca_file: only jwks_uri reads it"),
        ({"POLICYHUB_JWKS_REFRESH_SECONDS": "0"}, "jwks_refresh_seconds: must be between 1 and 86400"),
        ({"POLICYHUB_JWKS_REFRESH_MIN_SECONDS": "0.5"}, "jwks_refresh_min_seconds: must be at least 1"),
        (
            {"POLICYHUB_JWKS_REFRESH_SECONDS": "60", "POLICYHUB_JWKS_REFRESH_MIN_SECONDS": "120"},
            "at most jwks_refresh_seconds",
        ),
        ({"POLICYHUB_JWKS_REFRESH_SECONDS": "soon"}, "config key jwks_refresh_seconds: expected float"),
    ],
)
def test_bad_jwks_uri_keys(env, message):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert message in str(info.value)


def test_otlp_keys_from_file_and_env(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tracing_exporter: otlp\notlp_endpoint: https://collector.example:4317\n")
    config = load_config(
        str(path), env={"POLICYHUB_OTLP_PROTOCOL": "http/protobuf", "POLICYHUB_OTLP_HEADERS": "x-api-key=k, x-org=o"}
    )
    assert (config.tracing_exporter, config.otlp_endpoint, config.otlp_protocol, config.otlp_headers) == (
        "otlp",
        "https://collector.example:4317",
        "http/protobuf",
        "x-api-key=k, x-org=o",
    )


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"POLICYHUB_TRACING_EXPORTER": "jaeger"},
            "tracing_exporter: 'jaeger' is not one of ['none', 'console', 'otlp']",
        ),
        (
            {"POLICYHUB_OTLP_ENDPOINT": "http://collector:4317"},
            "config keys otlp_endpoint: only the otlp tracing exporter reads them; set tracing_exporter: otlp",
        ),
        (
            {
                "POLICYHUB_TRACING_EXPORTER": "console",
                "POLICYHUB_OTLP_PROTOCOL": "grpc",
                "POLICYHUB_OTLP_HEADERS": "a=b",
            },
            "config keys otlp_protocol, otlp_headers: only the otlp tracing exporter reads them",
        ),
        (
            {"POLICYHUB_TRACING_EXPORTER": "otlp", "POLICYHUB_OTLP_PROTOCOL": "http/json"},
            "otlp_protocol: 'http/json' is not one of ['grpc', 'http/protobuf']",
        ),
        (
            {"POLICYHUB_TRACING_EXPORTER": "otlp", "POLICYHUB_OTLP_ENDPOINT": "collector:4317"},
            "otlp_endpoint: 'collector:4317' is not an http:// or https:// URL of a collector",
        ),
        (
            {"POLICYHUB_TRACING_EXPORTER": "otlp", "POLICYHUB_OTLP_HEADERS": "x-org=o,authorization"},
            "otlp_headers: 'authorization' is not a key=value pair (pairs separated by commas)",
        ),
    ],
)
def test_bad_tracing_keys(env, message):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert message in str(info.value)


def test_a_bad_header_is_named_by_its_key_never_its_value():
    with pytest.raises(ConfigError) as info:
        load_config(env={"POLICYHUB_TRACING_EXPORTER": "otlp", "POLICYHUB_OTLP_HEADERS": "bad key=s3cret"})
    assert "'bad key'" in str(info.value) and "s3cret" not in str(info.value)
