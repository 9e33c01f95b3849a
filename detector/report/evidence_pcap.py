"""Evidence captures: the packets behind a finding, written so Wireshark opens them as they are.

Per finding, ``<id>-<protocol>-outer.pcap`` holds the first outer packets of the stream (the
frames as captured) and, for streams that carry copies of traffic, ``<id>-<protocol>-inner.pcap``
holds the decapsulated frames ("what was being shared") with the timestamps of the packets that
carried them.  One link type → classic pcap; several link types → pcapng with one interface per
link type, so nothing is rewritten to fit.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from detector.scan import ScanResult

# Link types (tcpdump.org/linktypes) for the inner link names the decoders report.
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW = 101  # IPv4 or IPv6, version nibble decides
LINKTYPE_IEEE802_11 = 105
LINKTYPE_USER0 = 147  # carried bytes of no known link: kept, not guessed at
INNER_LINKTYPES: dict[str, int] = {
    "ethernet": LINKTYPE_ETHERNET,
    "ip": LINKTYPE_RAW,
    "ieee80211": LINKTYPE_IEEE802_11,
    "ppp": LINKTYPE_PPP,
    "raw": LINKTYPE_USER0,
}
# Kinds whose carried frames are someone's traffic worth handing over.
SHARED_KINDS = frozenset({"mirror", "intercept", "flow-export"})
SNAPLEN = 262144

Sample = tuple[float, int, bytes]  # (time, link type, frame)


def _split_ts(ts: float) -> tuple[int, int]:
    sec = int(ts)
    usec = round((ts - sec) * 1_000_000)
    if usec >= 1_000_000:  # rounding up to the next second
        sec, usec = sec + 1, usec - 1_000_000
    return sec, usec


def _write_pcap(out: BinaryIO, linktype: int, packets: Iterable[Sample]) -> None:
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
    for ts, _, data in packets:
        sec, usec = _split_ts(ts)
        out.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
        out.write(data)


def _block(btype: int, body: bytes) -> bytes:
    pad = b"\0" * (-len(body) % 4)
    total = 12 + len(body) + len(pad)
    return struct.pack("<II", btype, total) + body + pad + struct.pack("<I", total)


def _write_pcapng(out: BinaryIO, packets: Sequence[Sample]) -> None:
    # Section header: byte-order magic, version 1.0, section length unknown.
    out.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
    iface: dict[int, int] = {}
    for _, lt, _ in packets:
        if lt not in iface:
            iface[lt] = len(iface)
            # Interface description; default timestamp resolution is microseconds.
            out.write(_block(0x00000001, struct.pack("<HHI", lt, 0, SNAPLEN)))
    for ts, lt, data in packets:
        sec, usec = _split_ts(ts)
        t = sec * 1_000_000 + usec
        body = struct.pack("<IIIII", iface[lt], t >> 32, t & 0xFFFFFFFF, len(data), len(data))
        out.write(_block(0x00000006, body + data))


def write_capture(path: Path, packets: Sequence[Sample]) -> Path:
    """Write ``packets`` to ``path`` (suffix .pcap, or .pcapng when link types are mixed).

    Returns the path written (its suffix may differ from the one asked for)."""
    links = {lt for _, lt, _ in packets}
    if len(links) <= 1:
        path = path.with_suffix(".pcap")
        with path.open("wb") as f:
            _write_pcap(f, links.pop() if links else LINKTYPE_ETHERNET, packets)
    else:
        path = path.with_suffix(".pcapng")
        with path.open("wb") as f:
            _write_pcapng(f, packets)
    return path


def inner_as_samples(inner: Iterable[tuple[float, str, bytes]]) -> list[Sample]:
    """Carried frames as (time, link type, bytes), their link names mapped to link types."""
    return [(ts, INNER_LINKTYPES.get(link, LINKTYPE_USER0), data) for ts, link, data in inner]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:64] or "stream"


def write_evidence(result: ScanResult, directory: str | Path, max_packets: int = 200) -> list[Path]:
    """Evidence captures for every finding of a scan into ``directory`` (created if missing).

    At most ``max_packets`` outer packets (and as many carried frames) per finding; the engine
    keeps the first packets of each stream, so these are the stream's first packets."""
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    limit = max(0, max_packets)
    for finding in result.report.findings:
        ev = result.evidence.get(finding.id)
        if ev is None or limit == 0:
            continue
        stem = f"{_safe(finding.id)}-{_safe(finding.protocol)}"
        outer = ev.outer_samples[:limit]
        if outer:
            written.append(write_capture(out_dir / f"{stem}-outer.pcap", outer))
        inner = ev.inner_samples[:limit]
        if inner and finding.kind in SHARED_KINDS:
            written.append(write_capture(out_dir / f"{stem}-inner.pcap", inner_as_samples(inner)))
    return written
