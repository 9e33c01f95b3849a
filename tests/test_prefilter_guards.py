"""The payload-scanning prefilters, against a plain statement of what each accepts.

Their cheap guards (a first test on a byte or a length that most random or encrypted payloads
fail) may only make them faster: on the payloads of the samples, of the public captures in
../shared/pcaps/real where present, on random bytes and on headers placed near each guard's
edges, each prefilter's mask is the one its plain statement gives, row by row.
"""

from __future__ import annotations

import functools
import random

import numpy as np
from fuzztargets import seed_payloads
from mwtest import REAL, heads

from detector.capture.reader import InputStats, open_stream, read_batches
from detector.decode.frames import IPV6_NEXT_HEADERS
from detector.decode.headers import decode_headers
from detector.protocols import peekremote
from detector.protocols.li_common import IP_CARRYING_ETHERTYPES
from detector.protocols.pcli import ERA1_MAX, NTP_MIN, PcliDecoder
from detector.protocols.unknown_encap import MAX_OFFSET, UnknownEncapsulation


@functools.cache
def real_payloads() -> tuple[bytes, ...]:
    """The UDP and TCP payloads of the public captures (none where they are absent)."""
    found: dict[bytes, None] = {}
    for path in sorted(REAL.rglob("*.pcap*")) if REAL.is_dir() else []:
        with open_stream(str(path)) as stream:
            for batch in read_batches(stream, InputStats(str(path))):
                h = decode_headers(batch)
                for i in np.flatnonzero((h.ipver > 0) & (h.paylen > 0)).tolist():
                    pay = int(h.pay[i])
                    found[batch.packet(i)[pay : pay + int(h.paylen[i])]] = None
    return tuple(found)


def random_payloads(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, 2, 19, 20, 47, 48, 63, 64, 65, 255, 256, 299, 300, 1200, 1500]
    return [rng.randbytes(rng.choice(sizes)) for _ in range(n)]


def _be16(row: np.ndarray, at: int) -> int:
    return (int(row[at]) << 8) | int(row[at + 1])


def unknown_encapsulation_stated(row: np.ndarray, length: int) -> bool:
    """Some offset up to MAX_OFFSET starts an IPv4 header (0x45-0x4f, checksum right) whose
    total length, or an IPv6 header (plausible next header, hop limit, payload of 8 bytes or
    more) whose payload length and 40, is what is left of the payload, 20 bytes at least."""
    last = len(row) - 1
    for k in range(MAX_OFFSET + 1):
        rest = length - k
        if rest < 20:
            continue
        if 0x45 <= row[k] <= 0x4F and _be16(row, k + 2) == rest:
            words = [_be16(row, k + j) for j in range(0, 20, 2)]
            total = sum(words)
            while total > 0xFFFF:
                total = (total & 0xFFFF) + (total >> 16)
            if total == 0xFFFF:
                return True
        field = _be16(row, k + 4)
        v6 = row[k] >> 4 == 6 and field + 40 == rest and field >= 8
        if v6 and row[min(k + 6, last)] in IPV6_NEXT_HEADERS and row[min(k + 7, last)] > 0:
            return True
    return False


def near_edges(seed: int) -> list[bytes]:
    """IPv4 and IPv6 headers at every offset, their length fields right or one off, in
    payloads whose lengths put the rest's high byte on either side of a 256 boundary."""
    rng = random.Random(seed)
    out = []
    for k in range(MAX_OFFSET + 3):
        for size in (k + 19, k + 20, k + 48, 255 + k, 256 + k, 257, 300, 511 + k, 1500):
            for slip in (-256, -1, 0, 1, 256):
                body = bytearray(rng.randbytes(max(size, k + 40)))[:size]
                if len(body) < k + 20:
                    out.append(bytes(body))
                    continue
                rest = (size - k + slip) & 0xFFFF
                v4 = bytearray(b"\x45\x00" + rest.to_bytes(2, "big") + bytes(16))
                v4[8], v4[9] = 64, 17
                total = sum(int.from_bytes(v4[j : j + 2], "big") for j in range(0, 20, 2))
                while total > 0xFFFF:
                    total = (total & 0xFFFF) + (total >> 16)
                v4[10:12] = (0xFFFF - total).to_bytes(2, "big")
                out.append(bytes(body[:k] + v4 + body[k + 20 :]))
                if len(body) >= k + 40:
                    v6 = b"\x60\x00\x00\x00" + ((rest - 40) & 0xFFFF).to_bytes(2, "big")
                    out.append(bytes(body[:k] + v6 + b"\x11\x40" + body[k + 8 :]))
    return out


def test_unknown_encapsulation_prefilter_is_its_statement() -> None:
    payloads = [*seed_payloads(), *real_payloads(), *random_payloads(4000, 3), *near_edges(4)]
    head, length = heads(payloads)
    mask = UnknownEncapsulation().prefilter(head, length)
    stated = [unknown_encapsulation_stated(head[i], int(length[i])) for i in range(len(head))]
    assert mask.tolist() == stated
    # The edges are reached: headers that fit are passed, and random bytes almost never are.
    assert 100 < sum(stated) < len(payloads) // 2


def carried_stated(row: np.ndarray, length: int, off: int) -> bool:
    """At ``off``: an IPv4 header (0x45-0x4f) whose total length, or an IPv6 header whose
    payload length and 40, is what is left of the payload; or an Ethernet header with a
    unicast source, an EtherType that leads to IP and room for an IP header after it."""
    rest = length - off
    if 0x45 <= row[off] <= 0x4F and _be16(row, off + 2) == rest:
        return True
    if row[off] >> 4 == 6 and _be16(row, off + 4) + 40 == rest:
        return True
    ethernet_ip = _be16(row, off + 12) in IP_CARRYING_ETHERTYPES.tolist()
    return row[off + 6] & 1 == 0 and ethernet_ip and rest >= 14 + 20


def pcli_stated(row: np.ndarray, length: int) -> bool:
    """A packet or frame carried after 4 or 8 header bytes, or after 12 or 20 when the NTP
    seconds at 4 are in range."""
    secs = (_be16(row, 4) << 16) | _be16(row, 6)
    timestamped = secs >= NTP_MIN or secs < ERA1_MAX
    return any(
        carried_stated(row, length, off) and (off < 12 or timestamped) for off in (4, 8, 12, 20)
    )


def carried_near_edges(offsets: tuple[int, ...], seed: int) -> list[bytes]:
    """Headers of every kind at each of ``offsets``, lengths right or one off, in payloads on
    either side of 256-byte boundaries, with timestamps in and out of range."""
    rng = random.Random(seed)
    out = []
    for off in offsets:
        for size in (off + 3, off + 20, off + 34, off + 60, 255 + off, 256 + off, 300, 1500):
            for slip in (-256, -1, 0, 1):
                rest = (size - off + slip) & 0xFFFF
                for carried in (
                    b"\x45\x00" + rest.to_bytes(2, "big"),
                    b"\x60\x00\x00\x00" + ((rest - 40) & 0xFFFF).to_bytes(2, "big"),
                    rng.randbytes(6) + b"\x02" + rng.randbytes(5) + b"\x08\x00",
                    rng.randbytes(6) + b"\x03" + rng.randbytes(5) + b"\x86\xdd",
                ):
                    for stamp in (b"\xe8\x00\x00\x00", b"\x90\x00\x00\x00"):
                        body = bytearray(rng.randbytes(max(size, off + len(carried))))
                        body[4:8] = stamp
                        body[off : off + len(carried)] = carried
                        out.append(bytes(body[:size]))
    return out


def test_pcli_prefilter_is_its_statement() -> None:
    payloads = [
        *seed_payloads(),
        *real_payloads(),
        *random_payloads(4000, 5),
        *carried_near_edges((4, 8, 12, 20), 6),
    ]
    head, length = heads(payloads)
    mask = PcliDecoder().prefilter(head, length)
    stated = [pcli_stated(head[i], int(length[i])) for i in range(len(head))]
    assert mask.tolist() == stated
    assert 100 < sum(stated) < len(payloads) // 2


def peekremote_stated(row: np.ndarray, length: int) -> bool:
    """The new header's magic 00 ff ab cd; or a legacy header: reserved flag and status bits
    clear, a channel from 1 to MAX_CHANNEL, the low bits of byte 20 clear, and the frame after
    the 20 header bytes as long as the packet length, the packet length and an FCS, or a
    slice length that is not zero."""
    if bytes(row[:4]) == b"\x00\xff\xab\xcd":
        return True
    frame = length - 20
    packet, sliced = _be16(row, 2), _be16(row, 4)
    return (
        row[6] & 0xF8 == 0
        and row[7] & 0xB3 == 0
        and 1 <= row[17] <= peekremote.MAX_CHANNEL
        and row[20] & 0x03 == 0
        and frame in (packet, packet + 4, sliced if sliced else -1)
    )


def peekremote_near_edges(seed: int) -> list[bytes]:
    """New and legacy headers, their reserved bits, channel and lengths right or one off."""
    rng = random.Random(seed)
    out = []
    for size in (20, 21, 24, 63, 64, 65, 300, 1500):
        for _ in range(30):
            body = bytearray(rng.randbytes(size))
            if rng.random() < 0.2:
                body[:4] = b"\x00\xff\xab\xcd"[: min(4, size)]
            if size > 20:
                # Reserved bits all clear, or just one of them set.
                body[6] = (body[6] & 0x07) | rng.choice([0, 0, 0x08, 0x40, 0x80])
                body[7] = (body[7] & 0x4C) | rng.choice([0, 0, 0x01, 0x02, 0x10, 0x20, 0x80])
                body[17] = rng.choice([0, 1, 233, 234, rng.randrange(256)])
                body[20] &= rng.choice([0xFC, 0xFF])
                frame = size - 20 + rng.choice([-1, 0, 0, 1])
                field = rng.choice([2, 4])
                body[field : field + 2] = (
                    (frame - rng.choice([0, 4]) * (field == 2)).to_bytes(2, "big")
                    if frame >= 4
                    else b"\0\0"
                )
            out.append(bytes(body))
    return out


def test_peekremote_prefilter_is_its_statement() -> None:
    payloads = [
        *seed_payloads(),
        *real_payloads(),
        *random_payloads(4000, 7),
        *peekremote_near_edges(8),
    ]
    head, length = heads(payloads)
    mask = peekremote.PeekremoteDecoder().prefilter(head, length)
    stated = [peekremote_stated(head[i], int(length[i])) for i in range(len(head))]
    assert mask.tolist() == stated
    assert 20 < sum(stated) < len(payloads) // 2
