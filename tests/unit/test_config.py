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


def test_workers_default_to_one_per_cpu_with_a_database_and_one_on_the_embedded_store(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    assert load_config(env={}).workers == 1
    assert load_config(env={"POLICYHUB_MONGODB_URI": "mongodb://db"}).workers == cpus
    path = tmp_path / "c.yaml"
    path.write_text("workers: 0\nmongodb_uri: mongodb://db\n")
    assert load_config(str(path), env={}).workers == cpus
    assert load_config(str(path), env={"POLICYHUB_WORKERS": "3"}).workers == 3
    assert load_config(env={"POLICYHUB_WORKERS": "1"}).workers == 1
