"""Syslog carrying connection logs: a router that logs every connection it forwards exports the
same metadata as NetFlow, one text line per connection.

Framing (RFC 5424/5426/6587, RFC 3164): ``<PRI>`` (0-191) then an RFC 5424 header (``1 TIMESTAMP
HOST APP PROCID MSGID SD``) or a BSD one (``Mmm dd hh:mm:ss host tag:``), or anything a device
writes after its PRI.  UDP: one datagram, sometimes several lines.  TCP: octet counting (``LEN
<PRI>...``) or one message per line (LF or NUL).

Every syslog message validates; a message *is a connection log* when its text names a 5-tuple in
a dialect recognised here:

- RouterOS firewall ``log=yes``: ``proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, len 60``
- iptables/nftables ``LOG``, ulogd2 LOGEMU/NFCT: ``SRC=... DST=... PROTO=TCP SPT=... DPT=...``
- ulogd2 JSON: ``"src_ip": ..., "dest_ip": ..., "src_port": ..., "dest_port": ...``
- Cisco ASA/FTD ``%ASA-6-302013 Built outbound TCP connection N for if:ip/port (...) to if:ip/port``
- Cisco IOS NAT ``%IPNAT-6-CREATED: tcp inside-local inside-global outside-local outside-global``
- Juniper SRX ``RT_FLOW_SESSION_CREATE``, text or structured data
- conntrack events: ``src=... dst=... sport=... dport=...``

Each such tuple becomes a RecordedFlow; tuples of the exporter's own connections are counted
apart (``facts["own_connections"]``).  The policy decides from the share of lines that carry
other hosts' tuples: a daemon's ordinary log is no flow export.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from detector.protocols.base import (
    Decoded,
    Decoder,
    Kind,
    PacketContext,
    ProtocolSpec,
    RecordedFlow,
    Transport,
)
from detector.protocols.li_common import FramedStreamDecoder, StreamState

if TYPE_CHECKING:
    import numpy.typing as npt

NAME = "syslog-connlog"
MAX_PRI = 191
# Longest line read for tuples (longer lines are cut), and longest line waited for over TCP.
MAX_LINE = 8192
MAX_TCP_LINE = 65536
MAX_LINES_PER_DATAGRAM = 64
PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58}
PROTOCOLS |= {"sctp": 132, "udplite": 136}

_PRI = re.compile(rb"<(\d{1,3})>")
_OCTET_COUNT = re.compile(rb"([1-9]\d{0,5}) <")
_RFC5424 = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_BSD = re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+) ([^:\[\s]+)")

_IP4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IP6 = r"[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+"
_IP = rf"(?:{_IP4}|{_IP6})"


class _Lazy:
    """A pattern compiled on its first search: the connection-log patterns below take
    milliseconds to compile, at every start, and most captures carry no connection log."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern[str] | None = None

    def search(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern)
        return self._compiled.search(text)


# RouterOS: "proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443" and "[2001:db8::5]:51234->[...]:443".
_ROUTEROS = _Lazy(
    rf"proto (\w+)(?: \([^)]*\))?, \[?({_IP4}|{_IP6}?)\]?:(\d+)->\[?({_IP4}|{_IP6}?)\]?:(\d+)"
)
_ROUTEROS_NOPORT = _Lazy(rf"proto (\w+)(?: \([^)]*\))?, ({_IP4})->({_IP4})")
# iptables/nftables LOG, ulogd2 LOGEMU and NFCT (ORIG: ... REPLY: ...): the first tuple.
_KV_SRC = _Lazy(rf"\bSRC=({_IP})\s")
_KV_DST = _Lazy(rf"\bDST=({_IP})\s")
_KV_PROTO = _Lazy(r"\bPROTO=(\w+)")
_KV_SPT = _Lazy(r"\bSPT=(\d+)")
_KV_DPT = _Lazy(r"\bDPT=(\d+)")
# conntrack -E style, lower case.
_CT = _Lazy(rf"\b(tcp|udp|icmp|sctp)\s+\d+\s+(?:\d+\s+)?(?:\w+\s+)?src=({_IP}) dst=({_IP})")
_CT_PORTS = _Lazy(r"\bsport=(\d+) dport=(\d+)")
# ulogd2 JSON output.
_JSON_FIELD = {
    k: _Lazy(rf'"{k}"\s*:\s*"?([0-9A-Fa-f:.]+)"?')
    for k in ("src_ip", "dest_ip", "src_port", "dest_port", "ip.protocol")
}
# Cisco ASA / FTD connection built/teardown and translations.
_ASA = _Lazy(
    r"%(?:ASA|FTD|PIX)-\d-(30201[3-8]|30201[0-2]|302020|302021): (Built|Teardown) "
    rf"(?:(inbound|outbound) )?(TCP|UDP|ICMP|GRE|SCTP) connection \S+ "
    rf"for [^:\s]+:({_IP})/(\d+)(?: \([^)]*\))? to [^:\s]+:({_IP})/(\d+)"
)
# Cisco IOS "ip nat log translations syslog".
_IPNAT = _Lazy(
    rf"%IPNAT-\d-(?:CREATED|DELETED): (tcp|udp|icmp) ({_IP4}):(\d+) ({_IP4}):(\d+) "
    rf"({_IP4}):(\d+) ({_IP4}):(\d+)"
)
# Cisco IOS zone firewall audit trail.
_IOS_FW = _Lazy(
    rf"%FW-\d-SESS_AUDIT_TRAIL(?:_START)?: \w+ (tcp|udp|icmp) session: initiator "
    rf"\(({_IP4}):(\d+)\) -- responder \(({_IP4}):(\d+)\)"
)
# Juniper SRX, text ("session created 10.0.0.5/51234->1.2.3.4/443 ...") and structured data.
_JUNOS_TEXT = _Lazy(
    rf"RT_FLOW_SESSION_(?:CREATE|CLOSE|DENY)\S*: session \w+ ({_IP})/(\d+)->({_IP})/(\d+)"
    r"(?:.*? (\d{1,3}) [\w-]+ [\w-]+ [\w-]+)?"
)
_JUNOS_SD = {
    k: _Lazy(rf'\b{k}="([^"]*)"')
    for k in ("source-address", "source-port", "destination-address", "destination-port")
}
_JUNOS_PROTO = _Lazy(r'\bprotocol-id="(\d+)"')


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _proto(text: str) -> int:
    if text.isdigit():
        return int(text) & 0xFF
    return PROTOCOLS.get(text.lower(), 0)


def _port(text: str) -> int:
    n = int(text) if text.isdigit() else -1
    return n if 0 <= n <= 0xFFFF else -1


def _flow(src: str, dst: str, proto: int, sport: str, dport: str) -> RecordedFlow | None:
    a, b = _ip(src), _ip(dst)
    sp, dp = _port(sport), _port(dport)
    if a is None or b is None or sp < 0 or dp < 0 or a == b:
        return None
    # One line names one connection: the host tallies count logged connections.
    return RecordedFlow(a, b, proto, sp, dp, packets=1)


Named = tuple[str, RecordedFlow]  # (dialect, 5-tuple)


def _named(dialect: str, f: RecordedFlow | None) -> Named | None:
    return None if f is None else (dialect, f)


def _routeros(msg: str) -> Named | None:
    if m := _ROUTEROS.search(msg):
        return _named("routeros", _flow(m[2], m[4], _proto(m[1]), m[3], m[5]))
    return None


def _routeros_noport(msg: str) -> Named | None:
    if m := _ROUTEROS_NOPORT.search(msg):
        return _named("routeros", _flow(m[2], m[3], _proto(m[1]), "0", "0"))
    return None


def _kv_log(msg: str) -> Named | None:
    """iptables/nftables LOG and ulogd2 (LOGEMU, NFCT): KEY=value pairs."""
    src, dst = _KV_SRC.search(msg), _KV_DST.search(msg)
    proto = _KV_PROTO.search(msg)
    if not (src and dst and proto):
        return None
    spt, dpt = _KV_SPT.search(msg), _KV_DPT.search(msg)
    f = _flow(src[1], dst[1], _proto(proto[1]), spt[1] if spt else "0", dpt[1] if dpt else "0")
    if "ORIG:" in msg or "[NEW]" in msg or "[DESTROY]" in msg:
        return _named("ulogd2-nfct", f)
    return _named("ulogd2" if "ulogd" in msg else "iptables-log", f)


def _asa(msg: str) -> Named | None:
    if not (m := _ASA.search(msg)):
        return None
    # "for" names the outside end of an outbound connection and the initiator of an inbound
    # one; the initiator goes first.
    outside, oport, inside, iport = m[5], m[6], m[7], m[8]
    if m[3] == "outbound":
        return _named("cisco-asa", _flow(inside, outside, _proto(m[4]), iport, oport))
    return _named("cisco-asa", _flow(outside, inside, _proto(m[4]), oport, iport))


def _ios_nat(msg: str) -> Named | None:
    if m := _IPNAT.search(msg):
        return _named("cisco-ios-nat", _flow(m[2], m[8], _proto(m[1]), m[3], m[9]))
    return None


def _ios_fw(msg: str) -> Named | None:
    if m := _IOS_FW.search(msg):
        return _named("cisco-ios-fw", _flow(m[2], m[4], _proto(m[1]), m[3], m[5]))
    return None


def _junos_text(msg: str) -> Named | None:
    if m := _JUNOS_TEXT.search(msg):
        proto = int(m[5]) if m[5] else 0
        return _named("juniper-rt-flow", _flow(m[1], m[3], proto, m[2], m[4]))
    return None


def _junos_sd(msg: str) -> Named | None:
    sd = {k: r.search(msg) for k, r in _JUNOS_SD.items()}
    if not all(sd.values()):
        return None
    p = _JUNOS_PROTO.search(msg)
    g = {k: v[1] for k, v in sd.items() if v}
    f = _flow(
        g["source-address"], g["destination-address"], int(p[1]) if p else 0,
        g["source-port"], g["destination-port"],
    )  # fmt: skip
    return _named("juniper-rt-flow", f)


def _conntrack(msg: str) -> Named | None:
    if not (m := _CT.search(msg)):
        return None
    ports = _CT_PORTS.search(msg)
    f = _flow(m[2], m[3], _proto(m[1]), *(ports.groups() if ports else ("0", "0")))
    return _named("conntrack", f)


def _ulogd_json(msg: str) -> Named | None:
    j = {k: r.search(msg) for k, r in _JSON_FIELD.items()}
    if not (j["src_ip"] and j["dest_ip"]):
        return None
    f = _flow(
        j["src_ip"][1], j["dest_ip"][1],
        _proto(j["ip.protocol"][1]) if j["ip.protocol"] else 0,
        j["src_port"][1] if j["src_port"] else "0",
        j["dest_port"][1] if j["dest_port"] else "0",
    )  # fmt: skip
    return _named("ulogd2-json", f)


Parser = Callable[[str], Named | None]
# In order: (two words a message must hold for the parsers to be tried, the parsers).  The
# first parser that finds a tuple names the dialect.
_DIALECTS: tuple[tuple[str, str, tuple[Parser, ...]], ...] = (
    ("->", "proto ", (_routeros, _routeros_noport)),
    ("SRC=", "DST=", (_kv_log,)),
    ("%", "", (_asa, _ios_nat, _ios_fw)),
    ("RT_FLOW_SESSION", "", (_junos_text, _junos_sd)),
    ("src=", "dst=", (_conntrack,)),
    ('"src_ip"', "", (_ulogd_json,)),
)


def connection_tuple(msg: str) -> Named | None:
    """(dialect, 5-tuple) named by one log message, or None when it names no connection."""
    for first, second, parsers in _DIALECTS:
        if first in msg and second in msg:
            for parse in parsers:
                if found := parse(msg):
                    return found
    return None


def syslog_header(line: bytes) -> tuple[int, str, str] | None:
    """(PRI, header style, message text) of one syslog line, or None if it has no valid PRI."""
    m = _PRI.match(line)
    if m is None or int(m[1]) > MAX_PRI or (len(m[1]) > 1 and m[1][0:1] == b"0"):
        return None
    text = line[m.end() : m.end() + MAX_LINE].decode("utf-8", "replace")
    if h := _RFC5424.match(text):
        return int(m[1]), "rfc5424", text[h.end() :]
    if _BSD.match(text):
        return int(m[1]), "bsd", text
    return int(m[1]), "other", text


def _pri_prefilter(head: npt.NDArray[np.uint8], off: int) -> npt.NDArray[np.bool_]:
    return _pri_window(head[:, off : off + 5])


def _pri_window(c: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Rows of 5 bytes that begin with a PRI ("<" 1-3 digits ">")."""
    digit = (c >= 0x30) & (c <= 0x39)
    close = c == ord(">")
    return (
        (c[:, 0] == ord("<"))
        & digit[:, 1]
        & (close[:, 2] | (digit[:, 2] & close[:, 3]) | (digit[:, 2] & digit[:, 3] & close[:, 4]))
    )


SYSLOG_CONNLOG = ProtocolSpec(
    "syslog-connlog",
    "records",
    sid=47,
    doc="syslog-connlog.md",
    samples=("syslog-connlog.pcap", "syslog-connlog-tcp.pcap"),
    log="mixed",
)


class _Lines:
    """Turns syslog lines into one Decoded."""

    name: ClassVar[str] = NAME
    emits = (SYSLOG_CONNLOG,)
    kind: ClassVar[Kind] = "flow-export"

    def decoded(self, lines: list[bytes], ctx: PacketContext, framing: str) -> Decoded | None:
        records: list[RecordedFlow] = []
        dialects: list[str] = []
        own = 0
        first: tuple[int, str, str] | None = None
        for line in lines[:MAX_LINES_PER_DATAGRAM]:
            parsed = syslog_header(line)
            if parsed is None:
                continue
            first = first or parsed
            found = connection_tuple(parsed[2])
            if found is None:
                continue
            dialect, flow = found
            if ctx.src in (flow.src, flow.dst):
                own += 1
                continue
            records.append(flow)
            dialects.append(dialect)
        if first is None:
            return None
        pri, style, _ = first
        facts: dict[str, object] = {
            "header": style,
            "facility": pri >> 3,
            "lines": len(lines),
            "connection_lines": len(records),
        }
        if dialects:
            facts["dialect"] = sorted(set(dialects))
        if own:
            facts["own_connections"] = own
        what = (
            f"{dialects[0]} connection log, {records[0].src}:{records[0].sport} -> "
            f"{records[0].dst}:{records[0].dport}"
            if records
            else "no connection tuple"
        )
        head = lines[0][:24].decode("ascii", "replace")
        return Decoded(
            protocol=NAME,
            kind=self.kind,
            header=f"{head!r}: syslog ({style} header, {framing}), PRI {pri}, {what}",
            records=records,
            facts=facts,
            # A PRI alone is a weak signature; the policy asks for many connection lines.
            strength=0.6 if records else 0.3,
        )


class SyslogUdpDecoder(_Lines, Decoder):
    transport: ClassVar[Transport] = "udp"
    ports: ClassVar[frozenset[int]] = frozenset({514})

    first_bytes = frozenset(b"<")
    second_bytes = frozenset(b"0123456789")

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        return _pri_prefilter(head, 0) & (length >= 6)

    def decode(self, payload: bytes, ctx: PacketContext, state: object | None) -> Decoded | None:
        lines = [x for x in payload.replace(b"\0", b"\n").split(b"\n") if x.strip()]
        if not lines or _PRI.match(lines[0]) is None:
            return None
        return self.decoded(lines, ctx, "UDP datagram")


class SyslogTcpDecoder(_Lines, FramedStreamDecoder):
    ports: ClassVar[frozenset[int]] = frozenset({514, 601, 6514})
    priority: ClassVar[int] = 60

    first_bytes = frozenset(b"<0123456789")  # PRI, or an octet count
    second_bytes = frozenset(b"0123456789 ")

    def prefilter(
        self, head: npt.NDArray[np.uint8], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        ok = _pri_prefilter(head, 0)
        # Octet counting: 1-6 digits, a space, then the PRI.
        digit = (head[:, :8] >= 0x30) & (head[:, :8] <= 0x39)
        run = np.cumprod(digit, axis=1).sum(axis=1)
        rows = np.flatnonzero((run >= 1) & (run <= 6))
        rows = rows[head[rows, run[rows]] == 0x20]
        if len(rows):
            cols = (run[rows] + 1)[:, None] + np.arange(5)
            ok[rows] |= _pri_window(head[rows[:, None], cols])
        return ok & (length >= 6)

    def new_state(self) -> StreamState:
        return StreamState()

    def pdu_length(self, buf: bytearray, state: StreamState) -> int | None:
        if m := _OCTET_COUNT.match(buf[:8]):
            return m.end() - 1 + int(m[1])
        if buf[:1] != b"<":
            return -1
        end = _line_end(buf)
        if end < 0:
            return None if len(buf) < MAX_TCP_LINE else -1
        return end + 1

    def parse(self, pdu: bytes, state: StreamState) -> Decoded | None:
        if m := _OCTET_COUNT.match(pdu):
            line, framing = pdu[m.end() - 1 :], "TCP, octet counting"
        else:
            line, framing = pdu[:-1], "TCP, one message per line"
        ctx = PacketContext(src=state.src)
        return self.decoded([line.rstrip(b"\r\n")], ctx, framing)

    def peek(self, head: bytes, state: StreamState) -> Decoded | None:
        m = _OCTET_COUNT.match(head)
        line = head[m.end() - 1 :] if m else head
        if syslog_header(line) is None:
            return None
        return self.decoded([line], PacketContext(src=state.src), "TCP")


def _line_end(buf: bytearray) -> int:
    lf, nul = buf.find(b"\n"), buf.find(b"\0")
    ends = [x for x in (lf, nul) if x >= 0]
    return min(ends) if ends else -1


DECODERS: list[Decoder] = [SyslogUdpDecoder(), SyslogTcpDecoder()]
