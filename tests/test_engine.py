"""Engine behaviour that no single sample shows: quiet flows, stream expiry, sampling weights."""

from __future__ import annotations

import functools
import pickle
import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mwtest import PCAPS, fuzz
from scapy.all import IP, TCP, UDP, Ether, Raw, raw, rdpcap
from test_walk_property import frames

from detector.capture.reader import InputStats, PacketBatch, open_stream, read_batches
from detector.decode.headers import decode_headers
from detector.detection import Detection
from detector.engine import Engine, _contexts, _payload_bounds, _Rows, median
from detector.evidence import StreamEvidence
from detector.flows.table import row_keys_at
from detector.protocols.base import PacketContext


def _batch(frames: list[bytes], t0: float) -> PacketBatch:
    return PacketBatch.of_frames(frames, ts=t0 + np.arange(len(frames)) * 0.001)


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return raw(
        eth / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=sport, dport=dport) / Raw(payload)
    )


@functools.cache
def _tzsp(i: int) -> bytes:
    inner = raw(
        Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02")
        / IP(src="10.0.0.5", dst="10.0.0.6", id=i)
        / UDP(sport=1000, dport=2000)
        / Raw(b"x" * 40)
    )
    return _udp(40000, 37008, b"\x01\x00\x00\x01\x01" + inner)


def test_quiet_flows_are_only_probed() -> None:
    rng = random.Random(3)
    engine = Engine()
    det = Detection()
    for b in range(4):
        frames = [_udp(5000, 443, bytes(rng.randrange(256) for _ in range(200))) for _ in range(50)]
        engine.process(_batch(frames, 100.0 + b))
    # The flow's first packets are looked at, as many as quiet_after_udp, though all of them
    # came in one batch; after them the flow is quiet and only probed: about one packet in the
    # stride (flow keys are salted per process, so the number varies around 192 / stride;
    # three times that is out of reach of chance).
    probes = engine.stats.prefiltered - det.quiet_after_udp
    assert 0 < probes <= 192 * 3 // det.quiet_probe_stride
    assert not engine.streams
    # A stream on another flow is still found at once.
    engine.process(_batch([_tzsp(i) for i in range(20)], 200.0))
    assert [st.evidence.protocol for st in engine.streams.values()] == ["tzsp"]


def test_the_packets_looked_at_do_not_depend_on_where_batches_end() -> None:
    # Seven flows of TLS-like records, which no prefilter accepts.
    rng = random.Random(6)
    frames = [_udp(5000 + i % 7, 443, b"\x17\x03\x03" + rng.randbytes(100)) for i in range(700)]
    ts = 100.0 + np.arange(len(frames)) * 0.001
    looked = []
    for per_batch in (len(frames), 100, 7, 1):
        engine = Engine()
        for a in range(0, len(frames), per_batch):
            engine.process(
                PacketBatch.of_frames(frames[a : a + per_batch], ts=ts[a : a + per_batch])
            )
        looked.append(engine.stats.prefiltered)
    # The same probes in every engine of this process (the same salted keys and times).
    assert len(set(looked)) == 1
    assert looked[0] < 7 * Detection().quiet_after_udp + 700 * 3 // Detection().quiet_probe_stride


def test_a_packet_some_prefilter_accepted_does_not_count_toward_quiet() -> None:
    # One batch: a TZSP-looking packet that fails validation, then payloads no format knows,
    # one fewer than make the flow quiet, then a real copy.  The accepted packet is not a quiet
    # one, so the copy comes before the flow is quiet: looked at, not only probed.
    rng = random.Random(4)
    junk = _udp(40000, 37008, b"\x01\x00\x00\x01\x01" + bytes(12) + b"\x12\x34" + bytes(40))
    noise = [_udp(40000, 37008, b"\xee" + rng.randbytes(80)) for _ in range(7)]
    for _ in range(20):  # were the copy only probed, it would be missed 15 times in 16
        engine = Engine()
        engine.process(_batch([junk, *noise, _tzsp(0)], 100.0))
        assert [st.evidence.protocol for st in engine.streams.values()] == ["tzsp"]
        assert engine.flows.quiet[0] == len(noise)


def test_expired_streams_leave_with_their_evidence() -> None:
    engine = Engine()
    engine.process(_batch([_tzsp(i) for i in range(30)], 100.0))
    assert len(engine.streams) == 1
    assert engine.expire_streams(now=100.5, idle=60) == []
    (gone,) = engine.expire_streams(now=500.0, idle=60)
    assert gone.protocol == "tzsp" and gone.packets == 30
    assert not engine.streams and not len(engine._stream_keys)
    # Its evidence samples no longer count against the engine's budget.
    assert engine.samples.used == 0
    # The evidence is plain data: it pickles as it is (workers of a scan send it back).
    again = pickle.loads(pickle.dumps(gone))
    assert again.protocol == "tzsp" and again.outer_samples == gone.outer_samples
    # It comes back as a new stream when it resumes.
    engine.process(_batch([_tzsp(i) for i in range(5)], 600.0))
    assert [st.evidence.packets for st in engine.streams.values()] == [5]


def test_sampled_stream_weights_add_up() -> None:
    engine = Engine()
    total = 0
    for b in range(12):
        engine.process(_batch([_tzsp(i % 20) for i in range(200)], 100.0 + b))
        total += 200
    (s,) = [st.evidence for st in engine.streams.values()]
    assert s.packets == total
    assert s.decoded < total / 3  # sampled after the first packets
    # Each decoded copy stands for as many packets as it was picked from.
    assert abs(s.carried_packets - total) <= 0.05 * total


def test_an_expired_stream_gives_back_its_templates_tcp_bytes_and_samples() -> None:
    engine = Engine()
    ipfix = rdpcap(str(PCAPS / "ipfix.pcap"))
    dnstap = rdpcap(str(PCAPS / "dnstap.pcap"))
    # One dnstap segment lost near the end: the two after it wait for it in the TCP buffer.
    sent = [
        i for i, p in enumerate(dnstap) if TCP in p and p[TCP].dport == 6000 and len(p[TCP].payload)
    ]
    kept = [p for i, p in enumerate(dnstap) if i != sent[-3]]
    for packets in (ipfix, kept):
        ts = np.array([float(p.time) for p in packets])
        engine.process(PacketBatch.of_frames([raw(p) for p in packets], ts=ts))
    assert {st.evidence.protocol for st in engine.streams.values()} >= {"ipfix", "dnstap"}
    assert engine.template_fields.used > 0 and engine.tcp.total > 0 and engine.samples.used > 0
    gone = engine.expire_streams(now=float(ts.max()) + 1000, idle=60)
    assert len(gone) >= 3 and not engine.streams
    assert engine.template_fields.used == engine.tcp.total == engine.samples.used == 0


@given(
    st.lists(
        st.one_of(st.floats(allow_nan=True, width=64), st.sampled_from([0.0, -0.0, 1e-6])),
        min_size=1,
        max_size=40,
    )
)
def test_copy_delay_median_is_numpys(delays: list[float]) -> None:
    """The copy delay's median is numpy's, bit for bit (NaN where numpy gives NaN)."""
    with np.errstate(all="ignore"):
        want = float(np.median(np.array(delays, dtype=np.float64)))
    got = median(delays)
    assert (np.isnan(got) and np.isnan(want)) or got == want


def _rows_of(batch: PacketBatch) -> tuple[_Rows, list[int]]:
    h = decode_headers(batch)
    rows = np.flatnonzero(h.ipver > 0)
    v = _Rows(batch, h, rows, row_keys_at(h, rows), None, batch.ts[rows], batch.wirelen[rows])
    return v, rows.tolist()


def _same_as_row_by_row(v: _Rows, rows: list[int]) -> None:
    """The outer facts and payloads of a batch's known rows, read per batch, are those read one
    row at a time (as a candidate row is)."""
    batch, h = v.batch, v.h
    assert _contexts(v, rows) == [v.context(r) for r in rows]
    engine = Engine()
    payloads = [batch.data[a:b].tobytes() for a, b in _payload_bounds(batch, h, rows)]
    assert payloads == [engine._payload(batch, h, r) for r in rows]


def test_known_rows_are_read_per_batch_as_row_by_row_in_every_sample() -> None:
    for path in sorted(PCAPS.glob("*.pcap")):
        with open_stream(str(path)) as stream:
            for batch in read_batches(stream, InputStats(str(path))):
                _same_as_row_by_row(*_rows_of(batch))


@fuzz(8)
@given(st.sampled_from([1, 101]), st.data())
def test_known_rows_of_any_shape_are_read_per_batch_as_row_by_row(
    linktype: int, data: st.DataObject
) -> None:
    frames_drawn = data.draw(st.lists(frames(linktype), min_size=1, max_size=40))
    batch = PacketBatch.of_frames(
        frames_drawn, ts=np.arange(len(frames_drawn)) * 0.5, linktype=linktype
    )
    v, rows = _rows_of(batch)
    # Rows in any order and repeated, as a batch's chosen rows may be.
    _same_as_row_by_row(v, data.draw(st.lists(st.sampled_from(rows), max_size=60)) if rows else [])


@fuzz(100)
@given(
    st.lists(st.integers(-(2**40), 2**40), max_size=60),
    st.integers(-(2**52), 2**52),
    st.integers(1, 5000),
    # At least two cells: the seconds before and after 0 never share one.
    st.integers(2, 40),
)
def test_packets_of_one_second_count_as_counting_each_of_them(
    before: list[int], second: int, n: int, cells: int
) -> None:
    """A stream's rows of a batch that fall in one second are counted at once, as their seconds
    counted one by one are (whatever the timeline held and its step)."""
    at_once, each = (
        StreamEvidence.begun(PacketContext(), 1, "tzsp", "mirror", "udp") for _ in range(2)
    )
    for s in (at_once, each):
        s.count_seconds(np.array(before, dtype=np.int64), cells)
    at_once.count_second(second, n, cells)
    each.count_seconds(np.full(n, second, dtype=np.int64), cells)
    assert (at_once.timeline, at_once.timeline_step) == (each.timeline, each.timeline_step)


def test_a_timeline_across_zero_with_a_one_cell_bound_ends_in_two_cells() -> None:
    """Seconds on both sides of 0 never share a cell: a bound of one cell is taken as two rather
    than coarsening for ever, and every packet stays counted."""
    s = StreamEvidence.begun(PacketContext(), 1, "tzsp", "mirror", "udp")
    s.count_seconds(np.array([-(2**40), -1, 0, 5, 2**40], dtype=np.int64), 1)
    assert len(s.timeline) == 2 and sum(s.timeline.values()) == 5
