"""What the fuzz tests and ``bench/fuzz.py`` feed hostile bytes to, and the seeds they mutate.

Every target takes bytes and must return normally whatever they hold: a decoder returns a result
or None, the reader reports damage in its errors, the scan writes a report.  Any exception that
escapes is a bug.  Seeds are the real payloads of the samples in pcaps/, so mutations start from
bytes that pass a decoder's checks and reach its deeper branches.
"""

from __future__ import annotations

import gzip
import io
import random
import struct
import tempfile
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
from mwtest import heads

from detector.capture.gunzip import Gunzip
from detector.capture.reader import (
    CaptureError,
    InputStats,
    ReadAhead,
    open_stream,
    read_batches,
    reading,
)
from detector.decode.headers import decode_headers
from detector.decode.slowpath import Reassembler, finish_rows
from detector.protocols.base import Decoder, PacketContext, StreamDecoder
from detector.protocols.registry import all_decoders

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
REGRESSIONS = Path(__file__).resolve().parent / "fuzz_regressions"
# Payloads kept per sample file: enough to cover each format's variants, few enough to load fast.
SEEDS_PER_FILE = 24
CTX = PacketContext(src="192.0.2.1", dst="192.0.2.2", sport=40000, dport=4789, ttl=64, ts=1.7e9)


def decoders() -> tuple[Decoder, ...]:
    return all_decoders()


def context(sport: int, dport: int) -> PacketContext:
    return replace(CTX, sport=sport, dport=dport)


def on_port_context(d: Decoder) -> PacketContext:
    """CTX on one of the decoder's ports (formats found on their port only need one)."""
    return context(CTX.sport, min(d.ports)) if d.ports else CTX


def engine_tries(d: Decoder, sport: int, dport: int) -> bool:
    """Whether the engine gives ``d`` a packet between these ports (formats with no content
    signature are looked for on their own ports only)."""
    return not d.ports_required or bool({sport, dport} & d.ports)


def declared_leading_bytes() -> list[tuple[Decoder, int]]:
    """(decoder, 0) for each decoder declaring its first payload bytes, (decoder, 1) for each
    declaring its second."""
    return [
        (d, at)
        for d in all_decoders()
        for at, declared in enumerate((d.first_bytes, d.second_bytes))
        if declared is not None
    ]


def leading_id(case: object) -> str:
    return decoder_id(case) if isinstance(case, Decoder) else ("first", "second")[int(case)]


def decoder_named(name: str) -> Decoder:
    for d in all_decoders():
        if type(d).__name__ == name or d.name == name:
            return d
    raise KeyError(name)


def decoder_id(d: Decoder) -> str:
    """A name that tells decoders of one protocol apart (several share ``name``)."""
    return type(d).__name__


# ---------------------------------------------------------------- seeds


def sample_files() -> list[Path]:
    return sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng", ".gz"))


@cache
def seed_payloads() -> tuple[bytes, ...]:
    """L4 payloads and IP payloads of every sample, as the engine cuts them."""
    found: dict[bytes, None] = {}
    for path in sample_files():
        stats = InputStats(str(path))
        kept = 0
        with open_stream(str(path)) as stream:
            for batch in read_batches(stream, stats):
                h = decode_headers(batch)
                slow = np.nonzero(h.slow)[0].tolist()
                if slow:
                    finish_rows(batch, h, slow, Reassembler())
                for i in np.nonzero(h.ipver > 0)[0].tolist():
                    pkt = batch.packet(i)
                    pay = int(h.pay[i])
                    for cut in (pkt[pay : pay + int(h.paylen[i])], pkt[int(h.l4[i]) :]):
                        if cut and cut not in found and kept < SEEDS_PER_FILE:
                            found[cut] = None
                            kept += 1
    return tuple(found)


@cache
def seed_files() -> tuple[tuple[str, bytes], ...]:
    """(name, bytes) of small sample captures, plain and gzip'd, for reader mutations."""
    out = []
    for path in sample_files():
        data = path.read_bytes()
        if len(data) <= 64 << 10:
            out.append((path.name, data))
            if not path.name.endswith(".gz") and len(out) % 4 == 0:  # a few gzip'd too
                out.append((path.name + ".gz", gzip.compress(data, mtime=0)))
    return tuple(out)


# ---------------------------------------------------------------- mutations

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000)


def mutate(data: bytes, rng: random.Random, others: tuple[bytes, ...] = ()) -> bytes:
    """A few random edits of the kinds that find parser bugs: flipped bits, boundary values in
    length-sized fields, cuts, repeats, inserted and spliced bytes."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2 and len(buf) >= 2:
            width = rng.choice((2, 4))
            value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            at = min(pos, len(buf) - width) if len(buf) >= width else 0
            buf[at : at + width] = value.to_bytes(width, rng.choice(("big", "little")))
        elif op == 3:
            del buf[pos:]
        elif op == 4 and buf:
            n = rng.randrange(1, 64)
            del buf[pos : pos + n]
        elif op == 5:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        elif op == 6 and buf:
            piece = buf[pos : pos + rng.randrange(1, 256)]
            buf[pos:pos] = piece * rng.randrange(1, 8)
        elif op == 7 and others:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
    return bytes(buf)


# ---------------------------------------------------------------- targets


def decode_one(d: Decoder, payloads: list[bytes]) -> None:
    """``decode`` each payload with one stream state (templates carry over), then with none."""
    state = d.new_state()
    for p in payloads:
        d.decode(p, CTX, state)
        d.decode(p, CTX, None)


def feed_stream(d: StreamDecoder, data: bytes, cuts: list[int]) -> None:
    """``feed`` a TCP byte stream in the chunks ``cuts`` makes (as segments arrive)."""
    state = d.new_state()
    prev = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        d.feed(data[prev:cut], CTX, state)
        prev = cut


def prefilter_all(payloads: list[bytes]) -> None:
    head, length = heads(payloads)
    for d in all_decoders():
        if d.transport in ("udp", "tcp"):
            mask = d.prefilter(head, length)
            assert mask.shape == (len(payloads),) and mask.dtype == np.bool_, decoder_id(d)


def every_decoder(payload: bytes) -> None:
    """Each decoder's ``decode`` (and ``feed`` for stream decoders) on one payload."""
    for d in all_decoders():
        decode_one(d, [payload, payload])
        if isinstance(d, StreamDecoder):
            feed_stream(d, payload + payload, [len(payload) // 2, len(payload) + 1])


def read_all(data: bytes) -> int:
    """Read a capture from bytes (gzip recognised by its magic) as the scan does: damage goes
    to the input's errors; only "not a capture at all" may end it early."""
    stats = InputStats("fuzz")
    raw = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    gzipped = raw.peek(2)[:2] == b"\x1f\x8b"
    # gzip as open_stream reads it: inflated ahead by a thread, a large piece at a time.
    stream = ReadAhead(Gunzip(raw), raw) if gzipped else raw  # type: ignore[arg-type]
    packets = 0
    try:
        for batch in reading(read_batches(stream, stats), stats):  # type: ignore[arg-type]
            packets += len(batch)
            assert np.all(batch.offsets + batch.caplen <= len(batch.data))
            assert np.all(batch.caplen > 0)
    except CaptureError:
        pass
    finally:
        stream.close()
    return packets


def scan_and_render(data: bytes, suffix: str = ".pcap") -> None:
    """The whole scan of one capture file, then every report format."""
    from detector.report import RENDERERS, renderer
    from detector.report.html import render_html
    from detector.scan import scan_paths

    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        result = scan_paths([f.name])
    for fmt in RENDERERS:
        if fmt == "html":
            render_html(result.report, result.timeline, result.evidence)
        else:
            renderer(fmt)(result.report)


# Target name → function of the bytes; the regression samples are named after these.
TARGETS: dict[str, Callable[[bytes], object]] = {
    "decoders": every_decoder,
    "prefilters": lambda b: prefilter_all([b, b[: len(b) // 2]]),
    "reader": read_all,
    "scan": scan_and_render,
}


def run_regression(path: Path) -> None:
    """Run the target a regression sample is named after (``<target>-<anything>.bin``)."""
    TARGETS[path.name.split("-", 1)[0]](path.read_bytes())


def pcap_of_payloads(payloads: list[bytes], dport: int) -> bytes:
    """A pcap of UDP datagrams carrying ``payloads`` (for whole-scan fuzzing of decoders)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i, p in enumerate(payloads):
        udp = struct.pack("!HHHH", 40000, dport, 8 + len(p), 0) + p
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])) + udp  # fmt: skip
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    return b"".join(out)
