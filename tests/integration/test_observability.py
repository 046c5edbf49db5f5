"""Request ids, structured logs, metrics, health when the database is away."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
import requests
from placement_manager_client import Client
from placement_manager_client.api.resource import get_resource

from placement.config import Config, Database
from placement.telemetry import context
from placement.telemetry.logs import JsonFormatter, TextFormatter, mask_urls
from tests.harness.app import serve_config
from tests.harness.calls import create
from tests.harness.concurrency import wait_for
from tests.harness.mocked import EVALUATE, MockedUpstreams
from tests.harness.problems import assert_problem

GENERATED_ID = re.compile(r"req-[0-9a-f]{12}-[0-9a-f]+")


def test_a_request_id_is_generated_and_echoed(base_url: str) -> None:
    ok = requests.get(f"{base_url}/api/v1alpha1/health", timeout=10)
    problem = requests.get(f"{base_url}/api/v1alpha1/resources/nope", timeout=10)

    assert GENERATED_ID.fullmatch(ok.headers["X-Request-ID"])
    assert GENERATED_ID.fullmatch(problem.headers["X-Request-ID"])
    assert ok.headers["X-Request-ID"] != problem.headers["X-Request-ID"]
    assert problem.json()["request_id"] == problem.headers["X-Request-ID"]


def test_the_clients_request_id_is_kept_and_passed_upstream(
    base_url: str, client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()

    response = create(client.with_headers({"X-Request-ID": "ticket-4711.a"}), "web-1")

    assert response.headers["X-Request-ID"] == "ticket-4711.a"
    calls = mocked_upstreams.upstream_calls()
    assert len(calls) == 2
    assert {c.headers["X-Request-ID"] for c in calls} == {"ticket-4711.a"}
    assert all("Authorization" not in c.headers for c in calls)


@pytest.mark.parametrize("given", ["x" * 200, "two words", "é", "a\tb"])
def test_unsafe_request_ids_are_replaced(base_url: str, given: str) -> None:
    response = requests.get(
        f"{base_url}/api/v1alpha1/resources/nope",
        headers={"X-Request-ID": given.encode("utf-8").decode("latin-1")},
        timeout=10,
    )
    assert GENERATED_ID.fullmatch(response.headers["X-Request-ID"])


def test_each_request_logs_one_structured_line(
    base_url: str,
    client: Client,
    mocked_upstreams: MockedUpstreams,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()
    caplog.set_level(logging.INFO)

    response = create(client.with_headers({"X-Request-ID": "r-1"}), "web-1")

    lines = [r for r in caplog.records if r.name == "placement.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.operation, line.method, line.status) == ("CreateResource", "POST", 201)  # type: ignore[attr-defined]
    assert line.resource_id == "web-1"  # type: ignore[attr-defined]
    assert line.duration_ms > 0  # type: ignore[attr-defined]
    upstream_lines = [r for r in caplog.records if r.name == "placement.upstream"]
    assert [(r.upstream, r.outcome) for r in upstream_lines] == [  # type: ignore[attr-defined]
        ("policy", "2xx"),
        ("sprm", "2xx"),
    ]
    assert response.status_code == 201
    assert all("vcpu" not in r.getMessage() for r in caplog.records)  # no specs in logs


def test_log_lines_carry_the_request_id_in_both_formats() -> None:
    record = logging.LogRecord("placement.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.resource_id = "web-1"
    context.begin("abc")

    line = json.loads(JsonFormatter().format(record))
    text = TextFormatter().format(record)

    assert line["message"] == "hello you"
    assert line["level"] == "info"
    assert (line["request_id"], line["resource_id"]) == ("abc", "web-1")
    assert text.endswith("hello you request_id=abc resource_id=web-1")


def test_text_logs_escape_control_characters_from_clients() -> None:
    forged = "/resources/x\n2026-12-01 00:00:00,000 INFO placement.access: DELETE /y 204\r\x1b[2J"
    record = logging.LogRecord(
        "placement.access", logging.INFO, __file__, 1, "GET %s", (forged,), None
    )
    record.path = forged
    try:
        raise ValueError("kid \x1b[31m\nforged line")
    except ValueError:
        record.exc_info = sys.exc_info()

    text = TextFormatter().format(record)

    first, *trace = text.split("\n")
    assert "x\\n2026-12-01" in first
    assert "\\r\\x1b[2J" in first
    assert "path=/resources/x\\n2026" in first
    assert all(line.startswith("    | ") for line in trace)  # never a line of its own
    assert "\x1b" not in text
    assert "\r" not in text


def metric(page: str, name: str, **labels: str) -> float:
    """The value of one sample on a Prometheus text page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in page.splitlines():
        sample, _, value = line.rpartition(" ")
        if not sample.startswith(name + "{") and sample != name:
            continue
        found = ",".join(sorted(sample[len(name) + 1 : -1].split(","))) if "{" in sample else ""
        if found == wanted:
            return float(value)
    return 0.0


def test_metrics_count_requests_upstream_calls_and_retries(
    base_url: str, client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    before = requests.get(f"{base_url}/metrics", timeout=10).text
    mocked_upstreams.policy_fails(503)

    create(client, "web-1")
    get_resource.sync_detailed("nope", client=client)

    page = requests.get(f"{base_url}/metrics", timeout=10)
    assert page.headers["Content-Type"].startswith("text/plain")
    after = page.text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    requests_total = "placement_http_requests_total"
    assert grew(requests_total, operation="CreateResource", method="POST", status="500") == 1
    assert grew(requests_total, operation="GetResource", method="GET", status="404") == 1
    assert grew("placement_http_request_duration_seconds_count", operation="GetResource") == 1
    upstream_total = "placement_upstream_requests_total"
    assert grew(upstream_total, upstream="policy", operation="evaluate", outcome="5xx") == 4
    assert grew("placement_upstream_retries_total", upstream="policy", operation="evaluate") == 3
    assert "placement_reconciler_runs_total" in after


@pytest.fixture
def forwarding_url(config: Config, mocked_upstreams: MockedUpstreams) -> Iterator[str]:
    with serve_config(config, forward_auth=True) as url:
        yield url


def test_the_callers_token_is_forwarded_when_configured(
    forwarding_url: str, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()

    response = requests.post(
        f"{forwarding_url}/api/v1alpha1/resources",
        json={"catalog_item_instance_id": "c", "spec": {"a": 1}},
        headers={"Authorization": "Bearer tok-123"},
        timeout=10,
    )

    assert response.status_code == 201
    assert [c.headers["Authorization"] for c in mocked_upstreams.upstream_calls()] == [
        "Bearer tok-123",
        "Bearer tok-123",
    ]
    assert EVALUATE in mocked_upstreams.upstream_calls()[0].url


def _admin(db: Database) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=db.host, port=db.port, dbname="postgres", user=db.user, autocommit=True
    )


def _lock_out(db: Database, allowed: bool) -> None:
    with _admin(db) as conn:
        conn.execute(f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (db.name,),
            )


@pytest.mark.parametrize("db", ["pgsql"], indirect=True)
def test_health_and_api_answer_503_quickly_while_the_database_is_away(
    base_url: str, db: Database
) -> None:
    assert requests.get(f"{base_url}/api/v1alpha1/health", timeout=10).status_code == 200
    _lock_out(db, allowed=False)
    try:
        for path in ("/health", "/resources", "/resources/web-1"):
            started = time.monotonic()
            response = requests.get(f"{base_url}/api/v1alpha1{path}", timeout=10)
            assert time.monotonic() - started < 5
            assert_problem(response, 503, "service-unavailable")
            assert "Traceback" not in response.text
    finally:
        _lock_out(db, allowed=True)
    wait_for(lambda: _healthy(base_url), timeout=30, what="recovery")


def _healthy(base_url: str) -> bool:
    return requests.get(f"{base_url}/api/v1alpha1/health", timeout=10).status_code == 200


def test_the_database_password_never_reaches_the_output() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "SVC_", "LOG_"))} | {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": "1",
        "DB_PASSWORD": "hunter2-secret",
        "DB_CONNECT_TIMEOUT": "1s",
        "SVC_LOG_LEVEL": "debug",
    }
    result = subprocess.run(
        [sys.executable, "-m", "placement", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "database unavailable" in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("sprm http://user:secret@h:1/x", "sprm http://***@h:1/x"),
        ("'https://token@h?x=1'", "'https://***@h?x=1'"),
        ("http://user:p@ss@h/x (an @ left unescaped)", "http://***@h/x (an @ left unescaped)"),
        ("http://h/x?mail=a@b, user@host", "http://h/x?mail=a@b, user@host"),
    ],
)
def test_urls_user_information_is_masked_in_every_line(text: str, shown: str) -> None:
    assert mask_urls(text) == shown
    record = logging.LogRecord("placement", logging.INFO, __file__, 1, "%s", (text,), None)
    assert json.loads(JsonFormatter().format(record))["message"] == shown
    assert f"INFO placement: {shown}" in TextFormatter().format(record)
