"""NatsSettings (what reaches a log) and the connection options built from them,
credentials checked by a real nats-server."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import nats
import nats.errors
import pytest

from placement.config import NatsSettings
from placement.events import StatusConsumer
from placement.events.consumer import Tuning, connect_options
from tests.harness.concurrency import wait_for
from tests.harness.nats import NatsServer

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SEED = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"  # nkeys' documented test seed


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("nats://nats:4222", "nats://nats:4222"),
        ("nats://user:secret@nats:4222", "nats://user:***@nats:4222"),
        ("nats://s3cr3t-token@nats:4222", "nats://***@nats:4222"),
        ("tls://a:p@h1:4222, nats://h2:4222", "tls://a:***@h1:4222,nats://h2:4222"),
        ("nats://u:p@ss@nats:4222", "nats://u:***@nats:4222"),
        (None, None),
    ],
)
def test_safe_url_masks_passwords_and_tokens(url: str | None, safe: str | None) -> None:
    assert NatsSettings(url=url).safe_url() == safe


def test_repr_shows_no_secret() -> None:
    settings = NatsSettings(url="nats://u:pw1@h:4222", token="tok2", password="pw3", nkey_seed=SEED)
    shown = repr(settings)
    assert all(secret not in shown for secret in ("pw1", "tok2", "pw3", SEED))
    assert "nats://u:***@h:4222" in shown


def test_defaults_and_servers() -> None:
    settings = NatsSettings(url=" nats://a:4222 ,nats://b:4222,")
    assert (settings.subject, settings.stream, settings.consumer) == (
        "dcm.>",
        "dcm-status",
        "placement-manager",
    )
    assert settings.servers() == ["nats://a:4222", "nats://b:4222"]
    assert NatsSettings().servers() == []


def test_a_consumer_needs_a_url() -> None:
    with pytest.raises(ValueError, match="url"):
        StatusConsumer(NatsSettings(), lambda event: "applied")


def test_connect_options_carry_the_credentials(tmp_path: Path) -> None:
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(SEED)
    base = NatsSettings(url="nats://h:4222", user="u", password="p", creds_file="/c.creds")
    options = connect_options(base, Tuning())
    assert (options["user"], options["password"], options["user_credentials"]) == (
        "u",
        "p",
        "/c.creds",
    )
    assert "token" not in options
    assert "tls" not in options
    assert options["allow_reconnect"] is False
    from_string = connect_options(NatsSettings(url="nats://h", nkey_seed=SEED), Tuning())
    assert from_string["nkeys_seed_str"] == SEED
    from_file = connect_options(NatsSettings(url="nats://h", nkey_seed=str(seed_file)), Tuning())
    assert from_file["nkeys_seed"] == str(seed_file)
    tls = connect_options(NatsSettings(url="tls://h", tls_ca_file=CA_BUNDLE), Tuning())
    assert isinstance(tls["tls"], ssl.SSLContext)
    assert tls["tls"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("token", "connects"), [("right-token", True), ("wrong-x9", False)])
def test_a_token_reaches_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, token: str, connects: bool
) -> None:
    server = NatsServer(tmp_path / "js", extra=["--auth", "right-token"])
    server.start()
    consumer = StatusConsumer(
        NatsSettings(url=server.url, token=token), lambda event: "applied", Tuning()
    )
    try:
        consumer.start()
        if connects:
            wait_for(lambda: consumer.connected, what="a connection with the token")
        else:
            # Refused: the consumer keeps trying without ever being connected.
            wait_for(lambda: "Authorization Violation" in caplog.text, what="the refusal logged")
            assert not consumer.connected
        assert token not in caplog.text
    finally:
        consumer.stop()
        server.stop()


def test_a_connect_to_a_server_that_is_down_fails_at_once() -> None:
    """The consumer's own backoff paces the tries (and logs them): nats-py must not retry
    inside one connect."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket is closed

    async def connect() -> None:
        settings = NatsSettings(url=f"nats://127.0.0.1:{closed}")
        await nats.connect(**connect_options(settings, Tuning()))

    with pytest.raises(nats.errors.NoServersError):
        asyncio.run(asyncio.wait_for(connect(), timeout=10))
