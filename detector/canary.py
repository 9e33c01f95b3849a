"""Canary streams: short, marked test streams of each format, to prove end to end that a sensor
sees and reports them (as an antivirus test file proves a scanner works).

``mirrorwatch canary`` crafts them with scapy.  Every packet carries a marker

    MWCANARY1 <unix seconds, 10 digits> <nonce, 8 hex> <HMAC-SHA256 of the first three, 16 hex>

inside what the format carries (the copied frame's payload, a flow record's interfaceName, a
sampled packet header).  The HMAC key is ``$MIRRORWATCH_CANARY_KEY`` (the same on sender and
sensor), else a public default: with the default anyone can make a canary, so set a key of your
own where the label matters.  The sensor judges a canary like any other stream (no bypass: its
kind and severity come from the normal detection); it only adds ``canary: true`` when *every*
packet of the stream was kept and carries a valid marker, so marked packets slipped into a real
mirror never relabel it.  docs/canary.md documents the marker.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from detector.policy import reasons

if TYPE_CHECKING:
    from scapy.packet import Packet

    from detector.evidence import StreamEvidence
    from detector.findings import Finding

MAGIC = b"MWCANARY1"
DEFAULT_KEY = b"mirrorwatch-canary-public-test-key"
KEY_ENV = "MIRRORWATCH_CANARY_KEY"
MARKER_LEN = 46  # MAGIC + 3 spaces + 10 + 8 + 16
_MARKER = re.compile(rb"MWCANARY1 (\d{10}) ([0-9a-f]{8}) ([0-9a-f]{16})")
# A stream is labelled a canary with at least this many marked packets (and all of them).
MIN_MARKED = 1

# The test conversation copied inside mirror canaries (documentation addresses, RFC 5737).
INNER_A, INNER_B = "192.0.2.10", "198.51.100.10"
INNER_MAC_A, INNER_MAC_B = "02:00:5e:00:53:0a", "02:00:5e:00:53:0b"
INNER_PORT_A, INNER_PORT_B = 40009, 9  # to the discard port


def canary_key() -> bytes:
    key = os.environ.get(KEY_ENV)
    return key.encode() if key else DEFAULT_KEY


def _mac(key: bytes, stamp: bytes, nonce: bytes) -> bytes:
    digest = hmac.new(key, MAGIC + b" " + stamp + b" " + nonce, hashlib.sha256).hexdigest()
    return digest[:16].encode()


def marker(key: bytes, when: float, nonce: int) -> bytes:
    stamp = b"%010d" % int(when)
    hexnonce = b"%08x" % (nonce & 0xFFFFFFFF)
    return MAGIC + b" " + stamp + b" " + hexnonce + b" " + _mac(key, stamp, hexnonce)


def valid_marker(data: bytes, key: bytes) -> bool:
    """Whether ``data`` holds a marker made with ``key``."""
    start = data.find(MAGIC)
    while start >= 0:
        m = _MARKER.match(data, start)
        if m is not None and hmac.compare_digest(m.group(3), _mac(key, m.group(1), m.group(2))):
            return True
        start = data.find(MAGIC, start + 1)
    return False


def label(finding: Finding, ev: StreamEvidence, key: bytes | None = None) -> bool:
    """Mark ``finding`` as a canary when every packet of its stream was kept and carries a
    valid marker; the verdict itself is left as the detection made it."""
    samples = ev.outer_samples
    if len(samples) < MIN_MARKED or finding.packets > len(samples):
        return False
    if not any(MAGIC in frame for _, _, frame in samples[:1]):
        return False  # the cheap test first: nearly every stream stops here
    k = key or canary_key()
    if not all(valid_marker(frame, k) for _, _, frame in samples):
        return False
    finding.evidence["canary"] = True
    finding.evidence["canary_packets"] = len(samples)
    reasons.add(finding, "canary", packets=len(samples), protocol=finding.protocol)
    return True


# --------------------------------------------------------------------------- crafting


@dataclass(repr=False, eq=False, frozen=True)
class Outer:
    """One crafted outer payload: over UDP to ``port``, or GRE (``port`` None)."""

    payload: bytes
    port: int | None


def inner_frame(i: int, mark: bytes) -> bytes:
    """Packet ``i`` of the copied test conversation: directions alternate, as a mirror of both
    sides of a conversation shows them."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    if i % 2 == 0:
        hdr = Ether(src=INNER_MAC_A, dst=INNER_MAC_B) / IP(src=INNER_A, dst=INNER_B, id=i)
        l4 = TCP(sport=INNER_PORT_A, dport=INNER_PORT_B, seq=1000 + i, flags="PA")
    else:
        hdr = Ether(src=INNER_MAC_B, dst=INNER_MAC_A) / IP(src=INNER_B, dst=INNER_A, id=i)
        l4 = TCP(sport=INNER_PORT_B, dport=INNER_PORT_A, seq=5000 + i, flags="PA")
    return bytes(hdr / l4 / Raw(mark))


def _tzsp(i: int, frame: bytes) -> Outer:
    from scapy.contrib.tzsp import TZSP

    return Outer(bytes(TZSP(version=1, type=0, encapsulated_protocol=1)) + b"\x01" + frame, 37008)


def _gre(proto: int, header: bytes = b"", seq: int | None = None) -> bytes:
    from scapy.layers.l2 import GRE

    if seq is None:
        return bytes(GRE(proto=proto)) + header
    return bytes(GRE(proto=proto, seqnum_present=1, sequence_number=seq)) + header


def _erspan2(i: int, frame: bytes) -> Outer:
    from scapy.contrib.erspan import ERSPAN_II

    return Outer(_gre(0x88BE, bytes(ERSPAN_II(session_id=7, index=0x1F)), seq=i) + frame, None)


def _gre_teb(i: int, frame: bytes) -> Outer:
    return Outer(_gre(0x6558) + frame, None)


def _vxlan(i: int, frame: bytes) -> Outer:
    from scapy.layers.vxlan import VXLAN

    return Outer(bytes(VXLAN(flags=0x08, vni=4242)) + frame, 4789)


def _geneve(i: int, frame: bytes) -> Outer:
    from scapy.contrib.geneve import GENEVE

    return Outer(bytes(GENEVE(vni=777, proto=0x6558)) + frame, 6081)


def _a4(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


# NetFlow v9 / IPFIX record: addresses, ports, protocol, packets, bytes, interfaceName (82)
# holding the marker.
FLOW_FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (82, MARKER_LEN))


def _flow_record(i: int, mark: bytes) -> bytes:
    src, dst = (INNER_A, INNER_B) if i % 2 == 0 else (INNER_B, INNER_A)
    ports = (INNER_PORT_A, INNER_PORT_B) if i % 2 == 0 else (INNER_PORT_B, INNER_PORT_A)
    return _a4(src) + _a4(dst) + struct.pack(">HHBII", *ports, 6, 3 + i, 180 + 60 * i) + mark


def _set(set_id: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(">HH", set_id, len(body) + 4) + body


def _template(template_set: int) -> bytes:
    fields = b"".join(struct.pack(">HH", t, n) for t, n in FLOW_FIELDS)
    return _set(template_set, struct.pack(">HH", 256, len(FLOW_FIELDS)) + fields)


def _netflow_v9(i: int, mark: bytes, now: float) -> Outer:
    sets = _template(0) + _set(256, _flow_record(i, mark))
    hdr = struct.pack(">HHIIII", 9, 2, 60_000 + i * 100, int(now), i, 0x4D57)
    return Outer(hdr + sets, 2055)


def _ipfix(i: int, mark: bytes, now: float) -> Outer:
    sets = _template(2) + _set(256, _flow_record(i, mark))
    return Outer(struct.pack(">HHIII", 10, 16 + len(sets), int(now), i, 0x4D57) + sets, 4739)


def _sflow(i: int, mark: bytes, now: float, agent: str) -> Outer:
    frame = inner_frame(i, mark)
    head = frame + b"\0" * (-len(frame) % 4)
    rec = struct.pack(">IIII", 1, len(frame) + 4, 0, len(frame)) + head
    body = struct.pack(">IIIIIIII", i + 1, 3, 1024, (i + 1) * 1024, 0, 3, 5, 1)
    body += struct.pack(">II", 1, len(rec)) + rec
    sample = struct.pack(">II", 1, len(body)) + body
    hdr = struct.pack(">II", 5, 1) + _a4(agent) + struct.pack(">IIII", 0, i + 1, 60_000 + i, 1)
    return Outer(hdr + sample, 6343)


MIRRORS: dict[str, Callable[[int, bytes], Outer]] = {
    "tzsp": _tzsp,
    "erspan-2": _erspan2,
    "gre-teb": _gre_teb,
    "vxlan": _vxlan,
    "geneve": _geneve,
}
EXPORTS = ("netflow-v9", "ipfix", "sflow")
FORMATS: tuple[str, ...] = (*MIRRORS, *EXPORTS)
# What the sensor reports each canary as.
KINDS: dict[str, str] = {
    **dict.fromkeys(MIRRORS, "mirror"),
    **dict.fromkeys(EXPORTS, "flow-export"),
}


def payloads(
    fmt: str, count: int, key: bytes, now: float | None = None, agent: str = "192.0.2.1"
) -> list[Outer]:
    """The outer payloads of a canary stream of format ``fmt``."""
    when = time.time() if now is None else now
    nonce = int.from_bytes(os.urandom(4), "big")
    out = []
    for i in range(count):
        mark = marker(key, when, nonce + i)
        if fmt in MIRRORS:
            out.append(MIRRORS[fmt](i, inner_frame(i, mark)))
        elif fmt == "netflow-v9":
            out.append(_netflow_v9(i, mark, when))
        elif fmt == "ipfix":
            out.append(_ipfix(i, mark, when))
        elif fmt == "sflow":
            out.append(_sflow(i, mark, when, agent))
        else:
            raise ValueError(f"no canary for {fmt!r}; formats: {', '.join(FORMATS)}")
    return out


def packets(fmt: str, to: str, count: int, key: bytes, src: str | None = None) -> list[Packet]:
    """scapy packets (from IP up) of a canary stream to ``to``, one every 10 ms."""
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw

    agent = src or IP(dst=to).src or "192.0.2.1"
    now = time.time()
    out: list[Packet] = []
    for i, o in enumerate(payloads(fmt, count, key, now=now, agent=agent)):
        ip = IP(src=agent, dst=to)
        if o.port is None:
            pkt = ip / Raw(o.payload)
            pkt.proto = 47
        else:
            pkt = ip / UDP(sport=47000, dport=o.port) / Raw(o.payload)
        pkt.time = now + i * 0.01
        out.append(pkt)
    return out


def frames(pkts: Sequence[Packet]) -> list[Packet]:
    """The same packets as Ethernet frames, for a capture file."""
    from scapy.layers.l2 import Ether

    out = []
    for p in pkts:
        f = Ether(src="02:00:5e:00:53:01", dst="02:00:5e:00:53:02") / p
        f.time = p.time
        out.append(f)
    return out


def send(pkts: Sequence[Packet], interval: float = 0.01) -> None:
    from scapy.sendrecv import send as scapy_send

    scapy_send(list(pkts), inter=interval, verbose=False)
