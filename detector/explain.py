"""Show a finding through Wireshark's eyes: an outside reading of what mirrorwatch decoded.

The first packets of the stream (kept by the engine) are written to a temporary capture and read
back through pyshark (Wireshark's dissectors, via tshark) with the Decode As rules and
preferences the format needs on that port, so the user needs no Decode As of their own.  The same
rules and a display filter that selects exactly the stream's packets are printed as a tshark
command line for the original capture.  Formats Wireshark has no dissector for are said to be so,
and the header bytes mirrorwatch decoded are shown instead, with Wireshark's reading of the frames
they carried.  Without tshark, scapy dissects the packets instead.
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

from detector.decode.frames import parse_frame
from detector.evidence import StreamEvidence
from detector.findings import Finding
from detector.protocols import registry
from detector.protocols.base import Dissection, ip_protocol
from detector.report.evidence_pcap import (
    INNER_LINKTYPES,
    evidence_comment,
    inner_as_samples,
    write_capture,
)

INSTALL_HINT = (
    "tshark (Wireshark's command-line reader) is not installed; install it with "
    "`apt-get install tshark` (Debian/Ubuntu), `dnf install wireshark-cli` (Fedora) or "
    "`brew install wireshark` (macOS)."
)
TSHARK_TIMEOUT = 60.0


# How Wireshark reads each format, and why it cannot read the others: from the protocols'
# specs (ProtocolSpec.wireshark, ProtocolSpec.no_dissector).
DISSECTIONS: dict[str, Dissection] = registry.dissections()
NO_DISSECTOR: dict[str, str] = registry.no_dissector()


@dataclass
class Explanation:
    finding: Finding
    text: str
    # True when Wireshark recognised the format in the stream's packets.
    dissected: bool
    rules: list[str] = field(default_factory=list)
    display_filter: str = ""
    command: list[str] = field(default_factory=list)


@functools.cache
def tshark_version(tshark: str) -> str:
    out = _run([tshark, "--version"]).stdout
    first = out.splitlines()[0] if out else "tshark"
    return first.split(" (Git")[0]


# The first-layer operator (ip.src#1) of display filters came with Wireshark 4.0.
LAYER_OPERATOR_SINCE = (4, 0)


def version_tuple(version: str) -> tuple[int, ...]:
    """ "TShark (Wireshark) 4.0.17." → (4, 0, 17); (0,) when there is no version number."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if m is None:
        return (0,)
    return tuple(int(g) for g in m.groups() if g is not None)


def layered_filters(tshark: str | None) -> bool:
    """Whether this tshark takes ``field#1`` (without tshark: assume a current Wireshark)."""
    if tshark is None:
        return True
    return version_tuple(tshark_version(tshark)) >= LAYER_OPERATOR_SINCE


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


def display_filter(finding: Finding, layered: bool = True) -> str:
    """A Wireshark display filter that selects exactly the finding's outer packets.

    ``layered`` uses the first-layer operator (``ip.src#1``, Wireshark 4.0 and later) so that
    addresses inside the carried packets do not match; without it (older Wireshark) a carried
    packet with the same addresses would match too."""
    at = "#1" if layered else ""
    exp_, col = finding.exporter, finding.collector
    if exp_.ip is None or col.ip is None:
        # Plain copies have no IP header of their own: the MACs are their endpoints.
        return f"eth.src{at} == {exp_.mac} && eth.dst{at} == {col.mac}"
    fam = "ipv6" if ":" in exp_.ip else "ip"
    t = finding.transport

    def one_way(src: str, dst: str, sport: int | None, dport: int | None) -> str:
        parts = [f"{fam}.src{at} == {src}", f"{fam}.dst{at} == {dst}"]
        if t in ("udp", "tcp"):
            # UDP: one finding holds every source port of the exporter (restarts, per-flow
            # ports); TCP: one connection, both ports.
            if t == "tcp" and sport is not None:
                parts.append(f"tcp.srcport{at} == {sport}")
            if dport is not None:
                parts.append(f"{t}.dstport{at} == {dport}")
        else:
            # By protocol number, not by dissector: IP fragments after the first carry no GRE
            # header but belong to the stream.
            number = ip_protocol(t)
            if number is not None:
                parts.append(f"{'ipv6.nxt' if fam == 'ipv6' else 'ip.proto'}{at} == {number}")
        return " && ".join(parts)

    forward = one_way(exp_.ip, col.ip, exp_.port, col.port)
    # TCP connections and tunnels are one finding for both directions.
    if t == "tcp" or "packets_back" in finding.evidence:
        port_back = finding.evidence.get("port_back", exp_.port)
        back = one_way(col.ip, exp_.ip, col.port, port_back if isinstance(port_back, int) else None)
        return f"({forward}) || ({back})"
    return forward


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
    pkt = parse_frame(frame, linktype)
    if pkt is None or pkt.l4_offset < 0:
        return 0
    if transport in ("udp", "tcp") and pkt.payload_offset >= 0:
        return pkt.payload_offset
    return pkt.l4_offset


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


def pyshark_options(
    rules: Sequence[str], prefs: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """tshark ``-d``/``-o`` rules as pyshark's ``decode_as`` and ``override_prefs``."""
    decode_as = dict(r.rsplit(",", 1) for r in rules if "," in r)
    override = dict(p.split(":", 1) for p in prefs if ":" in p)
    return decode_as, override


@dataclass
class WiresharkView:
    recognised: int  # packets Wireshark reads as the format
    layers: list[str]  # the first such packet's protocol layers, outermost first
    tree: list[str]  # its format layers' fields, as Wireshark names them


def read_with_pyshark(
    tshark: str, pcap: Path, rules: Sequence[str], prefs: Sequence[str], diss: Dissection
) -> WiresharkView:
    """Wireshark's reading of ``pcap`` through pyshark, with the format's Decode As rules and
    preferences, keeping the packets it recognises as the format (its marker filter)."""
    import pyshark

    decode_as, override = pyshark_options(rules, prefs)
    cap = pyshark.FileCapture(
        str(pcap),
        display_filter=diss.marker,
        decode_as=decode_as or None,
        override_prefs=override or None,
        tshark_path=tshark,
        keep_packets=False,
    )
    view = WiresharkView(0, [], [])
    wanted = set(diss.layers.split(","))
    try:
        for pkt in cap:
            view.recognised += 1
            if view.recognised > 1:
                continue
            view.layers = [layer.layer_name for layer in pkt.layers]
            for layer in pkt.layers:
                if layer.layer_name not in wanted:
                    continue
                view.tree.append(f"{layer.layer_name.upper()}:")
                for fld in layer._get_all_fields_with_alternates():
                    if fld.showname:
                        view.tree.append(f"    {fld.showname}")
    except Exception as exc:  # tshark refused a rule or died: say so, keep the rest
        view.tree.append(f"(pyshark could not read the packets: {exc})")
    finally:
        cap.close()
    return view


def explain(
    finding: Finding,
    ev: StreamEvidence | None,
    paths: Sequence[str],
    packets: int = 10,
    detail: bool = True,
    keep: str | Path | None = None,
    tshark: str | None = None,
) -> Explanation:
    """Wireshark's reading of the finding's first packets, and how to reproduce it; scapy's
    reading when tshark is not installed."""
    if tshark is None:
        tshark = shutil.which("tshark")
    rules = decode_as_rules(finding, ev)
    prefs = preferences(finding, ev)
    layered = layered_filters(tshark)
    dfilter = display_filter(finding, layered)
    out = _heading(finding, ev)
    samples = sorted(ev.outer_samples, key=lambda x: x[0])[:packets] if ev is not None else []
    dissected = False
    used = rules
    if not samples:
        out += ["", "No packets of this stream were kept, so there is nothing to show."]
    elif tshark is None:
        out += ["", INSTALL_HINT, *scapy_view(finding, ev, packets)]
    else:
        with tempfile.TemporaryDirectory(prefix="mirrorwatch-explain-") as tmp:
            view = _Reading(finding, ev, tshark, Path(tmp), samples, packets, detail)
            used, dissected = view.read(rules, prefs, keep)
            out += view.out
    cmd = user_command(paths, used, prefs, dfilter)
    out += _how_to_open(cmd, dfilter, layered, used, prefs)
    return Explanation(finding, "\n".join(out) + "\n", dissected, used, dfilter, cmd)


def _heading(finding: Finding, ev: StreamEvidence | None) -> list[str]:
    out = [
        f"{finding.id}: {finding.protocol} {finding.kind} ({finding.severity}), "
        f"{finding.exporter.label} -> {finding.collector.label} over {finding.transport}",
        f"  {finding.packets} packets, {finding.bytes} bytes, "
        f"{finding.first_seen} .. {finding.last_seen}",
    ]
    header = ev.header_example if ev is not None else ""
    if header:
        out.append(f"  mirrorwatch read: {header}")
    return out


@dataclass
class _Reading:
    """tshark's (and pyshark's) reading of a stream's kept packets, as lines for the user."""

    finding: Finding
    ev: StreamEvidence | None
    tshark: str
    tmp: Path
    samples: list[tuple[float, int, bytes]]
    packets: int
    detail: bool
    out: list[str] = field(default_factory=list)

    def read(
        self, rules: list[str], prefs: list[str], keep: str | Path | None
    ) -> tuple[list[str], bool]:
        """The Decode As rules tshark needed, and whether Wireshark dissected the format."""
        f, proto = self.finding, variant(self.finding, self.ev)
        pcap = write_capture(self.tmp / "stream", self.samples, evidence_comment(f, rules, prefs))
        if keep is not None:
            shutil.copyfile(pcap, keep)
        diss = DISSECTIONS.get(proto)
        summary, used = _tshark_read(self.tshark, pcap, rules, prefs, len(self.samples))
        view = WiresharkView(0, [], [])
        if diss is not None:
            view = read_with_pyshark(self.tshark, pcap, used, prefs, diss)
        dissected = view.recognised > 0
        how = ", ".join(used) if used else "none needed"
        self.out += [
            "",
            f"{tshark_version(self.tshark)} reading of the first {len(self.samples)} packet(s) "
            f"of the stream (Decode As: {how}):",
        ]
        self.out.extend("  " + line for line in summary.rstrip().splitlines())
        if diss is not None and dissected:
            self.out.append(
                f"Wireshark reads {view.recognised} of these {len(self.samples)} packet(s) as "
                f"{diss.layers.split(',')[-1]} (display filter: {diss.marker})."
            )
        if not dissected:
            self._undissected(proto)
        elif self.detail and view.tree:
            self.out += ["", f"Wireshark's detail of the first packet (layers: "
                         f"{' / '.join(view.layers)}):"]  # fmt: skip
            self.out.extend("  " + line for line in view.tree)
        return used, dissected

    def _undissected(self, proto: str) -> None:
        """What mirrorwatch decoded, where Wireshark has no dissector for the format."""
        reason = NO_DISSECTOR.get(proto) or f"Wireshark did not recognise these packets as {proto}."
        self.out += ["", f"Wireshark cannot read this format: {reason}"]
        if self.finding.transport != "l2":
            self.out.extend(_decoded_bytes(self.finding, self.samples[0]))
        self.out.extend(_inner_view(self.tshark, self.ev, self.tmp, self.packets))


def _how_to_open(
    cmd: list[str], dfilter: str, layered: bool, used: list[str], prefs: list[str]
) -> list[str]:
    out = [
        "",
        "To open it yourself (selects exactly this stream's packets):",
        "  " + shlex.join(cmd),
        f"  Wireshark display filter: {dfilter}",
    ]
    if not layered:
        out.append(
            "  (This tshark is older than 4.0, which has no first-layer operator (ip.src#1): the "
            "filter also matches carried packets with the same addresses.)"
        )
    for r in used:
        field_, _, target = r.partition(",")
        out.append(f"  Wireshark: Analyze > Decode As...: {field_} -> {target.upper()}")
    for p in prefs:
        out.append(f"  Wireshark: Edit > Preferences > Protocols: {p}")
    return out


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
    pcap = write_capture(tmp / "inner", inner_as_samples(ev.inner_samples[:packets]))
    proc = _run([tshark, "-n", "-r", str(pcap)])
    if proc.returncode != 0:
        return []
    out = ["", "Wireshark's reading of the frames it carried (decapsulated by mirrorwatch):"]
    out.extend("  " + line for line in proc.stdout.rstrip().splitlines())
    return out


# Formats scapy dissects, by mirrorwatch protocol name: (module, class) of the transport payload.
SCAPY_LAYERS: dict[str, tuple[str, str]] = {
    "tzsp": ("scapy.contrib.tzsp", "TZSP"),
    "vxlan": ("scapy.layers.vxlan", "VXLAN"),
    "geneve": ("scapy.contrib.geneve", "GENEVE"),
    "netflow-v1": ("scapy.layers.netflow", "NetflowHeader"),
    "netflow-v5": ("scapy.layers.netflow", "NetflowHeader"),
    "netflow-v9": ("scapy.layers.netflow", "NetflowHeader"),
    "ipfix": ("scapy.layers.netflow", "NetflowHeader"),
}


def _scapy_frame(linktype: int, data: bytes) -> object:
    # The layer modules register their link types with scapy's configuration when imported.
    import scapy.layers.dot11
    import scapy.layers.inet
    import scapy.layers.inet6
    import scapy.layers.l2
    import scapy.layers.ppp  # noqa: F401
    from scapy.config import conf
    from scapy.packet import Raw

    cls = conf.l2types.get(linktype)
    return cls(data) if cls is not None else Raw(data)


def scapy_view(finding: Finding, ev: StreamEvidence | None, packets: int) -> list[str]:
    """scapy's dissection of the stream's first packets and of the frames they carried."""
    import importlib

    from scapy.packet import Packet

    if ev is None:
        return []
    out = ["", "scapy's reading of the first packets of the stream:"]
    for _, lt, frame in ev.outer_samples[:packets]:
        out.append("  " + _scapy_frame(lt, frame).summary())  # type: ignore[attr-defined]
    where = SCAPY_LAYERS.get(finding.protocol)
    if where is not None and ev.outer_samples:
        _, lt, frame = ev.outer_samples[0]
        off = _l4_payload(lt, frame, finding.transport)
        if off:
            cls = getattr(importlib.import_module(where[0]), where[1])
            pkt: Packet = cls(frame[off:])
            out.append(f"scapy's reading of the first packet's {finding.transport} payload:")
            out.extend("  " + line for line in pkt.show(dump=True).splitlines())
    if ev.inner_samples:
        from detector.report.evidence_pcap import INNER_LINKTYPES, LINKTYPE_USER0

        out.append("")
        out.append("scapy's reading of the frames it carried (decapsulated by mirrorwatch):")
        for _, link, data in ev.inner_samples[:packets]:
            frame = _scapy_frame(INNER_LINKTYPES.get(link, LINKTYPE_USER0), data)
            out.append("  " + frame.summary())  # type: ignore[attr-defined]
    return out
