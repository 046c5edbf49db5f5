"""The connection limits decide the same whatever the network does (`placement.http.
connections`, the protocol `serve` runs): the real protocol class, a recording app and
an in-memory transport.

The property (Hypothesis): a stream of requests (one or several pipelined; with and
without bodies, by length or chunked; heads, bodies and trailers under and over their
limits; well-formed and not), cut at arbitrary points into reads, gets the same answers
(status and body, in order), hands the app the same requests and ends the connection the
same way as when it arrives in one read. CI runs a fixed, bounded number of examples
(derandomized). To run it long, on a seed of its own:
    CONNECTION_EXAMPLES=20000 CONNECTION_SEED=$RANDOM tox -e py -- tests/unit/test_connections.py
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from placement.config import Limits
from placement.http.framing import Framing, Piece
from tests.harness.connection import SETTLE_ROUNDS, Outcome, Recorder, drive

EXAMPLES = int(os.environ.get("CONNECTION_EXAMPLES", "600"))
SEED = os.environ.get("CONNECTION_SEED")  # unset: derandomized, the same examples each run
HEAD_LIMIT = 160  # bytes of a request line and headers
BODY_LIMIT = 48  # bytes of a body (the app's BodyLimit)
LIMITS = Limits(max_header_bytes=HEAD_LIMIT, header_timeout=3600, max_connections=1)
CRLF = "\r\n"


def outcome(reads: list[bytes], crowded: bool = False, rounds: int = SETTLE_ROUNDS) -> Outcome:
    return asyncio.run(drive(reads, LIMITS, Recorder(BODY_LIMIT), crowded, rounds))


# --- request streams -------------------------------------------------------------------


def _head(method: str, path: str, headers: list[str], size: int | None) -> bytes:
    """A head; padded with an X-Pad header to `size` bytes when given (at least its own)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: x", *headers]
    text = CRLF.join(lines) + CRLF
    if size is not None:
        pad = max(0, size - len(text) - len("X-Pad: ") - 4)
        text += f"X-Pad: {'p' * pad}{CRLF}"
    return (text + CRLF).encode()


_sizes = st.one_of(
    st.none(),
    st.integers(HEAD_LIMIT - 2, HEAD_LIMIT + 2),  # at the head limit
    st.integers(40, 3 * HEAD_LIMIT),
)
_paths = st.sampled_from(["/a", "/b/c", "/metrics", "/api/v1alpha1/health"])


@st.composite
def _get(draw: st.DrawFn) -> bytes:
    headers = draw(st.sampled_from([[], ["Connection: close"], ["Content-Length: 0"]]))
    return _head("GET", draw(_paths), headers, draw(_sizes))


_bodies = st.integers(0, 2 * BODY_LIMIT).map(lambda n: bytes(97 + i % 26 for i in range(n)))


@st.composite
def _post(draw: st.DrawFn) -> bytes:
    body = draw(_bodies)
    headers = ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return _head("POST", draw(_paths), headers, draw(_sizes)) + body


@st.composite
def _chunked(draw: st.DrawFn) -> bytes:
    chunks = draw(st.lists(_bodies.filter(bool), max_size=3))
    head = _head("POST", draw(_paths), ["Transfer-Encoding: chunked"], draw(_sizes))
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    extension = draw(st.sampled_from([b"", b";name=value"]))
    trailers = draw(st.sampled_from([b"", b"X-Trailer: t\r\n", b"X-Big: " + b"t" * 200 + b"\r\n"]))
    return head + encoded + b"0" + extension + b"\r\n" + trailers + b"\r\n"


_malformed = st.sampled_from(
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /a HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /a HTTP/1.1\nHost: x\n\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    ]
)
_request = st.one_of(_get(), _post(), _chunked(), _malformed)
_gap = st.sampled_from([b"", b"", b"", b"\r\n"])  # what some clients send between requests


@st.composite
def _cut_stream(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    requests = draw(st.lists(st.tuples(_gap, _request), min_size=1, max_size=4))
    stream = b"".join(gap + request for gap, request in requests)
    if draw(st.booleans()):
        stream = stream[: draw(st.integers(1, len(stream)))]  # the client stops midway
    cuts = draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=8, unique=True))
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@seed(int(SEED or 0))
@given(_cut_stream(), st.booleans())
def test_what_is_decided_does_not_depend_on_how_the_bytes_arrive(
    cut: tuple[bytes, list[bytes]], crowded: bool
) -> None:
    stream, reads = cut
    whole = outcome([stream], crowded)
    assert outcome(reads, crowded) == whole
    # Byte by byte, the app gets one turn of the loop between two bytes.
    assert outcome([bytes([b]) for b in stream], crowded, rounds=1) == whole


# --- the framing itself ----------------------------------------------------------------


def pieces(framing: Framing, data: bytes) -> list[tuple[bytes, Piece]]:
    found, pos = [], 0
    while pos < len(data):
        end, ends = framing.piece(data, pos)
        found.append((data[pos:end], ends))
        if ends in (Piece.OVER, Piece.DISCARD):
            break
        if ends is Piece.HEAD:
            framing.body(3 if b"POST" in data[pos:end] else None)
        pos = end
    return found


def test_a_head_is_counted_alone_when_its_body_and_the_next_request_share_its_read() -> None:
    head = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
    following = b"GET /b HTTP/1.1\r\n\r\n"
    framing = Framing(max_head=len(head))
    assert pieces(framing, head + b"abc" + following) == [
        (head, Piece.HEAD),
        (b"abc", Piece.MESSAGE),
        (following, Piece.HEAD),
    ]


def test_a_head_one_byte_over_the_limit_is_over_whatever_the_reads() -> None:
    head = b"GET /a HTTP/1.1\r\nX: y\r\n\r\n"
    assert pieces(Framing(len(head) - 1), head)[-1] == (head[:-1], Piece.OVER)
    framing = Framing(len(head) - 1)
    assert pieces(framing, head[:-2]) == [(head[:-2], Piece.PART)]
    assert pieces(framing, head[-2:]) == [(head[-2:-1], Piece.OVER)]
    framing = Framing(len(head))
    assert pieces(framing, head[:-1]) == [(head[:-1], Piece.PART)]
    assert pieces(framing, head[-1:]) == [(head[-1:], Piece.HEAD)]


def test_a_served_request_leaves_nothing_for_the_cyclic_collector() -> None:
    """Each request's cycle is freed when its answer is out (reference counting), not
    left, with its scope and headers, for the cyclic collector: under load, a GET cost
    about a fifth more CPU when the protocol's channels and the cycle named each other."""
    requests = [_head("GET", f"/r{n}", [], None) for n in range(20)]
    gc.collect()
    gc.disable()
    try:
        served = outcome([b"".join(requests)])
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if type(o).__name__ == "RequestResponseCycle"]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert [status for status, _ in served.answers] == [200] * 20
    # The last one goes with its connection (uvicorn's protocol and cycle name each other).
    assert len(left) <= 1, f"{len(left)} of 20 requests left for the cyclic collector"
