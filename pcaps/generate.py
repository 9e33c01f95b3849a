"""Regenerate the bundled sample captures (deterministic: fixed seeds and timestamps).

    python pcaps/generate.py                   # every sample into pcaps/
    python pcaps/generate.py --out DIR a.pcap  # only the named samples, into DIR
    python pcaps/generate.py --list            # sample names

Each sample is seeded from its own name, so generating a subset gives the same bytes as
generating everything.  Timestamps start at 2026-01-15T10:00:00Z.  Encapsulation headers are
packed by hand from the byte layouts in the format catalog; scapy builds the Ethernet/IP/L4
layers (and computes their lengths and checksums).  Expected verdicts are in expected.tsv.
"""

from __future__ import annotations

import argparse
import gzip
import io
import ipaddress
import random
import struct
import sys
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.dot11 import Dot11
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import LLC, SNAP, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet, Raw

HERE = Path(__file__).resolve().parent
T0 = 1_768_471_200  # 2026-01-15T10:00:00Z
US = 1_000_000

# Link types used below (pcap LINKTYPE_* values).
LT_ETHERNET = 1
LT_RAW = 101
LT_SLL = 113
LT_UNKNOWN = 147  # LINKTYPE_USER0: no reader knows it
LT_SLL2 = 276

# Outer endpoints: a router on the span that emits the stream and the host that collects it.
ROUTER_MAC = "00:1b:54:0a:01:01"
COLLECTOR_MAC = "52:54:00:9c:00:0a"
GATEWAY_MAC = "00:1b:54:0a:00:fe"
ROUTER_IP = "10.1.0.1"
COLLECTOR_IP = "10.9.0.10"
ROUTER_IP6 = "2001:db8:1::1"
COLLECTOR_IP6 = "2001:db8:9::10"

Frame = tuple[int, bytes]  # (microseconds since T0, frame bytes)


# --------------------------------------------------------------------------- capture files


class Capture:
    """A pcap being written: records kept in time order, written with struct."""

    def __init__(
        self, linktype: int = LT_ETHERNET, *, nanos: bool = False, big_endian: bool = False
    ) -> None:
        self.linktype = linktype
        self.nanos = nanos
        self.endian = ">" if big_endian else "<"
        self.records: list[tuple[int, bytes, int]] = []  # (ns since T0, bytes, orig_len)

    def add(self, t_us: int, data: bytes, orig_len: int | None = None, extra_ns: int = 0) -> None:
        self.records.append((t_us * 1000 + extra_ns, data, orig_len or len(data)))

    def extend(self, frames: Iterable[Frame]) -> None:
        for t, data in frames:
            self.add(t, data)

    def to_bytes(self) -> bytes:
        e = self.endian
        magic = 0xA1B23C4D if self.nanos else 0xA1B2C3D4
        out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, self.linktype)]
        for ns, data, orig in sorted(self.records, key=lambda r: r[0]):
            sec, rem = divmod(ns, 1_000_000_000)
            frac = rem if self.nanos else rem // 1000
            out.append(struct.pack(e + "IIII", T0 + sec, frac, len(data), orig))
            out.append(data)
        return b"".join(out)


def pcap_of(frames: Iterable[Frame], **kw: object) -> bytes:
    cap = Capture(**kw)  # type: ignore[arg-type]
    cap.extend(frames)
    return cap.to_bytes()


def pcapng_of(interfaces: list[tuple[int, list[Frame]]]) -> bytes:
    """A pcapng with one Interface Description Block per (linktype, frames) pair."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype, _ in interfaces:
        out.append(block(1, struct.pack("<HHI", linktype, 0, 262144)))
    packets = [(t, i, data) for i, (_, frames) in enumerate(interfaces) for t, data in frames]
    for t, i, data in sorted(packets, key=lambda p: (p[0], p[1])):
        ts = (T0 * US) + t
        body = struct.pack("<IIIII", i, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data
        out.append(block(6, body))
    return b"".join(out)


# --------------------------------------------------------------------------- inner traffic


@dataclass
class Host:
    mac: str
    ip: str


def clients(rng: random.Random, n: int, net: str = "192.168.10", v6: bool = False) -> list[Host]:
    picked = rng.sample(range(10, 250), n)
    if v6:
        return [
            Host(f"3c:22:fb:{i:02x}:10:{k:02x}", f"2001:db8:10::{i:x}")
            for k, i in enumerate(picked)
        ]
    return [Host(f"3c:22:fb:{i:02x}:10:{k:02x}", f"{net}.{i}") for k, i in enumerate(picked)]


SERVERS4 = [
    "93.184.216.34",
    "151.101.1.69",
    "142.250.74.46",
    "104.16.132.229",
    "13.107.42.14",
    "185.199.108.153",
    "52.84.150.11",
    "23.215.0.138",
]
SERVERS6 = [
    "2606:2800:220:1::248",
    "2a04:4e42::645",
    "2a00:1450:4001:82f::200e",
    "2606:4700::6810:84e5",
]
RESOLVER4 = "9.9.9.9"
RESOLVER6 = "2620:fe::fe"
NAMES = [
    "example.com",
    "cdn.example.net",
    "api.github.com",
    "www.wikipedia.org",
    "updates.vendor.io",
    "mail.example.org",
    "time.cloudflare.com",
    "static.news.example",
]


def ip_layer(src: str, dst: str, ident: int, ttl: int = 64) -> Packet:
    if ":" in src:
        return IPv6(src=src, dst=dst, hlim=ttl)
    return IP(src=src, dst=dst, id=ident, ttl=ttl, flags="DF")


def tls_record(ctype: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack(">BHH", ctype, version, len(body)) + body


def handshake(htype: int, body: bytes) -> bytes:
    return struct.pack(">B", htype) + len(body).to_bytes(3, "big") + body


def ext(etype: int, body: bytes) -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def client_hello(rng: random.Random, sni: str) -> bytes:
    host = sni.encode()
    exts = ext(0, struct.pack(">HBH", len(host) + 3, 0, len(host)) + host)
    exts += ext(10, bytes.fromhex("0006001d00170018"))  # supported groups
    exts += ext(43, bytes.fromhex("0403040303"))  # supported versions: TLS 1.3, 1.2
    exts += ext(51, struct.pack(">HHH", 36, 0x001D, 32) + rng.randbytes(32))  # key share x25519
    suites = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8")
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
    body += struct.pack(">H", len(suites)) + suites + b"\x01\x00"
    exts += ext(21, bytes(max(0, 508 - len(body) - len(exts) - 6)))  # padding extension
    body += struct.pack(">H", len(exts)) + exts
    return tls_record(22, handshake(1, body), 0x0301)


def server_hello(rng: random.Random) -> bytes:
    exts = ext(43, b"\x03\x04") + ext(51, struct.pack(">HH", 0x001D, 32) + rng.randbytes(32))
    body = b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    out = tls_record(22, handshake(2, body)) + b"\x14\x03\x03\x00\x01\x01"
    return out + app_data(rng, rng.randrange(600, 1200))


def app_data(rng: random.Random, n: int) -> bytes:
    return tls_record(23, rng.randbytes(n))


class Conversations:
    """Builds realistic two-way client/server traffic as Ethernet frames."""

    def __init__(self, rng: random.Random, hosts: list[Host], v6: bool = False) -> None:
        self.rng = rng
        self.hosts = hosts
        self.v6 = v6
        self.frames: list[Frame] = []
        self.ipid = {h.ip: rng.randrange(65536) for h in hosts}

    def _frame(self, t: int, cli: Host, srv: str, up: bool, l4: Packet) -> None:
        ident = self.ipid.setdefault(srv if not up else cli.ip, self.rng.randrange(65536))
        src, dst = (cli.ip, srv) if up else (srv, cli.ip)
        self.ipid[src] = (ident + 1) & 0xFFFF
        ttl = 64 if up else self.rng.choice([52, 54, 57, 118])
        eth = Ether(src=cli.mac, dst=GATEWAY_MAC) if up else Ether(src=GATEWAY_MAC, dst=cli.mac)
        self.frames.append((t, bytes(eth / ip_layer(src, dst, ident, ttl) / l4)))

    def dns(self, t: int, cli: Host) -> int:
        rng = self.rng
        srv = RESOLVER6 if ":" in cli.ip else RESOLVER4
        name = rng.choice(NAMES)
        sport, qid = rng.randrange(32768, 61000), rng.randrange(65536)
        q = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype="A"))
        self._frame(t, cli, srv, True, UDP(sport=sport, dport=53) / q)
        t += rng.randrange(3000, 30000)
        octets = (
            rng.randrange(1, 223),
            rng.randrange(256),
            rng.randrange(256),
            rng.randrange(1, 255),
        )
        addr = ".".join(map(str, octets))
        r = DNS(
            id=qid,
            qr=1,
            rd=1,
            ra=1,
            qd=DNSQR(qname=name, qtype="A"),
            an=DNSRR(rrname=name, type="A", ttl=300, rdata=addr),
        )
        self._frame(t, cli, srv, False, UDP(sport=53, dport=sport) / r)
        return t

    def tcp(self, t: int, cli: Host, port: int, requests: list[tuple[bytes, list[bytes]]]) -> int:
        """One TCP connection: handshake, request/response exchanges, FIN both ways."""
        rng = self.rng
        srv = rng.choice(SERVERS6 if ":" in cli.ip else SERVERS4)
        sport = rng.randrange(32768, 61000)
        cs, ss = rng.randrange(1 << 32), rng.randrange(1 << 32)
        rtt = rng.randrange(4000, 40000)

        def seg(up: bool, flags: str, payload: bytes = b"") -> None:
            nonlocal cs, ss
            if up:
                l4 = TCP(sport=sport, dport=port, seq=cs, ack=ss, flags=flags, window=64240)
            else:
                l4 = TCP(sport=port, dport=sport, seq=ss, ack=cs, flags=flags, window=65160)
            if flags == "S":
                l4.ack = 0
            self._frame(t, cli, srv, up, l4 / Raw(payload) if payload else l4)
            n = len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
            if up:
                cs = (cs + n) & 0xFFFFFFFF
            else:
                ss = (ss + n) & 0xFFFFFFFF

        seg(True, "S")
        t += rtt
        seg(False, "SA")
        t += rng.randrange(100, 400)
        seg(True, "A")
        for req, resps in requests:
            t += rng.randrange(200, 2000)
            seg(True, "PA", req)
            t += rtt
            for r in resps:
                seg(False, "PA" if r is resps[-1] else "A", r)
                t += rng.randrange(20, 300)
            t += rng.randrange(100, 500)
            seg(True, "A")
        t += rng.randrange(1000, 50000)
        seg(True, "FA")
        t += rtt
        seg(False, "FA")
        t += rng.randrange(100, 400)
        seg(True, "A")
        return t

    def http(self, t: int, cli: Host) -> int:
        rng = self.rng
        name = rng.choice(NAMES)
        path = rng.choice(["/", "/index.html", "/api/v1/status", "/img/logo.png"])
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n"
        ).encode()
        body_len = rng.randrange(200, 2400)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {body_len}\r\n\r\n"
        body = head.encode() + bytes(rng.choice(b"abcdefghij <>/\n") for _ in range(body_len))
        chunks = [body[i : i + 1448] for i in range(0, len(body), 1448)]
        return self.tcp(t, cli, 80, [(req, chunks)])

    def tls(self, t: int, cli: Host) -> int:
        rng = self.rng
        exchanges = [
            (client_hello(rng, rng.choice(NAMES)), [server_hello(rng)]),
            (b"\x14\x03\x03\x00\x01\x01" + app_data(rng, 53), []),
        ]
        for _ in range(rng.randrange(1, 3)):
            req = app_data(rng, rng.randrange(60, 400))
            exchanges.append(
                (req, [app_data(rng, rng.randrange(100, 1380)) for _ in range(rng.randrange(1, 3))])
            )
        return self.tcp(t, cli, 443, exchanges)

    def generate(self, n_packets: int, span_us: int = 3 * US, start: int = 0) -> list[Frame]:
        """Sessions spread over ``span_us`` until at least ``n_packets`` frames exist."""
        rng = self.rng
        kinds = [self.dns, self.dns, self.http, self.tls, self.tls]
        begin = len(self.frames)
        while len(self.frames) - begin < n_packets:
            t = start + rng.randrange(span_us)
            rng.choice(kinds)(t, rng.choice(self.hosts))
        return sorted(self.frames[begin:], key=lambda f: f[0])


def traffic(
    rng: random.Random, n: int, n_hosts: int = 5, v6: bool = False, span_us: int = 3 * US
) -> list[Frame]:
    return Conversations(rng, clients(rng, n_hosts, v6=v6), v6).generate(n, span_us)


# --------------------------------------------------------------------------- outer packets


class Outer:
    """Builds the outer Ethernet/IP headers of one stream from ``src`` to ``dst``."""

    def __init__(
        self,
        rng: random.Random,
        src: str = ROUTER_IP,
        dst: str = COLLECTOR_IP,
        smac: str = ROUTER_MAC,
        dmac: str = COLLECTOR_MAC,
        vlan: int | None = None,
        ttl: int = 64,
    ) -> None:
        self.src, self.dst, self.smac, self.dmac = src, dst, smac, dmac
        self.vlan, self.ttl = vlan, ttl
        self.ipid = rng.randrange(65536)

    def l2(self) -> Packet:
        eth = Ether(src=self.smac, dst=self.dmac)
        return eth / Dot1Q(vlan=self.vlan) if self.vlan is not None else eth

    def l3(self, proto: int) -> Packet:
        self.ipid = (self.ipid + 1) & 0xFFFF
        if ":" in self.src:
            return IPv6(src=self.src, dst=self.dst, nh=proto, hlim=self.ttl)
        return IP(src=self.src, dst=self.dst, proto=proto, id=self.ipid, ttl=self.ttl)

    def udp(self, payload: bytes, sport: int, dport: int, chksum: int | None = None) -> bytes:
        l4 = UDP(sport=sport, dport=dport)
        if chksum is not None:
            l4.chksum = chksum
        return bytes(self.l2() / self.l3(17) / l4 / Raw(payload))

    def ip(self, payload: bytes, proto: int) -> bytes:
        return bytes(self.l2() / self.l3(proto) / Raw(payload))

    def reverse(self, rng: random.Random) -> Outer:
        back = Outer(rng, self.dst, self.src, self.dmac, self.smac, self.vlan, self.ttl)
        return back


def strip_eth(frame: bytes) -> bytes:
    """The IP packet of an untagged Ethernet frame."""
    return frame[14:]


def is_up(frame: bytes) -> bool:
    """True when the inner frame goes from a client (source MAC not the gateway)."""
    return Ether(frame).src != GATEWAY_MAC


def copies(
    rng: random.Random,
    frames: list[Frame],
    wrap: Callable[[int, bytes], bytes],
    delay: tuple[int, int] = (150, 1800),
) -> list[Frame]:
    """A one-way mirror stream: each inner frame wrapped and sent shortly after it was seen."""
    return [(t + rng.randrange(*delay), wrap(i, f)) for i, (t, f) in enumerate(frames)]


def gre(proto: int, key: int | None = None, seq: int | None = None, flags: int = 0) -> bytes:
    if key is not None:
        flags |= 0x2000
    if seq is not None:
        flags |= 0x1000
    out = struct.pack(">HH", flags, proto)
    if key is not None:
        out += struct.pack(">I", key)
    if seq is not None:
        out += struct.pack(">I", seq)
    return out


def erspan2_hdr(session: int, index: int, vlan: int = 0, en: int = 0) -> bytes:
    return struct.pack(">HHI", (1 << 12) | vlan, (en << 11) | session, index & 0xFFFFF)


def erspan3_hdr(session: int, ts: int, hwid: int, direction: int, platform: bool) -> bytes:
    word = (0 << 15) | (0 << 10) | (hwid << 4) | (direction << 3) | (1 << 1) | int(platform)
    out = struct.pack(">HHIHH", 2 << 12, session, ts & 0xFFFFFFFF, 0, word)
    if platform:
        # Platform ID 3 in the top 6 bits, then a port index and the upper timestamp word.
        out += struct.pack(">II", (3 << 26) | 0x1A, ts >> 32)
    return out


def tzsp_hdr(encap: int = 1, tags: bytes = b"") -> bytes:
    return struct.pack(">BBH", 1, 0, encap) + tags + b"\x01"


def vxlan_hdr(vni: int) -> bytes:
    return struct.pack(">II", 0x08000000, vni << 8)


def to_dot11(frame: bytes, bssid: str = "f0:9f:c2:11:22:33") -> bytes:
    """Re-frame an Ethernet frame as the 802.11 data frame a wireless sniffer would see."""
    eth = Ether(frame)
    if eth.src != GATEWAY_MAC:  # station to AP
        hdr = Dot11(type=2, subtype=0, FCfield=0x01, addr1=bssid, addr2=eth.src, addr3=eth.dst)
    else:
        hdr = Dot11(type=2, subtype=0, FCfield=0x02, addr1=eth.dst, addr2=bssid, addr3=eth.src)
    hdr.SC = (len(frame) * 16) & 0xFFF0
    return bytes(hdr / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=eth.type)) + frame[14:]


def fcs(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


# --------------------------------------------------------------------------- TCP streams


def tcp_stream(
    rng: random.Random,
    a: Outer,
    b: Outer,
    aport: int,
    bport: int,
    messages: list[tuple[bool, bytes]],
    start: int = 0,
    seg_sizes: tuple[int, int] | None = None,
    reorder: int | None = None,
    retransmit: int | None = None,
    gap: tuple[int, int] = (2000, 60000),
) -> list[Frame]:
    """A TCP connection from a to b carrying ``messages`` (True = sent by a).

    Each message is cut into segments (at most 1448 bytes, or random sizes in ``seg_sizes`` so
    PDUs straddle segments); the peer acknowledges each.  ``reorder`` swaps the capture order of
    data segment k and k+1 of a's side; ``retransmit`` sends a's data segment k again later.
    """
    seqs = [rng.randrange(1 << 32), rng.randrange(1 << 32)]
    ports = (aport, bport)
    outs = (a, b)
    frames: list[Frame] = []
    t = start
    rtt = rng.randrange(300, 3000)

    def seg(side: int, flags: str, payload: bytes = b"", seq: int | None = None) -> bytes:
        other = 1 - side
        l4 = TCP(
            sport=ports[side],
            dport=ports[other],
            flags=flags,
            seq=seqs[side] if seq is None else seq,
            ack=0 if flags == "S" else seqs[other],
            window=64256,
        )
        o = outs[side]
        pkt = o.l2() / o.l3(6) / l4
        if payload:
            pkt = pkt / Raw(payload)
        return bytes(pkt)

    frames.append((t, seg(0, "S")))
    seqs[0] += 1
    t += rtt
    frames.append((t, seg(1, "SA")))
    seqs[1] += 1
    t += 100
    frames.append((t, seg(0, "A")))
    a_segments: list[int] = []  # indices into frames of a's data segments
    for from_a, data in messages:
        side = 0 if from_a else 1
        t += rng.randrange(*gap)
        pos = 0
        while pos < len(data):
            n = rng.randrange(*seg_sizes) if seg_sizes else 1448
            chunk = data[pos : pos + n]
            pos += len(chunk)
            if side == 0:
                a_segments.append(len(frames))
            frames.append((t, seg(side, "PA", chunk)))
            seqs[side] = (seqs[side] + len(chunk)) & 0xFFFFFFFF
            t += rng.randrange(30, 400)
        t += rtt // 2
        frames.append((t, seg(1 - side, "A")))
    t += rng.randrange(*gap)
    frames.append((t, seg(0, "FA")))
    seqs[0] += 1
    t += rtt
    frames.append((t, seg(1, "FA")))
    seqs[1] += 1
    frames.append((t + 100, seg(0, "A")))
    if reorder is not None and reorder + 1 < len(a_segments):
        i, j = a_segments[reorder], a_segments[reorder + 1]
        (ti, fi), (tj, fj) = frames[i], frames[j]
        frames[i], frames[j] = (ti, fj), (tj, fi)
    if retransmit is not None and retransmit < len(a_segments):
        ti, fi = frames[a_segments[retransmit]]
        frames.append((ti + 200_000, fi))  # after a 200 ms retransmission timeout
    return frames


# --------------------------------------------------------------------------- mirrors


def rng_for(name: str) -> random.Random:
    return random.Random(zlib.crc32(name.encode()))


def tzsp_stream(rng: random.Random, port: int, n: int = 70, tagged: bool = False) -> list[Frame]:
    inner = traffic(rng, n)
    out = Outer(rng)
    sport = rng.randrange(40000, 60000)

    def wrap(i: int, f: bytes) -> bytes:
        # MikroTik sends the bare END tag; other sensors add the original length (tag 41).
        tags = b"\x29\x02" + struct.pack(">H", len(f)) if tagged else b""
        return out.udp(tzsp_hdr(1, tags) + f, sport, port)

    return copies(rng, inner, wrap)


def s_tzsp(name: str) -> bytes:
    return pcap_of(tzsp_stream(rng_for(name), 37008))


def s_tzsp_31337(name: str) -> bytes:
    return pcap_of(tzsp_stream(rng_for(name), 31337, tagged=True))


def s_tzsp_80211(name: str) -> bytes:
    rng = rng_for(name)
    inner = traffic(rng, 60)
    out = Outer(rng, src="10.1.0.7")
    sport = rng.randrange(40000, 60000)

    def wrap(i: int, f: bytes) -> bytes:
        # Tags: signal (10), channel (18), then END.
        tags = bytes([10, 1, (256 - rng.randrange(40, 80)) & 0xFF, 18, 1, 36])
        return out.udp(tzsp_hdr(18, tags) + to_dot11(f), sport, 37008)

    return pcap_of(copies(rng, inner, wrap))


def s_erspan1(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng, src="10.1.0.2")
    return pcap_of(copies(rng, traffic(rng, 60), lambda i, f: out.ip(gre(0x88BE) + f, 47)))


def erspan2_stream(
    rng: random.Random,
    inner: list[Frame],
    out: Outer,
    session: int = 7,
    delay: tuple[int, int] = (150, 1800),
) -> list[Frame]:
    seq0 = rng.randrange(1000)
    hdr = erspan2_hdr(session, 0x1F)
    return copies(rng, inner, lambda i, f: out.ip(gre(0x88BE, seq=seq0 + i) + hdr + f, 47), delay)


def s_erspan2(name: str) -> bytes:
    rng = rng_for(name)
    return pcap_of(erspan2_stream(rng, traffic(rng, 70), Outer(rng, vlan=120)))


def s_erspan3(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng, src=ROUTER_IP6, dst=COLLECTOR_IP6)
    inner = traffic(rng, 60)

    def wrap(i: int, f: bytes) -> bytes:
        t, frame = inner[i]
        ts = (T0 * US + t) * 10  # 100 ns granularity
        hdr = erspan3_hdr(12, ts, hwid=5, direction=int(not is_up(frame)), platform=True)
        return out.ip(gre(0x22EB, seq=i + 1) + hdr + f, 47)

    return pcap_of(copies(rng, inner, wrap))


def s_erspan2_vxlan(name: str) -> bytes:
    """An ERSPAN II session mirroring a port that carries a VXLAN overlay (nested headers)."""
    rng = rng_for(name)
    tenants = traffic(rng, 60)
    vteps = (
        Outer(rng, "172.20.0.11", "172.20.0.12", "0c:c4:7a:00:00:11", "0c:c4:7a:00:00:12"),
        Outer(rng, "172.20.0.12", "172.20.0.11", "0c:c4:7a:00:00:12", "0c:c4:7a:00:00:11"),
    )
    sport = rng.randrange(49152, 65535)
    overlay = [
        (t, vteps[0 if is_up(f) else 1].udp(vxlan_hdr(5001) + f, sport, 4789)) for t, f in tenants
    ]
    return pcap_of(erspan2_stream(rng, overlay, Outer(rng, src="10.1.0.3"), session=33))


def s_erspan2_fragmented(name: str) -> bytes:
    """ERSPAN II whose outer packets exceed the MTU: full-size inner frames are IP-fragmented."""
    rng = rng_for(name)
    inner = traffic(rng, 40)
    out = Outer(rng)
    big = Conversations(rng, clients(rng, 2))
    for k in range(6):  # bulk transfers with full 1500-byte IP packets
        t = rng.randrange(3 * US)
        body = [rng.randbytes(1448) for _ in range(4)]
        big.tcp(t + k, big.hosts[k % 2], 443, [(b"\x17\x03\x03\x00\x40" + rng.randbytes(64), body)])
    inner = sorted(inner + big.frames, key=lambda f: f[0])
    seq0 = rng.randrange(1000)
    frames: list[Frame] = []
    for i, (t, f) in enumerate(inner):
        pkt = out.l3(47) / Raw(gre(0x88BE, seq=seq0 + i) + erspan2_hdr(7, 0x1F) + f)
        pkt = IP(bytes(pkt))
        t += rng.randrange(150, 1800)
        for k, part in enumerate(fragment(pkt, fragsize=1480) if len(pkt) > 1500 else [pkt]):
            frames.append((t + k * 3, bytes(out.l2() / part)))
    return pcap_of(frames)


def s_gre_teb_mirror(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng, src="10.1.0.4")
    return pcap_of(copies(rng, traffic(rng, 70), lambda i, f: out.ip(gre(0x6558, key=100) + f, 47)))


def s_eoip(name: str) -> bytes:
    """MikroTik EoIP (GRE version 1, 0x6400) carrying copies one way: the key holds the frame
    length and the little-endian tunnel id, the way RouterOS sends a mirror over EoIP."""
    rng = rng_for(name)
    out = Outer(rng, src="10.1.0.5")

    def wrap(i: int, f: bytes) -> bytes:
        key = (len(f) << 16) | int.from_bytes(struct.pack("<H", 300), "big")
        return out.ip(struct.pack(">HHI", 0x2001, 0x6400, key) + f, 47)

    return pcap_of(copies(rng, traffic(rng, 70), wrap))


def s_vxlan_mirror(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng)
    sport = rng.randrange(49152, 65535)
    wrap = lambda i, f: out.udp(vxlan_hdr(4242) + f, sport, 8472)  # noqa: E731
    return pcap_of(copies(rng, traffic(rng, 70), wrap))


def s_geneve_mirror(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng, src="10.1.0.5")
    sport = rng.randrange(49152, 65535)
    # Option class 0x0132 (Google), type 1, 4 bytes of data: opt len 2 words.
    opt = struct.pack(">HBBI", 0x0132, 0x01, 1, 0x00C0FFEE)
    hdr = struct.pack(">BBHI", 2, 0, 0x6558, 777 << 8) + opt
    return pcap_of(copies(rng, traffic(rng, 70), lambda i, f: out.udp(hdr + f, sport, 6081)))


def vxlan_overlay(name: str, header: bytes, net: str, vteps: tuple[str, str]) -> bytes:
    """Two VTEPs exchange tenant traffic in both directions on UDP 4789."""
    rng = rng_for(name)
    tenants = Conversations(rng, clients(rng, 5, net=net)).generate(70)
    macs = [f"0c:c4:7a:{vtep.split('.')[1]}:00:0{k + 1}" for k, vtep in enumerate(vteps)]
    a = Outer(rng, vteps[0], vteps[1], macs[0], macs[1])
    b = a.reverse(rng)
    frames = []
    for t, f in tenants:
        # Source ports come from a hash of the inner flow, as Linux does.
        sport = 49152 + zlib.crc32(f[26:38]) % 16384
        frames.append((t + 40, (a if is_up(f) else b).udp(header + f, sport, 4789)))
    return pcap_of(frames)


def s_vxlan_overlay(name: str) -> bytes:
    """A real VXLAN overlay: two VTEPs exchange tenant traffic in both directions."""
    return vxlan_overlay(name, vxlan_hdr(10010), "172.16.5", ("10.50.0.1", "10.50.0.2"))


def s_gre_teb_tunnel(name: str) -> bytes:
    rng = rng_for(name)
    lan = Conversations(rng, clients(rng, 4, net="172.16.8")).generate(70)
    a = Outer(rng, "198.51.100.1", "203.0.113.9")
    b = a.reverse(rng)
    return pcap_of(
        [(t + 30, (a if is_up(f) else b).ip(gre(0x6558, key=1) + f, 47)) for t, f in lan]
    )


# --------------------------------------------------------------------------- flow exports


def random_flows(rng: random.Random, n: int) -> list[dict[str, int | str]]:
    flows = []
    for _ in range(n):
        proto = rng.choice([6, 6, 6, 17, 17, 1])
        flows.append(
            {
                "src": f"192.168.10.{rng.randrange(2, 250)}",
                "dst": rng.choice([*SERVERS4, RESOLVER4]),
                "sport": rng.randrange(32768, 61000) if proto != 1 else 0,
                "dport": rng.choice([443, 443, 80, 53, 123]) if proto != 1 else 0x0800,
                "proto": proto,
                "pkts": rng.randrange(1, 400),
                "bytes": 0,
                "first": rng.randrange(0, 60000),
                "tcp_flags": 0x1B if proto == 6 else 0,
            }
        )
        flows[-1]["bytes"] = int(flows[-1]["pkts"]) * rng.randrange(60, 1400)
        flows[-1]["last"] = int(flows[-1]["first"]) + rng.randrange(0, 30000)
    return flows


def a4(s: str | int) -> bytes:
    return bytes(int(x) for x in str(s).split("."))


def export_stream(
    rng: random.Random,
    payloads: list[bytes],
    dport: int,
    sport: int | None = None,
    every_us: int = 500_000,
) -> list[Frame]:
    out = Outer(rng)
    sport = sport or rng.randrange(1024, 65535)
    return [
        (i * every_us + rng.randrange(1000), out.udp(p, sport, dport))
        for i, p in enumerate(payloads)
    ]


UPTIME0 = 86_400_000  # exporter uptime at T0, ms


def nf_v1(rng: random.Random, i: int) -> bytes:
    flows = random_flows(rng, rng.randrange(5, 24))
    up = UPTIME0 + i * 500
    out = struct.pack(">HHIII", 1, len(flows), up, T0 + i // 2, (i % 2) * 500_000_000)
    for f in flows:
        times = (up - 60000 + int(f["first"]), up - 60000 + int(f["last"]))
        fields = (2, 3, f["pkts"], f["bytes"], *times, f["sport"], f["dport"], 0, f["proto"])
        rec = struct.pack(">HHIIIIHHHBBBBHI", *fields, 0, f["tcp_flags"], 0, 0, 0)
        out += a4(f["src"]) + a4(f["dst"]) + a4(ROUTER_IP) + rec
    return out


def v5_record(f: dict[str, int | str], up: int) -> bytes:
    """A NetFlow v5 flow record (48 bytes); v7 appends the router shortcut address."""
    times = (up - 60000 + int(f["first"]), up - 60000 + int(f["last"]))
    fields = (2, 3, f["pkts"], f["bytes"], *times, f["sport"], f["dport"], 0, f["tcp_flags"])
    tail = (f["proto"], 0, 64500, 15169, 24, 16, 0)
    return (
        a4(f["src"])
        + a4(f["dst"])
        + a4(ROUTER_IP)
        + struct.pack(">HHIIIIHHBBBBHHBBH", *fields, *tail)
    )


def nf_v5(rng: random.Random, i: int, seq: list[int]) -> bytes:
    flows = random_flows(rng, rng.randrange(5, 30))
    up = UPTIME0 + i * 500
    out = struct.pack(
        ">HHIIIIBBH", 5, len(flows), up, T0 + i // 2, (i % 2) * 500_000_000, seq[0], 0, 1, 0
    )
    seq[0] += len(flows)
    return out + b"".join(v5_record(f, up) for f in flows)


def nf_v7(rng: random.Random, i: int, seq: list[int]) -> bytes:
    flows = random_flows(rng, rng.randrange(5, 28))
    up = UPTIME0 + i * 500
    out = struct.pack(">HHIIIII", 7, len(flows), up, T0 + i // 2, (i % 2) * 500_000_000, seq[0], 0)
    seq[0] += len(flows)
    return out + b"".join(v5_record(f, up) + a4(ROUTER_IP) for f in flows)


# NetFlow v8 record length per aggregation scheme (1-14).
V8_RECORD = {1: 28, 2: 28, 3: 32, 4: 32, 5: 40, 6: 32, 7: 40, 8: 44}
V8_RECORD |= {9: 32, 10: 32, 11: 32, 12: 32, 13: 40, 14: 40}


def v8_record(scheme: int, f: dict[str, int | str], up: int) -> bytes:
    """One NetFlow v8 record of ``scheme``: router-based schemes count flows per AS, prefix or
    port; the Catalyst ones (6-8) name destination, source and ports."""
    src, dst = a4(f["src"]), a4(f["dst"])
    spfx, dpfx = src[:3] + b"\0", dst[:3] + b"\0"
    times = (up - 60000 + int(f["first"]), up - 60000 + int(f["last"]))
    volume = struct.pack(">II", f["pkts"], f["bytes"])
    counters = struct.pack(">I", 1 + int(f["pkts"]) // 50) + volume + struct.pack(">II", *times)
    sport, dport, proto, asn = int(f["sport"]), int(f["dport"]), int(f["proto"]), (64500, 15169)
    tail = {
        1: struct.pack(">HHHH", *asn, 2, 3),
        2: struct.pack(">BBHHH", proto, 0, 0, sport, dport),
        3: spfx + struct.pack(">BBHHH", 24, 0, asn[0], 2, 0),
        4: dpfx + struct.pack(">BBHHH", 24, 0, asn[1], 3, 0),
        5: spfx + dpfx + struct.pack(">BBHHHHH", 24, 24, 0, *asn, 2, 3),
        9: struct.pack(">HHHHBBH", *asn, 2, 3, 0, 0, 0),
        10: struct.pack(">BBHHHHH", proto, 0, 0, sport, dport, 2, 3),
        11: spfx + struct.pack(">BBHHH", 24, 0, asn[0], 2, 0),
        12: dpfx + struct.pack(">BBHHH", 24, 0, asn[1], 3, 0),
        13: spfx + dpfx + struct.pack(">BBBBHHHH", 24, 24, 0, 0, *asn, 2, 3),
        14: spfx + dpfx + struct.pack(">BBBBHHHH", 24, 24, 0, proto, sport, dport, 2, 3),
    }
    catalyst = {
        6: dst + volume + struct.pack(">II", *times) + struct.pack(">HBBII", 3, 0, 0, 0, 0),
        7: dst + src + volume + struct.pack(">IIHHBBHII", *times, 3, 2, 0, 0, 0, 0, 0),
        8: dst
        + src
        + struct.pack(">HH", dport, sport)
        + volume
        + struct.pack(">IIHHBBBBII", *times, 3, 2, 0, proto, 0, 0, 0, 0),
    }
    rec = catalyst[scheme] if scheme in catalyst else counters + tail[scheme]
    assert len(rec) == V8_RECORD[scheme], (scheme, len(rec))
    return rec


def nf_v8(rng: random.Random, i: int, seq: list[int], scheme: int) -> bytes:
    flows = random_flows(rng, rng.randrange(3, 1444 // V8_RECORD[scheme]))
    up = UPTIME0 + i * 500
    hdr = struct.pack(
        ">HHIIIIBBBBI", 8, len(flows), up, T0 + i // 2, (i % 2) * 500_000_000, seq[0], 0, 1,
        scheme, 2, 0,
    )  # fmt: skip
    seq[0] += len(flows)
    return hdr + b"".join(v8_record(scheme, f, up) for f in flows)


# NetFlow v9 / IPFIX templates: (field type, length) pairs.  Both start with the flow key:
# source and destination address and port, protocol, TCP flags.
KEY_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1)]
V9_FIELDS = [*KEY_FIELDS, (5, 1), (10, 2), (14, 2), (2, 4), (1, 4), (22, 4), (21, 4)]


def flow_record(f: dict[str, int | str], fmt: str, base: int, tos: bool = True) -> bytes:
    """A v9/IPFIX data record in the field order of V9_FIELDS / IPFIX_FIELDS."""
    times = (base - 60000 + int(f["first"]), base - 60000 + int(f["last"]))
    ports = (f["sport"], f["dport"], f["proto"], f["tcp_flags"], *((0,) if tos else ()))
    return (
        a4(f["src"]) + a4(f["dst"]) + struct.pack(fmt, *ports, 2, 3, f["pkts"], f["bytes"], *times)
    )


def flowset(set_id: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(">HH", set_id, len(body) + 4) + body


def v9_template() -> bytes:
    fields = b"".join(struct.pack(">HH", t, n) for t, n in V9_FIELDS)
    return flowset(0, struct.pack(">HH", 256, len(V9_FIELDS)) + fields)


def v9_options_template() -> bytes:
    # Template 257: scope System (1) 4 bytes; fields sampling interval (34) and algorithm (35).
    body = struct.pack(">HHH", 257, 4, 8) + struct.pack(">HHHHHH", 1, 4, 34, 4, 35, 1)
    return flowset(1, body)


def nf_v9(rng: random.Random, i: int, seq: list[int], template: bool, data: bool = True) -> bytes:
    up = UPTIME0 + i * 500
    sets, count = [], 0
    if template:
        sets += [v9_template(), v9_options_template()]
        sets.append(flowset(257, struct.pack(">IIB", 1, 100, 2)))
        count += 3
    if data:
        flows = random_flows(rng, rng.randrange(4, 20))
        sets.append(flowset(256, b"".join(flow_record(f, ">HHBBBHHIIII", up) for f in flows)))
        count += len(flows)
    hdr = struct.pack(">HHIIII", 9, count, up, T0 + i // 2, seq[0], 0x00000100)
    seq[0] += 1
    return hdr + b"".join(sets)


def v9_payloads(
    rng: random.Random, n: int, template_every: int = 8, first_template: int = 0
) -> list[bytes]:
    seq = [rng.randrange(1000)]
    return [
        nf_v9(
            rng, i, seq, template=i >= first_template and (i - first_template) % template_every == 0
        )
        for i in range(n)
    ]


def s_netflow_v1(name: str) -> bytes:
    rng = rng_for(name)
    return pcap_of(export_stream(rng, [nf_v1(rng, i) for i in range(16)], 2055))


def s_netflow_v5(name: str) -> bytes:
    rng = rng_for(name)
    seq = [rng.randrange(10000)]
    return pcap_of(export_stream(rng, [nf_v5(rng, i, seq) for i in range(20)], 2055))


def s_netflow_v7(name: str) -> bytes:
    rng = rng_for(name)
    seq = [rng.randrange(10000)]
    return pcap_of(export_stream(rng, [nf_v7(rng, i, seq) for i in range(16)], 9996))


def s_netflow_v8(name: str) -> bytes:
    """One router exporting every v8 aggregation cache (schemes 1-14, twice) to UDP 9995."""
    rng = rng_for(name)
    seq = [rng.randrange(10000)]
    payloads = [nf_v8(rng, i, seq, 1 + i % 14) for i in range(28)]
    return pcap_of(export_stream(rng, payloads, 9995))


def s_netflow_v9(name: str) -> bytes:
    rng = rng_for(name)
    return pcap_of(export_stream(rng, v9_payloads(rng, 24), 2055))


def s_netflow_v9_data_first(name: str) -> bytes:
    """Collector started after the exporter: data flowsets arrive before their template."""
    rng = rng_for(name)
    return pcap_of(
        export_stream(rng, v9_payloads(rng, 24, template_every=10, first_template=5), 2055)
    )


def s_netflow_v9_9999(name: str) -> bytes:
    rng = rng_for(name)
    return pcap_of(export_stream(rng, v9_payloads(rng, 20), 9999))


IPFIX_FIELDS = [*KEY_FIELDS, (10, 4), (14, 4), (2, 8), (1, 8), (152, 8), (153, 8)]


def ipfix_msg(i: int, seq: int, sets: list[bytes], domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), T0 + i // 2, seq, domain) + body


def ipfix_payloads(rng: random.Random) -> list[bytes]:
    """20 IPFIX messages: templates and options templates every 10th, flow records in each."""
    tmpl = struct.pack(">HH", 256, len(IPFIX_FIELDS)) + b"".join(
        struct.pack(">HH", t, n) for t, n in IPFIX_FIELDS
    )
    # Options template 258: scope observationDomainId (149); exported octets/messages/flows.
    opts = struct.pack(">HHH", 258, 4, 1) + struct.pack(">HHHHHHHH", 149, 4, 40, 8, 41, 8, 42, 8)
    payloads, seq, total = [], rng.randrange(10000), 0
    for i in range(20):
        sets = []
        if i % 10 == 0:
            sets += [flowset(2, tmpl), flowset(3, opts)]
        flows = random_flows(rng, rng.randrange(3, 16))
        ms = (T0 + i // 2) * 1000
        recs = b"".join(flow_record(f, ">HHBBIIQQQQ", ms, tos=False) for f in flows)
        sets.append(flowset(256, recs))
        if i % 10 == 5:
            sets.append(flowset(258, struct.pack(">IQQQ", 1, total * 900, i, total)))
        payloads.append(ipfix_msg(i, seq, sets))
        seq += len(flows)
        total += len(flows)
    return payloads


def s_ipfix(name: str) -> bytes:
    rng = rng_for(name)
    return pcap_of(export_stream(rng, ipfix_payloads(rng), 4739))


def s_ipfix_tcp(name: str) -> bytes:
    """IPFIX over TCP 4739 (RFC 7011 10.4): the templates message on its own, then the others
    written in two batches through the socket, so that segments end inside messages and hold
    several."""
    rng = rng_for(name)
    exporter = Outer(rng, src="10.1.0.6")
    collector = exporter.reverse(rng)
    msgs = ipfix_payloads(rng)
    writes = [(True, msgs[0]), (True, b"".join(msgs[1:10])), (True, b"".join(msgs[10:]))]
    sport = rng.randrange(40000, 60000)
    return pcap_of(tcp_stream(rng, exporter, collector, sport, 4739, writes))


def s_ipfix_file(name: str) -> bytes:
    """An IPFIX file (RFC 5655): the messages a collector stored, one after the other."""
    return b"".join(ipfix_payloads(rng_for(name)))


def s_psamp(name: str) -> bytes:
    """IPFIX packet sampling: IE 315 dataLinkFrameSection carries the first bytes of frames."""
    rng = rng_for(name)
    frames = traffic(rng, 80)
    tmpl = struct.pack(">HH", 256, 4) + struct.pack(">HHHHHHHH", 10, 4, 312, 2, 323, 8, 315, 0xFFFF)
    payloads, seq = [], rng.randrange(1000)
    for i in range(0, len(frames), 8):
        recs = b""
        for t, f in frames[i : i + 8]:
            section = f[:128]
            recs += struct.pack(">IHQB", 2, len(f), (T0 * US + t) // 1000, len(section)) + section
        sets = [flowset(2, tmpl)] if i % 32 == 0 else []
        sets.append(flowset(256, recs))
        payloads.append(ipfix_msg(i // 8, seq, sets, domain=3))
        seq += len(frames[i : i + 8])
    return pcap_of(export_stream(rng, payloads, 4740, every_us=300_000))


def s_sflow_vxlan(name: str) -> bytes:
    """sFlow v5 whose sampled headers include VXLAN packets: it is sFlow, nothing else."""
    rng = rng_for(name)
    plain = traffic(rng, 60)
    vtep = Outer(rng, "172.20.0.11", "172.20.0.12", "0c:c4:7a:00:00:11", "0c:c4:7a:00:00:12")
    tunnelled = [
        (t, vtep.udp(vxlan_hdr(5001) + f, 50000 + i, 4789))
        for i, (t, f) in enumerate(traffic(rng, 30))
    ]
    sampled = sorted(plain + tunnelled, key=lambda f: f[0])
    payloads, dseq, fseq = [], 1, rng.randrange(1000)
    for k in range(0, len(sampled), 5):
        samples = []
        for _, f in sampled[k : k + 5]:
            head = f[:128]
            head += b"\0" * (-len(head) % 4)
            rec = struct.pack(">IIII", 1, len(f) + 4, 4, min(len(f), 128)) + head
            body = struct.pack(">IIIIIIII", fseq, 3, 1024, fseq * 1024, 0, 3, 5, 1)
            body += struct.pack(">II", 1, len(rec)) + rec
            samples.append(struct.pack(">II", 1, len(body)) + body)
            fseq += 1
        if k % 20 == 0:  # generic interface counters (record format 1, 88 bytes)
            ctr = struct.pack(
                ">IIQIIQIIIIIIQIIIIIII",
                3,
                6,
                10_000_000_000,
                3,
                1,
                rng.randrange(1 << 40),
                1,
                2,
                3,
                0,
                0,
                0,
                rng.randrange(1 << 40),
                4,
                5,
                6,
                0,
                0,
                0,
                0,
            )
            body = struct.pack(">III", dseq, 3, 1) + struct.pack(">II", 1, len(ctr)) + ctr
            samples.append(struct.pack(">II", 2, len(body)) + body)
        hdr = (
            struct.pack(">II", 5, 1)
            + a4(ROUTER_IP)
            + struct.pack(">IIII", 0, dseq, UPTIME0 + k * 100, len(samples))
        )
        payloads.append(hdr + b"".join(samples))
        dseq += 1
    return pcap_of(export_stream(rng, payloads, 6343, every_us=150_000))


def xdr_opaque(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data + b"\0" * (-len(data) % 4)


def sflow_v2v4_extended(version: int) -> bytes:
    """Extended data of a v2/v4 flow sample: switch VLANs and a gateway (its AS path is a plain
    list in v2, segments plus communities and local preference in v4); v4 adds a router."""
    switch = struct.pack(">IIIII", 1, 10, 0, 20, 0)
    if version == 2:
        gateway = struct.pack(">IIIII", 3, 64500, 64500, 64501, 2) + struct.pack(
            ">II", 64502, 15169
        )
        return struct.pack(">I", 2) + switch + gateway
    router = struct.pack(">II", 2, 1) + a4(ROUTER_IP) + struct.pack(">II", 24, 16)
    segments = struct.pack(">III", 1, 2, 2) + struct.pack(">II", 64502, 15169)
    gateway = struct.pack(">IIII", 3, 64500, 64500, 64501) + segments
    gateway += struct.pack(">III", 1, (64500 << 16) | 100, 100)
    return struct.pack(">I", 3) + switch + router + gateway


def sflow_v2v4_payloads(rng: random.Random, version: int, agent: str) -> list[bytes]:
    """sFlow v2/v4 datagrams: flow samples (sampled Ethernet headers) and interface counters
    (generic, Ethernet, VLAN)."""
    frames = traffic(rng, 60)
    agent_bytes = ipaddress.ip_address(agent).packed
    agent_field = struct.pack(">I", 1 if len(agent_bytes) == 4 else 2) + agent_bytes
    payloads, dseq, fseq = [], 1, rng.randrange(1000)
    for k in range(0, len(frames), 4):
        samples = []
        for _, f in frames[k : k + 4]:
            body = struct.pack(">IIIIIII", fseq, 3, 512, fseq * 512, 0, 3, 5)
            body += struct.pack(">III", 1, 1, len(f) + 4) + xdr_opaque(f[:128])
            samples.append(struct.pack(">I", 1) + body + sflow_v2v4_extended(version))
            fseq += 1
        if k % 16 == 0:
            generic = struct.pack(">IIQII", 3, 6, 1_000_000_000, 1, 3) + bytes(64)
            samples.append(struct.pack(">IIIII", 2, dseq, 3, 30, 2) + generic + bytes(52))
            vlan = struct.pack(">IQIIII", 20, rng.randrange(1 << 32), 1, 2, 3, 0)
            samples.append(struct.pack(">IIIII", 2, dseq, 0x0100_0014, 30, 7) + vlan)
        hdr = struct.pack(">I", version) + agent_field
        hdr += struct.pack(">III", dseq, UPTIME0 + k * 100, len(samples))
        payloads.append(hdr + b"".join(samples))
        dseq += 1
    return payloads


def s_sflow_v2(name: str) -> bytes:
    """sFlow version 2 from an older switch: sampled headers and generic counters."""
    rng = rng_for(name)
    return pcap_of(export_stream(rng, sflow_v2v4_payloads(rng, 2, "10.1.0.2"), 6343))


def s_sflow_v4(name: str) -> bytes:
    """sFlow version 4 from an agent with an IPv6 address: switch, router and gateway data."""
    rng = rng_for(name)
    payloads = sflow_v2v4_payloads(rng, 4, "2001:db8:1::2")
    return pcap_of(export_stream(rng, payloads, 6343, every_us=200_000))


# --------------------------------------------------------------------------- benign tunnels


def ip_of(frame: bytes) -> bytes:
    return frame[14:]


def two_way(
    rng: random.Random, inner: list[Frame], a: Outer, b: Outer, wrap: Callable[[bool, bytes], bytes]
) -> list[Frame]:
    """Tunnel: client-side packets go a→b, return packets b→a."""
    return [(t + 50, wrap(up, f)) for t, f in inner for up in [is_up(f)]]


def tunnel_pair(rng: random.Random, src: str, dst: str) -> tuple[Outer, Outer]:
    a = Outer(rng, src, dst, "00:50:56:aa:00:01", "00:50:56:bb:00:02")
    return a, a.reverse(rng)


def s_gtp_u(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.20.0.1", "10.20.0.2")
    inner = Conversations(rng, clients(rng, 4, net="100.64.3")).generate(60)

    def wrap(up: bool, f: bytes) -> bytes:
        ip = ip_of(f)
        teid = 0x1A2B0001 if up else 0x0C0D0002
        return (a if up else b).udp(
            struct.pack(">BBHI", 0x30, 0xFF, len(ip), teid) + ip, 2152, 2152
        )

    return pcap_of(two_way(rng, inner, a, b, wrap))


def s_l2tp(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "198.51.100.20", "203.0.113.1")

    def wrap(up: bool, f: bytes) -> bytes:
        # L2TPv2 data message (flags 0x0002), tunnel/session ids, PPP address/control + IPv4.
        hdr = struct.pack(">HHH", 0x0002, 11 if up else 42, 3 if up else 7) + b"\xff\x03\x00\x21"
        return (a if up else b).udp(hdr + ip_of(f), 1701, 1701)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_capwap(name: str) -> bytes:
    rng = rng_for(name)
    ap, wlc = tunnel_pair(rng, "10.30.0.21", "10.30.0.1")
    sport = rng.randrange(49152, 65535)
    # Preamble 0; HLEN 2 words, RID 1, WBID 1 (802.11), T=0: native 802.3 frame follows.
    hdr = struct.pack(">IHH", (2 << 19) | (1 << 14) | (1 << 9), 0, 0)

    def wrap(up: bool, f: bytes) -> bytes:
        return ap.udp(hdr + f, sport, 5247) if up else wlc.udp(hdr + f, 5247, sport)

    return pcap_of(two_way(rng, traffic(rng, 60), ap, wlc, wrap))


def s_gre_ip(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "198.51.100.30", "203.0.113.30")
    return pcap_of(
        two_way(
            rng,
            traffic(rng, 60),
            a,
            b,
            lambda up, f: (a if up else b).ip(gre(0x0800) + ip_of(f), 47),
        )
    )


def s_gre_ppp(name: str) -> bytes:
    """PPTP data: enhanced GRE (version 1, 0x880B) carrying PPP."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "198.51.100.40", "203.0.113.40")
    seqs = {True: 0, False: 0}

    def wrap(up: bool, f: bytes) -> bytes:
        ppp = b"\xff\x03\x00\x21" + ip_of(f)
        seqs[up] += 1
        hdr = struct.pack(
            ">HHHHII", 0x3081, 0x880B, len(ppp), 0x4000 if up else 0x8001, seqs[up], seqs[not up]
        )
        return (a if up else b).ip(hdr + ppp, 47)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def ip_tunnel(name: str, src: str, dst: str, proto: int, v6_inner: bool = False) -> bytes:
    """IP directly in IP (protocol 4 or 41) between two tunnel endpoints, both ways."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, src, dst)
    inner = traffic(rng, 60, v6=v6_inner)
    return pcap_of(two_way(rng, inner, a, b, lambda up, f: (a if up else b).ip(ip_of(f), proto)))


def s_ipip(name: str) -> bytes:
    return ip_tunnel(name, "198.51.100.50", "203.0.113.50", 4)


def s_6in4(name: str) -> bytes:
    return ip_tunnel(name, "198.51.100.60", "216.66.80.26", 41, v6_inner=True)


def s_4in6(name: str) -> bytes:
    return ip_tunnel(name, "2001:db8:60::1", "2001:db8:61::1", 4)


def s_teredo(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "192.168.10.77", "192.88.99.1")
    sport = rng.randrange(49152, 65535)
    # The client's Teredo address: 2001:0::/32, server 65.55.158.118, cone flag, then the
    # mapped port and public IPv4 (198.51.100.77) both obfuscated (inverted).
    mapped_ip = (198 << 24) | (51 << 16) | (100 << 8) | 77
    host = Host(
        "3c:22:fb:4d:10:00",
        f"2001:0:4137:9e76:8000:{sport ^ 0xFFFF:x}:{(mapped_ip ^ 0xFFFFFFFF) >> 16:x}:"
        f"{(mapped_ip ^ 0xFFFFFFFF) & 0xFFFF:x}",
    )
    inner = Conversations(rng, [host], v6=True).generate(60)
    return pcap_of(
        two_way(
            rng,
            inner,
            a,
            b,
            lambda up, f: a.udp(ip_of(f), sport, 3544) if up else b.udp(ip_of(f), 3544, sport),
        )
    )


def s_ayiya(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "192.168.10.78", "198.51.100.70")
    ident = rng.randbytes(16)

    def wrap(up: bool, f: bytes) -> bytes:
        # IDLen 2^4 bytes / IDType 1, SigLen 5 words / SHA-1, auth 1 / opcode forward, next hdr 41.
        hdr = bytes([0x41, 0x52, 0x11, 41]) + struct.pack(">I", T0) + ident + rng.randbytes(20)
        return a.udp(hdr + ip_of(f), 5072, 5072) if up else b.udp(hdr + ip_of(f), 5072, 5072)

    return pcap_of(two_way(rng, traffic(rng, 60, v6=True), a, b, wrap))


def esp_payload(rng: random.Random, spi: int, seq: int, inner_len: int) -> bytes:
    n = 16 * ((inner_len + 2 + 15) // 16)
    return struct.pack(">II", spi, seq) + rng.randbytes(16 + n + 12)


def esp_stream(rng: random.Random, name: str, udp: bool) -> bytes:
    a, b = tunnel_pair(rng, "198.51.100.80", "203.0.113.80")
    seqs = {True: 0, False: 0}
    frames: list[Frame] = []
    if udp:  # IKE_AUTH over 4500 behind the non-ESP marker, as after NAT detection
        spis = rng.randbytes(16)
        for k, flags in enumerate((0x08, 0x20)):
            sk = struct.pack(">BBH", 0x23 if k == 0 else 0x24, 0, 4 + 272) + rng.randbytes(272)
            ike = spis + bytes([0x2E, 0x20, 35, flags]) + struct.pack(">II", 1, 28 + len(sk)) + sk
            frames.append((k * 20000, (a if k == 0 else b).udp(b"\0\0\0\0" + ike, 4500, 4500)))

    def wrap(up: bool, f: bytes) -> bytes:
        seqs[up] += 1
        esp = esp_payload(rng, 0xC1A0F001 if up else 0x5EC00DE2, seqs[up], len(f) - 14)
        o = a if up else b
        return o.udp(esp, 4500, 4500) if udp else o.ip(esp, 50)

    frames += two_way(rng, traffic(rng, 60), a, b, wrap)
    return pcap_of(frames)


def s_esp(name: str) -> bytes:
    return esp_stream(rng_for(name), name, udp=False)


def s_nat_t(name: str) -> bytes:
    return esp_stream(rng_for(name), name, udp=True)


def s_wireguard(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "192.168.10.90", "203.0.113.90")
    sport = rng.randrange(49152, 65535)
    i_idx, r_idx = rng.randrange(1 << 32), rng.randrange(1 << 32)
    frames = [
        (0, a.udp(struct.pack("<II", 1, i_idx) + rng.randbytes(140), sport, 51820)),
        (15000, b.udp(struct.pack("<III", 2, r_idx, i_idx) + rng.randbytes(80), 51820, sport)),
    ]
    ctr = {True: 0, False: 0}

    def wrap(up: bool, f: bytes) -> bytes:
        n = 16 * ((len(f) - 14 + 15) // 16) + 16
        hdr = struct.pack("<IIQ", 4, r_idx if up else i_idx, ctr[up])
        ctr[up] += 1
        return (
            a.udp(hdr + rng.randbytes(n), sport, 51820)
            if up
            else b.udp(hdr + rng.randbytes(n), 51820, sport)
        )

    inner = [(t + 30000, f) for t, f in traffic(rng, 60)]
    return pcap_of(frames + two_way(rng, inner, a, b, wrap))


def s_openvpn(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "192.168.10.91", "203.0.113.91")
    sport = rng.randrange(49152, 65535)
    csid, ssid = rng.randbytes(8), rng.randbytes(8)
    frames = [
        (0, a.udp(b"\x38" + csid + b"\x00" + struct.pack(">I", 0), sport, 1194)),
        (
            12000,
            b.udp(
                b"\x40" + ssid + b"\x01" + struct.pack(">I", 0) + csid + struct.pack(">I", 0),
                1194,
                sport,
            ),
        ),
    ]

    def wrap(up: bool, f: bytes) -> bytes:
        body = b"\x48" + b"\x00\x00\x05" + rng.randbytes(len(f) - 14 + 28)
        return a.udp(body, sport, 1194) if up else b.udp(body, 1194, sport)

    inner = [(t + 30000, f) for t, f in traffic(rng, 60)]
    return pcap_of(frames + two_way(rng, inner, a, b, wrap))


def s_nvgre(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.60.0.1", "10.60.0.2")
    lan = Conversations(rng, clients(rng, 4, net="172.16.9")).generate(60)
    return pcap_of(
        two_way(
            rng,
            lan,
            a,
            b,
            lambda up, f: (a if up else b).ip(
                gre(0x6558, key=(6001 << 8) | (zlib.crc32(f[26:34]) & 0xFF)) + f, 47
            ),
        )
    )


def s_vxlan_gpe_nsh(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.70.0.1", "10.70.0.2")
    sport = rng.randrange(49152, 65535)

    def wrap(up: bool, f: bytes) -> bytes:
        gpe = struct.pack(">BBBBI", 0x0C, 0, 0, 0x04, 300 << 8)  # I+P flags, next proto NSH
        base = (63 << 22) | (6 << 16) | (1 << 8) | 0x01  # TTL 63, 6 words, MD type 1, IPv4
        nsh = struct.pack(">II", base, (42 << 8) | 255) + bytes(16)
        return (a if up else b).udp(gpe + nsh + ip_of(f), sport, 4790)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_mpls_udp(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.80.0.1", "10.80.0.2")
    sport = rng.randrange(49152, 65535)

    def wrap(up: bool, f: bytes) -> bytes:
        label = struct.pack(">I", ((1000 if up else 2000) << 12) | (1 << 8) | 64)
        return (a if up else b).udp(label + ip_of(f), sport, 6635)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_gre_udp(name: str) -> bytes:
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.81.0.1", "10.81.0.2")
    sport = rng.randrange(49152, 65535)
    return pcap_of(
        two_way(
            rng,
            traffic(rng, 60),
            a,
            b,
            lambda up, f: (a if up else b).udp(gre(0x0800) + ip_of(f), sport, 4754),
        )
    )


def s_6in6(name: str) -> bytes:
    return ip_tunnel(name, "2001:db8:66::1", "2001:db8:67::1", 41, v6_inner=True)


def s_ah(name: str) -> bytes:
    """Tunnel-mode AH (IP protocol 51, next header 4): a 12-byte ICV, one SPI each way."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "198.51.100.85", "203.0.113.85")
    seqs = {True: 0, False: 0}

    def wrap(up: bool, f: bytes) -> bytes:
        seqs[up] += 1
        spi = 0xA4000101 if up else 0xA4000202
        ah = struct.pack(">BBHII", 4, 4, 0, spi, seqs[up]) + rng.randbytes(12)
        return (a if up else b).ip(ah + ip_of(f), 51)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_gre_keepalive(name: str) -> bytes:
    """Cisco GRE keep-alives: every 10 s the router sends an IPv4 packet inside GRE whose own
    payload is a GRE header (type 0) addressed back to it; the peer decapsulates it and routes
    that inner packet back, so the return is a bare GRE header with no payload."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "198.51.100.90", "203.0.113.90")
    frames: list[Frame] = []
    for k in range(8):
        t = k * 10 * US + rng.randrange(1000)
        back = bytes(IP(src=b.src, dst=a.src, proto=47, ttl=255) / Raw(gre(0x0000)))
        frames.append((t, a.ip(gre(0x0800) + back, 47)))
        frames.append((t + rng.randrange(300, 900), b.ip(gre(0x0000), 47)))
    return pcap_of(frames)


def s_gre_mpls(name: str) -> bytes:
    """MPLS over GRE (0x8847): one label, IPv4 inside, both ways."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.82.0.1", "10.82.0.2")

    def wrap(up: bool, f: bytes) -> bytes:
        label = struct.pack(">I", ((3000 if up else 4000) << 12) | (1 << 8) | 64)
        return (a if up else b).ip(gre(0x8847) + label + ip_of(f), 47)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_nsh_gre(name: str) -> bytes:
    """NSH over GRE (0x894F), MD type 1, IPv4 inside: a service chain's hop, both ways."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.71.0.1", "10.71.0.2")

    def wrap(up: bool, f: bytes) -> bytes:
        base = (63 << 22) | (6 << 16) | (1 << 8) | 0x01  # TTL 63, 6 words, MD type 1, IPv4
        nsh = struct.pack(">II", base, ((42 if up else 43) << 8) | 255) + bytes(16)
        return (a if up else b).ip(gre(0x894F) + nsh + ip_of(f), 47)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


# --------------------------------------------------------------------------- intercepts


def ntp_ts(t_us: int) -> bytes:
    secs = T0 + t_us // US + 2_208_988_800
    return struct.pack(">II", secs, ((t_us % US) << 32) // US)


def target_traffic(rng: random.Random, n: int = 60) -> list[Frame]:
    """Traffic of one intercept target (a single subscriber)."""
    return Conversations(rng, clients(rng, 1, net="100.64.20")).generate(n)


def li_stream(
    name: str,
    port: int,
    header: Callable[[int, int, bytes], bytes],
    ip_only: bool = True,
    ttl: int = 64,
    chksum: int | None = None,
) -> bytes:
    rng = rng_for(name)
    out = Outer(rng, src="10.1.0.9", dst="10.9.0.20", ttl=ttl)
    sport = rng.randrange(40000, 60000)
    inner = target_traffic(rng)

    def wrap(i: int, f: bytes) -> bytes:
        body = ip_of(f) if ip_only else f
        return out.udp(header(i, inner[i][0], f) + body, sport, port, chksum)

    return pcap_of(copies(rng, inner, wrap))


def s_pcli(name: str) -> bytes:
    return li_stream(name, 40123, lambda i, t, f: struct.pack(">I", 0x0004D2A1))


def s_pcli12(name: str) -> bytes:
    return li_stream(name, 40124, lambda i, t, f: struct.pack(">I", 0x0004D2A2) + ntp_ts(t))


def s_pcli20(name: str) -> bytes:
    return li_stream(
        name, 40125, lambda i, t, f: struct.pack(">I", 0x0004D2A3) + ntp_ts(t) + b"CASE0042"
    )


def s_jmirror(name: str) -> bytes:
    # MHV 0, intercept id 0x2A0F, session id; outer TTL 255 and UDP checksum 0 as JUNOSe sends.
    return li_stream(
        name, 6502, lambda i, t, f: struct.pack(">II", 0x00002A0F, 0x00C0FFEE), ttl=255, chksum=0
    )


def s_nokia_li(name: str) -> bytes:
    # MHV 1 (top bits 01), direction bit set for traffic to the target, 29-bit intercept id.
    def hdr(i: int, t: int, f: bytes) -> bytes:
        down = 0 if is_up(f) else 1
        return struct.pack(">II", (1 << 30) | (down << 29) | 4711, 0x00010203)

    return li_stream(name, 30001, hdr, ip_only=False)


def s_bcm_li(name: str) -> bytes:
    # D (3 bits: 2 downstream, 3 upstream), PT 7 (Ethernet), SPT 0, 22-bit LIID.
    def hdr(i: int, t: int, f: bytes) -> bytes:
        d = 3 if is_up(f) else 2
        return struct.pack(">I", (d << 29) | (7 << 25) | (0 << 22) | 0x2BEEF)

    return li_stream(name, 49001, hdr, ip_only=False)


def s_unknown_shim(name: str) -> bytes:
    # A made-up 7-byte shim: 2-byte magic, 1-byte flags, 4-byte counter, then the IPv4 packet.
    return li_stream(name, 47777, lambda i, t, f: b"\xca\xfe\x01" + struct.pack(">I", 1000 + i))


def ber(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + struct.pack(">H", n)
    return bytes([tag]) + length + content


def ber_int(tag: int, v: int) -> bytes:
    return ber(tag, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))


def gen_time(t_us: int) -> bytes:
    import datetime as dt

    when = dt.datetime.fromtimestamp(T0 + t_us // US, dt.UTC)
    return when.strftime("%Y%m%d%H%M%S").encode() + f".{(t_us % US) // 1000:03d}Z".encode()


def ps_pdu(seq: int, t_us: int, payload: bytes, cin: int = 77) -> bytes:
    """An ETSI TS 102 232-1 PS-PDU (BER, definite lengths)."""
    net = ber(0xA0, ber(0x80, b"NZOPER") + ber(0x81, b"MED-01"))
    comm = ber(0xA3, net + ber_int(0x81, cin) + ber(0x82, b"NZ"))
    header = ber(
        0xA1,
        bytes.fromhex("80 07 04 00 02 02 05 01 11")
        + ber(0x81, b"LIID-4711")
        + ber(0x82, b"NZ")
        + comm
        + ber_int(0x84, seq)
        + ber(0x85, gen_time(t_us)),
    )
    return ber(0x30, header + ber(0xA2, payload))


def etsi_cc(packet: bytes, up: bool, t_us: int) -> bytes:
    ipcc = ber(0xA2, ber(0x80, b"\x05\x03\x0a\x02") + ber(0x81, packet))
    cc = ber(
        0x30, ber(0x80, b"\x01" if up else b"\x00") + ber(0x81, gen_time(t_us)) + ber(0xA2, ipcc)
    )
    return ber(0xA1, cc)


def etsi_iri(kind: int, target: str, t_us: int) -> bytes:
    addr = ber(0xA4, ber(0x80, b"\x01") + ber(0x81, b"\x01") + ber(0xA2, ber(0x80, a4(target))))
    contents = ber(
        0xA1,
        ber(0x80, b"\x01")
        + ber(0x81, b"alice@isp.example")
        + ber(0x82, b"\x01")
        + ber(0x83, b"\x01")
        + addr,
    )
    ipiri = ber(0xA2, ber(0x80, b"\x05\x03\x0a\x01") + contents)
    iri = ber(0x30, ber(0x80, bytes([kind])) + ber(0x81, gen_time(t_us)) + ber(0xA2, ipiri))
    return ber(0xA0, iri)


def s_etsi_102232(name: str) -> bytes:
    """HI2 (IRI, TCP 44444) and HI3 (CC, TCP 44445) from a mediation device to a LEMF."""
    rng = rng_for(name)
    med = Outer(rng, "10.9.0.20", "203.0.113.200", "52:54:00:9c:00:14", GATEWAY_MAC)
    lemf = med.reverse(rng)
    inner = target_traffic(rng, 50)
    target = "100.64.20." + Ether(inner[0][1])[IP].src.split(".")[-1]
    iri_msgs = [
        (True, ps_pdu(k, 1000 * k, etsi_iri(kind, target, 1000 * k)))
        for k, kind in enumerate([1, 3, 3, 4, 2])
    ]
    iri_msgs.insert(2, (True, ps_pdu(99, 0, b"\xa2\x02\x83\x00")))  # keep-alive
    cc = b"".join(ps_pdu(k, t, etsi_cc(ip_of(f), is_up(f), t)) for k, (t, f) in enumerate(inner))
    frames = tcp_stream(
        rng, med, lemf, rng.randrange(40000, 60000), 44444, iri_msgs, gap=(100_000, 400_000)
    )
    frames += tcp_stream(
        rng,
        med,
        lemf,
        rng.randrange(40000, 60000),
        44445,
        [(True, cc)],
        start=50_000,
        seg_sizes=(200, 1400),
        reorder=3,
        retransmit=7,
    )
    return pcap_of(frames)


def hi2_record(tag: int, t_us: int, cin: int) -> bytes:
    """A TS 101 671 HI2 IRI record (begin A1, continue A3, end A2) of one packet-data session."""
    cid = ber(0xA2, ber(0x80, f"CIN-{cin}".encode()) + ber(0xA1, ber(0x80, b"NZOPER")))
    return ber(
        tag,
        ber(0x80, bytes.fromhex("040002020112"))  # hi2OperationId, version 18
        + ber(0x81, b"LIID-4711")
        + cid
        + ber(0xA3, ber(0x81, gen_time(t_us)[:14] + b"Z")),
    )


def s_etsi_hi2(name: str) -> bytes:
    """TS 101 671 HI2 over TCP 44446: IRI records of a target's sessions to a LEMF."""
    rng = rng_for(name)
    med = Outer(rng, "10.9.0.21", "203.0.113.201", "52:54:00:9c:00:15", GATEWAY_MAC)
    lemf = med.reverse(rng)
    records = []
    for k in range(4):
        for j, tag in enumerate((0xA1, 0xA3, 0xA3, 0xA2)):
            records.append((True, hi2_record(tag, (k * 4 + j) * 700_000, 77 + k)))
    return pcap_of(
        tcp_stream(
            rng, med, lemf, rng.randrange(40000, 60000), 44446, records, gap=(100_000, 400_000)
        )
    )


def x2x3_pdu(
    pdu_type: int, fmt: int, direction: int, xid: bytes, corr: int, tlvs: bytes, payload: bytes
) -> bytes:
    return struct.pack(">HHIIHH", 1, pdu_type, 40 + len(tlvs), len(payload), fmt, direction) + (
        xid + struct.pack(">Q", corr) + tlvs + payload
    )


def tlv(t: int, v: bytes) -> bytes:
    return struct.pack(">HH", t, len(v)) + v


def s_x2x3_keepalive(name: str) -> bytes:
    rng = rng_for(name)
    poi = Outer(rng, "10.1.0.30", "10.9.0.30", ROUTER_MAC, COLLECTOR_MAC)
    msgs = []
    for k in range(12):
        seq = tlv(8, struct.pack(">I", k))
        msgs.append((True, x2x3_pdu(3, 0, 0, bytes(16), 0, seq, b"")))
        msgs.append((False, x2x3_pdu(4, 0, 0, bytes(16), 0, seq, b"")))
    return pcap_of(
        tcp_stream(
            rng,
            poi,
            poi.reverse(rng),
            rng.randrange(40000, 60000),
            50443,
            msgs,
            gap=(300_000, 600_000),
        )
    )


def s_x2x3_xcc(name: str) -> bytes:
    rng = rng_for(name)
    poi = Outer(rng, "10.1.0.31", "10.9.0.30", ROUTER_MAC, COLLECTOR_MAC)
    xid = rng.randbytes(16)
    msgs = []
    for k, (t, f) in enumerate(target_traffic(rng, 50)):
        tlvs = tlv(8, struct.pack(">I", k)) + tlv(
            9, struct.pack(">II", T0 + t // US, (t % US) * 1000)
        )
        msgs.append(
            (True, x2x3_pdu(2, 5, 3 if is_up(f) else 2, xid, 0x1122334455667788, tlvs, ip_of(f)))
        )
    return pcap_of(
        tcp_stream(
            rng, poi, poi.reverse(rng), rng.randrange(40000, 60000), 50443, msgs, gap=(1000, 40000)
        )
    )


def s_rpcap(name: str) -> bytes:
    """rpcapd: control connection on TCP 2002, then the data connection with PACKET messages."""
    rng = rng_for(name)
    client = Outer(rng, COLLECTOR_IP, "10.1.0.40", COLLECTOR_MAC, ROUTER_MAC)
    sensor = client.reverse(rng)

    def msg(mtype: int, value: int, body: bytes) -> bytes:
        return struct.pack(">BBHI", 0, mtype, value, len(body)) + body

    data_port = 40777
    ctrl = [
        (True, msg(0x03, 0, b"eth1")),
        (False, msg(0x83, 0, struct.pack(">II", 1, 0))),  # linktype Ethernet, tzoff 0
        (
            True,
            msg(0x04, 0, struct.pack(">IIHHHHI", 65535, 1000, 0, 0, 1, 0, 0)),
        ),  # + empty BPF filter
        (False, msg(0x84, 0, struct.pack(">IHH", 262144, data_port, 0))),
    ]
    frames = tcp_stream(
        rng, client, sensor, rng.randrange(40000, 60000), 2002, ctrl, gap=(1000, 5000)
    )
    packets = []
    for k, (t, f) in enumerate(traffic(rng, 60)):
        t_abs = T0 * US + t
        ph = struct.pack(">IIIII", t_abs // US, t_abs % US, len(f), len(f), k + 1)
        packets.append((False, msg(0x07, 0, ph + f)))
    frames += tcp_stream(
        rng,
        client,
        sensor,
        rng.randrange(40000, 60000),
        data_port,
        packets,
        start=60_000,
        gap=(1000, 40000),
    )
    return pcap_of(frames)


def s_pcap_over_ip(name: str) -> bytes:
    rng = rng_for(name)
    client = Outer(rng, COLLECTOR_IP, "10.1.0.41", COLLECTOR_MAC, ROUTER_MAC)
    sensor = client.reverse(rng)
    stream = pcap_of(traffic(rng, 60))
    # The sensor writes the file as it captures: header first, then records in bursts.
    parts, pos = [stream[:24]], 24
    while pos < len(stream):
        n = rng.randrange(600, 3000)
        parts.append(stream[pos : pos + n])
        pos += n
    return pcap_of(
        tcp_stream(
            rng,
            client,
            sensor,
            rng.randrange(40000, 60000),
            57012,
            [(False, p) for p in parts],
            gap=(5000, 60000),
        )
    )


def wireless_stream(
    name: str, src: str, port: int, header: Callable[[int, bytes], bytes], with_fcs: bool
) -> bytes:
    """A remote 802.11 sniffer: each frame behind a per-record header, one-way over UDP."""
    rng = rng_for(name)
    out = Outer(rng, src=src)
    sport = rng.randrange(40000, 60000)
    inner = traffic(rng, 60)

    def wrap(i: int, f: bytes) -> bytes:
        frame = to_dot11(f)
        if with_fcs:
            frame += fcs(frame)
        return out.udp(header(inner[i][0], frame) + frame, sport, port)

    return pcap_of(copies(rng, inner, wrap))


def s_peekremote(name: str) -> bytes:
    def header(t: int, frame: bytes) -> bytes:
        # Magic, version 2, header size 55, type 6 (wireless3), MCS 7, channel 36 at 5180 MHz,
        # band 1, 802.11ac flag, signal/noise (%, dBm, 4 antennas), lengths, flags, TSF.
        return (
            b"\x00\xff\xab\xcd"
            + struct.pack(">BI", 2, 55)
            + struct.pack(">IHHIII", 6, 7, 36, 5180, 1, 0x80)
            + bytes([62, 12, 0xC6, 0xA0])
            + bytes([0xC6, 0xA0] * 4)
            + struct.pack(">HHBBQ", len(frame), len(frame), 0, 0, T0 * US + t)
        )

    return wireless_stream(name, "10.1.0.50", 5555, header, with_fcs=True)


def s_cwids(name: str) -> bytes:
    def header(t: int, frame: bytes) -> bytes:
        # Version 2, 6-byte timestamp, channel 6, real and captured length.
        n = struct.pack(">HH", len(frame), len(frame))
        return struct.pack(">H", 2) + t.to_bytes(6, "big") + bytes([0, 6]) + bytes(6) + n + bytes(8)

    return wireless_stream(name, "10.1.0.51", 8999, header, with_fcs=False)


def s_tee_copies(name: str) -> bytes:
    """iptables TEE / nft dup: each packet again, unencapsulated, to the collector's MAC."""
    rng = rng_for(name)
    natives = traffic(rng, 60)
    dup = [
        (t + rng.randrange(8, 60), bytes(Ether(src=ROUTER_MAC, dst=COLLECTOR_MAC))[:12] + f[12:])
        for t, f in natives
    ]
    return pcap_of(natives + dup)


def s_targeted_mirror(name: str) -> bytes:
    """A mirror filtered on two hosts, in a capture whose native traffic involves 30+ hosts."""
    rng = rng_for(name)
    crowd = Conversations(rng, clients(rng, 34))
    for host in crowd.hosts:  # every host speaks at least once
        crowd.dns(rng.randrange(4 * US), host)
    everyone = crowd.generate(60, span_us=4 * US) + crowd.frames[: 2 * len(crowd.hosts)]
    conv = Conversations(rng, clients(rng, 2, net="192.168.20"))
    targets = conv.generate(50, span_us=4 * US)
    natives = sorted(everyone + targets, key=lambda f: f[0])
    others = rng.sample(everyone, 8)
    mirrored = sorted(targets + others, key=lambda f: f[0])
    out = Outer(rng, src="10.1.0.60")
    sport = rng.randrange(40000, 60000)
    return pcap_of(
        natives + copies(rng, mirrored, lambda i, f: out.udp(tzsp_hdr() + f, sport, 37008))
    )


def s_mirror_with_natives(name: str) -> bytes:
    rng = rng_for(name)
    natives = traffic(rng, 70)
    return pcap_of(natives + erspan2_stream(rng, natives, Outer(rng), delay=(200, 2000)))


# --------------------------------------------------------------------------- untidy carried headers


def zero_ip_checksum(frame: bytes) -> bytes:
    """The frame as a sniffer sees it before TX checksum offload: IPv4 header checksum 0."""
    if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
        return frame[:24] + b"\0\0" + frame[26:]
    return frame


def anonymise(frame: bytes) -> bytes:
    """What capture anonymisers do: MACs become bb:bb:bb:bb:bb:xx (group bit set) and IPv4
    addresses are rewritten, leaving every checksum stale."""
    out = bytearray(frame)
    for at in (0, 6):
        out[at : at + 6] = b"\xbb" * 5 + bytes([(zlib.crc32(frame[at : at + 6]) & 0x7F) | 0x80])
    if len(out) >= 34 and out[12:14] == b"\x08\x00":
        for at in (26, 30):
            out[at : at + 3] = b"\x0a\x63\x63"  # 10.99.99.x, the last byte kept
    return bytes(out)


def mirror_wraps(rng: random.Random) -> dict[str, Callable[[int, bytes], bytes]]:
    """One wrapper per mirror format, each from its own exporter to one collector."""
    outs = {name: Outer(rng, src=f"10.1.3.{k + 1}") for k, name in enumerate(MIRROR_FORMATS)}
    sport = rng.randrange(49152, 65535)
    geneve = struct.pack(">BBHI", 0, 0, 0x6558, 777 << 8)
    hdr3 = erspan3_hdr(12, 0, hwid=5, direction=0, platform=False)
    return {
        "tzsp": lambda i, f: outs["tzsp"].udp(tzsp_hdr() + f, sport, 37008),
        "erspan-1": lambda i, f: outs["erspan-1"].ip(gre(0x88BE) + f, 47),
        "erspan-2": lambda i, f: outs["erspan-2"].ip(
            gre(0x88BE, seq=i) + erspan2_hdr(7, 0x1F) + f, 47
        ),
        "erspan-3": lambda i, f: outs["erspan-3"].ip(gre(0x22EB, seq=i) + hdr3 + f, 47),
        "gre-teb": lambda i, f: outs["gre-teb"].ip(gre(0x6558, key=100) + f, 47),
        "vxlan": lambda i, f: outs["vxlan"].udp(vxlan_hdr(4242) + f, sport, 4789),
        "geneve": lambda i, f: outs["geneve"].udp(geneve + f, sport, 6081),
    }


MIRROR_FORMATS = ("tzsp", "erspan-1", "erspan-2", "erspan-3", "gre-teb", "vxlan", "geneve")


def untidy_mirrors(name: str, untidy: Callable[[random.Random, bytes], bytes]) -> bytes:
    """A copy stream of each mirror format whose carried frames went through ``untidy``."""
    rng = rng_for(name)
    inner = traffic(rng, 40)
    frames: list[Frame] = []
    for wrap in mirror_wraps(rng).values():
        frames += copies(rng, [(t, untidy(rng, f)) for t, f in inner], wrap)
    return pcap_of(sorted(frames, key=lambda f: f[0]))


def s_checksum_zero_one_way(name: str) -> bytes:
    """Clients' frames copied before checksum offload (0), the servers' answers with theirs."""
    return untidy_mirrors(name, lambda rng, f: zero_ip_checksum(f) if is_up(f) else f)


def s_checksum_zero_all(name: str) -> bytes:
    return untidy_mirrors(name, lambda rng, f: zero_ip_checksum(f))


def s_anonymised_carried(name: str) -> bytes:
    return untidy_mirrors(name, lambda rng, f: anonymise(f))


# --------------------------------------------------------------------------- known protocols
# Well-known protocols whose bytes a format without a magic number could be guessed from: each
# must be named for what it is (a tunnel, steering) or give nothing, never a mirror or intercept.


def s_lisp_data(name: str) -> bytes:
    """Two LISP xTRs exchange their sites' traffic on UDP 4341; flags L+I (0x48) make the
    8-byte header also a valid jmirror header (MHV 1)."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.0.123.2", "10.0.123.3")
    nonce = rng.randrange(1 << 24)

    def wrap(up: bool, f: bytes) -> bytes:
        lsb = 0x00000001 if up else 0x00000003
        hdr = struct.pack(">I", 0x48 << 24 | nonce) + struct.pack(">I", (100 << 8) | lsb)
        return (a if up else b).udp(hdr + ip_of(f), 4341, 4341)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_lisp_control(name: str) -> bytes:
    """An ITR sends Encapsulated Control Messages (Map-Requests inside IP/UDP 4342) to its map
    resolver, which answers with Map-Replies: the 4-byte ECM header reads as a PCLI CCCID."""
    rng = rng_for(name)
    itr, mr = tunnel_pair(rng, "10.0.123.2", "10.0.123.1")
    frames: list[Frame] = []
    for i in range(24):
        nonce = rng.randrange(1 << 64)
        eid = f"192.168.{rng.randrange(1, 250)}.{rng.randrange(1, 250)}"
        request = struct.pack(">BBBBQ", 0x10, 0, 0, 1, nonce) + bytes(socket_aton(eid))
        inner = bytes(
            IP(src="192.168.100.1", dst=eid, id=rng.randrange(65536))
            / UDP(sport=rng.randrange(49152, 65535), dport=4342)
            / Raw(request)
        )
        t = i * 400_000
        frames.append((t, itr.udp(b"\x80\x00\x00\x00" + inner, 4342, 4342)))
        reply = struct.pack(">BBBBQ", 0x20, 0, 0, 1, nonce) + bytes(16)
        frames.append((t + 9_000, mr.udp(reply, 4342, 4342)))
    return pcap_of(frames)


def socket_aton(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


def lsp_ping(rng: random.Random, msg_type: int, handle: int, seq: int, tlvs: bytes) -> bytes:
    """An MPLS echo request (1) or reply (2), RFC 8029: version 1, global flags (V bit)."""
    ts = (T0 + 2_208_988_800) << 32
    return (
        struct.pack(">HHBBBB", 1, 1, msg_type, 2, 0 if msg_type == 1 else 3, 1)
        + struct.pack(">IIQQ", handle, seq, ts, ts if msg_type == 2 else 0)
        + tlvs
    )


def s_lsp_ping(name: str) -> bytes:
    """LSP ping between two LSRs on UDP 3503.  The requests are 64 bytes with global flags 1
    (what a NetFlow v1 header with one record looks like); the replies' handle and sequence
    number happen to read as an IPv6 header filling the datagram from offset 8 (a jmirror
    header before it)."""
    rng = rng_for(name)
    lsr, peer = tunnel_pair(rng, "10.0.0.1", "10.4.7.7")
    frames: list[Frame] = []
    fec = struct.pack(">HH", 1, 28) + struct.pack(">HHI", 1, 5, 0x0A040707) + bytes([32, 0, 0, 0])
    fec += bytes(16)
    for i in range(20):
        t = i * 1_000_000
        frames.append((t, lsr.udp(lsp_ping(rng, 1, 0x1000 + i, i, fec), 3503, 3503)))
        # Handle, sequence number and timestamps that read as an IPv6 header and payload.
        body = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=58) / Raw(bytes(16)))
        reply = struct.pack(">HHBBBB", 1, 0, 2, 2, 3, 1) + body
        frames.append((t + 3_000, peer.udp(reply, 3503, 3503)))
    return pcap_of(frames)


def vxlan_reserved_hdr(vni: int) -> bytes:
    """VXLAN with the I flag and bits set in its reserved fields (older and vendor stacks)."""
    return struct.pack(">BBHI", 0x08, 0x00, 0x0100, (vni << 8) | 0x01)


def s_vxlan_reserved(name: str) -> bytes:
    """A VXLAN overlay on UDP 4789 whose headers carry non-zero reserved bits: VXLAN all the
    same, never a Nokia/PCLI shim in front of an Ethernet frame."""
    return vxlan_overlay(name, vxlan_reserved_hdr(7007), "172.16.7", ("10.51.0.1", "10.51.0.2"))


def s_vxlan_gpe_ipv4(name: str) -> bytes:
    """VXLAN-GPE on UDP 4790 with next protocol IPv4 and a non-zero reserved byte: the 8-byte
    header (flags 0x0c) then an IP packet that fills the datagram, which is exactly what a
    jmirror packet looks like.  Too loose to be called VXLAN-GPE, it is no intercept either."""
    rng = rng_for(name)
    a, b = tunnel_pair(rng, "10.71.0.1", "10.71.0.2")
    sport = rng.randrange(49152, 65535)

    def wrap(up: bool, f: bytes) -> bytes:
        # I+P, next protocol IPv4; the last byte (reserved) is not zero, as some stacks send.
        gpe = struct.pack(">BBBBI", 0x0C, 0, 0, 0x01, (400 << 8) | 0x01)
        return (a if up else b).udp(gpe + ip_of(f), sport, 4790)

    return pcap_of(two_way(rng, traffic(rng, 60), a, b, wrap))


def s_wccp_redirect(name: str) -> bytes:
    """A router redirects its clients' web traffic to a cache engine in GRE 0x883E with a WCCPv2
    redirect header; the originals are in the capture too (they reached the router first), so
    each redirected packet matches one seen natively: diverted, not copied."""
    rng = rng_for(name)
    router = Outer(rng, "10.2.99.2", "10.2.99.99", ROUTER_MAC, "00:0c:29:99:00:99")
    inner = [(t, f) for t, f in traffic(rng, 80) if is_up(f)]
    frames: list[Frame] = []
    for t, f in inner:
        frames.append((t, f))
        redirect = struct.pack(">BBBB", 0x00, 0x5A, 0, rng.randrange(256))
        frames.append(
            (t + rng.randrange(150, 900), router.ip(gre(0x883E) + redirect + ip_of(f), 47))
        )
    return pcap_of(sorted(frames, key=lambda x: x[0]))


def s_gwlb_geneve(name: str) -> bytes:
    """AWS Gateway Load Balancer steering both directions of its targets' flows through an
    appliance and back, in GENEVE with option class 0x0108: both directions of each inner
    conversation inside one outer direction, as a mirror would have them, yet steering."""
    rng = rng_for(name)
    gwlb, appliance = tunnel_pair(rng, "10.60.0.10", "10.60.1.20")
    opt = struct.pack(">HBB", 0x0108, 1, 2) + struct.pack(">Q", rng.randrange(1 << 64))
    opt += struct.pack(">HBB", 0x0108, 2, 1) + struct.pack(">I", 0xA1B2C3D4)
    hdr = struct.pack(">BBHI", len(opt) // 4, 0, 0x0800, 0) + opt
    frames: list[Frame] = []
    for t, f in traffic(rng, 70):
        sport = 49152 + zlib.crc32(f[26:38]) % 16384
        frames.append((t + 30, gwlb.udp(hdr + ip_of(f), sport, 6081)))
        frames.append((t + 330, appliance.udp(hdr + ip_of(f), sport, 6081)))
    return pcap_of(frames)


def s_rpcap_lookalike(name: str) -> bytes:
    """SMB (TCP 445) and HTTP (TCP 80) exchanges whose server data segments begin with bytes that
    read as rpcap messages (a findalldevs request, an open request naming a device)."""
    rng = rng_for(name)
    client = Outer(rng, "192.168.2.201", "192.168.2.3", "00:0c:29:02:02:01", "00:0c:29:02:02:03")
    server = client.reverse(rng)
    smb = [
        (True, b"\x00\x00\x00\x48\xfeSMB" + bytes(60)),
        (False, bytes.fromhex("0002000000000000") + bytes(1400)),
        (True, b"\x00\x00\x00\x48\xfeSMB" + bytes(60)),
        (False, bytes.fromhex("0002000000000000") + bytes(1400)),
    ]
    frames = tcp_stream(rng, client, server, rng.randrange(40000, 60000), 445, smb)
    body = bytes.fromhex("0003000000000004") + b"eth0" + bytes(600)
    http = [
        (True, b"GET /data.bin HTTP/1.1\r\nHost: 192.168.2.3\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nContent-Length: 612\r\n\r\n"),
        (False, body),
    ]
    frames += tcp_stream(rng, client, server, rng.randrange(40000, 60000), 80, http, start=900_000)
    return pcap_of(frames)


def old_capture_file(rng: random.Random) -> bytes:
    """A capture file from years before the transfer that carries it."""
    old = Capture(LT_ETHERNET)
    for t, f in traffic(rng, 40):
        old.add((1_230_000_000 - T0) * US + t, f)
    return old.to_bytes()


def s_pcap_over_http(name: str) -> bytes:
    """A .pcap file downloaded over HTTP (TCP 80): the response header, then the file, whose
    magic starts a segment of its own."""
    rng = rng_for(name)
    client = Outer(rng, "192.168.3.10", "198.51.100.80", "00:0c:29:03:03:10", GATEWAY_MAC)
    server = client.reverse(rng)
    data = old_capture_file(rng)
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    messages = [(True, b"GET /captures/trace.pcap HTTP/1.1\r\nHost: example.org\r\n\r\n")]
    messages += [(False, head.encode()), (False, data)]
    return pcap_of(tcp_stream(rng, client, server, rng.randrange(40000, 60000), 80, messages))


def s_pcap_over_dcc(name: str) -> bytes:
    """The same kind of file sent by IRC DCC SEND: its own TCP connection on a high port that
    starts with the file, the receiver acknowledging with 4-byte byte counts."""
    rng = rng_for(name)
    sender = Outer(rng, "198.51.100.66", "192.168.3.11", GATEWAY_MAC, "00:0c:29:03:03:11")
    receiver = sender.reverse(rng)
    data = old_capture_file(rng)
    messages: list[tuple[bool, bytes]] = []
    for pos in range(0, len(data), 1024):
        messages.append((True, data[pos : pos + 1024]))
        messages.append((False, struct.pack(">I", min(len(data), pos + 1024))))
    return pcap_of(tcp_stream(rng, sender, receiver, 41234, rng.randrange(40000, 60000), messages))


def s_bfd_echo(name: str) -> bytes:
    """BFD echo (UDP 3785): a router sends packets addressed to itself to its neighbour, whose
    forwarding plane loops them straight back, so each IP packet crosses the link twice."""
    rng = rng_for(name)
    frames: list[Frame] = []
    mac_a, mac_b = "00:1b:54:0b:00:01", "00:1b:54:0b:00:02"
    for i in range(80):
        t = i * 50_000
        pkt = IP(src="10.3.0.1", dst="10.3.0.1", id=rng.randrange(65536), ttl=255)
        pkt = pkt / UDP(sport=49152 + i % 4, dport=3785) / Raw(struct.pack(">II", 1, i))
        frames.append((t, bytes(Ether(src=mac_a, dst=mac_b) / pkt)))
        frames.append((t + 120, bytes(Ether(src=mac_b, dst=mac_a) / pkt)))
    return pcap_of(frames)


# --------------------------------------------------------------------------- container edge cases


def s_bad_truncated(name: str) -> bytes:
    whole = s_tzsp("tzsp.pcap")
    return whole[: len(whole) * 2 // 3 + 7]


def s_bad_garbage(name: str) -> bytes:
    rng = rng_for(name)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LT_ETHERNET)]
    for k in range(20):
        data = rng.randbytes(rng.randrange(1, 300))
        out.append(struct.pack("<IIII", T0 + k, 0, len(data), len(data)) + data)
        if k == 8:
            out.append(struct.pack("<IIII", T0 + k, 5, 0, 0))  # zero-length record
    out.append(struct.pack("<IIII", T0 + 30, 0, 0x7FFFFFF0, 0x7FFFFFF0) + rng.randbytes(64))
    return b"".join(out)


def s_bad_unknown_linktype(name: str) -> bytes:
    rng = rng_for(name)
    frames = [(k * 1000, rng.randbytes(rng.randrange(40, 200))) for k in range(20)]
    return pcap_of(frames, linktype=LT_UNKNOWN)


def s_gzip(name: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0) as z:
        z.write(s_tzsp("tzsp.pcap"))
    return buf.getvalue()


def s_pcapng_two_links(name: str) -> bytes:
    """Ethernet interface with a VXLAN mirror; raw-IP interface with a TZSP mirror."""
    rng = rng_for(name)
    out = Outer(rng)
    eth = copies(rng, traffic(rng, 50), lambda i, f: out.udp(vxlan_hdr(4242) + f, 51000, 4789))
    out2 = Outer(rng, src="10.1.0.70")
    raw = [
        (t, f[14:])
        for t, f in copies(
            rng, traffic(rng, 50), lambda i, f: out2.udp(tzsp_hdr() + f, 45000, 37008)
        )
    ]
    return pcapng_of([(LT_ETHERNET, eth), (LT_RAW, raw)])


def s_nanosecond(name: str) -> bytes:
    rng = rng_for(name)
    cap = Capture(nanos=True)
    for t, f in tzsp_stream(rng, 37008, n=50):
        cap.add(t, f, extra_ns=rng.randrange(1000))
    return cap.to_bytes()


def s_big_endian(name: str) -> bytes:
    rng = rng_for(name)
    return pcap_of(erspan2_stream(rng, traffic(rng, 50), Outer(rng)), big_endian=True)


def s_sll(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng)
    frames = copies(rng, traffic(rng, 50), lambda i, f: out.udp(vxlan_hdr(4242) + f, 51000, 8472))
    # Outgoing (4), ARPHRD_ETHER, 6-byte address, then the EtherType.
    return pcap_of(
        [(t, struct.pack(">HHH", 4, 1, 6) + f[6:12] + b"\0\0" + f[12:]) for t, f in frames],
        linktype=LT_SLL,
    )


def s_sll2(name: str) -> bytes:
    rng = rng_for(name)
    out = Outer(rng)
    frames = copies(rng, traffic(rng, 50), lambda i, f: out.udp(tzsp_hdr() + f, 45000, 37008))
    return pcap_of(
        [
            (t, f[12:14] + b"\0\0" + struct.pack(">IHBB", 3, 1, 4, 6) + f[6:12] + b"\0\0" + f[14:])
            for t, f in frames
        ],
        linktype=LT_SLL2,
    )


def encap_sample(name: str, l2: Callable[[], Packet]) -> bytes:
    """ERSPAN II stream whose outer IPv4 sits behind extra layer-2 encapsulation."""
    rng = rng_for(name)
    out = Outer(rng)
    seq0 = rng.randrange(1000)
    hdr = erspan2_hdr(9, 0x21)

    def wrap(i: int, f: bytes) -> bytes:
        return bytes(l2() / out.l3(47) / Raw(gre(0x88BE, seq=seq0 + i) + hdr + f))

    return pcap_of(copies(rng, traffic(rng, 50), wrap))


def s_qinq(name: str) -> bytes:
    return encap_sample(
        name,
        lambda: (
            Ether(src=ROUTER_MAC, dst=COLLECTOR_MAC, type=0x88A8)
            / Dot1AD(vlan=300, type=0x8100)
            / Dot1Q(vlan=42)
        ),
    )


def s_mpls(name: str) -> bytes:
    from scapy.contrib.mpls import MPLS

    return encap_sample(
        name,
        lambda: (
            Ether(src=ROUTER_MAC, dst=COLLECTOR_MAC)
            / MPLS(label=16020, s=0, ttl=64)
            / MPLS(label=24001, s=1, ttl=64)
        ),
    )


def s_pppoe(name: str) -> bytes:
    return encap_sample(
        name,
        lambda: (
            Ether(src=ROUTER_MAC, dst=COLLECTOR_MAC) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021)
        ),
    )


def s_ipv6_ext(name: str) -> bytes:
    """TZSP over IPv6 with a destination-options extension header before UDP."""
    rng = rng_for(name)
    sport = rng.randrange(40000, 60000)

    def wrap(i: int, f: bytes) -> bytes:
        return bytes(
            Ether(src=ROUTER_MAC, dst=COLLECTOR_MAC)
            / IPv6(src=ROUTER_IP6, dst=COLLECTOR_IP6, hlim=64)
            / IPv6ExtHdrDestOpt()
            / UDP(sport=sport, dport=37008)
            / Raw(tzsp_hdr() + f)
        )

    return pcap_of(copies(rng, traffic(rng, 50), wrap))


def s_icmp_noise(name: str) -> bytes:
    """Plain pings and DNS only: nothing should be reported."""
    rng = rng_for(name)
    conv = Conversations(rng, clients(rng, 4))
    for k in range(15):
        conv.dns(k * 100_000, conv.hosts[k % 4])
    frames = list(conv.frames)
    for k in range(20):
        h = conv.hosts[k % 4]
        for up in (True, False):
            ic = ICMP(type=8 if up else 0, id=0x100 + k % 4, seq=k) / Raw(rng.randbytes(56))
            src, dst = (h.ip, "8.8.8.8") if up else ("8.8.8.8", h.ip)
            eth = Ether(src=h.mac, dst=GATEWAY_MAC) if up else Ether(src=GATEWAY_MAC, dst=h.mac)
            frames.append(
                (k * 80_000 + (0 if up else 9000), bytes(eth / IP(src=src, dst=dst, id=k) / ic))
            )
    return pcap_of(frames)


# --------------------------------------------------------------------------- registry

# --------------------------------------------------------------------------- logs of connections


def new_connections(frames: list[Frame]) -> list[tuple[int, str, str, str, int, int]]:
    """(time, proto, src, dst, sport, dport) of each TCP SYN and each client UDP query."""
    out = []
    for t, frame in frames:
        pkt = Ether(frame)
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        if ip is None:
            continue
        if pkt.haslayer(TCP) and pkt[TCP].flags == "S":
            out.append((t, "TCP", ip.src, ip.dst, pkt[TCP].sport, pkt[TCP].dport))
        elif pkt.haslayer(UDP) and pkt[UDP].dport == 53:
            out.append((t, "UDP", ip.src, ip.dst, pkt[UDP].sport, 53))
    return out


def routeros_line(c: tuple[int, str, str, str, int, int]) -> bytes:
    _, proto, src, dst, sport, dport = c
    flags = " (SYN)" if proto == "TCP" else ""

    def ep(a: str, p: int) -> str:
        return f"[{a}]:{p}" if ":" in a else f"{a}:{p}"

    return (
        f"<134>Jan 15 10:00:00 MikroTik firewall,info forward: in:bridge out:ether1, "
        f"src-mac 02:00:00:00:00:01, proto {proto}{flags}, {ep(src, sport)}->{ep(dst, dport)}, "
        "len 60"
    ).encode()


def iptables_line(c: tuple[int, str, str, str, int, int], seq: int) -> bytes:
    _, proto, src, dst, sport, dport = c
    return (
        f"<4>1 2026-01-15T10:00:00.{seq:06d}Z gw kernel - - - [{seq}.0] FWD IN=eth1 OUT=eth0 "
        f"SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID={seq} DF PROTO={proto} "
        f"SPT={sport} DPT={dport} WINDOW=64240 RES=0x00 SYN URGP=0"
    ).encode()


DAEMON_LINES = [
    b"<30>Jan 15 10:00:00 MikroTik dhcp,info dhcp1 assigned 192.168.10.23 to 02:00:00:00:00:17",
    b"<38>Jan 15 10:00:00 MikroTik system,info,account user admin logged in via winbox",
    b"<29>Jan 15 10:00:00 MikroTik wireless,info 02:00:00:00:00:21@wlan1: connected",
    b"<30>Jan 15 10:00:00 gw ntpd[812]: kernel reports TIME_ERROR: 0x41: Clock Unsynchronized",
]


def s_syslog_connlog(name: str) -> bytes:
    """A RouterOS router logging every forwarded connection to a remote syslog server over
    UDP 514 (firewall rules with log=yes and a remote action), among its ordinary messages."""
    rng = rng_for(name)
    natives = traffic(rng, 240, n_hosts=6)
    out = Outer(rng, dst="10.9.0.20")
    sport = rng.randrange(32768, 61000)
    logs: list[Frame] = []
    for i, c in enumerate(new_connections(natives)):
        logs.append((c[0] + rng.randrange(200, 2000), out.udp(routeros_line(c), sport, 514)))
        if i % 4 == 3:
            daemon = rng.choice(DAEMON_LINES)
            logs.append((c[0] + rng.randrange(2000, 9000), out.udp(daemon, sport, 514)))
    return pcap_of(natives + logs)


def s_syslog_connlog_tcp(name: str) -> bytes:
    """iptables LOG lines forwarded by rsyslog over TCP 514 with octet counting (RFC 6587)."""
    rng = rng_for(name)
    natives = traffic(rng, 200, n_hosts=5)
    fwd = Outer(rng, dst="10.9.0.21")
    lines = [iptables_line(c, i) for i, c in enumerate(new_connections(natives))]
    msgs = [(True, b"%d %s" % (len(x), x)) for x in lines]
    stream = tcp_stream(rng, fwd, fwd.reverse(rng), 41514, 514, msgs, gap=(20000, 60000))
    return pcap_of(natives + stream)


def s_syslog_daemons(name: str) -> bytes:
    """Ordinary remote syslog (daemon messages, an sshd login naming a client): no flow export."""
    rng = rng_for(name)
    out = Outer(rng, dst="10.9.0.20")
    lines = [
        *DAEMON_LINES,
        b"<38>Jan 15 10:00:00 gw sshd[991]: Accepted publickey for ops "
        b"from 192.168.10.40 port 50122 ssh2",
    ]
    sport = rng.randrange(32768, 61000)
    return pcap_of([(i * 300_000, out.udp(lines[i % len(lines)], sport, 514)) for i in range(60)])


def pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number: int, value: int | bytes) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes."""
    if isinstance(value, int):
        return pb_varint(number << 3) + pb_varint(value)
    return pb_varint(number << 3 | 2) + pb_varint(len(value)) + value


def fstrm_control(ctype: int, content: bytes | None = b"protobuf:dnstap.Dnstap") -> bytes:
    body = struct.pack("!I", ctype)
    if content is not None:
        body += struct.pack("!II", 1, len(content)) + content
    return struct.pack("!II", 0, len(body)) + body


def dnstap_frame(mtype: int, client: str, cport: int, server: str, dns: bytes, t: int) -> bytes:
    """A Frame Streams data frame holding one dnstap message (CLIENT_QUERY 5, CLIENT_RESPONSE 6)."""
    v6 = ":" in client
    addr = IPv6 if v6 else IP
    msg = (
        pb_field(1, mtype)
        + pb_field(2, 2 if v6 else 1)
        + pb_field(3, 1)
        + pb_field(4, bytes(addr(src=client))[8:24] if v6 else bytes(addr(src=client))[12:16])
        + pb_field(5, bytes(addr(src=server))[8:24] if v6 else bytes(addr(src=server))[12:16])
        + pb_field(6, cport)
        + pb_field(7, 53)
        + pb_field(8 if mtype % 2 else 12, T0 + t // US)
        + pb_field(10 if mtype % 2 else 14, dns)
    )
    body = pb_field(1, b"resolver1") + pb_field(2, b"unbound 1.17.1") + pb_field(14, msg)
    body += pb_field(15, 1)
    return struct.pack("!I", len(body)) + body


def s_dnstap(name: str) -> bytes:
    """A resolver exporting every client query and answer over dnstap (Frame Streams, TCP 6000)."""
    rng = rng_for(name)
    natives = traffic(rng, 220, n_hosts=6)
    resolver = Outer(rng, "10.1.0.53", "10.9.0.30")
    collector = resolver.reverse(rng)
    events: list[tuple[int, bool, bytes]] = []
    for t, frame in natives:
        pkt = Ether(frame)
        if not pkt.haslayer(DNS):
            continue
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        query = pkt[UDP].dport == 53
        client, cport = (ip.src, pkt[UDP].sport) if query else (ip.dst, pkt[UDP].dport)
        dns = bytes(pkt[DNS])
        events.append(
            (
                t,
                True,
                dnstap_frame(5 if query else 6, client, cport, ip.dst if query else ip.src, dns, t),
            )
        )
    messages = [(True, fstrm_control(4)), (False, fstrm_control(1)), (True, fstrm_control(2))]
    # The resolver writes in batches: a few frames per segment.
    batch: list[bytes] = []
    for i, (_, _, frame) in enumerate(events):
        batch.append(frame)
        if len(batch) == 4 or i == len(events) - 1:
            messages.append((True, b"".join(batch)))
            batch = []
    stream = tcp_stream(rng, resolver, collector, 43210, 6000, messages, gap=(20000, 90000))
    return pcap_of(natives + stream)


# --------------------------------------------------------------------------- encrypted copies


def wg_data(rng: random.Random, inner_len: int, counter: int) -> bytes:
    """A WireGuard transport-data message carrying ``inner_len`` bytes (padded to 16, tag 16)."""
    padded = -(-inner_len // 16) * 16
    return struct.pack("<IIQ", 4, 0x5EED1234, counter) + rng.randbytes(padded + 16)


def timed_tcp(
    rng: random.Random, a: Outer, b: Outer, aport: int, bport: int, sends: list[tuple[int, bytes]]
) -> list[Frame]:
    """A TCP connection from a to b sending each (time, bytes) at its time, acknowledged by b."""
    seq, ack = rng.randrange(1 << 32), rng.randrange(1 << 32)
    frames: list[Frame] = []

    def seg(side: Outer, sp: int, dp: int, flags: str, s: int, k: int, data: bytes = b"") -> bytes:
        pkt = (
            side.l2()
            / side.l3(6)
            / TCP(sport=sp, dport=dp, flags=flags, seq=s, ack=k, window=64256)
        )
        return bytes(pkt / Raw(data)) if data else bytes(pkt)

    t0 = sends[0][0] - 3000
    frames.append((t0, seg(a, aport, bport, "S", seq, 0)))
    frames.append((t0 + 500, seg(b, bport, aport, "SA", ack, seq + 1)))
    seq, ack = seq + 1, ack + 1
    frames.append((t0 + 600, seg(a, aport, bport, "A", seq, ack)))
    for t, data in sends:
        for i in range(0, len(data), 1448):
            chunk = data[i : i + 1448]
            frames.append((t, seg(a, aport, bport, "PA", seq & 0xFFFFFFFF, ack, chunk)))
            seq += len(chunk)
            t += 12
        frames.append((t + 400, seg(b, bport, aport, "A", ack, seq & 0xFFFFFFFF)))
    return frames


def long_traffic(rng: random.Random, n: int = 900, seconds: int = 10) -> list[Frame]:
    return traffic(rng, n, n_hosts=6, span_us=seconds * US)


def s_encrypted_copy_wireguard(name: str) -> bytes:
    """A router copying its users' packets into a WireGuard tunnel (a tap bridged into wg)."""
    rng = rng_for(name)
    natives = long_traffic(rng)
    out = Outer(rng, ROUTER_IP, "203.0.113.50")
    copies = [
        (t + rng.randrange(300, 3000), out.udp(wg_data(rng, len(f) - 14, i), 51820, 51820))
        for i, (t, f) in enumerate(natives)
    ]
    return pcap_of(natives + copies)


def s_encrypted_copy_tls(name: str) -> bytes:
    """tcpdump -U -w - | openssl s_client: the capture file sent through TLS, a record per write."""
    rng = rng_for(name)
    natives = long_traffic(rng)
    a = Outer(rng, ROUTER_IP, "198.51.100.77")
    header = tls_record(23, rng.randbytes(24 + 22))
    sends = [(natives[0][0] - 1000, header)]
    pending, due = 0, None
    for t, f in natives:
        pending += 16 + len(f)
        due = due or t + rng.randrange(500, 4000)
        if t >= due:
            sends.append((t, tls_record(23, rng.randbytes(pending + 17))))
            pending, due = 0, None
    return pcap_of(natives + timed_tcp(rng, a, a.reverse(rng), 41443, 443, sends))


def s_vpn_own_traffic(name: str) -> bytes:
    """Honest: a WireGuard VPN carrying a user's own traffic (not on the span in clear) while
    other users' traffic passes natively."""
    rng = rng_for(name)
    natives = long_traffic(rng)
    own = long_traffic(random.Random(rng.random()), 800)
    out = Outer(rng, "192.168.10.66", "203.0.113.50")
    tunnel = [
        (t, out.udp(wg_data(rng, len(f) - 14, i), 44000, 51820)) for i, (t, f) in enumerate(own)
    ]
    return pcap_of(natives + tunnel)


def s_vpn_gateway_both_sides(name: str) -> bytes:
    """Honest: a site-to-site WireGuard gateway on a span that sees both its clear side and its
    tunnel: each user packet travels in clear and then, encrypted, through the tunnel in the same
    direction, so the tunnel tracks the clear traffic but carries it both ways."""
    rng = rng_for(name)
    natives = long_traffic(rng)
    out = Outer(rng, ROUTER_IP, "203.0.113.50")
    back = out.reverse(rng)
    tunnel = []
    for i, (t, f) in enumerate(natives):
        ip = Ether(f).getlayer(IP)
        side = out if ip is not None and ip.src.startswith("192.168.") else back
        tunnel.append(
            (t + rng.randrange(300, 3000), side.udp(wg_data(rng, len(f) - 14, i), 51820, 51820))
        )
    return pcap_of(natives + tunnel)


def s_tls_download(name: str) -> bytes:
    """Honest: a large HTTPS download (server to client) among other traffic."""
    rng = rng_for(name)
    natives = long_traffic(rng)
    server = Outer(rng, "151.101.1.69", "192.168.10.66", GATEWAY_MAC, "02:00:00:00:00:66")
    start = natives[0][0]
    sends = [
        (start + i * 40_000 + rng.randrange(5000), tls_record(23, rng.randbytes(2900)))
        for i in range(240)
    ]
    return pcap_of(natives + timed_tcp(rng, server, server.reverse(rng), 443, 50123, sends))


def s_nat_both_sides(name: str) -> bytes:
    """Honest: a span that sees both sides of a NAT router, so every connection twice (the
    second time from the router's public address, a few hundred microseconds later)."""
    rng = rng_for(name)
    natives = long_traffic(rng)
    server = Outer(rng, "151.101.1.69", "192.168.10.66", GATEWAY_MAC, "02:00:00:00:00:66")
    start = natives[0][0]
    sends = [
        (
            start + i * 40_000 + rng.randrange(30_000),
            tls_record(23, rng.randbytes(rng.randrange(300, 1400))),
        )
        for i in range(240)
    ]
    natives += timed_tcp(rng, server, server.reverse(rng), 443, 50123, sends)
    wan: list[Frame] = []
    for t, f in natives:
        pkt = Ether(f)
        if not pkt.haslayer(IP):
            continue
        ip = pkt[IP]
        if ip.src.startswith("192.168."):
            ip.src = "203.0.113.7"
        else:
            ip.dst = "203.0.113.7"
        del ip.chksum
        if pkt.haslayer(TCP):
            del pkt[TCP].chksum
        if pkt.haslayer(UDP):
            del pkt[UDP].chksum
        pkt[Ether].src, pkt[Ether].dst = "02:00:00:00:0a:01", "02:00:00:00:0a:02"
        wan.append((t + rng.randrange(100, 600), bytes(pkt)))
    return pcap_of(natives + wan)


SAMPLES: dict[str, Callable[[str], bytes]] = {
    "tzsp.pcap": s_tzsp,
    "tzsp-31337.pcap": s_tzsp_31337,
    "tzsp-80211.pcap": s_tzsp_80211,
    "erspan-1.pcap": s_erspan1,
    "erspan-2.pcap": s_erspan2,
    "erspan-3.pcap": s_erspan3,
    "erspan-2-vxlan.pcap": s_erspan2_vxlan,
    "erspan-2-fragmented.pcap": s_erspan2_fragmented,
    "gre-teb-mirror.pcap": s_gre_teb_mirror,
    "vxlan-mirror-8472.pcap": s_vxlan_mirror,
    "eoip.pcap": s_eoip,
    "geneve-mirror.pcap": s_geneve_mirror,
    "vxlan-overlay.pcap": s_vxlan_overlay,
    "gre-teb-tunnel.pcap": s_gre_teb_tunnel,
    "netflow-v1.pcap": s_netflow_v1,
    "netflow-v5.pcap": s_netflow_v5,
    "netflow-v7.pcap": s_netflow_v7,
    "netflow-v8.pcap": s_netflow_v8,
    "netflow-v9.pcap": s_netflow_v9,
    "netflow-v9-data-first.pcap": s_netflow_v9_data_first,
    "netflow-v9-9999.pcap": s_netflow_v9_9999,
    "ipfix.pcap": s_ipfix,
    "ipfix-tcp.pcap": s_ipfix_tcp,
    "ipfix-file.ipfix": s_ipfix_file,
    "psamp.pcap": s_psamp,
    "sflow-vxlan.pcap": s_sflow_vxlan,
    "sflow-v2.pcap": s_sflow_v2,
    "sflow-v4.pcap": s_sflow_v4,
    "gtp-u.pcap": s_gtp_u,
    "l2tp.pcap": s_l2tp,
    "capwap.pcap": s_capwap,
    "gre-ip.pcap": s_gre_ip,
    "gre-ppp.pcap": s_gre_ppp,
    "ipip.pcap": s_ipip,
    "6in4.pcap": s_6in4,
    "4in6.pcap": s_4in6,
    "teredo.pcap": s_teredo,
    "ayiya.pcap": s_ayiya,
    "esp.pcap": s_esp,
    "nat-t.pcap": s_nat_t,
    "wireguard.pcap": s_wireguard,
    "openvpn.pcap": s_openvpn,
    "nvgre.pcap": s_nvgre,
    "vxlan-gpe-nsh.pcap": s_vxlan_gpe_nsh,
    "mpls-udp.pcap": s_mpls_udp,
    "gre-udp.pcap": s_gre_udp,
    "6in6.pcap": s_6in6,
    "ah.pcap": s_ah,
    "gre-keepalive.pcap": s_gre_keepalive,
    "gre-mpls.pcap": s_gre_mpls,
    "nsh-gre.pcap": s_nsh_gre,
    "pcli.pcap": s_pcli,
    "pcli12.pcap": s_pcli12,
    "pcli20.pcap": s_pcli20,
    "jmirror.pcap": s_jmirror,
    "nokia-li.pcap": s_nokia_li,
    "bcm-li.pcap": s_bcm_li,
    "unknown-shim.pcap": s_unknown_shim,
    "etsi-102232.pcap": s_etsi_102232,
    "etsi-hi2.pcap": s_etsi_hi2,
    "x2x3-keepalive.pcap": s_x2x3_keepalive,
    "x2x3-xcc.pcap": s_x2x3_xcc,
    "rpcap.pcap": s_rpcap,
    "pcap-over-ip.pcap": s_pcap_over_ip,
    "peekremote.pcap": s_peekremote,
    "cwids.pcap": s_cwids,
    "tee-copies.pcap": s_tee_copies,
    "targeted-mirror.pcap": s_targeted_mirror,
    "mirror-with-natives.pcap": s_mirror_with_natives,
    "plain-traffic.pcap": s_icmp_noise,
    "tzsp.pcap.gz": s_gzip,
    "two-links.pcapng": s_pcapng_two_links,
    "nanosecond.pcap": s_nanosecond,
    "big-endian.pcap": s_big_endian,
    "sll.pcap": s_sll,
    "sll2.pcap": s_sll2,
    "qinq.pcap": s_qinq,
    "mpls-outer.pcap": s_mpls,
    "pppoe-outer.pcap": s_pppoe,
    "ipv6-ext-header.pcap": s_ipv6_ext,
    "checksum-zero-one-way.pcap": s_checksum_zero_one_way,
    "checksum-zero-all.pcap": s_checksum_zero_all,
    "anonymised-carried.pcap": s_anonymised_carried,
    "syslog-connlog.pcap": s_syslog_connlog,
    "syslog-connlog-tcp.pcap": s_syslog_connlog_tcp,
    "syslog-daemons.pcap": s_syslog_daemons,
    "dnstap.pcap": s_dnstap,
    "encrypted-copy-wireguard.pcap": s_encrypted_copy_wireguard,
    "encrypted-copy-tls.pcap": s_encrypted_copy_tls,
    "vpn-own-traffic.pcap": s_vpn_own_traffic,
    "tls-download.pcap": s_tls_download,
    "nat-both-sides.pcap": s_nat_both_sides,
    "vpn-gateway-both-sides.pcap": s_vpn_gateway_both_sides,
    "lisp-data.pcap": s_lisp_data,
    "lisp-control.pcap": s_lisp_control,
    "lsp-ping.pcap": s_lsp_ping,
    "vxlan-reserved-bits.pcap": s_vxlan_reserved,
    "vxlan-gpe-ipv4.pcap": s_vxlan_gpe_ipv4,
    "wccp-redirect.pcap": s_wccp_redirect,
    "gwlb-geneve.pcap": s_gwlb_geneve,
    "rpcap-lookalikes.pcap": s_rpcap_lookalike,
    "pcap-over-http.pcap": s_pcap_over_http,
    "pcap-over-dcc.pcap": s_pcap_over_dcc,
    "bfd-echo.pcap": s_bfd_echo,
    "bad/truncated.pcap": s_bad_truncated,
    "bad/garbage.pcap": s_bad_garbage,
    "bad/unknown-linktype.pcap": s_bad_unknown_linktype,
}


def generate(out_dir: Path, names: Iterable[str] | None = None) -> list[Path]:
    written = []
    for name in names or SAMPLES:
        if name not in SAMPLES:
            raise SystemExit(f"unknown sample {name!r} (see --list)")
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(SAMPLES[name](name))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("names", nargs="*", help="samples to write (default: all)")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: pcaps/)")
    ap.add_argument("--list", action="store_true", help="print the sample names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(SAMPLES))
        return 0
    for path in generate(args.out, args.names):
        print(f"{path.stat().st_size:>8}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
