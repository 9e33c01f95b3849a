"""Opinions: turn stream evidence into findings with a kind, a severity and reasons.

Decoding says what a stream *is*; this module says what it *means* for the router owner.  All
thresholds live here (and in the config), none in the decoders.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detector import canary
from detector.detection import Detection
from detector.evidence import HostTally, StreamEvidence
from detector.findings import Endpoint, Finding, WatchedHost
from detector.limits import Limits
from detector.policy.reasons import Reason, add
from detector.policy.scores import Scores, certainty, identification
from detector.protocols import correlated, registry
from detector.protocols.base import PacketContext
from detector.severity import SEVERITY_ORDER

# Formats whose packets are copies by construction: nothing else is ever sent that way.
COPY_BY_CONSTRUCTION = registry.with_role("copy")
# Formats recognised without a magic number (or, for PCAP-over-IP, by a file magic anyone may
# send): one matching packet proves nothing, so their findings climb a ladder of evidence.
GUESSED = registry.guessed()
# rpcap control messages that, seen together, are a remote capture being opened and started.
RPCAP_SESSION = frozenset({"open", "startcap"})
# Encapsulations used both for mirrors and for ordinary overlays / L2 tunnels.
# Plain copies too: one packet seen twice towards two MACs may also be a packet routed past a
# span that sees both sides of the router.
AMBIGUOUS = registry.with_role("ambiguous")
# The ports each protocol is usually sent to (a finding elsewhere says so).
DEFAULT_PORTS: dict[str, tuple[int, ...]] = registry.usual_ports()
MAX_WATCHED = 25
CHECKSUMS = ("right", "zero", "wrong")
KEEPALIVE_PDUS = frozenset({"keepalive", "keepalive-ack", "keepalive-response"})
# Facts shown elsewhere in the reasons.
HIDDEN_FACTS = frozenset({"prefix", "steering"})
# Text logs that are flow exports only when enough of their lines name other hosts' connections.
CONNECTION_LOGS = registry.logs("mixed")
# The streams found by correlation rather than decoded (detector.protocols.correlated).
ENCRYPTED_COPY = correlated.ENCRYPTED_COPY.name
TEE_COPY = correlated.TEE_COPY.name


@dataclass(repr=False, eq=False)
class Thresholds:
    """Tunable numbers of the verdicts (overridable from the config file)."""

    # Ambiguous encapsulations: share of inner conversations seen both ways to call it a mirror.
    both_way_share: float = 0.25
    # Below this many carried packets an ambiguous stream is "too little traffic to decide".
    min_decide_packets: int = 20
    # Targeted-intercept pattern: this share of the stream on at most `targeted_hosts` hosts...
    targeted_share: float = 0.8
    targeted_hosts: int = 3
    # ...while the link carries at least this many hosts.
    targeted_link_hosts: int = 20
    # Unknown encapsulation: one offset must hold for this share of a stream's packets...
    fixed_offset_share: float = 0.8
    # ...and the stream must have at least this many such packets.
    min_unknown_packets: int = 5
    # Copy matching: with at least this many carried packets checked, this share matching
    # native packets proves the stream carries copies.
    min_copy_checks: int = 3
    copy_match_share: float = 0.5
    # Encrypted copies: correlation of byte rates for medium and high, and the range of copy
    # bytes per original byte a copy can have (headers added; a snap length cuts it below 1).
    encrypted_medium_correlation: float = 0.7
    encrypted_high_correlation: float = 0.9
    encrypted_min_ratio: float = 0.5
    encrypted_max_ratio: float = 4.0
    # A copy gets nothing back but acknowledgements and keep-alives; a tunnel that returns at
    # least this share of the bytes it sends carries two-way traffic to be delivered (a VPN
    # whose clear side the span also sees) and is never high.
    encrypted_max_back_share: float = 0.25
    # Connection logs: this share of a log stream's messages, and at least this many, must name
    # connections of hosts other than the exporter.
    connlog_share: float = 0.2
    min_connlog_lines: int = 5
    # Formats without a magic number: below this many validated packets a finding stays low...
    guess_min_packets: int = 8
    # ...and so it does unless its carried packets name this many inner hosts and conversations
    # (the spread of traffic a copy shows, not one repeated control exchange).
    guess_min_hosts: int = 3
    guess_min_conversations: int = 2
    # PCAP-over-IP: record times further than this from when they were sent (seconds) are a
    # capture file being transferred, not a live capture stream.
    capture_time_slack: float = 3600.0


@dataclass(repr=False, eq=False)
class PolicyContext:
    thresholds: Thresholds = field(default_factory=Thresholds)
    # What the engine looks at and when a stream is judged at all (detector.detection).
    detection: Detection = field(default_factory=Detection)
    link_hosts: int = 0
    # From the config (detector.config): a reason when a finding is expected, else None.
    allow: Callable[[Finding], str | None] | None = None
    # Where the users are: targets of a targeted pattern are looked for among these hosts.
    home_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    routers: set[str] = field(default_factory=set)
    # Memory budgets of the engines that gather the evidence (the config's [limits]).
    limits: Limits = field(default_factory=Limits)

    def is_home(self, host: str) -> bool:
        if not self.home_networks:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self.home_networks)


# A damaged capture can carry any timestamp: show it clamped to what ISO 8601 can hold.
_TS_MAX = 253402300799.0  # 9999-12-31T23:59:59Z


def _iso(ts: float) -> str:
    ts = min(max(ts, 0.0), _TS_MAX) if ts == ts else 0.0  # NaN → the epoch
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def group_key(s: StreamEvidence) -> tuple[str, str, str, int, str]:
    """One finding per (format, exporter, collector, collector port): the exporter's source
    port is not part of a stream's identity (it changes with restarts, or per inner flow)."""
    family = "flow-export" if s.kind == "flow-export" else s.protocol
    if s.transport == "tcp":
        # Both directions of one TCP connection are one stream (content one way, acks and
        # keep-alive answers the other).
        a, b = sorted((f"{s.src}|{s.sport}", f"{s.dst}|{s.dport}"))
        return (family, a, b, 0, s.transport)
    if s.transport == "l2":
        # Plain copies have no addresses of their own: the MACs are their endpoints.
        return (family, s.src_mac or "", s.dst_mac or "", 0, s.transport)
    return (family, s.src or _sole_exporter(s), s.dst, s.dport, s.transport)


def _sole_exporter(s: StreamEvidence) -> str:
    """The exporter of an aggregate of streams shed past the per-collector budget, when they
    all came from one address (one sender spread over many source ports): its streams and the
    aggregate are then one finding."""
    top = s.extra.get("top_exporters")
    if s.extra.get("exporters_counted") == 1 and isinstance(top, list) and top:
        return str(top[0]).split(" ", 1)[0]
    return s.src


def merge(streams: list[StreamEvidence]) -> StreamEvidence:
    """Fold several directed streams of one finding into one evidence record."""
    if len(streams) == 1:
        return streams[0]
    # The direction that carries the most defines exporter and collector (for TCP, the
    # content; elsewhere, the stream that validated most).
    base = max(streams, key=lambda s: s.bytes if s.transport == "tcp" else s.validated)
    src = base.src or _sole_exporter(base)
    ends = PacketContext(src, base.dst, base.sport, base.dport, ts=base.first_seen)
    m = StreamEvidence.begun(
        ends, base.key, base.protocol, base.kind, base.transport, base.flow_key, base.direction
    )
    for s in sorted(streams, key=lambda s: -s.validated):
        m.absorb(s)
    protos = Counter(s.protocol for s in streams for _ in range(max(1, s.validated)))
    m.protocol = protos.most_common(1)[0][0]
    if base.transport == "tcp":
        # What flowed back on the connection (acks, answers), for outputs that count each
        # direction apart (EVE's toserver/toclient).
        back = [s for s in streams if (s.src, s.sport) != (base.src, base.sport)]
        m.extra["packets_back"] = sum(s.packets for s in back)
        m.extra["bytes_back"] = sum(s.bytes for s in back)
    m.extra["streams"] = len(streams)
    m.extra["source_ports"] = sorted({s.sport for s in streams})[:16]
    return m


def finding_id(protocol_family: str, src: str, dst: str, dport: int, transport: str) -> str:
    raw = f"{protocol_family}|{src}|{dst}|{dport}|{transport}".encode()
    return "mw-" + hashlib.sha256(raw).hexdigest()[:16]


def _is_group_address(name: str, t: HostTally) -> bool:
    """Multicast and broadcast addresses (IP or MAC): nobody's traffic is being watched there."""
    if t.named_by_mac:
        first = name[:2]
        return all(c in "0123456789abcdefABCDEF" for c in first) and bool(int(first, 16) & 1)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_multicast or ip.is_unspecified or str(ip) == "255.255.255.255"


def _busiest(kv: tuple[str, HostTally]) -> tuple[float, float, str]:
    return -kv[1].packets, -kv[1].bytes, kv[0]


def _watched(table: dict[str, HostTally], total: float) -> list[WatchedHost]:
    # The busiest hosts, group addresses passed over as they come: only the first few of a
    # table of thousands are shown, and parsing or sorting every address of a busy link took
    # longer than the rest of the verdicts.
    want = MAX_WATCHED
    while True:
        ranked = heapq.nsmallest(want, table.items(), key=_busiest)
        shown = [(k, t) for k, t in ranked if not _is_group_address(k, t)][:MAX_WATCHED]
        if len(shown) == MAX_WATCHED or len(ranked) < want:
            break
        want *= 2
    out = []
    denom = total or sum(t.packets for t in table.values()) or 1.0
    for name, t in shown:
        is_ip = not t.named_by_mac
        out.append(
            WatchedHost(
                ip=name if is_ip else None,
                mac=t.mac if t.mac else (None if is_ip else name),
                packets=round(t.packets),
                bytes=round(t.bytes),
                share=round(min(1.0, t.packets / denom), 4),
            )
        )
    return out


def _off_port(s: StreamEvidence) -> bool:
    usual = DEFAULT_PORTS.get(s.protocol)
    return bool(usual) and s.transport in ("udp", "tcp") and s.dport not in usual  # type: ignore[operator]


def _never_leaves(s: StreamEvidence) -> bool:
    """Exporter and collector are one host: loopback, or the same address both ends."""
    if not s.src or not s.dst:
        return False
    if s.src == s.dst:
        return True
    try:
        return ipaddress.ip_address(s.dst).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------- features


@dataclass(repr=False, eq=False, frozen=True)
class Features:
    """The numbers from a stream's evidence that its verdict is decided from."""

    share: float  # of decoded packets, the share that validated
    checked: int  # carried packets checked against the link's own traffic
    matched: int  # ...and seen there natively
    copies_proven: bool  # enough checked, enough matched
    both: int  # inner conversations seen both ways inside this one outer direction
    convs: int  # inner conversations
    both_ways: bool  # enough of them both ways to call the stream copies
    returning: int  # packets of the format flowing back from collector to exporter


def features(s: StreamEvidence, th: Thresholds, returning: int) -> Features:
    checked = int(s.extra.get("copies_checked", 0) or 0)  # type: ignore[call-overload]
    matched = int(s.extra.get("copies_matched", 0) or 0)  # type: ignore[call-overload]
    both, convs = s.both_way_conversations()
    return Features(
        share=s.validated / s.decoded if s.decoded else 0.0,
        checked=checked,
        matched=matched,
        copies_proven=checked >= th.min_copy_checks and matched >= th.copy_match_share * checked,
        both=both,
        convs=convs,
        both_ways=convs > 0 and both >= max(1, th.both_way_share * convs),
        returning=returning,
    )


Evidence = dict[str, int | float | str | bool | list[str] | list[int]]
INITIAL_SEVERITY = {"mirror": "high", "intercept": "critical", "flow-export": "medium"}


@dataclass(repr=False, eq=False)
class Verdict:
    """A verdict being reached: kind and severity so far, the reasons (codes and their figures)
    and the evidence figures the finding shows."""

    kind: str
    severity: str
    evidence: Evidence
    reasons: list[Reason] = field(default_factory=list)
    never_leaves: bool = False

    def say(self, code: str, **params: object) -> None:
        self.reasons.append(Reason(code, params))

    @property
    def copies(self) -> bool:
        """Judged as a stream of copies (mirror or intercept)."""
        return self.kind in ("mirror", "intercept")


# A step of the verdict: reads the stream and its features, adds reasons and evidence, may move
# kind and severity; False when the stream is not worth a finding after all.
Step = Callable[[StreamEvidence, Features, PolicyContext, Verdict], bool]


# ---------------------------------------------------------------------------- what it is


def _volume(s: StreamEvidence) -> dict[str, object]:
    src, dst = s.src or s.src_mac or "?", s.dst or s.dst_mac or "?"
    return {
        "packets": s.packets, "nbytes": s.bytes, "src": src, "dst": dst,
        "first": _iso(s.first_seen), "last": _iso(s.last_seen),
    }  # fmt: skip


def _describe(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """What the stream is: its leading bytes, what validated, how much, between whom."""
    if s.header_example:
        v.say("leading-bytes", header=s.header_example)
    volume = _volume(s)
    if s.protocol == ENCRYPTED_COPY:
        v.say("encrypted-volume", tcp=s.transport == "tcp", **volume)
    elif s.protocol == TEE_COPY:
        v.say("tee-sightings", validated=s.validated, **volume)
    else:
        v.say(
            "validated", validated=s.validated, decoded=s.decoded, protocol=s.protocol,
            tcp=s.transport == "tcp", sampled=s.decoded < s.packets, **volume,
        )  # fmt: skip
    return True


def _copy_match(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Carried packets matched to originals seen natively on the link."""
    if x.checked and x.matched:
        v.say(
            "copies-matched" if x.copies_proven else "copies-partly-matched",
            matched=x.matched, checked=x.checked, delay=s.extra.get("copy_delay_ms"),
            proven=x.copies_proven,
        )  # fmt: skip
    elif x.checked:
        v.say("copies-unmatched", checked=x.checked)
    if x.checked:
        v.evidence["copy_match_share"] = round(x.matched / x.checked, 4)
    return True


def _port(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    usual = DEFAULT_PORTS.get(s.protocol)
    if not usual or s.transport not in ("udp", "tcp"):
        return True
    if s.dport in usual:
        v.say("usual-port", transport=s.transport, port=s.dport, protocol=s.protocol)
    else:
        v.say("off-port", transport=s.transport, port=s.dport, usual=list(usual))
    return True


def _carried(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Figures of the carried packets, and a reason when their headers are odd."""
    if not s.carried_packets:
        v.evidence["return_packets"] = x.returning
        return True
    ev = v.evidence
    ev["carried_packets"] = round(s.carried_packets)
    ev["inner_conversations"] = x.convs
    ev["inner_both_directions"] = x.both
    third = 1.0 - s.inner_is_outer / max(1, s.validated)
    ev["inner_third_party_share"] = round(max(0.0, third), 4)
    if s.carried_unparsed:
        # Carried frames that were neither IP nor a frame with addresses (ERSPAN III frame
        # type 7, 802.11 management, truncated copies).
        ev["carried_unparsed"] = s.carried_unparsed
    for k, n in sorted(s.carried_checks.items()):
        ev[f"carried_{k}"] = n
    right, zero, wrong = (s.carried_checks.get(f"ipv4_checksum_{k}", 0) for k in CHECKSUMS)
    group = s.carried_checks.get("group_source_mac", 0)
    if zero or wrong or group:
        v.say("carried-headers-odd", right=right, zero=zero, wrong=wrong, group=group)
    ev["return_packets"] = x.returning
    return True


def _header_layout(s: StreamEvidence) -> tuple[int, str]:
    """Which bytes of an unknown header stay constant across the stream (an id) and which vary
    (a counter or timestamp), from the prefixes seen: (distinct prefixes, bytes with ??)."""
    prefixes = [bytes.fromhex(p) for p in s.facts.get("prefix", {}) if p]
    if not prefixes:
        return 0, ""
    width = min(len(p) for p in prefixes)
    const = [i for i in range(width) if len({p[i] for p in prefixes}) == 1]
    shown = " ".join(f"{prefixes[0][i]:02x}" if i in const else "??" for i in range(width))
    return len(prefixes), shown


def _worth_a_finding(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Formats recognised by a pattern of many packets: enough of the pattern, or nothing."""
    th = ctx.thresholds
    if s.rejects:
        # Why the packets that did not validate were refused, by the decoder's reason code.
        v.evidence["rejects"] = [f"{k}={n}" for k, n in s.rejects.most_common(16)]
    if s.protocol == "unknown-encapsulation":
        offsets = s.sessions.get("offset")
        top = offsets.most_common(1)[0][1] / max(1, sum(offsets.values())) if offsets else 0.0
        if top < th.fixed_offset_share or s.validated < th.min_unknown_packets:
            return False
        distinct, shown = _header_layout(s)
        v.say("unknown-header-bytes", distinct=distinct, shown=shown)
    if s.protocol in CONNECTION_LOGS:
        lines = s.records / max(1, s.validated)
        if s.records < th.min_connlog_lines or lines < th.connlog_share:
            return False  # an ordinary log: daemon messages, not connection records
        v.evidence["connection_line_share"] = round(min(1.0, lines), 4)
        v.say(
            "connection-log", share=lines, records_per_s=s.extra.get("records_per_s", "?"),
            span_flows_per_s=s.extra.get("span_new_flows_per_s", "?"),
        )  # fmt: skip
    return True


# --------------------------------------------------------------------- kind and severity


def _encrypted(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """A stream that cannot be read but tracks the span's traffic: how surely a copy."""
    if s.protocol != ENCRYPTED_COPY:
        return True
    th, e = ctx.thresholds, s.extra
    r = float(e.get("correlation", 0.0))  # type: ignore[arg-type]
    ratio = float(e.get("bytes_ratio", 0.0))  # type: ignore[arg-type]
    matched = e.get("matched_share")
    if r < th.encrypted_medium_correlation:
        return False
    v.say(
        "encrypted-tracks-span", carrier=e.get("carrier", "?"), window=e.get("window_ms"),
        series=e.get("tracked_series"), r=r, bins=e.get("bins"), lag=e.get("lag_ms"),
        ratio=ratio,
    )  # fmt: skip
    if isinstance(matched, float) and matched > 0:
        low = int(e.get("overhead_bytes", 0) or 0)  # type: ignore[call-overload]
        v.say(
            "encrypted-packet-overhead", matched=matched, checked=e.get("packets_checked"),
            low=low, high=low + 15,
        )  # fmt: skip
    v.say("encrypted-blind-spots")
    plausible = th.encrypted_min_ratio <= ratio <= th.encrypted_max_ratio
    per_packet = isinstance(matched, float) and matched >= th.copy_match_share
    back = e.get("bytes_back_share")
    if isinstance(back, float) and back >= th.encrypted_max_back_share:
        v.say("two-way-bytes", back=back)
        v.severity = "medium"
    elif plausible and (r >= th.encrypted_high_correlation or per_packet):
        v.severity = "high"
    else:
        if not plausible:
            v.say("implausible-ratio", ratio=ratio)
        v.severity = "medium"
    return True


def _mirror_or_tunnel(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Encapsulations used both for mirrors and for tunnels: which one this stream is; formats
    that only ever carry copies say so."""
    if s.protocol in AMBIGUOUS and v.kind == "mirror":
        _ambiguous(s, x, ctx.thresholds, v)
    elif v.copies and s.protocol in COPY_BY_CONSTRUCTION:
        v.say("copy-only-format", protocol=s.protocol)
    return True


def _ambiguous(s: StreamEvidence, x: Features, th: Thresholds, v: Verdict) -> None:
    proven = x.both_ways or x.copies_proven
    v.evidence["mirror_proven"] = proven
    if proven and not x.both_ways:
        v.say("copies-on-link", src=s.src)
    elif proven:
        v.say("both-way-inner", both=x.both, convs=x.convs)
        if x.returning == 0:
            v.say("nothing-back", src=s.src, dst=s.dst)
    elif s.protocol == TEE_COPY:
        v.severity = "low"
        v.say("tee-one-way")
    elif x.returning > 0:
        v.kind, v.severity = "tunnel", "info"
        v.say("came-back", returning=x.returning, src=s.src, dst=s.dst)
    else:
        v.severity = "medium"
        if s.carried_packets < th.min_decide_packets or x.convs < 2:
            v.say("too-few-to-decide", carried=round(s.carried_packets))
        else:
            v.say("one-way-inner")


def _whose_traffic(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Whose traffic the copies carry, and whether a few hosts are watched in particular."""
    if not (v.copies and s.hosts and s.protocol != ENCRYPTED_COPY):
        return True
    th = ctx.thresholds
    v.say("inner-hosts", hosts=len(s.hosts), convs=x.convs, both=x.both)
    targets, top_share = s.best_cover(th.targeted_hosts, ctx.is_home)
    v.evidence["top_hosts_share"] = round(top_share, 4)
    if (
        # Only a stream already known to carry copies can be a targeted intercept.
        SEVERITY_ORDER[v.severity] >= SEVERITY_ORDER["high"]
        and top_share >= th.targeted_share
        and ctx.link_hosts >= th.targeted_link_hosts
        and s.carried_packets >= th.min_decide_packets
        and len(s.hosts) > len(targets)
    ):
        v.severity = "critical"
        v.evidence["targeted"] = True
        v.evidence["targets"] = targets
        v.say("targeted", share=top_share, targets=", ".join(targets), link_hosts=ctx.link_hosts)
    return True


def _no_magic(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Formats without a magic number climb a ladder of evidence."""
    if s.protocol not in GUESSED or not v.copies:
        return True
    th = ctx.thresholds
    shaped = x.both_ways or x.copies_proven or bool(v.evidence.get("targeted"))
    # Both directions of a conversation, each packet also seen natively: a copy even of one
    # conversation between two hosts (a single watched subscriber), not a control exchange.
    # Plain copies are sightings of a packet seen twice: each one is matched by construction.
    seen_twice = x.copies_proven or (s.protocol == TEE_COPY and x.matched >= th.min_copy_checks)
    cap, why = _evidence_cap(s, th, x.convs, shaped, x.both_ways and seen_twice)
    v.evidence["evidence_level"] = cap
    if SEVERITY_ORDER[cap] < SEVERITY_ORDER[v.severity]:
        v.severity = cap
        if why is not None:
            v.reasons.append(why)
    return True


def _evidence_cap(
    s: StreamEvidence, th: Thresholds, convs: int, shaped: bool, proven_both_ways: bool = False
) -> tuple[str, Reason | None]:
    """The highest severity the evidence of a format without a magic number supports, and why
    it goes no higher: low on a few packets or on carried packets that are not plausible
    traffic, medium on plausible traffic with nothing that shows copies, and only with
    intercept-shaped evidence (both directions of inner conversations in one outer direction,
    copies matched to originals, a targeted pattern) what the format means."""
    if s.protocol == "rpcap" and not s.carried_packets:
        messages = {m.removesuffix("-reply") for m in s.facts.get("message", {})}
        if messages >= RPCAP_SESSION:
            return "critical", None
        listed = ", ".join(sorted(messages)) or "none"
        return "low", Reason("rpcap-no-session", {"protocol": s.protocol, "messages": listed})
    if s.protocol == "pcap-over-ip":
        lag = (s.fact_min.get("record_lag_s"), s.fact_max.get("record_lag_s"))
        if lag[0] is not None and lag[1] is not None:
            worst = max(abs(lag[0]), abs(lag[1]))
            if worst > th.capture_time_slack:
                return "low", Reason("capture-file-transfer", {"lag": worst})
    packets = round(s.carried_packets) if s.carried_packets else s.validated
    if packets < th.guess_min_packets:
        return "low", Reason(
            "few-packets",
            {"packets": packets, "protocol": s.protocol, "needed": th.guess_min_packets},
        )
    spread = len(s.hosts) >= th.guess_min_hosts and convs >= th.guess_min_conversations
    if not spread and not proven_both_ways:
        return "low", Reason(
            "few-hosts", {"hosts": len(s.hosts), "convs": convs, "protocol": s.protocol}
        )
    if not shaped:
        return "medium", Reason("no-copy-shape", {"protocol": s.protocol})
    return "critical", None


def _local_or_idle(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """Copies that never leave the host, and intercept channels that carry nothing yet."""
    v.never_leaves = v.copies and _never_leaves(s)
    if v.never_leaves:
        v.severity = "low"
        v.evidence["never_leaves"] = True
        v.say("never-leaves", src=s.src)
    kinds = set(s.facts.get("pdu_type", {})) | set(s.facts.get("pdu", {}))
    if v.kind == "intercept" and kinds and kinds <= KEEPALIVE_PDUS:
        v.evidence["keepalive_only"] = True
        v.say("keepalive-only")
    return True


def _not_copies(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    """What flow exports and tunnels carry instead of copies."""
    if v.kind == "flow-export":
        v.say("flow-records", records=s.records, hosts=len(s.record_hosts))
    if v.kind == "tunnel":
        steering = [w for w, _ in s.facts.get("steering", Counter()).most_common(1)]
        if steering:
            v.say("steering", how=steering[0])
        else:
            v.say("tunnel", protocol=s.protocol)
    return True


# ------------------------------------------------------------------------------ details


def _decoded_fields(s: StreamEvidence) -> list[str]:
    """The decoded header fields worth showing, each as "name values" (or a range)."""
    parts = []
    # Facts are kept as str(value): say booleans and absences in words, not Python.
    words = {"True": "yes", "False": "no", "None": "none"}
    for k, c in sorted(s.facts.items()):
        if k in HIDDEN_FACTS:
            continue
        if k in s.fact_min and len(c) > 3:
            parts.append(f"{k} {s.fact_min[k]:g}–{s.fact_max[k]:g}")
            continue
        values = [words.get(v, v) for v, _ in c.most_common(5) if v not in ("", "[]")]
        if values:
            parts.append(f"{k} " + ", ".join(values))
    return parts[:12]


def _details(s: StreamEvidence, x: Features, ctx: PolicyContext, v: Verdict) -> bool:
    fields = _decoded_fields(s)
    if fields:
        v.say("decoded-fields", fields=fields)
    if s.fragments:
        v.evidence["fragmented_datagrams_frames"] = s.fragments
        v.say("fragmented", fragments=s.fragments)
    for k, c in s.sessions.items():
        if len(c) > 1:
            v.evidence[f"{k}_values"] = [str(val) for val, _ in c.most_common(16)]
    v.evidence.update(
        {k: val for k, val in s.extra.items() if isinstance(val, int | float | str | list)}
    )
    return True


# In order: what the stream is, then kind and severity, then details.
STEPS: tuple[Step, ...] = (
    _describe, _copy_match, _port, _carried, _worth_a_finding, _encrypted, _mirror_or_tunnel,
    _whose_traffic, _no_magic, _local_or_idle, _not_copies, _details,
)  # fmt: skip


# ------------------------------------------------------------------------------- finding


def _basis(s: StreamEvidence, x: Features, v: Verdict) -> str:
    """What the verdict rests on (detector.policy.scores.BASE)."""
    if v.kind == "flow-export":
        return "flow-records"
    if v.kind == "tunnel":
        return "tunnel"
    if v.never_leaves:
        return "never-leaves"
    if x.copies_proven:
        return "copies-proven"
    if s.protocol in AMBIGUOUS:
        return "both-ways" if v.evidence.get("mirror_proven") else "one-way"
    if s.protocol in COPY_BY_CONSTRUCTION:
        return "copy-by-construction"
    return "intercept-shim" if v.kind == "intercept" else "other"


def _scores(s: StreamEvidence, x: Features, th: Thresholds, v: Verdict) -> Scores:
    basis = _basis(s, x, v)
    scores = Scores(
        identification(x.share, s.strength, s.validated, _off_port(s)),
        certainty(
            basis,
            s.records if v.kind == "flow-export" else (s.carried_packets or s.validated),
            th.min_decide_packets,
            copy_match_share=float(v.evidence.get("copy_match_share", 0.0)),  # type: ignore[arg-type]
            both_way_share=x.both / x.convs if x.convs else 0.0,
            targeted=bool(v.evidence.get("targeted")),
        ),
    )
    v.evidence["certainty_basis"] = basis
    return scores


def _finding(s: StreamEvidence, v: Verdict, scores: Scores) -> Finding:
    family, src, dst, dport, transport = group_key(s)
    total_carried = max(s.carried_packets, 1.0)
    watched = (
        _watched(s.hosts, total_carried)
        if s.hosts
        else _watched(s.record_hosts, 0.0)
        if s.record_hosts
        else []
    )
    port = s.dport if transport in ("udp", "tcp") else None
    packets, nbytes = s.packets, s.bytes
    if transport == "tcp" and "packets_back" not in v.evidence:
        # One direction of the connection validated; the other (acks, answers) is part of the
        # same stream, as when both directions validate.
        v.evidence["packets_back"] = s.return_packets
        v.evidence["bytes_back"] = s.return_bytes
        packets += s.return_packets
        nbytes += s.return_bytes
    return Finding(
        id=finding_id(family, src, dst, dport, transport),
        kind=v.kind,  # type: ignore[arg-type]
        protocol=s.protocol,
        severity=v.severity,  # type: ignore[arg-type]
        confidence=round(max(0.0, min(1.0, scores.confidence)), 3),
        identification=scores.identification,
        certainty=scores.certainty,
        exporter=Endpoint(ip=s.src, port=s.sport if port is not None else None, mac=s.src_mac),
        collector=Endpoint(ip=s.dst, port=port, mac=s.dst_mac),
        transport=transport,
        first_seen=_iso(s.first_seen),
        last_seen=_iso(s.last_seen),
        packets=packets,
        bytes=nbytes,
        session=s.session_values(),
        watched=watched,
        reason_codes=[r.code for r in v.reasons],
        reasons=[r.text for r in v.reasons],
        evidence=v.evidence,
    )


def decide(s: StreamEvidence, ctx: PolicyContext, returning: int) -> Finding | None:
    """The verdict for one (merged) stream; None when it is not worth a finding.

    Features (numbers from the evidence) → kind and severity with reason codes, step by step →
    scores → the Finding, its reasons worded from the codes (detector.policy.reasons)."""
    x = features(s, ctx.thresholds, returning)
    if x.share < ctx.detection.min_validated_share and s.strength < 1.0:
        return None
    v = Verdict(
        kind=s.kind,
        severity=INITIAL_SEVERITY.get(s.kind, "info"),
        evidence={
            "validated": s.validated, "decoded": s.decoded,
            "validated_share": round(x.share, 4),
        },
    )  # fmt: skip
    for step in STEPS:
        if not step(s, x, ctx, v):
            return None
    return _finding(s, v, _scores(s, x, ctx.thresholds, v))


def judge(
    streams: list[StreamEvidence], ctx: PolicyContext
) -> list[tuple[Finding, StreamEvidence]]:
    """Findings, most severe first, each with the (merged) evidence it was decided from."""
    groups: dict[tuple[str, str, str, int, str], list[StreamEvidence]] = {}
    for s in streams:
        groups.setdefault(group_key(s), []).append(s)
    merged = {k: merge(v) for k, v in groups.items()}
    # Traffic of the same format flowing back from the collector to the exporter.
    by_pair: Counter[tuple[str, str, str]] = Counter()
    for m in merged.values():
        by_pair[(m.protocol, m.src, m.dst)] += m.packets
    out: list[tuple[Finding, StreamEvidence]] = []
    for m in merged.values():
        returning = m.return_packets + by_pair.get((m.protocol, m.dst, m.src), 0)
        f = decide(m, ctx, returning)
        if f is None:
            continue
        # A test stream from `mirrorwatch canary` says so; its verdict stays the detection's.
        canary.label(f, m)
        if f.exporter.ip in ctx.routers:
            add(f, "router-exporter", ip=f.exporter.ip)
        why = ctx.allow(f) if ctx.allow is not None and f.kind != "tunnel" else None
        if why is not None:
            f.severity = "low"
            f.allow_listed = True
            add(f, "allow-listed", why=why)
        out.append((f, m))
    out = _fold_tunnel_directions(out)
    out.sort(key=lambda fm: (-SEVERITY_ORDER[fm[0].severity], fm[0].first_seen, fm[0].id))
    return out


def _fold_tunnel_directions(
    judged: list[tuple[Finding, StreamEvidence]],
) -> list[tuple[Finding, StreamEvidence]]:
    """A tunnel is one finding, not one per direction: fold B→A into A→B."""
    by_pair: dict[tuple[str, str, str, str], tuple[Finding, StreamEvidence]] = {}
    out: list[tuple[Finding, StreamEvidence]] = []
    for f, ev in judged:
        if f.kind != "tunnel":
            out.append((f, ev))
            continue
        a, b = f.exporter.ip, f.collector.ip
        key = (f.protocol, f.transport, *sorted((a, b)))
        first = by_pair.get(key)
        if first is None:
            by_pair[key] = (f, ev)
            out.append((f, ev))
            continue
        g = first[0]
        add(
            g, "tunnel-both-directions", packets=g.packets, src=g.exporter.ip,
            dst=g.collector.ip, back_packets=f.packets, back_src=f.exporter.ip,
            back_dst=f.collector.ip,
        )  # fmt: skip
        g.packets += f.packets
        g.bytes += f.bytes
        # The folded direction's share, for outputs that count each direction apart.
        g.evidence["packets_back"] = f.packets
        g.evidence["bytes_back"] = f.bytes
        if f.collector.port is not None:
            g.evidence["port_back"] = f.collector.port
        g.first_seen = min(g.first_seen, f.first_seen)
        g.last_seen = max(g.last_seen, f.last_seen)
        seen = {(w.ip, w.mac) for w in g.watched}
        g.watched.extend(w for w in f.watched if (w.ip, w.mac) not in seen)
        g.watched = sorted(g.watched, key=lambda w: -w.packets)[:MAX_WATCHED]
    return out
