"""Evidence captures: the packets behind a finding, written so Wireshark opens them as they are.

Per finding, ``<id>-<protocol>-outer.pcapng`` holds the first outer packets of the stream (the
frames as captured) and, for streams that carry copies of traffic, ``<id>-<protocol>-inner.pcapng``
holds the decapsulated frames ("what was being shared") with the timestamps of the packets that
carried them.  pcapng, one interface per link type so nothing is rewritten to fit, nanosecond
time stamps (to the precision the engine keeps: float seconds, about 0.2 µs today), and a
section comment naming the finding and the Decode As rules Wireshark needs to read the outer
file (Wireshark shows it under Statistics > Capture File Properties; ``capinfos`` prints it).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from detector.findings import Finding
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


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _options(*opts: bytes) -> bytes:
    return b"".join(opts) + struct.pack("<HH", 0, 0) if opts else b""


def _block(btype: int, body: bytes) -> bytes:
    pad = b"\0" * (-len(body) % 4)
    total = 12 + len(body) + len(pad)
    return struct.pack("<II", btype, total) + body + pad + struct.pack("<I", total)


OPT_COMMENT = 1
IF_TSRESOL = 9  # interface option: time stamp resolution; 9 = 10^-9 s
SHB_USERAPPL = 4


def _write_pcapng(out: BinaryIO, packets: Sequence[Sample], comment: str | None) -> None:
    from detector import __version__

    opts = [_option(SHB_USERAPPL, f"mirrorwatch {__version__}".encode())]
    if comment:
        opts.insert(0, _option(OPT_COMMENT, comment.encode()))
    # Section header: byte-order magic, version 1.0, section length unknown.
    out.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _options(*opts)))
    iface: dict[int, int] = {}
    for _, lt, _ in packets:
        if lt not in iface:
            iface[lt] = len(iface)
            nano = _option(IF_TSRESOL, bytes([9]))
            out.write(_block(0x00000001, struct.pack("<HHI", lt, 0, SNAPLEN) + _options(nano)))
    if not packets:  # an empty capture still says what it would hold
        out.write(_block(0x00000001, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN)))
    for ts, lt, data in packets:
        t = _nanoseconds(ts)
        body = struct.pack("<IIIII", iface[lt], t >> 32, t & 0xFFFFFFFF, len(data), len(data))
        out.write(_block(0x00000006, body + data))


def _nanoseconds(ts: float) -> int:
    """Float seconds as integer nanoseconds. A float near today's epoch keeps about 0.24 µs: a
    time within half of that of a whole microsecond was one (a µs capture) and is written as
    such rather than with digits the float made up."""
    if ts != ts or ts <= 0:
        return 0
    micro = round(ts * 1_000_000)
    if abs(ts - micro / 1_000_000) <= 0.6 * math.ulp(ts):
        return micro * 1000
    return round(ts * 1_000_000_000)


def write_capture(path: Path, packets: Sequence[Sample], comment: str | None = None) -> Path:
    """Write ``packets`` to ``path`` as pcapng (the suffix becomes .pcapng), with ``comment``
    as the section comment.  Returns the path written."""
    path = path.with_suffix(".pcapng")
    with path.open("wb") as f:
        _write_pcapng(f, packets, comment)
    return path


def evidence_comment(finding: Finding, rules: Sequence[str], prefs: Sequence[str]) -> str:
    """What a reader of the capture needs: which finding, and Wireshark's Decode As."""
    lines = [
        f"mirrorwatch finding {finding.id}: {finding.protocol} {finding.kind} "
        f"({finding.severity}), {finding.exporter.label} -> {finding.collector.label}",
        "Decode As: "
        + (", ".join(f"tshark -d {r}" for r in rules) if rules else "none needed")
        + "".join(f"; tshark -o {p}" for p in prefs),
    ]
    return "\n".join(lines)


def inner_as_samples(inner: Iterable[tuple[float, str, bytes]]) -> list[Sample]:
    """Carried frames as (time, link type, bytes), their link names mapped to link types."""
    return [(ts, INNER_LINKTYPES.get(link, LINKTYPE_USER0), data) for ts, link, data in inner]


def _time(sample: tuple[float, object, bytes]) -> float:
    return sample[0]


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
        outer = sorted(ev.outer_samples, key=_time)[:limit]
        if outer:
            from detector.explain import decode_as_rules, preferences

            note = evidence_comment(finding, decode_as_rules(finding, ev), preferences(finding, ev))
            written.append(write_capture(out_dir / f"{stem}-outer", outer, note))
        inner = sorted(ev.inner_samples, key=_time)[:limit]
        if inner and finding.kind in SHARED_KINDS:
            note = (
                f"mirrorwatch finding {finding.id}: the frames its {finding.protocol} packets "
                "carried, decapsulated, with the times of the packets that carried them"
            )
            written.append(write_capture(out_dir / f"{stem}-inner", inner_as_samples(inner), note))
    return written
