"""Write a large synthetic uplink capture for throughput benchmarks.

    python bench/make_capture.py                      # 1,000,000 packets -> bench/out/uplink.pcap
    python bench/make_capture.py --packets 200000 --out /tmp/small.pcap

The mix follows the capture measured in the performance notes: ~73 k two-way flows over ~10 s;
TCP 63 %, QUIC-like UDP/443 24 %, DNS 6 %, ICMP 1.5 % of packets; 802.1Q on ~10 % and IPv6 on
~22 % of flows; a TZSP stream and an ERSPAN II stream each carrying copies of ~2.5 % of the flows
(the copies hold the same bytes as the originals, 50-1500 µs later); NetFlow v9 exports with
templates and data.  Mean frame size is ~800 bytes.

Speed comes from building header rows for whole groups of packets at once with numpy (one
template row per header layout, columns patched in place, IPv4 checksums summed by column) and
then one plain loop that concatenates record header + header row + payload slice.  Payloads are
slices of one random pool, so they look encrypted; TCP/UDP checksums are left zero.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.decode.frames import ones_complement_sum, ones_complement_sum_np

T0 = 1_768_471_200  # 2026-01-15T10:00:00Z
SPAN_US = 10_000_000
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "uplink.pcap"

GW_MAC = bytes.fromhex("001b540a00fe")
ROUTER_MAC = bytes.fromhex("001b540a0101")
COLLECTOR_MAC = bytes.fromhex("5254009c000a")

# Share of native packets and mean packets per flow for each class (DNS is one query/answer).
CLASSES = {"tcp": (0.63, 22.0), "quic": (0.24, 22.0), "dns": (0.06, 2.0), "icmp": (0.015, 4.0)}
MIRROR_SHARE = 0.025  # of flows, for each of the two mirror streams

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def put(m: U8, off: int, values: npt.ArrayLike, width: int) -> None:
    """Write big-endian integers (one per row) into columns off..off+width of m."""
    v = np.broadcast_to(np.asarray(values).astype(np.int64).astype(np.uint64), (len(m),))
    be = v.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - width :]
    m[:, off : off + width] = be


def ipv4_checksums(m: U8, off: int) -> None:
    words = np.ascontiguousarray(m[:, off : off + 20]).view(">u2").astype(np.int64)
    words[:, 5] = 0
    put(m, off + 10, ~ones_complement_sum_np(words) & 0xFFFF, 2)


def group_cumsum(values: I64, group_start: npt.NDArray[np.bool_]) -> I64:
    """Exclusive cumulative sum of values restarting at each True in group_start."""
    c = np.cumsum(values) - values
    starts = np.maximum.accumulate(np.where(group_start, np.arange(len(values)), 0))
    return c - c[starts]


@dataclass
class Flows:
    cls: npt.NDArray[np.int8]  # index into CLASSES
    v6: npt.NDArray[np.bool_]
    vlan: npt.NDArray[np.int64]  # 0 = untagged
    client: I64
    server: I64
    cport: I64
    sport: I64
    npk: I64


def make_flows(rng: np.random.Generator, n_native: int, flow_packets: float = 22.0) -> Flows:
    """Flows of each class; ``flow_packets`` is the mean length of TCP and QUIC flows (22 as
    measured; short flows make a capture with many more flows for its size)."""
    cls_l, npk_l = [], []
    scale = flow_packets / 22.0
    for k, (share, mean) in enumerate(CLASSES.values()):
        pk = int(n_native * share / sum(s for s, _ in CLASSES.values()))
        if mean == 2.0:
            counts = np.full(pk // 2, 2)
        else:
            least = 4 if k == 3 else 6
            if scale < 1:
                mean = max(1.0, mean * scale)
                least = max(1, min(least, int(mean // 2)))
            nf = max(1, int(pk / mean))
            x = rng.lognormal(0.0, 1.0, nf)
            counts = np.maximum(least, np.round(x * pk / x.sum())).astype(np.int64)
        cls_l.append(np.full(len(counts), k, np.int8))
        npk_l.append(counts)
    cls = np.concatenate(cls_l)
    nf = len(cls)
    v6 = rng.random(nf) < 0.22
    vlan = np.where(rng.random(nf) < 0.10, rng.choice([10, 20, 30, 100], nf), 0)
    sport = np.select(
        [cls == 0, cls == 1, cls == 2], [rng.choice([443, 443, 443, 80], nf), 443, 53], 0
    )
    # Hosts grow with the flows (a capture of millions of flows has many more addresses).
    return Flows(
        cls,
        v6,
        vlan,
        rng.integers(0, max(4096, nf // 8), nf),
        rng.integers(0, max(5000, nf // 4), nf),
        rng.integers(32768, 61000, nf),
        sport,
        np.concatenate(npk_l),
    )


def ip4(kind: str, idx: I64) -> I64:
    if kind == "client":
        return (10 << 24) | (idx + 256)
    return ((23 + idx % 150) << 24) | ((idx * 2654435761) & 0xFFFFFF)


def template(v6: bool, vlan: bool, proto: int, l4_len: int) -> bytes:
    """Ethernet [+ 802.1Q] + IP header + zeroed L4 header of the given length."""
    eth = (
        GW_MAC
        + GW_MAC
        + (b"\x81\x00\x00\x00" if vlan else b"")
        + (b"\x86\xdd" if v6 else b"\x08\x00")
    )
    if v6:
        ip = struct.pack(">IHBB", 0x60000000, 0, proto, 64) + bytes(32)
    else:
        ip = struct.pack(">BBHHHBBH", 0x45, 0, 0, 0, 0x4000, 64, proto, 0) + bytes(8)
    return eth + ip + bytes(l4_len)


L4 = {"tcp": (6, 20), "quic": (17, 8), "dns": (17, 8), "icmp": (1, 8)}
DNS_Q = bytes.fromhex("0000 0100 0001 0000 0000 0000") + b"\x07example\x03com\x00\x00\x01\x00\x01"
DNS_A = bytes.fromhex("0000 8180 0001 0001 0000 0000") + b"\x07example\x03com\x00\x00\x01\x00\x01"
DNS_A += bytes.fromhex("c00c 0001 0001 0000012c 0004 5db8d822")


def build_native(
    rng: np.random.Generator, n_native: int, flow_packets: float = 22.0
) -> tuple[Flows, dict[str, np.ndarray], list[bytes]]:
    """Per native packet: time, flow, header row (bytes) and payload length, in time order."""
    fl = make_flows(rng, n_native, flow_packets)
    nf = len(fl.cls)
    flow = np.repeat(np.arange(nf), fl.npk)
    first = np.r_[True, flow[1:] != flow[:-1]]
    idx = group_cumsum(np.ones(len(flow), np.int64), first)
    last = np.r_[flow[1:] != flow[:-1], True]
    cls = fl.cls[flow]
    n = len(flow)
    # Direction: first packet from the client, second from the server, then mostly downloads.
    up = np.where(idx == 0, True, np.where(idx == 1, False, rng.random(n) < 0.4))
    up = np.where(cls == 2, idx % 2 == 0, np.where(cls == 3, idx % 2 == 0, up))
    # Frame sizes (without VLAN tag): ACK-size or full-size TCP, QUIC near 1280-1400, small DNS.
    big = rng.random(n) < np.where(up, 0.3, 0.92)
    ipv6 = fl.v6[flow]
    iphl = np.where(ipv6, 40, 20)
    ack = 14 + iphl + 20
    tcp_len = np.where(big & (idx >= 3), np.where(up, rng.integers(120, 700, n), 1514), ack)
    quic_len = np.where(big | (idx < 2), rng.integers(1280, 1400, n), rng.integers(90, 160, n))
    dns_len = 14 + iphl + 8 + np.where(up, len(DNS_Q), len(DNS_A))
    frame = np.select(
        [cls == 0, cls == 1, cls == 2], [tcp_len, quic_len, dns_len], 14 + iphl + 8 + 56
    )
    frame = frame + np.where(fl.vlan[flow] > 0, 4, 0)
    # Times: flow start + exponential gaps.
    dur_gap = np.where(cls == 2, 15_000, np.where(cls == 3, 1_000_000, 6_000))
    gaps = rng.exponential(1.0, n) * dur_gap
    gaps[first] = 0
    start = rng.integers(0, SPAN_US, nf)
    t = (start[flow] + group_cumsum(gaps.astype(np.int64), first)) % SPAN_US

    rows: list[bytes] = [b""] * n
    plen = np.zeros(n, np.int64)
    names = list(CLASSES)
    for c in range(4):
        for is6 in (False, True):
            for tagged in (False, True):
                sel = np.nonzero((cls == c) & (ipv6 == is6) & ((fl.vlan[flow] > 0) == tagged))[0]
                if not len(sel):
                    continue
                name = names[c]
                proto, l4len = L4[name]
                if is6 and proto == 1:
                    proto = 58
                tmpl = template(is6, tagged, proto, l4len)
                m = np.tile(np.frombuffer(tmpl, np.uint8), (len(sel), 1))
                f = flow[sel]
                u = up[sel]
                cm = (0x3C22FB000000 | fl.client[f]).astype(np.uint64)
                put(m, 0, np.where(u, int.from_bytes(GW_MAC, "big"), cm), 6)
                put(m, 6, np.where(u, cm, int.from_bytes(GW_MAC, "big")), 6)
                o = 14
                if tagged:
                    put(m, 14, fl.vlan[f], 2)
                    o = 18
                fr = frame[sel]
                ip_len = fr - o
                if is6:
                    put(m, o + 4, ip_len - 40, 2)
                    cli_hi = np.full(len(sel), 0x20010DB801000000, np.uint64)
                    srv_hi = np.full(len(sel), 0x2606470000000000, np.uint64)
                    a_hi, b_hi = np.where(u, cli_hi, srv_hi), np.where(u, srv_hi, cli_hi)
                    a_lo = np.where(u, fl.client[f] + 0x100, fl.server[f] + 0x10000)
                    b_lo = np.where(u, fl.server[f] + 0x10000, fl.client[f] + 0x100)
                    put(m, o + 8, a_hi, 8)
                    put(m, o + 16, a_lo, 8)
                    put(m, o + 24, b_hi, 8)
                    put(m, o + 32, b_lo, 8)
                    l4 = o + 40
                else:
                    put(m, o + 2, ip_len, 2)
                    put(m, o + 4, rng.integers(0, 65536, len(sel)), 2)
                    put(m, o + 8, np.where(u, 64, rng.choice([52, 57, 118], len(sel))), 1)
                    c_ip, s_ip = ip4("client", fl.client[f]), ip4("server", fl.server[f])
                    put(m, o + 12, np.where(u, c_ip, s_ip), 4)
                    put(m, o + 16, np.where(u, s_ip, c_ip), 4)
                    ipv4_checksums(m, o)
                    l4 = o + 20
                cp, sp = fl.cport[f], fl.sport[f]
                if name == "icmp":
                    put(m, l4, np.where(u, 8 if not is6 else 128, 0 if not is6 else 129), 1)
                    put(m, l4 + 4, (f * 7) & 0xFFFF, 2)
                    put(m, l4 + 6, idx[sel] // 2, 2)
                else:
                    put(m, l4, np.where(u, cp, sp), 2)
                    put(m, l4 + 2, np.where(u, sp, cp), 2)
                hdr_end = l4 + l4len
                pl = fr - hdr_end
                if name == "tcp":
                    seq0 = (f * 2654435761 + np.where(u, 0, 12345)) & 0xFFFFFFFF
                    key = f * 2 + u
                    order = np.lexsort((sel, key))
                    k_sorted = key[order]
                    g0 = np.r_[True, k_sorted[1:] != k_sorted[:-1]]
                    sent = np.empty(len(sel), np.int64)
                    sent[order] = group_cumsum(pl[order], g0)
                    put(m, l4 + 4, (seq0 + sent) & 0xFFFFFFFF, 4)
                    put(m, l4 + 8, (seq0 ^ 0x5A5A) & 0xFFFFFFFF, 4)
                    i2 = idx[sel]
                    flags = np.select(
                        [i2 == 0, i2 == 1, last[sel], pl > 0], [0x02, 0x12, 0x11, 0x18], 0x10
                    )
                    put(m, l4 + 12, (5 << 12) | flags, 2)
                    put(m, l4 + 14, 64240, 2)
                elif name != "icmp":
                    put(m, l4 + 4, fr - l4, 2)  # UDP length
                if name == "quic":
                    first_byte = np.where(idx[sel] < 2, 0xC3, 0x40 | (f & 0x3F))
                    m = np.concatenate([m, first_byte.astype(np.uint8)[:, None]], axis=1)
                    pl = pl - 1
                if name == "dns":
                    q = np.frombuffer(DNS_Q, np.uint8)
                    a = np.frombuffer(DNS_A, np.uint8)
                    body = np.zeros((len(sel), len(DNS_A)), np.uint8)
                    body[u, : len(q)] = q
                    body[~u] = a
                    put(body, 0, (f * 40503) & 0xFFFF, 2)
                    for is_up, b in ((True, q), (False, a)):
                        s2 = np.nonzero(u == is_up)[0]
                        for r in s2:
                            rows[sel[r]] = m[r].tobytes() + body[r, : len(b)].tobytes()
                    plen[sel] = 0
                    continue
                plen[sel] = pl
                for r, row in zip(sel.tolist(), m, strict=True):
                    rows[r] = row.tobytes()
    order = np.argsort(t, kind="stable")
    cols = {"t": t[order], "flow": flow[order], "plen": plen[order]}
    return fl, cols, [rows[i] for i in order]


def outer_rows(rng: np.random.Generator, inner_len: I64, kind: str) -> list[bytes]:
    """Outer Ethernet/IPv4/UDP+TZSP or GRE+ERSPAN II headers for copies of the given lengths."""
    n = len(inner_len)
    if kind == "tzsp":
        tail = struct.pack(">HHHH", 45000, 37008, 0, 0) + b"\x01\x00\x00\x01\x01"
        proto, src, dst = 17, (10 << 24) | (1 << 16) | 1, (10 << 24) | (9 << 16) | 10
    else:
        tail = struct.pack(">HHI", 0x1000, 0x88BE, 0) + struct.pack(">HHI", 0x1000, 7, 0x1F)
        proto, src, dst = 47, (10 << 24) | (1 << 16) | 2, (10 << 24) | (9 << 16) | 11
    tmpl = COLLECTOR_MAC + ROUTER_MAC + b"\x08\x00"
    tmpl += struct.pack(">BBHHHBBHII", 0x45, 0, 0, 0, 0, 64, proto, 0, src, dst) + tail
    m = np.tile(np.frombuffer(tmpl, np.uint8), (n, 1))
    put(m, 16, 20 + len(tail) + inner_len, 2)
    put(m, 18, (np.arange(n) + int(rng.integers(65536))) & 0xFFFF, 2)
    ipv4_checksums(m, 14)
    if kind == "tzsp":
        put(m, 38, 8 + 5 + inner_len, 2)
    else:
        put(m, 38, np.arange(n) + 1, 4)
    return [row.tobytes() for row in m]


def netflow_packets(
    rng: np.random.Generator, fl: Flows, every_us: int = 20_000
) -> list[tuple[int, bytes]]:
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4)]
    tmpl = struct.pack(">HHHH", 0, 8 + 4 * len(fields), 256, len(fields)) + b"".join(
        struct.pack(">HH", a, b) for a, b in fields
    )
    out = []
    v4 = np.nonzero(~fl.v6)[0]
    picks = rng.choice(v4, (SPAN_US // every_us, 24))
    for k, row in enumerate(picks):
        t = k * every_us + int(rng.integers(1000))
        recs = b"".join(
            struct.pack(
                ">IIHHBIIII",
                int(ip4("client", fl.client[f])),
                int(ip4("server", fl.server[f])),
                int(fl.cport[f]),
                int(fl.sport[f]),
                6 if fl.cls[f] == 0 else 17,
                int(fl.npk[f]),
                int(fl.npk[f]) * 800,
                k * 20,
                k * 20 + 500,
            )
            for f in row.tolist()
        )
        data = (
            struct.pack(">HH", 256, 4 + len(recs) + (-len(recs) % 4)) + recs + bytes(-len(recs) % 4)
        )
        sets = (tmpl if k % 20 == 0 else b"") + data
        count = len(row) + (1 if k % 20 == 0 else 0)
        body = (
            struct.pack(">HHIIII", 9, count, 86_400_000 + t // 1000, T0 + t // 1_000_000, k, 1)
            + sets
        )
        udp = struct.pack(">HHHH", 50123, 2055, 8 + len(body), 0) + body
        ip = bytearray(
            struct.pack(
                ">BBHHHBBHII",
                0x45,
                0,
                20 + len(udp),
                k & 0xFFFF,
                0,
                64,
                17,
                0,
                (10 << 24) | (1 << 16) | 1,
                (10 << 24) | (9 << 16) | 12,
            )
        )
        ip[10:12] = struct.pack(">H", ~ones_complement_sum(bytes(ip)) & 0xFFFF)
        out.append((t, COLLECTOR_MAC + ROUTER_MAC + b"\x08\x00" + bytes(ip) + udp))
    return out


def write_capture(
    path: Path, n_packets: int, seed: int = 7, flow_packets: float = 22.0
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    n_native = int(n_packets * 0.945)
    fl, cols, rows = build_native(rng, n_native, flow_packets)
    nf = len(fl.cls)
    pool = rng.bytes(1 << 20)
    pool_off = rng.integers(0, (1 << 20) - 1600, len(rows))
    # Mirror streams: copies of every packet of 2.5 % of flows each (disjoint sets).
    chosen = rng.permutation(nf)
    k = int(nf * MIRROR_SHARE)
    streams = {"tzsp": chosen[:k], "erspan": chosen[k : 2 * k]}
    events: list[tuple[I64, I64, int]] = [(cols["t"], np.arange(len(rows)), 0)]
    outer: dict[int, list[bytes]] = {}
    for sid, (kind, flows) in enumerate(streams.items(), start=1):
        sel = np.nonzero(np.isin(cols["flow"], flows))[0]
        inner_len = np.array([len(rows[i]) for i in sel.tolist()]) + cols["plen"][sel]
        outer[sid] = outer_rows(rng, inner_len, kind)
        delay = rng.integers(50, 1500, len(sel))
        events.append((cols["t"][sel] + delay, sel, sid))
    nflow = netflow_packets(rng, fl)
    events.append((np.array([t for t, _ in nflow]), np.arange(len(nflow)), 3))
    t_all = np.concatenate([e[0] for e in events])
    i_all = np.concatenate([e[1] for e in events])
    s_all = np.concatenate([np.full(len(e[0]), e[2], np.int8) for e in events])
    order = np.argsort(t_all, kind="stable")
    t_all, i_all, s_all = t_all[order], i_all[order], s_all[order]
    # Position of each copy within its stream (outer rows are in selection order).
    pos = np.zeros(len(order), np.int64)
    for sid in (1, 2):
        m = s_all == sid
        sel_sorted = np.sort(i_all[m])
        pos[m] = np.searchsorted(sel_sorted, i_all[m])
    plen = cols["plen"]
    path.parent.mkdir(parents=True, exist_ok=True)
    total_bytes = 0
    pack = struct.Struct("<IIII").pack
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        buf = bytearray()
        for t, i, s, p in zip(
            t_all.tolist(), i_all.tolist(), s_all.tolist(), pos.tolist(), strict=True
        ):
            if s == 3:
                frame = nflow[i][1]
            else:
                off = int(pool_off[i])
                frame = rows[i] + pool[off : off + int(plen[i])]
                if s:
                    frame = outer[s][p] + frame
            buf += pack(T0 + t // 1_000_000, t % 1_000_000, len(frame), len(frame))
            buf += frame
            total_bytes += len(frame)
            if len(buf) > 1 << 22:
                fh.write(buf)
                buf.clear()
        fh.write(buf)
    n = len(t_all)
    return {
        "packets": n,
        "flows": nf,
        "mean_frame": total_bytes / n,
        "seconds": time.perf_counter() - t_start,
    }


def split_capture(path: Path, out_dir: Path, files: int) -> int:
    """Cut a pcap into ``files`` files of about equal size, each with the file header."""
    data = path.read_bytes()
    head, size = data[:24], len(data)
    caplen = struct.Struct("<8xI4x").unpack_from
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part-*.pcap"):
        old.unlink()
    off, start, k = 24, 24, 0
    while off < size:
        off += 16 + caplen(data, off)[0]
        if off >= size or off - 24 >= (size - 24) * (k + 1) // files:
            (out_dir / f"part-{k:03d}.pcap").write_bytes(head + data[start:off])
            start, k = off, k + 1
    return k


def gzip_capture(path: Path, out: Path) -> None:
    with path.open("rb") as src, gzip.open(out, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def suite(out_dir: Path, seed: int) -> None:
    """The captures bench/run.py --suite times."""
    for name, packets, flow_packets in (
        ("uplink.pcap", 1_000_000, 22.0),
        ("uplink-5x.pcap", 5_000_000, 22.0),
        # About 2 M distinct flows of one or two packets, over many more hosts.
        ("uplink-2m-flows.pcap", 2_200_000, 1.0),
    ):
        stats = write_capture(out_dir / name, packets, seed, flow_packets)
        print(f"{out_dir / name}: {stats['packets']:,} packets, {stats['flows']:,} flows, "
              f"written in {stats['seconds']:.1f} s", flush=True)  # fmt: skip
    n = split_capture(out_dir / "uplink.pcap", out_dir / "uplink-200-files", 200)
    print(f"{out_dir / 'uplink-200-files'}: the 1x capture in {n} files", flush=True)
    gzip_capture(out_dir / "uplink.pcap", out_dir / "uplink.pcap.gz")
    print(f"{out_dir / 'uplink.pcap.gz'}: the 1x capture, gzip level 6", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000, help="about how many packets")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--flow-packets", type=float, default=22.0,
        help="mean packets of a TCP or QUIC flow (1.0 gives about 0.7 flows per packet)",
    )  # fmt: skip
    ap.add_argument(
        "--suite", action="store_true",
        help="write every capture bench/run.py --suite times (1x, 5x, 2 M flows, a directory "
        "of 200 files, gzip) into the directory of --out",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if args.suite:
        suite(args.out.parent, args.seed)
        return 0
    stats = write_capture(args.out, args.packets, args.seed, args.flow_packets)
    print(
        f"{args.out}: {stats['packets']:,} packets, {stats['flows']:,} flows, "
        f"mean frame {stats['mean_frame']:.0f} B, written in {stats['seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
