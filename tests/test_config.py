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
    assert config.audit_interval == 0.0  # the in-service drift audit is off


def test_the_audit_interval_is_a_duration() -> None:
    assert Config.from_env({"AUDIT_INTERVAL": "15m"}).audit_interval == 900.0
    assert Config.from_env({"AUDIT_INTERVAL": "0"}).audit_interval == 0.0


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
        ("AUDIT_INTERVAL", "hourly"),
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
