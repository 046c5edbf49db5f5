"""Configuration from the environment: the Go service's names and defaults, strict parsing."""

from __future__ import annotations

import pytest

from placement.config import Config, ConfigError, parse_duration


def test_defaults_match_the_go_service() -> None:
    config = Config.from_env({})
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert config.log_level == "INFO"
    db = config.database
    assert (db.type, db.host, db.port, db.name, db.user, db.password) == (
        "pgsql",
        "localhost",
        5432,
        "placement-manager",
        "",
        "",
    )
    assert (config.policy.url, config.policy.timeout) == ("http://localhost:8081", 10.0)
    assert (config.sprm.url, config.sprm.timeout) == ("http://localhost:8082", 10.0)
    assert (config.retry.tries, config.retry.initial, config.retry.maximum) == (4, 1.0, 4.0)


def test_values_are_read() -> None:
    config = Config.from_env(
        {
            "SVC_ADDRESS": "127.0.0.1:9000",
            "SVC_LOG_LEVEL": "debug",
            "DB_TYPE": "sqlite",
            "DB_NAME": "/tmp/x.db",
            "DB_PORT": "6543",
            "POLICY_MANAGER_EVALUATION_URL": "http://policy:1/",
            "POLICY_MANAGER_EVALUATION_TIMEOUT": "1m30s",
            "SP_RESOURCE_MANAGER_TIMEOUT": "250ms",
        }
    )
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 9000, "DEBUG")
    assert (config.database.type, config.database.name, config.database.port) == (
        "sqlite",
        "/tmp/x.db",
        6543,
    )
    assert config.policy.url == "http://policy:1"
    assert config.policy.timeout == 90.0
    assert config.sprm.timeout == 0.25


def test_compose_aliases_are_accepted_and_primary_names_win() -> None:
    config = Config.from_env({"BIND_ADDRESS": "[::1]:8000", "DB_PASS": "secret"})
    assert (config.host, config.port, config.database.password) == ("::1", 8000, "secret")
    config = Config.from_env(
        {"BIND_ADDRESS": ":1", "SVC_ADDRESS": ":2", "DB_PASS": "a", "DB_PASSWORD": "b"}
    )
    assert (config.port, config.database.password) == (2, "b")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_TYPE", "mysql"),
        ("DB_PORT", "abc"),
        ("DB_PORT", "70000"),
        ("SVC_ADDRESS", "8080"),
        ("SVC_ADDRESS", "host:port"),
        ("SVC_ADDRESS", "::1:80"),
        ("BIND_ADDRESS", "nope"),
        ("SVC_LOG_LEVEL", "loud"),
        ("POLICY_MANAGER_EVALUATION_TIMEOUT", "10"),
        ("POLICY_MANAGER_EVALUATION_TIMEOUT", "0s"),
        ("SP_RESOURCE_MANAGER_TIMEOUT", "ten seconds"),
        ("SP_RESOURCE_MANAGER_URL", "sprm:8082"),
        ("POLICY_MANAGER_EVALUATION_URL", "ftp://policy"),
        ("UPSTREAM_RETRY_MAX_TRIES", "0"),
        ("DB_NAME", ""),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}={value!r}: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("100us", 0.0001),
        ("1h1m1s", 3661.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10", "-1s", "1d", "1s 2s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_limits_have_defaults_and_are_read() -> None:
    limits = Config.from_env({}).limits
    assert (limits.max_header_bytes, limits.header_timeout, limits.body_timeout) == (
        65536,
        10.0,
        30.0,
    )
    assert (limits.max_connections, limits.queue_wait, limits.page_max_bytes) == (
        1024,
        5.0,
        1048576,
    )
    limits = Config.from_env(
        {
            "SVC_MAX_HEADER_BYTES": "32768",
            "SVC_HEADER_TIMEOUT": "2s",
            "SVC_BODY_TIMEOUT": "1m",
            "SVC_MAX_CONNECTIONS": "300",
            "SVC_QUEUE_WAIT": "0",
            "SVC_PAGE_MAX_BYTES": "4096",
        }
    ).limits
    assert (limits.max_header_bytes, limits.header_timeout, limits.body_timeout) == (
        32768,
        2.0,
        60.0,
    )
    assert (limits.max_connections, limits.queue_wait, limits.page_max_bytes) == (300, 0.0, 4096)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SVC_MAX_HEADER_BYTES", "100"),
        ("SVC_HEADER_TIMEOUT", "0s"),
        ("SVC_BODY_TIMEOUT", "soon"),
        ("SVC_MAX_CONNECTIONS", "0"),
        ("SVC_QUEUE_WAIT", "-1s"),
        ("SVC_PAGE_MAX_BYTES", "0"),
    ],
)
def test_bad_limits_stop_start_up_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


def test_the_issuer_is_kept_as_written_and_its_keys_max_age_is_read() -> None:
    env = {
        "AUTH_DISABLED": "false",
        "AUTH_ISSUER_URL": "https://idp.example/realms/dcm/",
        "AUTH_JWT_AUDIENCE": "placement",
    }
    auth = Config.from_env(env).auth
    assert auth.issuer_url == "https://idp.example/realms/dcm/"  # tokens' iss, exactly
    assert auth.keys_max_age == 3600.0
    assert Config.from_env(env | {"AUTH_KEYS_MAX_AGE": "15m"}).auth.keys_max_age == 900.0
    with pytest.raises(ConfigError, match="AUTH_KEYS_MAX_AGE"):
        Config.from_env(env | {"AUTH_KEYS_MAX_AGE": "0s"})
