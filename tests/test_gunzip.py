"""Gzip inflated a large piece at a time gives what Python's gzip gives, and damage only after
every byte before it."""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib

import pytest

from detector.capture import gunzip
from detector.capture.gunzip import Gunzip


def _all(data: bytes, n: int = 1 << 20) -> bytes:
    g, out = Gunzip(io.BytesIO(data)), []
    while piece := g.read1(n):
        out.append(piece)
    return b"".join(out)


def _member(body: bytes, flags: int = 0, extra: bytes = b"", name: bytes = b"") -> bytes:
    """A gzip member written field by field (RFC 1952), with the optional fields in ``flags``."""
    head = b"\x1f\x8b\x08" + bytes([flags]) + bytes(6)
    if flags & gunzip.FEXTRA:
        head += struct.pack("<H", len(extra)) + extra
    if flags & gunzip.FNAME:
        head += name + b"\0"
    if flags & gunzip.FCOMMENT:
        head += b"a comment\0"
    if flags & gunzip.FHCRC:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = deflate.compress(body) + deflate.flush()
    return head + packed + struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF)


@pytest.mark.parametrize("size", [0, 1, 1000, 3 << 20])
def test_it_gives_what_gzip_gives(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gunzip, "PIECE", 4096)  # many pieces, even for the small ones
    body = os.urandom(size // 2) + bytes(size - size // 2)
    packed = gzip.compress(body, mtime=0)
    assert _all(packed) == gzip.decompress(packed) == body
    assert _all(packed, 777) == body  # whatever the size asked for


def test_members_header_fields_and_padding() -> None:
    every = gunzip.FEXTRA | gunzip.FNAME | gunzip.FCOMMENT | gunzip.FHCRC
    parts = [b"first " * 500, os.urandom(70000), b""]
    packed = (
        _member(parts[0], every, extra=b"xy" * 9, name=b"a.pcap")
        + _member(parts[1], gunzip.FNAME, name=b"b.pcap")
        + _member(parts[2])
        + bytes(512)  # padding after the last member
    )
    assert gzip.decompress(packed) == b"".join(parts)
    assert _all(packed) == b"".join(parts)


def test_a_bad_crc_is_raised_after_the_bytes_before_it() -> None:
    body = os.urandom(200000)
    packed = bytearray(gzip.compress(body, mtime=0))
    packed[-8] ^= 1
    g, got = Gunzip(io.BytesIO(bytes(packed))), b""
    with pytest.raises(gzip.BadGzipFile, match="CRC check failed"):
        while piece := g.read1(1 << 16):
            got += piece
    assert got == body


def test_a_cut_stream_ends_with_what_was_inflated_then_eof_error() -> None:
    body = os.urandom(300000)
    packed = gzip.compress(body, mtime=0)
    g, got = Gunzip(io.BytesIO(packed[: len(packed) // 2])), b""
    with pytest.raises(EOFError):
        while piece := g.read1(1 << 16):
            got += piece
    assert len(got) > 100000 and body.startswith(got)


@pytest.mark.parametrize(
    ("packed", "error"),
    [
        (gzip.compress(b"x", mtime=0) + b"garbage after it", "Not a gzipped file"),
        (b"\x1f\x8b\x07" + bytes(7), "Unknown compression method"),
        (b"\x1f\x8b\x08\x08" + bytes(6) + b"a name with no end", "ended before"),
    ],
)
def test_what_is_not_gzip_is_an_error(packed: bytes, error: str) -> None:
    with pytest.raises((OSError, EOFError), match=error):
        _all(packed)
