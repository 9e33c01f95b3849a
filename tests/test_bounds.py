"""Memory and cost set by configuration, not by the input: TCP reassembly, flow-export templates,
salted flow keys (each on small crafted inputs; figures at scale come from bench/adversarial.py)."""

from __future__ import annotations

import functools
import json
import random
import struct
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from scapy.all import IP, UDP, Ether, Raw, raw, wrpcap

from detector.capture.reader import PacketBatch
from detector.cli import main
from detector.config import ConfigError, load_config
from detector.decode.slowpath import PIECE_OVERHEAD, Reassembler
from detector.engine import Engine
from detector.flows.tcp import SEGMENT_OVERHEAD, TcpReassembler
from detector.limits import Limits
from detector.policy.verdict import PolicyContext, judge
from detector.protocols.base import PacketContext
from detector.protocols.ipfix import IpfixDecoder
from detector.protocols.templates import MAX_WALKED_RECORDS, FieldBudget, TemplateCache

IPFIX = IpfixDecoder()
CTX = PacketContext(src="192.0.2.1", dst="198.51.100.7", sport=40123, dport=4739)
NOW = 1_700_000_000


def ipfix_msg(*sets: bytes, seq: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), NOW, seq, 1) + body


def template_set(tid: int, fields: list[tuple[int, int]]) -> bytes:
    spec = b"".join(struct.pack("!HH", ie, n) for ie, n in fields)
    return struct.pack("!HHHH", 2, 8 + len(spec), tid, len(fields)) + spec


# ---------------------------------------------------------------- TCP reassembly


def test_one_byte_segments_last_first_reassemble_in_order():
    data = bytes(range(256)) * 8
    tcp = TcpReassembler()
    buf = tcp.start(1000)
    for k in range(len(data) - 1, 0, -1):
        assert tcp.push(buf, 1000 + k, data[k : k + 1]) == (b"", False)
    assert buf.pending_bytes() == len(data) - 1
    out, gap = tcp.push(buf, 1000, data[:1])
    assert (out, gap) == (data, False)
    assert buf.pending_bytes() == 0 and tcp.total == 0


def test_overlaps_retransmissions_and_sequence_wrap():
    tcp = TcpReassembler()
    start = (1 << 32) - 3
    buf = tcp.start(start)
    assert tcp.push(buf, start + 4, b"EFGH") == (b"", False)
    assert tcp.push(buf, start, b"ABC") == (b"ABC", False)
    assert tcp.push(buf, start, b"ABC") == (b"", False)  # retransmission
    assert tcp.push(buf, (start + 2) % (1 << 32), b"CDEF") == (b"DEFGH", False)
    assert tcp.push(buf, (start + 8) % (1 << 32), b"I") == (b"I", False)


def test_a_gap_past_the_stream_budget_is_skipped_and_its_bytes_delivered():
    tcp = TcpReassembler(max_pending_bytes=1000, max_total_bytes=1 << 20)
    buf = tcp.start(0)
    for k in range(5):
        out, gap = tcp.push(buf, 100 + 200 * k, b"x" * 200)
        if gap:
            break
    # 200 bytes and their bookkeeping per segment: the fourth goes past 1000.
    assert k == 1000 // (200 + SEGMENT_OVERHEAD)
    assert gap and out == b"x" * 200 * (k + 1)
    assert buf.pending_bytes() == 0 and tcp.shed_bytes == 0


def test_every_stream_together_stays_under_the_total_budget():
    tcp = TcpReassembler(max_pending_bytes=1 << 20, max_total_bytes=10_000)
    bufs = []
    for _ in range(50):
        bufs.append(tcp.start(0))
        tcp.push(bufs[-1], 10, b"y" * 500)  # each waits for bytes 0..9
        assert tcp.total <= 10_000
    assert tcp.shed_bytes > 0
    held = tcp.total
    tcp.forget(bufs[0])  # the first still waits for its gap
    assert tcp.total == held - 500 - SEGMENT_OVERHEAD
    for buf in bufs:
        tcp.forget(buf)
    assert tcp.total == 0


# ---------------------------------------------------------------- templates


def test_template_with_more_fields_than_the_budget_is_not_kept():
    cache = TemplateCache(max_fields=64)
    huge = template_set(300, [(1, 4)] * 65)
    found = IPFIX.decode(ipfix_msg(huge), CTX, cache)
    assert found is not None and found.facts["oversized_templates"] == 1
    assert cache.get(1, 300) is None
    ok = IPFIX.decode(ipfix_msg(template_set(301, [(1, 4)] * 64)), CTX, cache)
    assert ok is not None and cache.get(1, 301) is not None


def test_field_budget_is_shared_by_streams_and_given_back():
    budget = FieldBudget(total=100)
    a, b = TemplateCache(budget=budget), TemplateCache(budget=budget)
    IPFIX.decode(ipfix_msg(template_set(256, [(8, 4)] * 60)), CTX, a)
    found = IPFIX.decode(ipfix_msg(template_set(256, [(8, 4)] * 60)), CTX, b)
    assert found is not None and found.facts["templates_shed"] == 1
    assert b.get(1, 256) is None and budget.used == 60 and budget.shed == 1
    a.release()
    assert budget.used == 0
    IPFIX.decode(ipfix_msg(template_set(256, [(8, 4)] * 60)), CTX, b)
    assert b.get(1, 256) is not None and budget.used == 60


def test_variable_length_records_walked_per_message_are_bounded():
    # One variable-length field; 60,000 empty records, then one holding a byte.
    records = b"\x00" * 60_000 + b"\x01\x07"
    data = struct.pack("!HH", 256, 4 + len(records)) + records
    cache = TemplateCache()
    found = IPFIX.decode(ipfix_msg(template_set(256, [(1, 0xFFFF)]), data), CTX, cache)
    assert found is not None
    assert found.facts["data_records"] == MAX_WALKED_RECORDS
    assert found.facts["data_sets_not_walked"] == 1
    # A short set is walked whole, trailing zero padding is not a record.
    small = b"\x01\x07" * 10 + b"\x00\x00"
    data = struct.pack("!HH", 256, 4 + len(small)) + small
    found = IPFIX.decode(ipfix_msg(data, seq=2), CTX, cache)
    assert found is not None and found.facts["data_records"] == 10
    assert "data_sets_not_walked" not in found.facts


# ---------------------------------------------------------------- salted keys


def test_flow_keys_are_salted_per_run():
    code = (
        "import numpy as np; from detector.flows.table import row_keys; "
        "a = np.array([[0, 0, 0, 0x0A000001]], dtype=np.uint32); "
        "b = np.array([[0, 0, 0, 0x0A000002]], dtype=np.uint32); p = np.array([443]); "
        "print(int(row_keys(a, b, p, p, np.array([17])).flow[0]))"
    )
    runs = {subprocess.check_output([sys.executable, "-c", code], text=True) for _ in range(2)}
    assert len(runs) == 2


# ---------------------------------------------------------------- engine budgets


def _frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return raw(eth / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))


@functools.cache
def _inner(i: int) -> bytes:
    return raw(
        Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02")
        / IP(src="192.168.10.5", dst="93.184.216.34", id=i)
        / UDP(sport=1000 + i % 7, dport=443)
        / Raw(b"x" * 40)
    )


def _tzsp(src: str, i: int, sport: int = 40000) -> bytes:
    return _frame(src, "10.9.0.10", sport, 37008, TZSP + _inner(i))


TZSP = b"\x01\x00\x00\x01\x01"


def _run(engine: Engine, frames: list[bytes], t0: float = 100.0, ts: float | None = None) -> None:
    times = np.full(len(frames), t0) if ts is not None else t0 + np.arange(len(frames)) * 1e-3
    engine.process(PacketBatch.of_frames(frames, ts=times))


def test_spoofed_exporters_fold_into_one_aggregate_and_the_mirror_is_still_found():
    engine = Engine(Limits(streams_per_collector=4))
    # One TZSP packet from each of 40 spoofed exporters, then the real mirror's stream.
    _run(engine, [_tzsp(f"10.128.0.{i}", i) for i in range(1, 41)])
    _run(engine, [_tzsp("10.1.0.1", i) for i in range(30)], t0=200.0)
    assert len(engine.streams) == 4
    shed = engine.sync_shed()
    assert shed["streams"] >= 36
    judged = judge(engine.finish(), PolicyContext())
    by_exporter = {f.exporter.ip: f for f, _ in judged}
    mirror = by_exporter["10.1.0.1"]
    assert mirror.protocol == "tzsp" and mirror.severity == "high"
    assert "truncated" not in mirror.evidence
    agg = by_exporter[None]
    assert agg.evidence["truncated"] is True
    assert agg.evidence["exporters_counted"] >= 36
    assert len(agg.evidence["top_exporters"]) == 8
    assert agg.collector.ip == "10.9.0.10" and agg.collector.port == 37008


def test_port_only_tunnel_streams_fold_per_host_pair():
    engine = Engine(Limits(tunnel_streams_per_pair=2))
    wg = [
        _frame("10.2.0.1", "10.9.0.10", 1024 + k, 51820,
               b"\x04\0\0\0" + struct.pack("<IQ", k, r + 1) + bytes(32))
        for r in range(2) for k in range(10)
    ]  # fmt: skip
    _run(engine, wg)
    assert len(engine.streams) == 2
    assert engine.sync_shed()["tunnel_streams"] >= 8
    judged = judge(engine.finish(), PolicyContext())
    assert {f.protocol for f, _ in judged} == {"wireguard"}
    assert any(f.evidence.get("truncated") for f, _ in judged)


def test_a_capture_whose_time_never_advances_keeps_the_flow_table_bounded():
    engine = Engine(Limits(flows=2048))
    rng = random.Random(5)
    base = bytearray(_frame("100.0.0.1", "172.16.0.1", 1024, 53, b"q" * 12))
    for _ in range(6):
        frames = []
        for _ in range(1000):
            # Another source address and port for each packet (offsets 26 and 34 of the frame).
            base[26:30] = struct.pack("!I", (100 << 24) | rng.randrange(1 << 24))
            base[34:36] = struct.pack("!H", rng.randrange(1024, 65535))
            frames.append(bytes(base))
        _run(engine, frames, ts=100.0)
    assert len(engine.flows) <= 2048
    assert engine.sync_shed()["flows"] > 0
    assert engine.flows.total_flows > 5900  # a few random tuples repeat


def test_evidence_samples_stop_at_the_byte_budget_and_the_finding_says_so():
    engine = Engine(Limits(sample_bytes=20_000))
    _run(engine, [_tzsp("10.1.0.1", i) for i in range(100)])
    (s,) = [st.evidence for st in engine.streams.values()]
    assert engine.samples.used <= 20_000
    assert len(s.outer_samples) < 100 and s.extra["samples_shed"] > 0
    (f, _), = judge(engine.finish(), PolicyContext())  # fmt: skip
    assert f.evidence["truncated"] is True and engine.stats.shed["samples"] > 0


def test_zero_length_fragments_count_against_the_fragment_budget():
    reasm = Reassembler(max_pieces=100, max_bytes=1 << 20)
    for i in range(1000):
        pkt = raw(IP(src="10.66.0.1", dst="10.9.0.10", id=i // 50, flags="MF", frag=1 + i % 50))
        reasm.add(pkt[:20], 0, 100.0, 20)
    assert reasm.pieces <= 100 and reasm.shed > 0
    assert reasm.bytes == reasm.pieces * PIECE_OVERHEAD


def test_limits_come_from_the_config(tmp_path):
    cfg = tmp_path / "mw.toml"
    cfg.write_text("[limits]\nstreams = 100\nsample_bytes = 0\n")
    lim = load_config(cfg).policy().limits
    assert lim.streams == 100 and lim.sample_bytes == 0
    assert lim.flows == Limits().flows
    cfg.write_text("[limits]\nstreams = 1\n")
    with pytest.raises(ConfigError, match=r"limits\.streams"):
        load_config(cfg)


def _decoy_capture(path):
    frames = [_tzsp(f"10.128.0.{i}", i) for i in range(1, 41)]
    frames += [_tzsp("10.1.0.1", i) for i in range(30)]
    pkts = [Ether(f) for f in frames]
    for k, p in enumerate(pkts):
        p.time = 1_700_000_000 + k * 0.01
    wrpcap(str(path), pkts)


def test_shed_counts_reach_the_report_and_the_live_summary(tmp_path):
    cap, cfg = tmp_path / "decoys.pcap", tmp_path / "mw.toml"
    _decoy_capture(cap)
    cfg.write_text("[limits]\nstreams_per_collector = 4\n")
    r = CliRunner().invoke(main, ["scan", "--format", "json", "--config", str(cfg), str(cap)])
    report = json.loads(r.output)
    assert report["stats"]["shed_streams"] >= 36
    exporters = {f["exporter"]["ip"] for f in report["findings"]}
    assert "10.1.0.1" in exporters and None in exporters
    r = CliRunner().invoke(main, ["watch", "-r", str(cap), "--config", str(cfg), "--format",
                                  "jsonl", "--summary-every", "0"])  # fmt: skip
    events = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    final = events[-1]
    assert final["event"] == "summary" and final["stats"]["shed_streams"] >= 36
    assert sum(e["event"] == "finding" for e in events) <= 6


def test_the_live_tracker_remembers_a_bounded_number_of_findings():
    from detector.live.tracker import FindingTracker

    engine = Engine(Limits(streams_per_collector=64))
    _run(engine, [_tzsp(f"10.128.0.{i}", i) for i in range(1, 41)])
    findings = [f for f, _ in judge(engine.finish(), PolicyContext())]
    tracker = FindingTracker(max_written=16)
    assert len(tracker.update(findings, 0.0)) == 40
    assert len(tracker.written) == 16 and tracker.forgotten == 24


def test_distinct_hosts_restart_before_their_table_passes_the_budget():
    engine = Engine(Limits(hosts=16_384))
    rng = random.Random(6)
    base = bytearray(_frame("100.0.0.1", "172.16.0.1", 1024, 53, b"q" * 12))
    caps = []
    for _ in range(12):
        frames = []
        for _ in range(1000):
            base[26:34] = struct.pack("!II", (100 << 24) | rng.randrange(1 << 24),
                                      (172 << 24) | rng.randrange(1 << 24))  # fmt: skip
            frames.append(bytes(base))
        _run(engine, frames)
        caps.append(engine.hosts.cap)
        assert engine.hosts.count <= 16_384
    # A table at most half full: the budget's hosts fit in twice as many slots, never more.
    assert max(caps) <= 32_768
    assert engine.distinct_hosts() > 23_000


def test_copy_matching_budgets_come_from_the_limits(tmp_path):
    cfg = tmp_path / "mw.toml"
    cfg.write_text("[limits]\ncopy_natives = 4096\ncopy_pending = 10\nplain_copies = 16\n")
    engine = Engine(load_config(cfg).policy().limits)
    m = engine.copies
    assert (m.max_natives, m.max_pending, m.max_plain) == (4096, 10, 16)
    # Natives arriving faster than the budget holds: the sample narrows, the table stays
    # within it (and its columns do not double past it).
    rng = np.random.default_rng(3)
    for k in range(12):
        n = 2000
        fps = rng.integers(1, 1 << 62, n, dtype=np.uint64)
        ranks = fps >> np.uint64(64 - 16)
        ts = np.full(n, 100.0 + k * 1e-3)
        zeros = np.zeros(n, dtype=np.int64)
        m.add_natives(fps, ranks, ts, zeros, zeros, zeros, lambda i: ("a", "b"), lambda i: b"")
        assert len(m) < 4096 + n and len(m.ts) <= 4096 + n
    assert m.level > 0


def test_stream_timelines_keep_every_packet_at_a_coarser_step_past_their_cells():
    engine = Engine(Limits(timeline_cells=1024))
    _run(engine, [_tzsp("10.1.0.1", i) for i in range(10)])
    (s,) = [st.evidence for st in engine.streams.values()]
    # A day of one packet a second, in batches of ten minutes.
    for hour in range(24 * 6):
        t0 = 100.0 + hour * 600
        engine.process(
            PacketBatch.of_frames([_tzsp("10.1.0.1", 1)] * 600, ts=t0 + np.arange(600.0))
        )
    assert len(s.timeline) <= 1024 and s.timeline_step >= 128
    assert sum(s.timeline.values()) >= 24 * 3600
    assert all(sec % s.timeline_step == 0 for sec in s.timeline)


def test_a_flow_promoted_out_of_an_aggregate_counts_each_packet_once():
    engine = Engine()
    spoofed = [_tzsp(f"10.128.{i // 250}.{i % 250 + 1}", i) for i in range(200)]
    _run(engine, spoofed)
    # The real mirror's first packets go to the collector's aggregate until its flow is busier
    # than the quietest kept stream; then it is kept apart, within this one batch.
    mirror = [_tzsp("10.1.0.1", i) for i in range(100)]
    _run(engine, mirror, t0=200.0)
    streams = engine.finish()
    assert sum(s.packets for s in streams) == 300
    assert sum(s.bytes for s in streams) == sum(map(len, spoofed + mirror))
    (kept,) = [s for s in streams if s.src == "10.1.0.1"]
    assert 90 < kept.packets < 100  # its first packets stay counted in the aggregate
