"""The prefilter route: each prefilter is run only on the rows its decoder's declarations admit
(first two payload bytes, own ports), and what it passes there is what it passes run alone."""

from __future__ import annotations

import copy
import dataclasses
import random

import fuzztargets as ft
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mwtest import fuzz, heads
from scapy.all import IP, UDP, Ether, raw

from detector.capture.reader import PacketBatch
from detector.decode.headers import decode_headers, payload_heads
from detector.prefilter_route import PrefilterRoute, payload_leads
from detector.protocols.base import Decoder
from detector.protocols.registry import decoders_for

# A decoder's own port, a port registered to another protocol, and ordinary ones.
PORTS = [40000, 4789, 37008, 2055, 443, 80, 514, 6000, 1194, 4500, 6635, 57012, 53]


class Recorded:
    """A copy of a decoder whose prefilter notes the rows it was given."""

    def __init__(self, d: Decoder) -> None:
        self.decoder = copy.copy(d)
        self.given: list[npt.NDArray[np.uint8]] = []
        run = d.prefilter

        def prefilter(
            head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
        ) -> npt.NDArray[np.bool_]:
            self.given.append(head.copy())
            return run(head, length)

        self.decoder.prefilter = prefilter  # type: ignore[method-assign]


def _admitted(
    d: Decoder, head: npt.NDArray[np.uint8], sport: np.ndarray, dport: np.ndarray
) -> npt.NDArray[np.bool_]:
    ok = np.ones(len(head), dtype=np.bool_)
    for at, declared in enumerate((d.first_bytes, d.second_bytes)):
        if declared is not None:
            ok &= np.isin(head[:, at], list(declared))
    if d.ports_required:
        ok &= np.isin(sport, list(d.ports)) | np.isin(dport, list(d.ports))
    return ok


def _rows(n: int, seed: int) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Real payloads of every sample and random bytes, on a mix of ports."""
    rng = random.Random(seed)
    payloads = list(ft.seed_payloads())
    payloads += [rng.randbytes(rng.choice([1, 2, 30, 64, 300, 1200])) for _ in range(n)]
    sport = np.array([rng.choice(PORTS) for _ in payloads], dtype=np.int64)
    dport = np.array([rng.choice(PORTS) for _ in payloads], dtype=np.int64)
    return payloads, sport, dport


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_each_prefilter_gets_only_rows_it_could_accept(transport: str) -> None:
    payloads, sport, dport = _rows(3000, seed=5)
    head, length = heads(payloads)
    recorded = [Recorded(d) for d in decoders_for(transport)]
    route = PrefilterRoute([r.decoder for r in recorded])
    rows, passing = route.hits(head, length, sport, dport)
    for r in recorded:
        r.given.clear()
    masks = route.masks(head, length, sport, dport)
    for r, mask in zip(recorded, masks, strict=True):
        d = r.decoder
        admitted = _admitted(d, head, sport, dport)
        # What it passes is what it passes run on every row, among the rows it was given.
        alone = type(d).prefilter(d, head, length)
        assert (mask == (alone & admitted)).all(), ft.decoder_id(d)
        given = np.concatenate(r.given) if r.given else np.zeros((0, head.shape[1]), np.uint8)
        assert len(given) == admitted.sum(), ft.decoder_id(d)
    # The candidate rows, each with the decoders (in order) whose prefilter passed it.
    assert rows.tolist() == np.flatnonzero(np.logical_or.reduce(masks)).tolist()
    for j, row in enumerate(rows.tolist()):
        want = [r.decoder for r, m in zip(recorded, masks, strict=True) if m[row]]
        assert passing[j] == want


def test_a_batch_no_format_could_start_costs_the_declaring_prefilters_nothing() -> None:
    # Random bytes after "17 03" (a TLS record, as QUIC and TLS payloads begin): no format that
    # declares its first two bytes is given a row.
    rng = random.Random(2)
    payloads = [b"\x17\x03" + rng.randbytes(200) for _ in range(500)]
    head, length = heads(payloads)
    ports = np.full(len(payloads), 443, dtype=np.int64)
    recorded = [Recorded(d) for d in decoders_for("udp")]
    PrefilterRoute([r.decoder for r in recorded]).masks(head, length, ports, ports)
    called = {ft.decoder_id(r.decoder) for r in recorded if r.given}
    declaring = {
        ft.decoder_id(r.decoder)
        for r in recorded
        if r.decoder.first_bytes is not None and r.decoder.second_bytes is not None
    }
    assert declaring and not called & declaring


def test_the_routing_column_is_read_from_the_packets_as_the_windows_are() -> None:
    payloads, sport, dport = _rows(400, seed=8)
    payloads += [b"", b"\x30"]
    frames = [_udp_frame(p) for p in payloads]
    batch = PacketBatch.of_frames(frames, ts=np.zeros(len(frames)))
    h = decode_headers(batch)
    rows = np.arange(len(frames))
    head, length = payload_heads(batch, h, rows)
    assert (length == [len(p) for p in payloads]).all()
    lead = payload_leads(batch.data, batch.offsets + h.pay, length)
    assert (lead == (head[:, 0].astype(np.intp) << 8) | head[:, 1]).all()
    # A payload of one byte that ends the buffer (no padding after the last record).
    bare = dataclasses.replace(batch, data=np.frombuffer(b"".join(frames[-1:]), np.uint8))
    bare = dataclasses.replace(bare, offsets=bare.offsets[-1:] * 0, caplen=bare.caplen[-1:])
    end = payload_leads(bare.data, bare.offsets + h.pay[-1:], length[-1:])
    assert end.tolist() == [0x3000]
    # Routed by that column, with the windows asked for only where a prefilter is given them.
    asked: list[int] = []

    def windows(at: np.ndarray) -> np.ndarray:
        asked.append(len(at))
        return head[at]

    route = PrefilterRoute(decoders_for("tcp"))
    rows_by_lead, passing_by_lead = route.hits_by_lead(lead, length, sport, dport, windows)
    rows_by_head, passing_by_head = route.hits(head, length, sport, dport)
    assert rows_by_lead.tolist() == rows_by_head.tolist() and passing_by_lead == passing_by_head
    assert sum(asked) < len(payloads)


@fuzz(150)
@given(
    st.binary(max_size=300),
    st.lists(st.tuples(st.integers(-5, 305), st.integers(-3, 70)), max_size=60),
)
def test_the_routing_column_reads_as_the_windows_do_anywhere(
    data: bytes, rows: list[tuple[int, int]]
) -> None:
    """The first two payload bytes of rows that start anywhere in the buffer, at its last
    bytes, past its end or before it, with lengths of none, one, two or more bytes."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    starts = np.array([r[0] for r in rows], dtype=np.int64)
    length = np.array([r[1] for r in rows], dtype=np.int64)
    lead = payload_leads(buffer, starts, length)
    for (start, size), value in zip(rows, lead.tolist(), strict=True):
        window = data[start : start + min(size, 2)] if start >= 0 and size > 0 else b""
        assert value == int.from_bytes(window.ljust(2, b"\0"), "big")


def _udp_frame(payload: bytes) -> bytes:
    return raw(Ether() / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=1, dport=2) / payload)
