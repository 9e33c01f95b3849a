"""How mirror verdicts hold up when the carried headers are untidy, and against evasion.

For each mirror format (TZSP, ERSPAN I/II/III, GRE-TEB, VXLAN, GENEVE) prints severity,
identification and certainty with 0 %, 50 % and 100 % of the carried IPv4 checksums zeroed (as
copies made before TX checksum offload carry them) and with carried addresses and MACs
anonymised (checksums stale, group-bit MACs); then the result of each evasion case.

    python bench/untidy.py
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mwtest import sample_generator  # noqa: E402

from detector.capture.reader import PacketBatch  # noqa: E402
from detector.engine import Engine  # noqa: E402
from detector.findings import Finding  # noqa: E402
from detector.policy.verdict import PolicyContext, judge  # noqa: E402

GEN = sample_generator()


def findings(frames: list[bytes], ts: np.ndarray, batch: int = 4096) -> list[Finding]:
    engine = Engine()
    for k in range(0, len(frames), batch):
        engine.process(PacketBatch.of_frames(frames[k : k + batch], ts=ts[k : k + batch]))
    return [f for f, _ in judge(engine.finish(), PolicyContext())]


def untidy_table() -> None:
    cases: dict[str, Callable[[random.Random, bytes], bytes]] = {
        "0 % zeroed": lambda rng, f: f,
        "50 % zeroed": lambda rng, f: GEN.zero_ip_checksum(f) if rng.random() < 0.5 else f,
        "100 % zeroed": lambda rng, f: GEN.zero_ip_checksum(f),
        "anonymised": lambda rng, f: GEN.anonymise(f),
    }
    print("format     " + "".join(f"| {c:<24}" for c in cases))
    rows: dict[str, list[str]] = {p: [] for p in GEN.MIRROR_FORMATS}
    for untidy in cases.values():
        rng = random.Random(11)
        inner = [f for _, f in GEN.traffic(rng, 60)]
        wraps = GEN.mirror_wraps(rng)
        for proto, wrap in wraps.items():
            frames = [wrap(i, untidy(rng, f)) for i, f in enumerate(inner)]
            got = [f for f in findings(frames, 1000.0 + 0.01 * np.arange(len(frames)))
                   if f.protocol == proto]  # fmt: skip
            cell = (
                f"{got[0].severity} {got[0].identification:.2f}/{got[0].certainty:.2f}"
                if got
                else "no finding"
            )
            rows[proto].append(cell)
    for proto, cells in rows.items():
        print(f"{proto:<11}" + "".join(f"| {c:<24}" for c in cells))
    print("(cells: severity identification/certainty)")


def evasion_table() -> None:
    rng = random.Random(12)
    inner = [f for _, f in GEN.traffic(rng, 200)]
    out = GEN.Outer(rng)
    tzsp = GEN.tzsp_hdr()
    results: list[tuple[str, str]] = []

    def show(name: str, frames: list[bytes], ts: np.ndarray, proto: str, batch: int = 4096) -> None:
        t = time.perf_counter()
        got = [f for f in findings(frames, ts, batch) if f.protocol == proto]
        took = time.perf_counter() - t
        if not got:
            results.append((name, f"no finding ({took:.1f} s)"))
            return
        f = max(got, key=lambda f: f.packets)
        main = f"{f.severity} {f.identification:.2f}/{f.certainty:.2f}, {f.packets} packets"
        results.append((name, f"{len(got)} finding(s); main: {main} ({took:.1f} s)"))

    copies = [out.udp(tzsp + f, 40000, 37008) for f in inner]
    n = len(copies)
    junk = [out.udp(tzsp + bytes(12) + b"\x12\x34" + rng.randbytes(40), 40000, 37008)
            for _ in range(n // 2)]  # fmt: skip
    mixed = [x for pair in zip(copies, junk + copies[: n - len(junk)], strict=True) for x in pair]
    show("garbage mixed in (1 junk per 2 packets)", mixed[: n + len(junk)],
         1000.0 + 0.01 * np.arange(n + len(junk)), "tzsp")  # fmt: skip
    show("8 junk packets first, then 192 copies", junk[:8] + copies[:192],
         1000.0 + 0.01 * np.arange(200), "tzsp", batch=4)  # fmt: skip
    show("slow: 1 copy a minute over 2 h", copies[:120], 1000.0 + 60.0 * np.arange(120), "tzsp",
         batch=1)  # fmt: skip
    ports = [out.udp(tzsp + f, 20000 + i, 37008) for i, f in enumerate(inner)]
    show("200 source ports, one collector", ports, 1000.0 + 0.01 * np.arange(n), "tzsp")
    spoof = [GEN.Outer(rng, src=f"10.128.{i // 250}.{i % 250 + 1}").udp(tzsp + f, 40000, 37008)
             for i, f in enumerate(inner)]  # fmt: skip
    show("200 exporters, one collector", spoof, 1000.0 + 0.01 * np.arange(n), "tzsp")
    sys.path.insert(0, str(ROOT / "tests"))
    from test_evasion import _decoys

    erspan = GEN.mirror_wraps(rng)["erspan-2"]
    e = [erspan(i, f) for i, f in enumerate(inner[:150])]
    crowd = e[:50] + _decoys(100_000) + e[50:]
    show("mirror among 100 000 decoy flows", crowd, 1000.0 + 1e-4 * np.arange(len(crowd)),
         "erspan-2")  # fmt: skip
    for proto, port, hdr in (("tzsp", 443, tzsp), ("vxlan", 53, GEN.vxlan_hdr(42))):
        fr = [out.udp(hdr + f, 50000, port) for f in inner[:80]]
        show(f"{proto} on udp/{port}", fr, 1000.0 + 0.01 * np.arange(80), proto)
    for snap in (64, 96):
        for proto, wrap in GEN.mirror_wraps(rng).items():
            fr = [wrap(i, f)[:snap] for i, f in enumerate(inner[:80])]
            show(f"{proto} cut at {snap} bytes", fr, 1000.0 + 0.01 * np.arange(80), proto)
    lo = GEN.Outer(rng, src="127.0.0.1", dst="127.0.0.1")
    fr = [lo.udp(tzsp + f, 40000, 37008) for f in inner[:80]]
    show("loopback (exporter = collector)", fr, 1000.0 + 0.01 * np.arange(80), "tzsp")
    width = max(len(n) for n, _ in results)
    for name, result in results:
        print(f"{name:<{width}}  {result}")


if __name__ == "__main__":
    untidy_table()
    print()
    evasion_table()
