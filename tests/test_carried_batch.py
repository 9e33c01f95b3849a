"""Carried frames parsed together are the frames parsed one by one.

A mirror stream's sampled packets have their carried frames read as one batch by the outer
header decode (detector.decode.carried); each frame must get exactly what
``carried_frame`` gives it alone (None for what is not a frame of the link named, every field of
the parsed packet otherwise): plain frames (untagged and VLAN-tagged Ethernet, raw IP, IPv4 and
IPv6, TCP and UDP, right, zero and wrong checksums, group-bit MACs) and everything else (shim
stacks, options, extension headers, fragments, frames cut short, overwritten or replaced by
random bytes).  The CI run is derandomised; ``MIRRORWATCH_FUZZ_EXAMPLES=N`` multiplies the
examples and draws new ones.
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st
from mwtest import fuzz
from scapy.all import TCP, UDP, Dot1Q, Ether, IPv6, Raw
from scapy.layers.inet import IP
from test_walk_property import frames

from detector.capture.reader import PacketBatch
from detector.decode.carried import MIN_BATCH, _Plain, carried_frames
from detector.decode.frames import carried_frame, ip_str
from detector.protocols.base import Decoder, PacketContext
from detector.protocols.erspan import ErspanType1, ErspanType2
from detector.protocols.framed import check_together
from detector.protocols.tzsp import Tzsp

LINKTYPE = {"ethernet": 1, "ip": 101}


def one_by_one(link: str, batch: list[bytes]) -> list[object]:
    return [carried_frame(link, f) for f in batch]


@st.composite
def near_plain(draw: st.DrawFn, link: str) -> bytes:
    """A plain frame (or IP packet) with a byte or two of its headers overwritten, or cut."""
    frame = draw(st.sampled_from(plain_frames()))
    if link == "ip":
        frame = frame[18:] if frame[12:14] == b"\x81\x00" else frame[14:]
    for at, value in draw(st.lists(st.tuples(st.integers(0, 75), st.integers(0, 255)), max_size=2)):
        if at < len(frame):
            frame = frame[:at] + bytes([value]) + frame[at + 1 :]
    if draw(st.booleans()):
        frame = frame[: draw(st.integers(0, min(len(frame), 80)))]
    return frame


@fuzz(8)
@given(st.sampled_from(sorted(LINKTYPE)), st.data())
def test_frames_of_any_shape(link: str, data: st.DataObject) -> None:
    shapes = st.one_of(frames(LINKTYPE[link]), near_plain(link))
    batch = data.draw(st.lists(shapes, min_size=MIN_BATCH - 1, max_size=2 * MIN_BATCH))
    assert carried_frames(link, batch) == one_by_one(link, batch)


@functools.cache
def plain_frames() -> list[bytes]:
    l4 = [TCP(sport=443, dport=51000, flags="PA") / Raw(b"x" * 30), UDP(sport=53, dport=5353)]
    ips = [
        IP(src="10.0.0.1", dst="192.0.2.200", id=777, flags="DF"),
        IP(src="10.0.0.2", dst="192.0.2.9", chksum=0),
        IP(src="10.0.0.3", dst="192.0.2.9", chksum=0x1234),
        IPv6(src="2001:db8::1", dst="2001:db8:ffff::2"),
    ]
    macs = [("02:00:00:00:00:01", "00:1b:54:0a:01:01"), ("ff:ff:ff:ff:ff:ff", "03:00:00:00:00:05")]
    out = []
    for ip in ips:
        for t in l4:
            for dst, src in macs:
                out.append(bytes(Ether(dst=dst, src=src) / ip / t))
                out.append(bytes(Ether(dst=dst, src=src) / Dot1Q(vlan=4000) / ip / t))
    return out


def test_plain_frames_are_read_from_columns() -> None:
    batch = plain_frames() * 4  # enough to be read as one batch
    assert len(batch) >= MIN_BATCH
    got = carried_frames("ethernet", batch)
    assert got == one_by_one("ethernet", batch)
    checks = {g.checksum for g in got if g is not None}
    assert checks == {"right", "zero", "wrong", "none"}
    assert {g.vlan for g in got if g is not None} == {None, 4000}
    # Every one of them was read from the batch's columns (none left to the one-by-one parse).
    laid = PacketBatch.of_frames(batch, [0.0] * len(batch), linktype=1)
    assert _Plain(laid, "ethernet").rows.all()
    raw = [f[14:] for f in batch if f[12:14] != b"\x81\x00"]
    assert len(raw) >= MIN_BATCH
    assert carried_frames("ip", raw) == one_by_one("ip", raw)
    assert _Plain(PacketBatch.of_frames(raw, [0.0] * len(raw), linktype=101), "ip").rows.all()


@st.composite
def mirror_payloads(draw: st.DrawFn) -> tuple[Decoder, bytes, PacketContext]:
    """A TZSP or ERSPAN I/II payload (its header right or damaged) carrying a frame."""
    frame = draw(st.one_of(frames(1), near_plain("ethernet")))
    kind = draw(st.sampled_from(["tzsp", "tzsp-ip", "erspan-1", "erspan-2"]))
    if kind.startswith("tzsp"):
        encap = 7 if kind == "tzsp-ip" else 1
        if encap == 7:
            frame = frame[14:]
        head = bytes([1, draw(st.sampled_from([0, 1, 4])), 0, encap]) + draw(
            st.sampled_from([b"\x01", b"\x00\x01", b"\x29\x02\x05\xdc\x01", b"\x29\x05"])
        )
        return Tzsp(), head + frame, PacketContext()
    flags = draw(st.sampled_from([0x1000, 0]))
    ctx = PacketContext(gre_proto=0x88BE, gre_flags=flags, gre_seq=7 if flags else None)
    if kind == "erspan-1":
        return ErspanType1(), frame, ctx
    version = draw(st.sampled_from([1, 1, 2]))
    head = struct.pack("!HHI", (version << 12) | 10, 0x2007, 3)
    return ErspanType2(), head + frame, ctx


@fuzz(8)
@given(st.lists(mirror_payloads(), min_size=MIN_BATCH, max_size=2 * MIN_BATCH))
def test_mirror_packets_checked_together(
    checks: list[tuple[Decoder, bytes, PacketContext]],
) -> None:
    """The checks of a batch's TZSP and ERSPAN packets, done together, are each one's check
    alone: the same verdicts, headers, facts and carried frames."""
    together = check_together([(d, p, c, None) for d, p, c in checks])  # type: ignore[misc]
    assert together == [d.check(p, c, None) for d, p, c in checks]


# IPv6 addresses whose words are mostly zero or all ones (where the text compresses runs and,
# for the first five words zero, where the C library would write an IPv4 tail), and any.
_WORDS = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x102, 0xDB8])
_IPV6 = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.lists(st.one_of(_WORDS, st.integers(0, 0xFFFF)), min_size=8, max_size=8).map(
        lambda w: struct.pack("!8H", *w)
    ),
)


@fuzz(4)
@given(_IPV6)
def test_ipv6_addresses_are_written_as_ipaddress_writes_them(raw: bytes) -> None:
    assert ip_str(raw) == str(ipaddress.IPv6Address(raw))


def test_ipv6_addresses_with_an_ipv4_tail_are_written_as_ipaddress_writes_them() -> None:
    for text in ("::ffff:1.2.3.4", "::1.2.3.4", "::ffff:0:102:304", "::1", "::", "1::", "1::1"):
        raw = ipaddress.IPv6Address(text).packed
        assert ip_str(raw) == str(ipaddress.IPv6Address(raw))
