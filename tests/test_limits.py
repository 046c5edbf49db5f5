"""What one client may cost the real `placement-manager serve` process (on SQLite, with the
stand-ins as upstreams): header size and time, body time, connections, request threads,
page memory; and text logs a client cannot forge lines in."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from placement_dev.standins import PolicyStandIn

from placement.config import Database
from placement.model import Placement
from placement.store import Lease, make_store
from tests.harness.concurrency import wait_for
from tests.harness.databases import database_env
from tests.harness.problems import assert_problem
from tests.harness.processes import ServeProcess, launch
from tests.harness.standins import StandInUpstreams

BODY = {"catalog_item_instance_id": "c", "spec": {"service_type": "vm"}}


class Stack:
    def __init__(self, server: ServeProcess, policy: PolicyStandIn) -> None:
        self.server, self.policy = server, policy

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.server.url.removeprefix("http://").split(":")
        return host, int(port)

    def connect(self) -> socket.socket:
        return socket.create_connection(self.host_port, timeout=10)

    def exchange(self, request: bytes, wait: float = 10) -> bytes:
        """Send `request` on a new connection; all that comes back until it closes."""
        with self.connect() as sock:
            sock.settimeout(wait)
            with contextlib.suppress(OSError):  # refused before all was sent: read the answer
                sock.sendall(request)
            return _read_all(sock)

    def rss_kib(self, field: str = "VmRSS") -> int:
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith(f"{field}:"))
        return int(line.split()[1])


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass  # reset after the answer
    return answer


@contextmanager
def serve_stack(tmp_path: Path, db: Database, **env: str) -> Iterator[Stack]:
    with StandInUpstreams.serving() as standins:
        settings = database_env(db) | standins.env() | env
        with launch(settings, tmp_path / "serve.log") as server:
            yield Stack(server, standins.policy)


@pytest.fixture
def stack(tmp_path: Path, sqlite_db: Database) -> Iterator[Stack]:
    with serve_stack(
        tmp_path,
        sqlite_db,
        SVC_HEADER_TIMEOUT="1s",
        SVC_BODY_TIMEOUT="1s",
        SVC_MAX_CONNECTIONS="8",
        SVC_THREADS="4",
        SVC_QUEUE_WAIT="1s",
        LOG_FORMAT="text",
    ) as stack:
        yield stack


def head(path: str = "/api/v1alpha1/resources", *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def test_large_headers_are_refused_and_a_large_token_still_passes(stack: Stack) -> None:
    answer = stack.exchange(head("/api/v1alpha1/resources", "X-Big: " + "a" * (1 << 20)))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"type":"request-header-fields-too-large"' in answer
    token = "eyJ" + "a" * (40 << 10)  # an OIDC token with many claims
    answer = stack.exchange(head("/api/v1alpha1/resources", f"Authorization: Bearer {token}"))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_unfinished_large_headers_cost_little_memory(stack: Stack) -> None:
    idle = stack.rss_kib()
    sockets = [stack.connect() for _ in range(40)]
    try:
        for sock in sockets:  # 2 MiB of one header each, never finished
            with contextlib.suppress(OSError):  # refused once past the limit
                sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (2 << 20))
        for sock in sockets:
            assert _read_all(sock).startswith(b"HTTP/1.1 431 ")
    finally:
        for sock in sockets:
            sock.close()
    grown_mib = (stack.rss_kib("VmHWM") - idle) / 1024
    assert grown_mib < 40, f"{grown_mib:.0f} MiB more for 80 MiB of unfinished headers"


def test_slow_senders_are_cut_off(stack: Stack) -> None:
    started = time.monotonic()
    answer = stack.exchange(b"GET /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\n")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"type":"request-timeout"' in answer
    assert stack.exchange(b"") == b""  # nothing sent at all: closed
    body = json.dumps(BODY).encode()
    answer = stack.exchange(
        b"POST /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request body did not arrive within 1s" in answer
    assert time.monotonic() - started < 20


def test_connections_over_the_cap_get_503_but_health_and_metrics_answer(stack: Stack) -> None:
    api = stack.server.api
    idle = [stack.connect() for _ in range(10)]
    try:
        wait_for(
            lambda: requests.get(f"{api}/resources", timeout=10).status_code == 503,
            timeout=10,
            what="the connection cap",
        )
        refused = requests.get(f"{api}/resources", timeout=10)
        assert_problem(refused, 503, "service-unavailable")
        assert refused.headers["Retry-After"] == "1"
        assert requests.get(f"{api}/health", timeout=10).status_code == 200
        assert requests.get(f"{stack.server.url}/metrics", timeout=10).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    wait_for(
        lambda: requests.get(f"{api}/resources", timeout=10).status_code == 200,
        timeout=10,
        what="service below the cap",
    )


def create(api: str, rid: str) -> requests.Response:
    return requests.post(f"{api}/resources?id={rid}", json=BODY, timeout=30)


def test_health_answers_and_new_writes_are_refused_while_every_thread_is_busy(
    stack: Stack,
) -> None:
    api = stack.server.api
    stack.policy.hold("evaluate")
    with ThreadPoolExecutor(4) as pool:
        try:
            busy = [pool.submit(create, api, f"busy-{n}") for n in range(4)]
            stack.policy.wait_held("evaluate", timeout=10, count=4)  # all 4 threads wait

            for _ in range(5):
                started = time.monotonic()
                assert requests.get(f"{api}/health", timeout=10).status_code == 200
                assert time.monotonic() - started < 1.5
            started = time.monotonic()
            refused = create(api, "one-more")
            waited = time.monotonic() - started
        finally:
            stack.policy.release("evaluate")
        assert [b.result().status_code for b in busy] == [201] * 4
    assert_problem(refused, 503, "service-unavailable")
    assert refused.headers["Retry-After"] == "1"
    assert "request threads" in refused.json()["detail"]
    assert 0.9 < waited < 5, waited  # SVC_QUEUE_WAIT=1s
    assert create(api, "later").status_code == 201


def test_text_logs_escape_what_a_client_sends(stack: Stack) -> None:
    forged = "2026-12-01 00:00:00,000 INFO placement.access: DELETE /api/v1alpha1/resources/y 204"
    path = "/api/v1alpha1/resources/x%0A" + forged.replace(" ", "%20") + "%0D%1B%5B31m"
    assert stack.exchange(head(path)).startswith(b"HTTP/1.1 4")
    wait_for(lambda: "x\\n2026-12-01" in stack.server.log(), what="the access line")
    lines = stack.server.log().splitlines()
    assert not [line for line in lines if line.startswith("2026-12-01 00:00:00,000")]
    line = next(x for x in lines if "x\\n2026-12-01" in x)
    assert "\\r\\x1b[31m" in line
    assert "\x1b" not in stack.server.log()


def test_a_list_page_holds_a_bounded_amount_of_specs(tmp_path: Path, db: Database) -> None:
    store = make_store(db)
    store.open()
    for n in range(40):  # 1 MiB specs
        lease = Lease(f"make-r{n:02d}", 60)
        spec = {"blob": "x" * (1 << 20)}
        store.begin_create(Placement(f"r{n:02d}", "cat", spec, "p", "APPROVED"), lease)
        store.finish_create(f"r{n:02d}", lease.owner)
    store.close()
    with serve_stack(tmp_path, db) as stack:
        api = stack.server.api
        requests.get(f"{api}/resources?max_page_size=1", timeout=30)  # warm up
        idle = stack.rss_kib()
        with ThreadPoolExecutor(10) as pool:
            listed = list(pool.map(lambda _: _list_all(api), range(10)))
        grown_mib = (stack.rss_kib("VmHWM") - idle) / 1024
        kept_mib = (stack.rss_kib() - idle) / 1024
        assert all(ids == [f"r{n:02d}" for n in range(40)] for ids, _ in listed)
        assert all(pages > 1 for _, pages in listed)  # short pages, each continued
        assert grown_mib < 100, f"{grown_mib:.0f} MiB more for 10 lists of 40 MiB"
        # Large blocks go back to the system: threads do not keep their largest page.
        assert kept_mib < 45, f"{kept_mib:.0f} MiB kept after the lists"


def _list_all(api: str) -> tuple[list[str], int]:
    ids: list[str] = []
    pages, token = 0, None
    while True:
        params: dict[str, str] = {"page_token": token} if token else {}
        page = requests.get(f"{api}/resources", params=params, timeout=60).json()
        ids += [r["id"] for r in page["resources"]]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            return ids, pages
