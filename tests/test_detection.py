"""What the engine sets aside is never given up: junk sent first cannot blind it, and every number
that decides what can be seen is in one place, settable and documented."""

from __future__ import annotations

import random
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from scapy.all import IP, UDP, Ether, Raw, raw

from detector.capture.reader import PacketBatch
from detector.config import load_config
from detector.detection import Detection, probe
from detector.engine import Engine
from detector.policy.verdict import PolicyContext, judge

ROOT = Path(__file__).resolve().parents[1]


def _udp(payload: bytes, sport: int = 40000, dport: int = 37008) -> bytes:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return raw(
        eth / IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=sport, dport=dport) / payload
    )


def _copy(i: int) -> bytes:
    """A TZSP copy of one of several inner conversations, both directions."""
    a, b = f"10.0.{i % 5}.5", "10.0.9.6"
    src, dst = (a, b) if i % 2 else (b, a)
    inner = Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(src=src, dst=dst, id=i)
    return _udp(b"\x01\x00\x00\x01\x01" + raw(inner / UDP(sport=1000, dport=2000) / Raw(b"x" * 40)))


# TZSP's prefilter accepts it, the decoder does not (the carried EtherType 0x1234 is no frame).
JUNK_TZSP = b"\x01\x00\x00\x01\x01" + bytes(12) + b"\x12\x34" + bytes(40)


def _run(frames: list[bytes], detection: Detection | None = None, per_batch: int = 4) -> Engine:
    engine = Engine(detection=detection)
    for k in range(0, len(frames), per_batch):
        chunk = frames[k : k + per_batch]
        engine.process(PacketBatch.of_frames(chunk, ts=1000.0 + k + np.arange(len(chunk)) * 1e-3))
    return engine


def _findings(engine: Engine) -> list[tuple[str, str]]:
    return [(f.protocol, f.severity) for f, _ in judge(engine.finish(), PolicyContext())]


def test_junk_first_does_not_blind_a_mirror() -> None:
    # 8 packets that fail validation set the flow aside; the 192 copies after them still count.
    engine = _run([_udp(JUNK_TZSP)] * 8 + [_copy(i) for i in range(192)])
    assert engine._rejects.fails  # it was set aside...
    assert ("tzsp", "high") in _findings(engine)  # ...and found all the same
    (s,) = [st.evidence for st in engine.streams.values()]
    # Probes follow the flow key, salted per run: the first lands within 8 strides but for
    # a chance of e**-8.
    assert s.packets >= 192 - 8 * Detection().reject_probe_stride


def test_payload_no_format_knows_first_does_not_blind_a_mirror() -> None:
    rng = random.Random(5)
    noise = [_udp(b"\xee" + rng.randbytes(80)) for _ in range(20)]
    engine = _run(noise + [_copy(i) for i in range(180)])
    assert ("tzsp", "high") in _findings(engine)


def test_probes_are_a_share_of_each_flow() -> None:
    keys = np.full(20000, 0x1234_5678_9ABC, dtype=np.uint64)
    ts = 1000.0 + np.arange(20000) * 1e-3
    for stride in (4, 16, 64):
        share = probe(keys, ts, stride).mean()
        assert 0.6 / stride < share < 1.5 / stride, stride
    assert probe(keys[:5], ts[:5], 1).all()


def test_detection_is_read_from_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text("[detection]\nreject_after = 2\nreject_probe_stride = 1000000\n")
    det = load_config(cfg).policy().detection
    assert (det.reject_after, det.reject_probe_stride, det.full_decode) == (2, 1000000, 128)
    # Setting aside for good is possible, but only when the operator asks for it.
    engine = _run([_udp(JUNK_TZSP)] * 3 + [_copy(i) for i in range(60)], det, per_batch=1)
    assert not engine.streams
    bad = tmp_path / "bad.toml"
    bad.write_text("[detection]\nreject_after = 0\n")
    with pytest.raises(Exception, match=r"detection\.reject_after"):
        load_config(bad)


def test_every_detection_number_is_documented_with_its_default() -> None:
    how = (ROOT / "docs" / "how-it-works.md").read_text()
    config = (ROOT / "docs" / "config.md").read_text()
    for f in fields(Detection):
        row = re.search(rf"^\s*\| `{f.name}` \| ([^|]+) \|", how, re.M)
        assert row, f"{f.name} missing from how-it-works.md"
        assert float(row.group(1)) == float(f.default), f.name  # type: ignore[arg-type]
        assert f"`{f.name}`" in config, f.name


def test_a_stream_born_in_a_batch_of_its_packets_has_its_first_ones_decoded_then_a_sample() -> None:
    """1,000 copies in the batch that starts the stream (a dense mirror): the first
    ``full_decode`` are decoded, then one in ``sample_stride``, each standing for that many."""
    det, n = Detection(), 1000
    engine = _run([_copy(i) for i in range(n)], per_batch=n)
    (s,) = [st.evidence for st in engine.streams.values()]
    assert s.packets == n
    assert s.decoded == det.full_decode + -(-(n - det.full_decode) // det.sample_stride)
    assert abs(s.carried_packets - n) <= det.sample_stride
    assert ("tzsp", "high") in _findings(engine)
