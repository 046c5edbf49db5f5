"""Where each request begins and ends in the bytes of a connection, whatever the reads.

httptools parses requests but tells no offsets: fed a read holding the end of one request,
its body and the start of the next (as clients that write a head and its body at once, or
pipeline, send them), it cannot say how many of those bytes were a head. So the protocol
(`connections.py`) feeds it one piece at a time, cut here: a head ends at its empty line;
the body after it runs `Content-Length` bytes, or to its last chunk and trailers. Each
head (and each chunked body's trailers) is counted exactly, from its first byte to its
empty line, and is over the limit once `max_head` bytes passed without that line. The
parser stays the judge of what is valid: it fails on anything this framing would read
otherwise (it takes only CRLF line ends), and the protocol checks that both agree.
"""

from __future__ import annotations

import enum
import re

_EMPTY_LINE = b"\r\n\r\n"
_HEAD_START = re.compile(rb"[^\r\n]")  # llhttp skips CR and LF before a request line
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_SIZE_LINE_KEPT = 32  # bytes of a chunk-size line kept to read the size from


class Piece(enum.Enum):
    """What ends where a piece ends."""

    PART = "part"  # nothing: more of the same follows
    HEAD = "head"  # a request's head (the protocol then says what body follows)
    MESSAGE = "message"  # a request's body (chunks and trailers included)
    OVER = "over"  # a head (or trailers) reached the limit without ending: refuse it
    DISCARD = "discard"  # bytes after the last request the connection serves


class _State(enum.Enum):
    BETWEEN = "between"  # before a head
    HEAD = "head"
    BODY_OF = "body-of"  # waiting to be told the body of the head just ended
    BODY = "body"  # Content-Length bytes
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_END = "chunk-end"  # the CRLF after a chunk's data
    TRAILERS = "trailers"
    CLOSED = "closed"


class Framing:
    """The pieces of one connection's byte stream. `piece(data, pos)` says where the next
    piece of `data` starting at `pos` ends, and what ends with it; after a HEAD piece,
    `body(...)` says what follows it."""

    def __init__(self, max_head: int) -> None:
        self._max_head = max_head
        self._state = _State.BETWEEN
        self._section = 0  # bytes of the current head (or trailers) so far
        self._tail = b""  # its last bytes, for an empty line split across reads
        self._left = 0  # bytes left of a body, a chunk's data or its CRLF
        self._line = b""  # the start of a chunk-size line split across reads

    @property
    def in_head(self) -> bool:
        """Whether some of a head has arrived, and not its end."""
        return self._state is _State.HEAD and self._section > 0

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def close(self) -> None:
        """No request follows: the rest of the stream is discarded."""
        self._state = _State.CLOSED

    def body(self, length: int | None, chunked: bool = False) -> None:
        """What follows the head just ended: `length` bytes, chunks, or (neither) nothing."""
        if chunked:
            self._state, self._line = _State.CHUNK_SIZE, b""
        elif length:
            self._state, self._left = _State.BODY, length
        else:
            self._state = _State.BETWEEN

    def piece(self, data: bytes, pos: int) -> tuple[int, Piece]:
        """The end of the next piece of `data[pos:]` (not empty), and what ends there."""
        state = self._state
        if state is _State.BETWEEN:
            return self._between(data, pos)
        if state is _State.HEAD or state is _State.TRAILERS:
            return self._to_empty_line(data, pos)
        if state is _State.BODY or state is _State.CHUNK_DATA or state is _State.CHUNK_END:
            return self._counted(data, pos)
        if state is _State.CHUNK_SIZE:
            return self._size_line(data, pos)
        return len(data), Piece.DISCARD  # closed, or a head whose body was never said

    def _between(self, data: bytes, pos: int) -> tuple[int, Piece]:
        found = _HEAD_START.search(data, pos)
        if found is None:
            return len(data), Piece.PART
        if found.start() > pos:
            return found.start(), Piece.PART
        self._start_section(_State.HEAD, b"")
        return self._to_empty_line(data, pos)

    def _start_section(self, state: _State, tail: bytes) -> None:
        self._state, self._section, self._tail = state, 0, tail

    def _to_empty_line(self, data: bytes, pos: int) -> tuple[int, Piece]:
        """A head, or trailers: up to the end of its empty line, within `max_head` bytes."""
        budget = self._max_head - self._section
        end = self._split_end(data, pos)
        if end < 0:
            found = data.find(_EMPTY_LINE, pos, pos + budget)
            end = found + len(_EMPTY_LINE) if found >= 0 else -1
        if 0 <= end <= pos + budget:
            return end, self._section_done()
        if len(data) - pos > budget:
            return pos + budget, Piece.OVER
        self._section += len(data) - pos
        self._tail = (self._tail + data[max(pos, len(data) - 3) :])[-3:]
        return len(data), Piece.PART

    def _split_end(self, data: bytes, pos: int) -> int:
        """The end of an empty line begun in an earlier read, or -1."""
        if not self._tail:
            return -1
        probe = self._tail + data[pos : pos + 3]
        found = probe.find(_EMPTY_LINE)
        return -1 if found < 0 else pos + found + len(_EMPTY_LINE) - len(self._tail)

    def _section_done(self) -> Piece:
        if self._state is _State.TRAILERS:
            self._state = _State.BETWEEN
            return Piece.MESSAGE
        self._state = _State.BODY_OF
        return Piece.HEAD

    def _counted(self, data: bytes, pos: int) -> tuple[int, Piece]:
        taken = min(self._left, len(data) - pos)
        self._left -= taken
        if self._left:
            return pos + taken, Piece.PART
        if self._state is _State.BODY:
            self._state = _State.BETWEEN
            return pos + taken, Piece.MESSAGE
        if self._state is _State.CHUNK_DATA:
            self._state, self._left = _State.CHUNK_END, 2
        else:
            self._state, self._line = _State.CHUNK_SIZE, b""
        return pos + taken, Piece.PART

    def _size_line(self, data: bytes, pos: int) -> tuple[int, Piece]:
        """A chunk's size line (hex size, extensions, CRLF); size 0 starts the trailers."""
        found = data.find(b"\n", pos)
        end = len(data) if found < 0 else found + 1
        if len(self._line) < _SIZE_LINE_KEPT:
            self._line += data[pos : min(end, pos + _SIZE_LINE_KEPT)]
        if found < 0:
            return end, Piece.PART
        size = _CHUNK_SIZE.match(self._line)
        length = int(size.group(), 16) if size else 0  # not hex: the parser fails on it
        if length:
            self._state, self._left = _State.CHUNK_DATA, length
        else:
            self._start_section(_State.TRAILERS, b"\r\n")  # the size line's own line end
        return end, Piece.PART
