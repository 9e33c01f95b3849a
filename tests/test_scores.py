"""identification and certainty: the documented formulas, and what they say on samples."""

from __future__ import annotations

import numpy as np
import pytest
from mwtest import PCAPS, scan
from scapy.all import IP, UDP, Ether, Raw, raw

from detector.capture.reader import PacketBatch
from detector.engine import Engine
from detector.policy import scores
from detector.policy.verdict import PolicyContext, judge


def test_identification_formula() -> None:
    assert scores.identification(1.0, 1.0, 100, off_port=False) == 1.0
    assert scores.identification(1.0, 1.0, 100, off_port=True) == scores.OFF_PORT
    # A magic-less match (strength 0.5) over half the packets, five of them.
    want = 0.5 * (0.7 + 0.3 * 0.5) * (0.8 + 0.02 * 5)
    assert scores.identification(0.5, 0.5, 5, off_port=False) == round(want, 3)


def test_certainty_formula() -> None:
    assert scores.certainty("copies-proven", 40, 20, copy_match_share=1.0) == 1.0
    assert scores.certainty("one-way", 40, 20) == scores.BASE["one-way"]
    # Little evidence pulls it down, to the floor at none.
    assert scores.certainty("both-ways", 0, 20) == round(
        scores.BASE["both-ways"] * scores.EVIDENCE_FLOOR, 3
    )
    assert scores.certainty("never-leaves", 100, 20) < scores.certainty("one-way", 100, 20)


@pytest.mark.parametrize(
    ("name", "protocol", "basis"),
    [
        ("tzsp.pcap", "tzsp", "copy-by-construction"),
        ("vxlan-mirror-8472.pcap", "vxlan", "both-ways"),
        ("mirror-with-natives.pcap", "erspan-2", "copies-proven"),
        ("vxlan-overlay.pcap", "vxlan", "tunnel"),
        ("netflow-v9.pcap", "netflow-v9", "flow-records"),
    ],
)
def test_samples_say_what_their_verdict_rests_on(name: str, protocol: str, basis: str) -> None:
    (f,) = [f for f in scan(PCAPS / name).findings if f.protocol == protocol]
    assert f.evidence["certainty_basis"] == basis
    assert f.confidence == pytest.approx(f.identification * f.certainty, abs=0.002)
    assert f.identification >= 0.9 and f.certainty >= 0.8


def test_checksums_play_no_part_in_identification() -> None:
    for name in ("checksum-zero-all.pcap", "anonymised-carried.pcap"):
        for f in scan(PCAPS / name).findings:
            assert f.identification >= 0.9, (name, f.protocol)


def test_a_copy_that_never_leaves_the_box_is_low() -> None:
    frames = []
    for i in range(40):
        a, b = f"10.0.{i % 4}.5", "10.0.9.6"
        src, dst = (a, b) if i % 2 else (b, a)
        inner = raw(Ether() / IP(src=src, dst=dst, id=i) / UDP(sport=1000, dport=2000) / Raw(b"x"))
        outer = IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=40000, dport=37008)
        frames.append(raw(Ether() / outer / Raw(b"\x01\x00\x00\x01\x01" + inner)))
    engine = Engine()
    engine.process(PacketBatch.of_frames(frames, ts=1000.0 + np.arange(len(frames)) * 0.01))
    ((f, _),) = judge(engine.finish(), PolicyContext())
    assert (f.protocol, f.severity) == ("tzsp", "low")
    assert f.evidence["never_leaves"] is True and f.evidence["certainty_basis"] == "never-leaves"
    assert "never-leaves" in f.reason_codes
