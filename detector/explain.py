"""Show a finding through Wireshark's eyes: an outside reading of what mirrorwatch decoded.

The first packets of the stream (kept by the engine) are written to a temporary capture and read
back with tshark, with the Decode As rules the format needs on that port, so the user needs no
Decode As of their own.  The same rules and a display filter are printed as a command line for the
original capture.  Formats Wireshark has no dissector for are said to be so, and the header bytes
mirrorwatch decoded are shown instead, with Wireshark's reading of the frames they carried.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detector.decode.frames import InnerPacket, parse_ethernet, parse_ip
from detector.evidence import StreamEvidence
from detector.findings import Finding
from detector.report.evidence_pcap import INNER_LINKTYPES, inner_as_samples, write_capture

INSTALL_HINT = (
    "tshark (Wireshark's command-line reader) is not installed; install it with "
    "`apt-get install tshark` (Debian/Ubuntu), `dnf install wireshark-cli` (Fedora) or "
    "`brew install wireshark` (macOS)."
)
TSHARK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Dissection:
    """How Wireshark reads one format."""

    dissector: str | None  # Decode As target for the stream's port (None: no rule needed)
    marker: str  # display filter true when Wireshark recognised the format
    ports: frozenset[int] = frozenset()  # ports Wireshark already decodes this way
    extra: tuple[str, ...] = ()  # further Decode As rules (payload tables)

    @property
    def layers(self) -> str:
        """Protocols whose detail tree is shown (tshark -O): the format's own header."""
        name = self.marker.split(".")[0].split(" ")[0]
        return "gre,erspan" if name == "erspan" else name


def _d(dissector: str | None, marker: str, *ports: int, extra: tuple[str, ...] = ()) -> Dissection:
    return Dissection(dissector, marker, frozenset(ports), extra)


_CFLOW = _d("cflow", "cflow", 2055, 9996, 4739)
# Formats tshark 4.0 dissects, by mirrorwatch protocol name.
DISSECTIONS: dict[str, Dissection] = {
    "tzsp": _d("tzsp", "tzsp", 37008),
    "erspan-1": _d(None, "erspan"),
    "erspan-2": _d(None, "erspan"),
    "erspan-3": _d(None, "erspan"),
    "gre-teb": _d(None, "gre.proto == 0x6558"),
    "vxlan": _d("vxlan", "vxlan", 4789),
    "geneve": _d("geneve", "geneve", 6081),
    "netflow-v1": _CFLOW,
    "netflow-v5": _CFLOW,
    "netflow-v7": _CFLOW,
    "netflow-v9": _CFLOW,
    "ipfix": _CFLOW,
    "psamp": _CFLOW,
    "sflow": _d("sflow", "sflow", 6343),
    "jmirror": _d("jmirror", "jmirror", 30030),
    # PCLI hands its payload to a table of its own; without a rule it stays "data".
    "pcli": _d("pcli", "pcli.cccid", extra=("pcli.payload,ip",)),
    "pcli8": _d("pcli8", "pcli.cccid", extra=("pcli.payload,ip",)),
    "pcli12": _d("pcli12", "pcli.cccid", extra=("pcli.payload,ip",)),
    "pcli20": _d("pcli20", "pcli.cccid", extra=("pcli.payload,ip",)),
    "peekremote": _d("peekremote", "peekremote", 5000),
    "cwids": _d("cwids", "cwids"),
    # RPCAP is found by Wireshark's heuristic; it offers no Decode As on TCP ports.
    "rpcap": _d(None, "rpcap"),
    # Wireshark's 5G LI (X2/X3) dissector; a tshark without it rejects the rule.
    "etsi-x2x3": _d("5gli", "5gli"),
}
# Why Wireshark cannot read the others.
NO_DISSECTOR: dict[str, str] = {
    "etsi-102232": "Wireshark has no ETSI TS 102 232 (BER-encoded PS-PDU) dissector.",
    "nokia-li": "Wireshark has no dissector for the Nokia (Alcatel-Lucent) LI shim.",
    "bcm-li": "Wireshark has no dissector for the RtBrick/Broadcom LI shim.",
    "unknown": "The encapsulation is unknown: mirrorwatch found a shim before IP by structure.",
    "pcap-over-ip": "Wireshark opens pcap files but does not dissect a pcap stream inside TCP.",
    "plain-copy": "The copies are ordinary frames re-addressed to a collector: nothing to decode.",
    "etsi-x2x3": "This tshark has no 5G LI (ETSI TS 103 221-2) dissector.",
}


@dataclass
class Explanation:
    finding: Finding
    text: str
    # True when Wireshark recognised the format in the stream's packets.
    dissected: bool
    rules: list[str] = field(default_factory=list)
    display_filter: str = ""
    command: list[str] = field(default_factory=list)


class TsharkMissing(RuntimeError):
    pass


def tshark_path() -> str:
    path = shutil.which("tshark")
    if path is None:
        raise TsharkMissing(INSTALL_HINT)
    return path


@functools.cache
def tshark_version(tshark: str) -> str:
    out = _run([tshark, "--version"]).stdout
    first = out.splitlines()[0] if out else "tshark"
    return first.split(" (Git")[0]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=TSHARK_TIMEOUT, check=False
    )


def resolve(finding_id: str, findings: Sequence[Finding]) -> Finding | None:
    """The finding with this id, or the only one whose id starts with it ("mw-" optional)."""
    want = finding_id.strip().lower()
    for f in findings:
        if f.id == want:
            return f
    prefixes = (want, "mw-" + want)
    hits = [f for f in findings if f.id.startswith(prefixes)]
    return hits[0] if len(hits) == 1 else None


def variant(finding: Finding, ev: StreamEvidence | None) -> str:
    """The protocol name Wireshark needs: PCLI variants share one mirrorwatch protocol."""
    if ev is not None and finding.protocol == "pcli":
        c = ev.facts.get("variant")
        if c:
            return str(c.most_common(1)[0][0])
    return finding.protocol


def decode_as_rules(finding: Finding, ev: StreamEvidence | None) -> list[str]:
    """tshark ``-d`` rules that make Wireshark read this stream as its format."""
    diss = DISSECTIONS.get(variant(finding, ev))
    if diss is None or diss.dissector is None or finding.transport not in ("udp", "tcp"):
        return []
    ports = [p for p in (finding.collector.port, finding.exporter.port) if p is not None]
    if any(p in diss.ports for p in ports):
        return list(diss.extra)
    if not ports:
        return list(diss.extra)
    return [f"{finding.transport}.port=={ports[0]},{diss.dissector}", *diss.extra]


def preferences(finding: Finding, ev: StreamEvidence | None) -> list[str]:
    """tshark ``-o`` settings the format needs beyond Decode As."""
    if finding.protocol != "rpcap":
        return []
    # A data connection seen without its control connection: Wireshark needs the link type.
    link = "ethernet"
    if ev is not None and ev.inner_links:
        link = ev.inner_links.most_common(1)[0][0]
    return [f"rpcap.linktype:{INNER_LINKTYPES.get(link, 1)}"]


def display_filter(finding: Finding) -> str:
    """A Wireshark display filter for the stream's outer packets (first header layer only)."""
    fam = "ipv6" if ":" in finding.exporter.ip else "ip"
    parts = [f"{fam}.src#1 == {finding.exporter.ip}", f"{fam}.dst#1 == {finding.collector.ip}"]
    t = finding.transport
    if t in ("udp", "tcp"):
        if finding.exporter.port is not None:
            parts.append(f"{t}.srcport#1 == {finding.exporter.port}")
        if finding.collector.port is not None:
            parts.append(f"{t}.dstport#1 == {finding.collector.port}")
    elif t == "gre":
        parts.append("gre")
    elif t.startswith("ip/") and t[3:].isdigit():
        parts.append(f"{'ipv6.nxt' if fam == 'ipv6' else 'ip.proto'}#1 == {t[3:]}")
    return " && ".join(parts)


def _options(rules: Sequence[str], prefs: Sequence[str]) -> list[str]:
    out: list[str] = []
    for r in rules:
        out += ["-d", r]
    for p in prefs:
        out += ["-o", p]
    return out


def user_command(
    paths: Sequence[str], rules: Sequence[str], prefs: Sequence[str], dfilter: str
) -> list[str]:
    # tshark reads one file; with several inputs the user repeats it per file.
    first = [p for p in paths if p != "-"][:1] or ["CAPTURE.pcap"]
    return ["tshark", "-n", "-r", first[0], *_options(rules, prefs), "-Y", dfilter]


def _l4_payload(linktype: int, frame: bytes, transport: str) -> int:
    """Offset of the outer transport payload in a captured frame, or 0 when it cannot be found."""
    pkt: InnerPacket | None
    if linktype == 1:
        pkt = parse_ethernet(frame)
    elif linktype in (12, 14, 101, 228, 229):
        pkt = parse_ip(frame)
    elif linktype == 113:
        pkt = parse_ip(frame, 16)
    elif linktype == 276:
        pkt = parse_ip(frame, 20)
    elif linktype in (0, 108):
        pkt = parse_ip(frame, 4)
    else:
        pkt = None
    if pkt is None or pkt.l4_offset < 0:
        return 0
    l4 = pkt.l4_offset
    if transport == "udp":
        return l4 + 8
    if transport == "tcp" and len(frame) > l4 + 12:
        return l4 + (frame[l4 + 12] >> 4) * 4
    return l4


def hexdump(data: bytes, width: int = 16, limit: int = 96) -> list[str]:
    lines = []
    for off in range(0, min(len(data), limit), width):
        chunk = data[off : off + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"  {off:04x}  {chunk.hex(' '):<{width * 3}} {text}")
    return lines


def _tshark_read(
    tshark: str, pcap: Path, rules: list[str], prefs: list[str], count: int
) -> tuple[str, list[str]]:
    """(summary lines, rules tshark accepted) for a capture."""

    def args(rs: list[str], n: int = count) -> list[str]:
        return [tshark, "-n", "-r", str(pcap), "-c", str(n), *_options(rs, prefs)]

    proc = _run(args(rules))
    # An older tshark may not know a dissector (5G LI): drop the rule it rejects and go on.
    for _ in range(len(rules)):
        m = re.search(r'Protocol "([^"]+)" isn\'t valid|Unknown protocol -- "([^"]+)"', proc.stderr)
        if proc.returncode == 0 or m is None:
            break
        rules = [r for r in rules if not r.endswith("," + (m.group(1) or m.group(2)))]
        proc = _run(args(rules))
    summary = proc.stdout if proc.returncode == 0 else proc.stderr
    return summary, rules


def _detail(tshark: str, pcap: Path, opts: list[str], diss: Dissection) -> tuple[str, int]:
    """The tree of the first packet Wireshark reads as the format ("" when none is), and how
    many packets it reads so.

    -O shows the format's header in full and the layers around it as one line each."""
    cmd = [tshark, "-n", "-r", str(pcap), *opts, "-Y", diss.marker, "-O", diss.layers]
    proc = _run(cmd)
    if proc.returncode != 0 or not proc.stdout.strip():
        return "", 0
    trees = proc.stdout.strip().split("\n\nFrame ")
    return trees[0], len(trees)


def _matches(tshark: str, pcap: Path, opts: list[str], dfilter: str) -> int:
    cmd = [
        tshark,
        "-n",
        "-r",
        str(pcap),
        *opts,
        "-Y",
        dfilter,
        "-T",
        "fields",
        "-e",
        "frame.number",
    ]
    proc = _run(cmd)
    return len(proc.stdout.split()) if proc.returncode == 0 else 0


def explain(
    finding: Finding,
    ev: StreamEvidence | None,
    paths: Sequence[str],
    packets: int = 10,
    detail: bool = True,
    keep: str | Path | None = None,
) -> Explanation:
    """Wireshark's reading of the finding's first packets, and how to reproduce it."""
    tshark = tshark_path()
    proto = variant(finding, ev)
    rules = decode_as_rules(finding, ev)
    prefs = preferences(finding, ev)
    dfilter = display_filter(finding)
    exp_ = _endpoint(finding.exporter.ip, finding.exporter.port)
    col = _endpoint(finding.collector.ip, finding.collector.port)
    out = [
        f"{finding.id}: {finding.protocol} {finding.kind} ({finding.severity}), "
        f"{exp_} -> {col} over {finding.transport}",
        f"  {finding.packets} packets, {finding.bytes} bytes, "
        f"{finding.first_seen} .. {finding.last_seen}",
    ]
    header = ev.header_example if ev is not None else ""
    if header:
        out.append(f"  mirrorwatch read: {header}")
    samples = ev.outer_samples[:packets] if ev is not None else []
    dissected = False
    used = rules
    with tempfile.TemporaryDirectory(prefix="mirrorwatch-explain-") as tmp:
        if not samples:
            out.append("")
            out.append("No packets of this stream were kept, so there is nothing to show.")
        else:
            pcap = write_capture(Path(tmp) / "stream.pcap", samples)
            if keep is not None:
                shutil.copyfile(pcap, keep)
            diss = DISSECTIONS.get(proto)
            summary, used = _tshark_read(tshark, pcap, rules, prefs, len(samples))
            tree, recognised = "", 0
            if diss is not None and detail:
                tree, recognised = _detail(tshark, pcap, _options(used, prefs), diss)
            elif diss is not None:
                recognised = _matches(tshark, pcap, _options(used, prefs), diss.marker)
            dissected = recognised > 0
            out.append("")
            how = ", ".join(used) if used else "none needed"
            out.append(
                f"{tshark_version(tshark)} reading of the first {len(samples)} packet(s) "
                f"of the stream (Decode As: {how}):"
            )
            out.extend("  " + line for line in summary.rstrip().splitlines())
            if diss is not None and dissected:
                out.append(
                    f"Wireshark reads {recognised} of these {len(samples)} packet(s) as "
                    f"{diss.layers.split(',')[-1]} (display filter: {diss.marker})."
                )
            if not dissected:
                out.append("")
                reason = NO_DISSECTOR.get(proto) or (
                    f"Wireshark did not recognise these packets as {proto}."
                )
                out.append(f"Wireshark cannot read this format: {reason}")
                out.extend(_decoded_bytes(finding, samples[0]))
                out.extend(_inner_view(tshark, ev, Path(tmp), packets))
            elif tree:
                out.append("")
                out.append("Wireshark's detail of the first packet:")
                out.extend("  " + line for line in tree.rstrip().splitlines())
    cmd = user_command(paths, used, prefs, dfilter)
    out.append("")
    out.append("To open it yourself:")
    out.append("  " + shlex.join(cmd))
    out.append(f"  Wireshark display filter: {dfilter}")
    for r in used:
        field_, _, target = r.partition(",")
        out.append(f"  Wireshark: Analyze > Decode As...: {field_} -> {target.upper()}")
    for p in prefs:
        out.append(f"  Wireshark: Edit > Preferences > Protocols: {p}")
    return Explanation(finding, "\n".join(out) + "\n", dissected, used, dfilter, cmd)


def _endpoint(ip: str, port: int | None) -> str:
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _decoded_bytes(finding: Finding, sample: tuple[float, int, bytes]) -> list[str]:
    _, lt, frame = sample
    off = _l4_payload(lt, frame, finding.transport)
    where = f"{finding.transport} payload" if off else "captured frame"
    out = [f"The header bytes mirrorwatch decoded (first packet, {where}):"]
    out.extend(hexdump(frame[off:]))
    return out


def _inner_view(tshark: str, ev: StreamEvidence | None, tmp: Path, packets: int) -> list[str]:
    """Wireshark's reading of the frames the stream carried, as mirrorwatch decapsulated them."""
    if ev is None or not ev.inner_samples:
        return []
    pcap = write_capture(tmp / "inner.pcap", inner_as_samples(ev.inner_samples[:packets]))
    proc = _run([tshark, "-n", "-r", str(pcap)])
    if proc.returncode != 0:
        return []
    out = ["", "Wireshark's reading of the frames it carried (decapsulated by mirrorwatch):"]
    out.extend("  " + line for line in proc.stdout.rstrip().splitlines())
    return out
