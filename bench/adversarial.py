"""Hostile inputs at 1×, 4× and 16× size: time and peak memory of `mirrorwatch scan` on each.

    nice -n 19 python bench/adversarial.py                 # every input, 1x 4x 16x
    python bench/adversarial.py --only tzsp-spoofed --scales 1 4
    python bench/adversarial.py --tree /path/to/other/checkout   # the same inputs, other code

Each input is what a host on the watched network can send to make a watcher's memory or time
grow with the input instead of its configuration: one TZSP packet per spoofed exporter, many
flows that look like a mirror or a port-only tunnel, huge or costly flow-export templates,
zero-length IP fragments, capture time that never advances, TCP handover streams with gaps or
one-byte out-of-order segments, and IPv6 flows whose hash keys collide.  The capture is written
to a temporary directory, scanned once, and removed.

Peak memory is the largest sum of the resident sets of the scan and all its children (worker
processes), and of their proportional set sizes (shared pages counted once), sampled every 20 ms
from /proc; a run is stopped at --timeout seconds or
--max-mib MiB and shown with ">".  The script prints figures and asserts nothing: linear cost
shows as time and memory growing no faster than the input from 1× to 16×.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from detector.decode.frames import ones_complement_sum

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000
COLLECTOR = "10.9.0.10"
ROUTER_MAC = bytes.fromhex("001b540a0101")
COLLECTOR_MAC = bytes.fromhex("5254009c000a")

# --------------------------------------------------------------------------- packet building


def a4(ip: str | int) -> bytes:
    if isinstance(ip, int):
        return struct.pack("!I", ip)
    return bytes(int(x) for x in ip.split("."))


def ipv4(src: str | int, dst: str | int, proto: int, payload: bytes, ident: int = 1,
         frag: int = 0, total: int | None = None) -> bytes:  # fmt: skip
    n = 20 + len(payload) if total is None else total
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, n, ident & 0xFFFF, frag, 64, proto, 0,
                    a4(src), a4(dst))  # fmt: skip
    return h[:10] + struct.pack("!H", ~ones_complement_sum(h) & 0xFFFF) + h[12:] + payload


def ipv6(src: bytes, dst: bytes, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, 64) + src + dst + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 1, 5 << 4, flags, 64240,
                       0, 0) + payload  # fmt: skip


def eth(ip: bytes, etype: int = 0x0800, src: bytes = ROUTER_MAC,
        dst: bytes = COLLECTOR_MAC) -> bytes:  # fmt: skip
    return dst + src + struct.pack("!H", etype) + ip


def inner_frame(rng: random.Random, size: int = 120) -> bytes:
    """An Ethernet/IPv4/UDP frame between two hosts of a home network."""
    a, b = (
        f"192.168.10.{rng.randrange(2, 250)}",
        f"93.184.{rng.randrange(256)}.{rng.randrange(256)}",
    )
    body = rng.randbytes(max(0, size - 42))
    return eth(ipv4(a, b, 17, udp(rng.randrange(1024, 65535), 443, body)),
               src=bytes.fromhex("02aabbccdd01"), dst=bytes.fromhex("001b540a00fe"))  # fmt: skip


TZSP_ETHERNET = struct.pack("!BBH", 1, 0, 1) + b"\x01"  # version 1, received, Ethernet, END


class Pcap:
    """A classic pcap written as it is generated (inputs reach hundreds of MB)."""

    def __init__(self, path: Path, linktype: int = 1) -> None:
        self.f = path.open("wb", buffering=1 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        self.packets = 0

    def add(self, t: float, frame: bytes) -> None:
        sec = int(t)
        self.f.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)))
        self.f.write(frame)
        self.packets += 1

    def close(self) -> None:
        self.f.close()


def spoofed(i: int) -> int:
    """The i-th of many distinct source addresses in 10.128.0.0/9."""
    return (10 << 24) | (128 << 16) | (i & 0x7FFFFF)


# --------------------------------------------------------------------------- the inputs


def tzsp_spoofed(cap: Pcap, scale: int) -> None:
    """One TZSP packet per spoofed exporter, all to one collector (10 k exporters at 1×)."""
    rng = random.Random(1)
    for i in range(10_000 * scale):
        frame = inner_frame(rng)
        cap.add(
            T0 + i * 1e-4,
            eth(
                ipv4(
                    spoofed(i), COLLECTOR, 17, udp(40000 + i % 20000, 37008, TZSP_ETHERNET + frame)
                )
            ),
        )


def tzsp_flows(cap: Pcap, scale: int) -> None:
    """Flows from many source ports to :37008 with a TZSP header (8 k flows of 4 packets)."""
    rng = random.Random(2)
    flows = 8_000 * scale
    t = float(T0)
    for _rnd in range(4):
        for i in range(flows):
            src = spoofed(i // 60000)
            frame = inner_frame(rng, 300)
            t += 2e-5
            cap.add(
                t,
                eth(ipv4(src, COLLECTOR, 17, udp(1024 + i % 60000, 37008, TZSP_ETHERNET + frame))),
            )


def hello_inner(cap: Pcap, scale: int) -> None:
    """ "hello" + an inner IPv4 packet: what an unknown encapsulation looks like (16 k flows)."""
    rng = random.Random(3)
    flows = 16_000 * scale
    t = float(T0)
    for _rnd in range(2):
        for i in range(flows):
            inner = ipv4(
                f"192.168.10.{i % 200 + 2}",
                "93.184.216.34",
                17,
                udp(rng.randrange(1024, 65535), 443, rng.randbytes(40)),
            )
            t += 2e-5
            cap.add(
                t,
                eth(
                    ipv4(
                        spoofed(i // 60000),
                        COLLECTOR,
                        17,
                        udp(1024 + i % 60000, 7777, b"hello" + inner),
                    )
                ),
            )


def tunnel_ports(cap: Pcap, scale: int) -> None:
    """Flows on NAT-T and WireGuard ports, a stream each (6 k flows of 2 packets)."""
    rng = random.Random(4)
    flows = 6_000 * scale
    t = float(T0)
    for rnd in range(2):
        for i in range(flows):
            src = spoofed(i % 200)
            t += 2e-5
            if i % 2:
                body = b"\x04\0\0\0" + rng.randbytes(4) + struct.pack("<Q", rnd + 1)
                payload, port = body + rng.randbytes(32), 51820
            else:
                payload = rng.randbytes(4) + struct.pack("!I", rnd + 1) + rng.randbytes(64)
                port = 4500
            cap.add(t, eth(ipv4(src, COLLECTOR, 17, udp(1024 + i % 60000, port, payload))))


def ipfix_header(length: int, seq: int, domain: int = 1) -> bytes:
    return struct.pack("!HHIII", 10, length, T0, seq, domain)


def ipfix_huge_templates(cap: Pcap, scale: int) -> None:
    """IPFIX templates of 16,000 fields each, one per datagram (200 at 1×)."""
    fields = 16_000
    for i in range(200 * scale):
        spec = b"".join(struct.pack("!HH", 1 + k % 100, 4) for k in range(fields))
        tset = struct.pack("!HHHH", 2, 8 + len(spec), 256 + i % 60000, fields) + spec
        msg = ipfix_header(16 + len(tset), i) + tset
        cap.add(T0 + i * 1e-3, eth(ipv4("10.1.0.1", COLLECTOR, 17, udp(50000, 4739, msg))))


def zero_fragments(cap: Pcap, scale: int) -> None:
    """Zero-length IPv4 fragments at every offset of many datagrams (100 k at 1×)."""
    for i in range(100_000 * scale):
        ident, off = i // 8000, 1 + i % 8000
        pkt = ipv4("10.66.0.1", COLLECTOR, 17, b"", ident=ident, frag=0x2000 | off)
        cap.add(T0 + i * 1e-5, eth(pkt))


def evidence_samples(cap: Pcap, scale: int) -> None:
    """Many mirror streams, each with many full-size packets to keep as evidence."""
    rng = random.Random(7)
    streams, per_stream = 100 * scale, 220
    frames = [inner_frame(rng, 1400) for _ in range(64)]
    t = float(T0)
    for k in range(per_stream):
        for s in range(streams):
            t += 1e-5
            cap.add(
                t,
                eth(
                    ipv4(
                        spoofed(s),
                        COLLECTOR,
                        17,
                        udp(40000, 37008, TZSP_ETHERNET + frames[(k + s) % 64]),
                    )
                ),
            )


def frozen_time(cap: Pcap, scale: int) -> None:
    """A capture whose clock never advances: every packet a new flow (200 k at 1×)."""
    rng = random.Random(8)
    for _i in range(200_000 * scale):
        src = (100 << 24) | rng.randrange(1 << 24)
        dst = (172 << 24) | (16 << 16) | rng.randrange(1 << 16)
        cap.add(
            float(T0),
            eth(ipv4(src, dst, 17, udp(rng.randrange(1024, 65535), 53, rng.randbytes(24)))),
        )


_GEN: list[object] = []


def _generate() -> object:
    """pcaps/generate.py, for its ETSI PS-PDU builder."""
    import importlib.util

    if _GEN:
        return _GEN[0]
    spec = importlib.util.spec_from_file_location("mw_generate", REPO / "pcaps" / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    _GEN.append(mod)
    return mod


def etsi_pdus(n: int) -> bytes:
    gen = _generate()
    rng = random.Random(9)
    pdus = []
    for k in range(n):
        packet = ipv4("100.64.20.7", "93.184.216.34", 17, udp(5000, 443, rng.randbytes(200)))
        pdus.append(gen.ps_pdu(k, 1000 * k, gen.etsi_cc(packet, True, 1000 * k)))  # type: ignore[attr-defined]
    return b"".join(pdus)


def etsi_gaps(cap: Pcap, scale: int) -> None:
    """ETSI HI3 connections that lose a segment and then send 1.1 MB each (24 at 1×)."""
    conns = 24 * scale
    stream = etsi_pdus(4500)  # ~1.2 MB of PS-PDUs
    seg = 1400
    first = stream[:seg]
    t = float(T0)
    isn = 1000
    for c in range(conns):
        t += 1e-5
        cap.add(t, eth(ipv4("10.9.0.20", "203.0.113.200", 6,
                            tcp(20000 + c, 44445, isn, first))))  # fmt: skip
    # The segment after the first is never sent: everything after it waits.
    for pos in range(2 * seg, len(stream), seg):
        for c in range(conns):
            t += 1e-5
            cap.add(
                t,
                eth(
                    ipv4(
                        "10.9.0.20",
                        "203.0.113.200",
                        6,
                        tcp(20000 + c, 44445, isn + pos, stream[pos : pos + seg]),
                    )
                ),
            )


def ipfix_varlen(cap: Pcap, scale: int) -> None:
    """IPFIX datagrams of 60 KB of one-byte variable-length records, empty but for the last
    (1 at 1×)."""
    spec = struct.pack("!HH", 1, 0xFFFF)
    tset = struct.pack("!HHHH", 2, 12, 256, 1) + spec
    records = b"\x00" * 60_000 + b"\x01\x07"
    dset = struct.pack("!HH", 256, 4 + len(records)) + records
    for i in range(scale):
        msg = ipfix_header(16 + len(tset) + len(dset), i) + tset + dset
        cap.add(T0 + i, eth(ipv4("10.1.0.1", COLLECTOR, 17, udp(50000, 4739, msg))))


# splitmix64 finaliser and its inverse, to choose IPv6 addresses whose unsalted flow keys share
# their low 32 bits (so they land in one chain of an open-addressing table).
M64 = (1 << 64) - 1
_M1, _M2, _M3 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * _M2) & M64
    x = ((x ^ (x >> 27)) * _M3) & M64
    return x ^ (x >> 31)


def _unshift(x: int, s: int) -> int:
    y = x
    for _ in range(64 // s + 1):
        y = x ^ (y >> s)
    return y & M64


def unmix64(x: int) -> int:
    x = _unshift(x, 31)
    x = (x * pow(_M3, -1, 1 << 64)) & M64
    x = _unshift(x, 27)
    x = (x * pow(_M2, -1, 1 << 64)) & M64
    return _unshift(x, 30)


def _colliding_source(target_flow: int, b: int, proto: int, sport: int, w01: int) -> bytes | None:
    """An IPv6 source whose flow key (with the fixed destination endpoint hash ``b``) is
    ``target_flow`` under the unsalted hashes, or None."""
    inv_m1 = pow(_M1, -1, 1 << 64)
    u = unmix64(target_flow)
    cands = [unmix64(u ^ ((b * _M1) & M64) ^ proto)]  # source endpoint is the lower one
    cands.append(((u ^ mix64(b) ^ proto) * inv_m1) & M64)  # ... or the higher one
    for i, a in enumerate(cands):
        if (a < b) != (i == 0):
            continue
        hs = unmix64(a) ^ sport
        # hs = mix64(mix64(w0w1) ^ w23 * M1): solve for the low address half w23.
        w23 = ((unmix64(hs) ^ mix64(w01)) * inv_m1) & M64
        return struct.pack("!QQ", w01, w23)
    return None


def ipv6_collisions(cap: Pcap, scale: int) -> None:
    """IPv6 flows whose (unsalted) flow keys share their low 32 bits (10 k flows at 1×)."""
    dst = bytes.fromhex("20010db8000900000000000000000010")
    d0, d1 = struct.unpack("!QQ", dst)
    hd = mix64(mix64(d0) ^ ((d1 * _M1) & M64))
    b = mix64(hd ^ 443)
    w01 = 0x20010DB800660000
    made, i = 0, 0
    while made < 10_000 * scale:
        i += 1
        src = _colliding_source((i << 32) | 0x5EED, b, 17, 443, w01)
        if src is None:
            continue
        made += 1
        cap.add(T0 + made * 1e-5, eth(ipv6(src, dst, 17, udp(443, 443, b"x" * 16)), 0x86DD))


def tcp_one_byte(cap: Pcap, scale: int) -> None:
    """A handover stream, then one-byte segments sent last first (10 k at 1×)."""
    stream = etsi_pdus(200)
    first_len = 600
    n = min(10_000 * scale, len(stream) - first_len - 1)
    if n < 10_000 * scale:
        stream = etsi_pdus(200 * (10_000 * scale // (len(stream) - first_len) + 1))
        n = 10_000 * scale
    t = float(T0)

    def seg(seq: int, data: bytes) -> bytes:
        return eth(ipv4("10.9.0.20", "203.0.113.200", 6, tcp(30000, 44445, 1000 + seq, data)))

    cap.add(t, seg(0, stream[:first_len]))
    # Bytes first_len+1 .. first_len+n, last first; byte first_len comes at the end.
    for k in range(n, 0, -1):
        t += 1e-5
        cap.add(t, seg(first_len + k, stream[first_len + k : first_len + k + 1]))
    cap.add(t + 1e-5, seg(first_len, stream[first_len : first_len + 1]))


@dataclass
class Row:
    name: str
    make: Callable[[Pcap, int], None]
    unit: str


ROWS = [
    Row("tzsp-spoofed", tzsp_spoofed, "10 k exporters"),
    Row("tzsp-flows-37008", tzsp_flows, "8 k flows"),
    Row("hello-inner-ipv4", hello_inner, "16 k flows"),
    Row("tunnel-ports", tunnel_ports, "6 k flows"),
    Row("ipfix-16k-fields", ipfix_huge_templates, "200 templates"),
    Row("zero-length-fragments", zero_fragments, "100 k fragments"),
    Row("evidence-samples", evidence_samples, "100 streams"),
    Row("frozen-time", frozen_time, "200 k flows"),
    Row("etsi-gaps", etsi_gaps, "24 connections"),
    Row("ipfix-varlen-60k", ipfix_varlen, "1 datagram"),
    Row("ipv6-colliding-keys", ipv6_collisions, "10 k flows"),
    Row("tcp-one-byte-ooo", tcp_one_byte, "10 k segments"),
]


# --------------------------------------------------------------------------- measuring


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for t in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{t}/children").read_text().split()
        except OSError:
            continue
        for k in kids:
            yield from _tree(int(k))


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size: pages shared with other processes (a forked worker's libraries)
    counted in shares, so a tree's sum is what it costs the machine."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Run:
    seconds: float
    peak_mib: float
    exit: int | None  # None: stopped (time or memory limit)
    why: str = ""
    peak_pss_mib: float = 0.0

    def cell(self) -> str:
        over = ">" if self.exit is None else ""
        return (f"{over}{self.seconds:.1f} s / {over}{self.peak_mib:.0f} MiB "
                f"(PSS {self.peak_pss_mib:.0f})")  # fmt: skip


def measure(argv: list[str], env: dict[str, str], timeout: float, max_mib: float) -> Run:
    start = time.monotonic()
    # Run from the checkout measured: `python -m` looks in the working directory first.
    proc = subprocess.Popen(argv, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    peak = peak_pss = 0
    why = ""
    while proc.poll() is None:
        pids = set(_tree(proc.pid))
        peak = max(peak, sum(_rss_kib(p) for p in pids))
        peak_pss = max(peak_pss, sum(_pss_kib(p) for p in pids))
        elapsed = time.monotonic() - start
        if elapsed > timeout or peak / 1024 > max_mib:
            why = "time" if elapsed > timeout else "memory"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if not why and proc.returncode not in (0, 1):
        why = f"exit {proc.returncode}: {err.strip().splitlines()[-1:] if err else ''}"
    code = None if why in ("time", "memory") else proc.returncode
    return Run(elapsed, peak / 1024, code, why, peak_pss / 1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", help="run only this input (repeatable)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--tree", type=Path, default=REPO, help="mirrorwatch checkout to run")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a run is stopped")
    ap.add_argument("--max-mib", type=float, default=3072.0, help="memory at which it is stopped")
    ap.add_argument("--keep", type=Path, help="keep the generated captures in this directory")
    args = ap.parse_args()
    rows = [r for r in ROWS if not args.only or r.name in args.only]
    env = {**os.environ, "PYTHONPATH": str(args.tree.resolve())}
    argv = [sys.executable, "-m", "detector.cli", "scan", "--format", "json", "-q"]
    print(f"mirrorwatch from {args.tree.resolve()}; time / peak memory of the process tree "
          "(summed resident sets, and summed proportional sets)")  # fmt: skip
    head = "| input | 1× is | " + " | ".join(f"{s}×" for s in args.scales) + " |"
    print(head)
    print("|---|---|" + "---|" * len(args.scales), flush=True)
    for row in rows:
        cells = []
        stopped = False
        for scale in args.scales:
            if stopped:
                cells.append("not run")
                continue
            with tempfile.TemporaryDirectory(prefix="mw-adv-") as tmp:
                where = args.keep or Path(tmp)
                where.mkdir(parents=True, exist_ok=True)
                path = where / f"{row.name}-{scale}x.pcap"
                cap = Pcap(path)
                row.make(cap, scale)
                cap.close()
                run = measure([*argv, str(path.resolve())], env, args.timeout, args.max_mib)
            cell = run.cell()
            if run.why and run.exit is not None:
                cell += f" ({run.why})"
            elif run.why:
                cell += f" (stopped: {run.why})"
                stopped = True  # a larger input would only take longer
            cells.append(cell)
        print(f"| {row.name} | {row.unit} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
