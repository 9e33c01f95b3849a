"""The block walk (a whole batch, numpy or compiled) and the scalar walk (one frame) agree on
every column.

Frames of every known link type are built from random layers (VLAN stacks of any depth, QinQ,
PPPoE, MPLS stacks, IPv4 with options and fragments, IPv6 with extension headers, TCP, UDP,
SCTP, GRE...), then some are cut short or have bytes overwritten.  Whatever the bytes, the
columns both forms of :func:`decode_headers` give a row must be what :func:`parse_frame` finds in
that frame.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.capture.reader import PacketBatch
from detector.decode import headers
from detector.decode.frames import InnerPacket, parse_frame
from detector.decode.headers import L4_WINDOW, Headers
from detector.decode.layers import LAYOUT_OF, SHIMS

LINKTYPES = sorted(LAYOUT_OF)
ETHERTYPES = [0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100, 0x8864, 0x8847, 0x8848, 0x1234]
PPP_PROTOCOLS = [0x0021, 0x0057, 0xC021, 0x0031]
IPV6_EXTENSIONS = [0, 43, 44, 51, 60, 135, 139, 140, 253, 50, 59]
TRANSPORTS = [6, 17, 132, 136, 47, 1, 58, 41, 4, 255]
# The block walk's forms: numpy, and compiled where the extension is built.
Decode = Callable[[PacketBatch], Headers]
FORMS = [
    pytest.param(headers.decode_headers_numpy, id="numpy"),
    pytest.param(
        headers.decode_headers_compiled,
        id="compiled",
        marks=pytest.mark.skipif(headers.OUTER is None, reason="the compiled decode is not built"),
    ),
]


@st.composite
def transport(draw: st.DrawFn, proto: int) -> bytes:
    body = draw(st.binary(min_size=0, max_size=40))
    if proto == 6:
        offset = draw(st.sampled_from([5, 5, 8, 15, 2]))
        return struct.pack("!HHIIBBHHH", 1234, 443, 7, 0, offset << 4, 0x18, 512, 0, 0) + body
    if proto in (17, 136):
        return struct.pack("!HHHH", 5000, 53, 8 + len(body), 0) + body
    if proto == 132:
        return struct.pack("!HHII", 2905, 2905, 1, 0) + body
    if proto == 47:
        return struct.pack("!HH", 0, draw(st.sampled_from([0x88BE, 0x6558, 0x0800]))) + body
    return body


@st.composite
def ipv4(draw: st.DrawFn) -> bytes:
    proto = draw(st.sampled_from(TRANSPORTS))
    options = b"\x01" * 4 * draw(st.integers(0, 3))
    l4 = draw(transport(proto))
    ihl = 5 + len(options) // 4
    total = draw(st.sampled_from([20 + len(options) + len(l4), 0, 19, 1500]))
    flags = draw(st.sampled_from([0, 0x4000, 0x2000, 0x0010, 0x2010]))
    head = struct.pack("!BBHHHBBH", 0x40 | ihl, 0, total, 77, flags, 64, proto, 0)
    return head + bytes([10, 0, 0, 1, 192, 0, 2, 9]) + options + l4


@st.composite
def ipv6(draw: st.DrawFn) -> bytes:
    chain = draw(st.lists(st.sampled_from(IPV6_EXTENSIONS), max_size=10))
    proto = draw(st.sampled_from(TRANSPORTS))
    body = draw(transport(proto))
    for ext, nxt in reversed(list(zip(chain, [*chain[1:], proto], strict=False))):
        if ext == 44:
            frag = draw(st.sampled_from([0, 1, 8, 9]))
            body = struct.pack("!BBHI", nxt, 0, frag, 99) + body
        elif ext == 51:
            n = draw(st.sampled_from([1, 2, 3, 70]))
            body = bytes([nxt, n]) + b"\0" * ((n + 2) * 4 - 2) + body
        else:
            n = draw(st.sampled_from([0, 1, 2, 32]))
            body = bytes([nxt, n]) + b"\0" * ((n + 1) * 8 - 2) + body
    first = chain[0] if chain else proto
    head = struct.pack("!IHBB", 0x60000000, len(body), first, 64)
    return head + ipaddress.IPv6Address("2001:db8::1").packed + bytes(15) + b"\x02" + body


@st.composite
def shims(draw: st.DrawFn, ip_type: int) -> tuple[int, bytes]:
    """(EtherType of the first shim, the shim headers) ending on ``ip_type``."""
    layers = draw(st.lists(st.sampled_from(SHIMS), max_size=12))
    etype, out = ip_type, b""
    for shim in reversed(layers):
        if shim.name == "vlan":
            out = struct.pack("!HH", draw(st.integers(0, 0xFFFF)), etype) + out
        elif shim.name == "pppoe-session":
            ppp = {0x0800: 0x0021, 0x86DD: 0x0057}.get(etype, 0xC021)
            out = struct.pack("!BBHHH", 0x11, 0, 0x1234, 40, ppp) + out
        else:
            labels = draw(st.integers(1, 18))
            bottom = struct.pack("!I", (16 << 12) | 0x100 | 64)
            out = struct.pack("!I", (17 << 12) | 64) * (labels - 1) + bottom + out
        etype = draw(st.sampled_from(shim.ethertypes))
    return etype, out


@st.composite
def link(draw: st.DrawFn, linktype: int, ip_type: int) -> bytes:
    """The link header of ``linktype`` (and shims where an EtherType allows) before IP."""
    ppp = {0x0800: 0x0021, 0x86DD: 0x0057}[ip_type]
    if draw(st.integers(0, 9)) == 0:
        ip_type = draw(st.sampled_from(ETHERTYPES))
        ppp = draw(st.sampled_from(PPP_PROTOCOLS))
    name = LAYOUT_OF[linktype].name
    if name in ("ethernet", "linux-sll", "linux-sll2", "cisco-hdlc"):
        etype, shim = draw(shims(ip_type))
        return {
            "ethernet": b"\x02" * 12 + struct.pack("!H", etype),
            "linux-sll": bytes(14) + struct.pack("!H", etype),
            "linux-sll2": struct.pack("!H", etype) + bytes(18),
            "cisco-hdlc": b"\x0f\x00" + struct.pack("!H", etype),
        }[name] + shim
    if name == "null":
        fam = draw(st.sampled_from([2, 24, 28, 30, 7]))
        return struct.pack(draw(st.sampled_from(["<I", ">I"])), fam)
    if name == "ppp":
        return draw(st.sampled_from([b"", b"\xff\x03"])) + struct.pack("!H", ppp)
    if name == "pppoe":
        return struct.pack("!BBHHH", 0x11, 0, 1, 40, ppp)
    if name == "ppp-direction":
        return b"\x01" + struct.pack("!H", ppp)
    return b""  # raw IP


@st.composite
def frames(draw: st.DrawFn, linktype: int) -> bytes:
    ip = draw(st.one_of(ipv4(), ipv6()))
    frame = draw(link(linktype, 0x0800 if ip[0] >> 4 == 4 else 0x86DD)) + ip
    if draw(st.booleans()):
        for at, value in draw(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)))):
            if at < len(frame):
                frame = frame[:at] + bytes([value]) + frame[at + 1 :]
    if draw(st.booleans()):
        frame = frame[: draw(st.integers(0, len(frame)))]
    if draw(st.integers(0, 19)) == 0:
        frame = draw(st.binary(max_size=120))
    return frame


def _words(addr: str | None) -> list[int]:
    if addr is None:
        return [0, 0, 0, 0]
    packed = ipaddress.ip_address(addr).packed.rjust(16, b"\0")
    return list(struct.unpack("!4I", packed))


def scalar_columns(frame: bytes, linktype: int) -> dict[str, object]:
    """The columns the block walk must give this frame, from the scalar walk."""
    got = parse_frame(frame, linktype) or InnerPacket()
    if not got.ip_version:
        got = InnerPacket()
    pay = got.payload_offset
    end = min(len(frame), got.ip_offset + got.ip_len)
    l4 = got.l4_offset
    return {
        "l3": got.ip_offset, "ipver": got.ip_version, "proto": got.proto,
        "src": _words(got.src), "dst": _words(got.dst), "l4": l4,
        "sport": got.sport, "dport": got.dport, "pay": pay,
        "paylen": max(0, end - pay) if pay >= 0 else 0,
        "fragment": got.fragment or got.more_fragments,
        "l4h": list(frame[l4 : l4 + L4_WINDOW]) if l4 >= 0 else [],
    }  # fmt: skip


def _batch(rows: list[tuple[int, bytes]]) -> PacketBatch:
    batch = PacketBatch.of_frames([f for _, f in rows], np.zeros(len(rows)))
    batch.linktype = np.array([lt for lt, _ in rows], dtype=np.int32)
    return batch


def _agree(rows: list[tuple[int, bytes]], decode: Decode) -> None:
    batch = _batch(rows)
    h = decode(batch)
    for i, (linktype, frame) in enumerate(rows):
        l4 = int(h.l4[i])
        room = max(0, min(L4_WINDOW, len(frame) - l4)) if l4 >= 0 else 0
        block = {
            "l3": int(h.l3[i]), "ipver": int(h.ipver[i]), "proto": int(h.proto[i]),
            "src": h.src[i].tolist(), "dst": h.dst[i].tolist(), "l4": l4,
            "sport": int(h.sport[i]), "dport": int(h.dport[i]), "pay": int(h.pay[i]),
            "paylen": int(h.paylen[i]), "fragment": bool(h.fragment[i]),
            "l4h": h.l4h[i, :room].tolist(),
        }  # fmt: skip
        assert block == scalar_columns(frame, linktype), (linktype, frame.hex())
        assert bool(h.slow[i]) == block["fragment"]


@st.composite
def mixed_rows(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    one = draw(st.sampled_from([*LINKTYPES, None]))
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        lt = one if one is not None else draw(st.sampled_from([*LINKTYPES, 147]))
        rows.append((lt, draw(frames(lt if lt in LAYOUT_OF else 1))))
    return rows


@pytest.mark.parametrize("decode", FORMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_rows())
def test_block_walk_equals_scalar_walk(decode: Decode, rows: list[tuple[int, bytes]]) -> None:
    _agree(rows, decode)


@pytest.mark.parametrize("decode", FORMS)
def test_deep_stacks_walked_to_their_bound(decode: Decode) -> None:
    """Eight VLAN tags and sixteen MPLS labels are walked; one more of either is not."""
    ip = bytes.fromhex("4500001c000000004011000001020304050607080035003500080000")
    for tags, reached in ((8, True), (9, False)):
        frame = b"\x02" * 12 + b"\x81\x00" + b"\x00\x01\x81\x00" * (tags - 1) + b"\x00\x01\x08\x00"
        _agree([(1, frame + ip)], decode)
        assert (parse_frame(frame + ip, 1) or InnerPacket()).ip_version == (4 if reached else 0)
    for labels, reached in ((16, True), (17, False)):
        stack = b"\x00\x01\x00\x40" * (labels - 1) + b"\x00\x01\x01\x40"
        frame = b"\x02" * 12 + b"\x88\x47" + stack + ip
        _agree([(1, frame)], decode)
        assert (parse_frame(frame, 1) or InnerPacket()).ip_version == (4 if reached else 0)


@pytest.mark.parametrize("decode", FORMS)
def test_extension_header_longer_than_a_byte_counts(decode: Decode) -> None:
    """A hop-by-hop header of (31 + 1) * 8 = 256 bytes: its length is not taken modulo 256."""
    options = bytes([17, 31]) + bytes(254)
    udp = bytes.fromhex("1388003500080000")
    frame = bytes.fromhex("60000000") + struct.pack("!HBB", 264, 0, 64) + bytes(32) + options + udp
    _agree([(101, frame)], decode)
    got = parse_frame(frame, 101)
    assert got is not None and (got.proto, got.l4_offset, got.dport) == (17, 296, 53)
