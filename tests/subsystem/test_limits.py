"""What one client may cost the real `placement-manager serve` process (on SQLite, with the
stand-ins as upstreams): header size and time, body size and time, connections, request
threads, page memory; what the limits decide whatever the reads (large creates sent in
one write, pipelined requests); and text logs a client cannot forge lines in."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
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
    def __init__(self, server: ServeProcess, standins: StandInUpstreams) -> None:
        self.server, self.standins = server, standins
        self.policy: PolicyStandIn = standins.policy

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
            yield Stack(server, standins)


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


# --- the limits decide the same whatever the reads (issue 20) ---------------------------


def create_of(size: int) -> bytes:
    """A create's JSON body of exactly `size` bytes (user data makes up the rest)."""
    body = {"catalog_item_instance_id": "c", "spec": {"service_type": "vm", "user_data": ""}}
    padding = size - len(json.dumps(body).encode())
    body["spec"]["user_data"] = "u" * padding  # type: ignore[index]
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def post_create(api: str, rid: str, data: bytes, **headers: str) -> requests.Response:
    """`requests` writes a bytes body in one send with its head (http.client does)."""
    return requests.post(
        f"{api}/resources?id={rid}",
        data=data,
        headers={"Content-Type": "application/json", **headers},
        timeout=60,
    )


def test_large_creates_are_created_once_and_the_limits_refuse_without_running(
    tmp_path: Path, db: Database
) -> None:
    limit = 1 << 20  # SVC_MAX_BODY_BYTES's default
    with serve_stack(tmp_path, db) as stack:
        api, standins = stack.server.api, stack.standins
        sizes = {"big-80k": 80_000, "big-200k": 200_000, "big-limit": limit - 1}
        for rid, size in sizes.items():
            response = post_create(api, rid, create_of(size))
            assert response.status_code == 201, response.content[:300]
        assert standins.creates() == list(sizes)
        listed = requests.get(f"{api}/resources", timeout=30).json()["resources"]
        assert sorted(r["id"] for r in listed) == sorted(sizes)

        assert_problem(post_create(api, "over", create_of(limit + 1)), 413, "payload-too-large")
        big_head = {"X-Big": "h" * (70 << 10)}  # over SVC_MAX_HEADER_BYTES (64 KiB)
        refused = post_create(api, "big-head", create_of(80_000), **big_head)
        assert_problem(refused, 431, "request-header-fields-too-large")
        assert standins.creates() == list(sizes)
        assert len(standins.evaluations()) == len(sizes)
        for rid in ("over", "big-head"):
            assert requests.get(f"{api}/resources/{rid}", timeout=30).status_code == 404
        assert " 500 " not in stack.server.log()


def _answers_until_closed(sock: socket.socket, deadline: float = 20) -> tuple[bytes, float]:
    """All the server writes until it closes the connection, and the seconds from the
    first complete answer (head and Content-Length body) to the close."""
    sock.settimeout(deadline)
    received, answered = b"", None
    with contextlib.suppress(OSError):  # a reset once it closed is a close too
        while chunk := sock.recv(65536):
            received += chunk
            if answered is None and _complete(received):
                answered = time.monotonic()
    assert answered is not None, received[:300]
    return received, time.monotonic() - answered


def _complete(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head.lower())
    return bool(found and length and len(body) >= int(length.group(1)))


def _statuses(received: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1.1 (\d{3}) ", received)]


def _send_until_refused(sock: socket.socket, data: bytes, seconds: float) -> None:
    """Keep sending `data` until the server shuts the connection (or `seconds` pass)."""
    ends = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while time.monotonic() < ends:
            sock.sendall(data)


def test_a_huge_declared_body_is_refused_and_the_connection_closed(stack: Stack) -> None:
    with stack.connect() as sock:
        sock.sendall(
            b"POST /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"
        )
        flood = threading.Thread(target=_send_until_refused, args=(sock, b"0" * 65536, 30))
        flood.start()
        try:
            answer, closed_after = _answers_until_closed(sock)
        finally:
            flood.join(40)
    assert _statuses(answer) == [413], answer[:200]
    assert b"connection: close" in answer.lower()
    assert closed_after < 2, f"closed {closed_after:.1f}s after the answer"


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        # 415: a body without Content-Type, answered before it is read
        (b"POST /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n", 415),
        # a GET sent with a body: the list answers without reading it
        (b"GET /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n", 200),
        # no such path
        (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n", 404),
    ],
    ids=["415", "get-with-body", "404"],
)
def test_a_trickle_after_an_early_answer_is_cut_off(
    stack: Stack, request_head: bytes, status: int
) -> None:
    """SVC_BODY_TIMEOUT=1s: the body's time cannot be dodged by an answer sent first."""
    with stack.connect() as sock:
        sock.sendall(request_head + b"\r\n")
        trickle = threading.Thread(target=_trickle, args=(sock, 30))
        trickle.start()
        try:
            answer, closed_after = _answers_until_closed(sock)
        finally:
            trickle.join(40)
    assert _statuses(answer) == [status], answer[:200]
    assert b"connection: close" in answer.lower()
    assert closed_after < 5, f"trickled on for {closed_after:.1f}s after the answer"


def test_a_trickling_head_after_an_answer_is_cut_off(stack: Stack) -> None:
    """SVC_HEADER_TIMEOUT=1s runs from the answer, however often a byte arrives."""
    with stack.connect() as sock:
        sock.sendall(b"GET /api/v1alpha1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        trickle = threading.Thread(target=_trickle, args=(sock, 30, b"GET /api/v1alpha1/" * 4))
        trickle.start()
        try:
            answers, _ = _answers_until_closed(sock)
        finally:
            trickle.join(40)
    assert _statuses(answers) == [200, 408], answers[:500]


def _trickle(sock: socket.socket, seconds: float, data: bytes = b"x" * 1000) -> None:
    """One byte every 0.2 s until the server shuts the connection (or `seconds` pass)."""
    ends = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        for byte in data:
            if time.monotonic() > ends:
                return
            time.sleep(0.2)
            sock.sendall(bytes([byte]))


def test_a_create_and_an_oversized_get_in_one_write_answer_in_order(stack: Stack) -> None:
    body = create_of(2000)
    create = (
        b"POST /api/v1alpha1/resources?id=first HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    oversized = head("/api/v1alpha1/resources/first", "X-Big: " + "g" * (70 << 10))
    answers = stack.exchange(create + body + oversized, wait=30)
    assert _statuses(answers) == [201, 431], answers[:500]
    assert stack.standins.creates() == ["first"]
    resource = requests.get(f"{stack.server.api}/resources/first", timeout=30)
    assert resource.status_code == 200
