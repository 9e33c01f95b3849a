"""Opinions: turn stream evidence into findings with a kind, a severity and reasons.

Decoding says what a stream *is*; this module says what it *means* for the router owner.  All
thresholds live here (and in the config), none in the decoders.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detector import canary
from detector.detection import Detection
from detector.evidence import HostTally, StreamEvidence
from detector.findings import SEVERITY_ORDER, Endpoint, Finding, WatchedHost
from detector.limits import Limits
from detector.policy.scores import Scores, certainty, identification
from detector.protocols import registry

# Formats whose packets are copies by construction: nothing else is ever sent that way.
COPY_BY_CONSTRUCTION = registry.with_role("copy")
# Formats recognised without a magic number (or, for PCAP-over-IP, by a file magic anyone may
# send): one matching packet proves nothing, so their findings climb a ladder of evidence.
GUESSED = frozenset(
    {
        "pcli", "jmirror", "nokia-li", "bcm-li", "rpcap", "pcap-over-ip",
        "unknown-encapsulation", "tee-copy",
    }
)  # fmt: skip
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
CONNECTION_LOGS = frozenset({"syslog-connlog"})
ENCRYPTED_COPY = "encrypted-copy"


@dataclass
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


@dataclass
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
    m = StreamEvidence(
        key=base.key, flow_key=base.flow_key, direction=base.direction, protocol=base.protocol,
        kind=base.kind, transport=base.transport, src=base.src or _sole_exporter(base),
        dst=base.dst, sport=base.sport, dport=base.dport, first_seen=base.first_seen,
        last_seen=base.last_seen,
    )  # fmt: skip
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


def _watched(table: dict[str, HostTally], total: float) -> list[WatchedHost]:
    ranked = sorted(
        ((k, t) for k, t in table.items() if not _is_group_address(k, t)),
        key=lambda kv: (-kv[1].packets, -kv[1].bytes, kv[0]),
    )
    out = []
    denom = total or sum(t.packets for t in table.values()) or 1.0
    for name, t in ranked[:MAX_WATCHED]:
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


def _basis(
    s: StreamEvidence,
    kind: str,
    copies_proven: bool,
    evidence: dict[str, int | float | str | bool | list[str] | list[int]],
    never_leaves: bool,
) -> str:
    """What the verdict rests on (detector.policy.scores.BASE)."""
    if kind == "flow-export":
        return "flow-records"
    if kind == "tunnel":
        return "tunnel"
    if never_leaves:
        return "never-leaves"
    if copies_proven:
        return "copies-proven"
    if s.protocol in AMBIGUOUS:
        return "both-ways" if evidence.get("mirror_proven") else "one-way"
    if s.protocol in COPY_BY_CONSTRUCTION | {"tzsp"}:
        return "copy-by-construction"
    return "intercept-shim" if kind == "intercept" else "other"


def _port_note(s: StreamEvidence) -> str | None:
    usual = DEFAULT_PORTS.get(s.protocol)
    if not usual or s.transport not in ("udp", "tcp"):
        return None
    if s.dport in usual:
        return f"Sent to {s.transport.upper()} port {s.dport}, the usual port of {s.protocol}."
    return (
        f"Sent to {s.transport.upper()} port {s.dport}, not the usual "
        f"{'/'.join(map(str, usual))}: recognised by content, not by port."
    )


def _prefix_sentence(s: StreamEvidence) -> str:
    """Which bytes of an unknown header stay constant across the stream (an id) and which vary
    (a counter or timestamp), from the prefixes seen."""
    prefixes = [bytes.fromhex(p) for p in s.facts.get("prefix", {}) if p]
    if not prefixes:
        return "The carried packet starts right at the beginning of the payload."
    width = min(len(p) for p in prefixes)
    const = [i for i in range(width) if len({p[i] for p in prefixes}) == 1]
    shown = " ".join(f"{prefixes[0][i]:02x}" if i in const else "??" for i in range(width))
    return (
        f"Header bytes before the carried packet, across {len(prefixes)} distinct headers: "
        f"{shown} (?? = varies: a counter, timestamp or direction; constant bytes identify "
        f"the stream)."
    )


def _facts_sentence(s: StreamEvidence) -> str | None:
    parts = []
    for k, c in sorted(s.facts.items()):
        if k in HIDDEN_FACTS:
            continue
        if k in s.fact_min and len(c) > 3:
            parts.append(f"{k} {s.fact_min[k]:g}–{s.fact_max[k]:g}")
        else:
            # Facts are kept as str(value): say booleans and absences in words, not Python.
            words = {"True": "yes", "False": "no", "None": "none"}
            values = [words.get(v, v) for v, _ in c.most_common(5) if v not in ("", "[]")]
            if values:
                parts.append(f"{k} " + ", ".join(values))
    return "Decoded fields: " + "; ".join(parts[:12]) + "." if parts else None


def _carried_checks(
    s: StreamEvidence, evidence: dict[str, int | float | str | bool | list[str] | list[int]]
) -> str | None:
    """Carried-header facts into the evidence, and a sentence when some are odd."""
    for k, n in sorted(s.carried_checks.items()):
        evidence[f"carried_{k}"] = n
    right, zero, wrong = (s.carried_checks.get(f"ipv4_checksum_{k}", 0) for k in CHECKSUMS)
    group = s.carried_checks.get("group_source_mac", 0)
    if not (zero or wrong or group):
        return None
    parts = []
    if zero or wrong:
        parts.append(
            f"of {right + zero + wrong} carried IPv4 headers {right} have a right checksum, "
            f"{zero} checksum 0 (copied before checksum offload) and {wrong} a wrong one "
            "(rewritten or anonymised)"
        )
    if group:
        parts.append(f"{group} carried frames have a group-bit source MAC (anonymised or odd)")
    return (
        "Carried headers: " + "; ".join(parts) + ". Counted as facts: a copy is recognised by "
        "the format's own header, not by the checksums inside it."
    )


def _encrypted_copy(s: StreamEvidence, th: Thresholds, reasons: list[str]) -> str | None:
    """Severity of a stream that cannot be read but tracks the span's traffic, or None."""
    x = s.extra
    r = float(x.get("correlation", 0.0))  # type: ignore[arg-type]
    ratio = float(x.get("bytes_ratio", 0.0))  # type: ignore[arg-type]
    matched = x.get("matched_share")
    carrier = x.get("carrier", "?")
    if r < th.encrypted_medium_correlation:
        return None
    lag, window = x.get("lag_ms"), x.get("window_ms")
    series = x.get("tracked_series")
    followed = "all of it" if series == "all" else "that of the watched hosts' group"
    reasons.append(
        f"A {carrier} stream whose content cannot be read, but whose bytes per {window} ms follow "
        f"the traffic seen in clear on this span ({followed}, its own endpoints left out) with "
        f"correlation {r:.2f} over {x.get('bins')} bins of 100 ms, {lag} ms later, carrying "
        f"{ratio:.2f} times the bytes it follows: a copy of that traffic sent encrypted."
    )
    if isinstance(matched, float) and matched > 0:
        low = int(x.get("overhead_bytes", 0) or 0)  # type: ignore[call-overload]
        reasons.append(
            f"{matched:.0%} of {x.get('packets_checked')} sampled packets are {low}-{low + 15} "
            "bytes larger than a native packet seen in the 30 ms before them, beyond what an "
            "earlier window shows by chance: a constant per-packet overhead, as a tunnel adds."
        )
    reasons.append(
        "What this cannot tell: a VPN gateway whose span sees both its clear side and its tunnel "
        "looks the same when the tunnel carries mostly one-way traffic (check whether the tracked "
        "hosts' traffic is meant for that tunnel); "
        "when the span sees only the copies, or the copied traffic is thin, nothing correlates "
        "and no copy is found."
    )
    plausible = th.encrypted_min_ratio <= ratio <= th.encrypted_max_ratio
    per_packet = isinstance(matched, float) and matched >= th.copy_match_share
    back = x.get("bytes_back_share")
    if isinstance(back, float) and back >= th.encrypted_max_back_share:
        reasons.append(
            f"{back:.0%} as many bytes come back through it as go out: two-way traffic, as a VPN "
            "carries to be delivered, where a copy gets only acknowledgements back (medium)."
        )
        return "medium"
    if plausible and (r >= th.encrypted_high_correlation or per_packet):
        return "high"
    if not plausible:
        reasons.append(
            f"It carries {ratio:.2f} times the bytes it follows, not what a copy of them would: "
            "it may only move at the same times (medium)."
        )
    return "medium"


def decide(s: StreamEvidence, ctx: PolicyContext, returning: int) -> Finding | None:
    """The verdict for one (merged) stream; None when it is not worth a finding."""
    th = ctx.thresholds
    share = s.validated / s.decoded if s.decoded else 0.0
    if share < ctx.detection.min_validated_share and s.strength < 1.0:
        return None
    reasons: list[str] = []
    evidence: dict[str, int | float | str | bool | list[str] | list[int]] = {
        "validated": s.validated,
        "decoded": s.decoded,
        "validated_share": round(share, 4),
    }
    if s.header_example:
        reasons.append(f"Leading bytes: {s.header_example}.")
    src, dst = s.src or s.src_mac or "?", s.dst or s.dst_mac or "?"
    if s.protocol == ENCRYPTED_COPY:
        reasons.append(
            f"{s.packets} packets, {s.bytes} bytes from {src} to {dst}"
            + (" (both directions of the connection)" if s.transport == "tcp" else "")
            + f"; compared with the span's traffic from {_iso(s.first_seen)} to "
            f"{_iso(s.last_seen)}."
        )
    elif s.protocol == "tee-copy":
        reasons.append(
            f"{s.validated} duplicate sightings among the packets sampled by fingerprint, so "
            f"about {s.packets} copied packets ({s.bytes} bytes) from {src} to {dst} between "
            f"{_iso(s.first_seen)} and {_iso(s.last_seen)}: plain copies, as iptables TEE or "
            "nft dup send them."
        )
    else:
        if s.transport == "tcp":
            what, sampled = "PDUs", " (every segment reassembled)"
        else:
            what = "packets"
            sampled = " (decoded in full at first, then a sample)" if s.decoded < s.packets else ""
        reasons.append(
            f"{s.validated} of {s.decoded} decoded {what} validated as {s.protocol}{sampled}; "
            f"{s.packets} packets, {s.bytes} bytes from {src} to {dst} between "
            f"{_iso(s.first_seen)} and {_iso(s.last_seen)}."
        )
    checked = int(s.extra.get("copies_checked", 0) or 0)  # type: ignore[call-overload]
    matched = int(s.extra.get("copies_matched", 0) or 0)  # type: ignore[call-overload]
    copies_proven = checked >= th.min_copy_checks and matched >= th.copy_match_share * checked
    if checked and matched:
        delay = s.extra.get("copy_delay_ms")
        reasons.append(
            f"{matched} of {checked} carried packets checked (a sample, by fingerprint) "
            f"match packets seen natively on this link, the copy {delay} ms after the original "
            "(median)" + (": proven copies." if copies_proven else ".")
        )
    elif checked:
        reasons.append(
            f"None of the {checked} carried packets checked against this link's own traffic "
            "was seen there natively: the originals travel elsewhere (the span sees only the "
            "copies), or the copies were rewritten (anonymised addresses)."
        )
    if checked:
        evidence["copy_match_share"] = round(matched / checked, 4)
    note = _port_note(s)
    if note:
        reasons.append(note)
    kind = s.kind
    severity = {"mirror": "high", "intercept": "critical", "flow-export": "medium"}.get(
        kind, "info"
    )

    both, convs = s.both_way_conversations()
    total_carried = max(s.carried_packets, 1.0)
    if s.carried_packets:
        evidence["carried_packets"] = round(s.carried_packets)
        evidence["inner_conversations"] = convs
        evidence["inner_both_directions"] = both
        third = 1.0 - s.inner_is_outer / max(1, s.validated)
        evidence["inner_third_party_share"] = round(max(0.0, third), 4)
        if s.carried_unparsed:
            # Carried frames that were neither IP nor a frame with addresses (ERSPAN III frame
            # type 7, 802.11 management, truncated copies).
            evidence["carried_unparsed"] = s.carried_unparsed
        header_note = _carried_checks(s, evidence)
        if header_note:
            reasons.append(header_note)
    evidence["return_packets"] = returning
    if s.rejects:
        # Why the packets that did not validate were refused, by the decoder's reason code.
        evidence["rejects"] = [f"{k}={n}" for k, n in s.rejects.most_common(16)]

    if s.protocol == "unknown-encapsulation":
        offsets = s.sessions.get("offset")
        top = offsets.most_common(1)[0][1] / max(1, sum(offsets.values())) if offsets else 0.0
        if top < th.fixed_offset_share or s.validated < th.min_unknown_packets:
            return None
        reasons.append(_prefix_sentence(s))
    if s.protocol in CONNECTION_LOGS:
        lines = s.records / max(1, s.validated)
        if s.records < th.min_connlog_lines or lines < th.connlog_share:
            return None  # an ordinary log: daemon messages, not connection records
        evidence["connection_line_share"] = round(min(1.0, lines), 4)
        reasons.append(
            f"{lines:.0%} of its messages name connections of other hosts, about "
            f"{s.extra.get('records_per_s', '?')} per second while the span shows "
            f"{s.extra.get('span_new_flows_per_s', '?')} new flows per second: a connection log."
        )
    if s.protocol == ENCRYPTED_COPY:
        verdict = _encrypted_copy(s, th, reasons)
        if verdict is None:
            return None
        severity = verdict
    if s.protocol in AMBIGUOUS and kind == "mirror":
        both_ways = convs > 0 and both >= max(1, th.both_way_share * convs)
        proven = both_ways or copies_proven
        evidence["mirror_proven"] = proven
        if proven and not both_ways:
            reasons.append(f"Copies of traffic seen on this link: a mirror of {s.src}'s links.")
        elif proven:
            reasons.append(
                f"{both} of {convs} inner conversations appear in both directions inside this one "
                f"outer direction: a copy of traffic, which a tunnel or overlay never carries."
            )
            if returning == 0:
                reasons.append(f"Nothing came back from {s.dst} to {s.src} in this format.")
        elif s.protocol == "tee-copy":
            severity = "low"
            reasons.append(
                "The copied packets all travel one way: this is also what a span that sees both "
                "sides of a router shows (each routed packet twice, to two next hops). Check "
                "whether the span includes the router's other interface before suspecting TEE."
            )
        elif returning > 0:
            kind, severity = "tunnel", "info"
            reasons.append(
                f"{returning} packets of this format came back from {s.dst} to {s.src} and the "
                f"inner conversations each travel one way per outer direction: an overlay or L2 "
                f"tunnel, not a mirror."
            )
        else:
            severity = "medium"
            if s.carried_packets < th.min_decide_packets or convs < 2:
                reasons.append(
                    f"Only {round(s.carried_packets)} carried packets: too little traffic to "
                    "tell a mirror from a one-way tunnel."
                )
            else:
                reasons.append(
                    "Nothing came back through it, but its inner conversations are one-way: it "
                    "may be a mirror of one direction, or one half of a tunnel seen asymmetrically."
                )
    elif kind in ("mirror", "intercept") and s.protocol in COPY_BY_CONSTRUCTION | {"tzsp"}:
        reasons.append(f"{s.protocol} only ever carries copies of captured traffic.")

    if kind in ("mirror", "intercept") and s.hosts and s.protocol != ENCRYPTED_COPY:
        hosts = len(s.hosts)
        reasons.append(
            f"Carries traffic of {hosts} inner hosts in {convs} conversations"
            + (f", {both} of them in both directions" if both else "")
            + "."
        )
        targets, top_share = s.best_cover(th.targeted_hosts, ctx.is_home)
        evidence["top_hosts_share"] = round(top_share, 4)
        if (
            # Only a stream already known to carry copies can be a targeted intercept.
            SEVERITY_ORDER[severity] >= SEVERITY_ORDER["high"]
            and top_share >= th.targeted_share
            and ctx.link_hosts >= th.targeted_link_hosts
            and s.carried_packets >= th.min_decide_packets
            and len(s.hosts) > len(targets)
        ):
            severity = "critical"
            evidence["targeted"] = True
            evidence["targets"] = targets
            reasons.append(
                f"Targeted pattern: {top_share:.0%} of the copied packets involve "
                f"{', '.join(targets)}, while the link carries {ctx.link_hosts} hosts: someone "
                "is watching these hosts in particular."
            )
    if s.protocol in GUESSED and kind in ("mirror", "intercept"):
        both_ways = convs > 0 and both >= max(1, th.both_way_share * convs)
        shaped = both_ways or copies_proven or bool(evidence.get("targeted"))
        # Both directions of a conversation, each packet also seen natively: a copy even of one
        # conversation between two hosts (a single watched subscriber), not a control exchange.
        # Plain copies are sightings of a packet seen twice: each one is matched by construction.
        seen_twice = copies_proven or (s.protocol == "tee-copy" and matched >= th.min_copy_checks)
        cap, why = _evidence_cap(s, th, convs, shaped, both_ways and seen_twice)
        evidence["evidence_level"] = cap
        if SEVERITY_ORDER[cap] < SEVERITY_ORDER[severity]:
            severity = cap
            reasons.extend(why)
    never_leaves = kind in ("mirror", "intercept") and _never_leaves(s)
    if never_leaves:
        severity = "low"
        evidence["never_leaves"] = True
        reasons.append(
            f"Exporter and collector are the same host ({s.src}): the copies never leave it "
            "(a local capture or a test), so nothing is sent elsewhere (severity low)."
        )
    kinds = set(s.facts.get("pdu_type", {})) | set(s.facts.get("pdu", {}))
    if kind == "intercept" and kinds and kinds <= KEEPALIVE_PDUS:
        evidence["keepalive_only"] = True
        reasons.append(
            "Only keep-alives so far: an intercept channel that is set up and armed, waiting "
            "for a target's traffic to carry."
        )
    if kind == "flow-export":
        reasons.append(
            f"Flow metadata: {s.records} records decoded naming {len(s.record_hosts)} hosts; "
            "it tells the collector who talked to whom, when and how much."
        )
    if kind == "tunnel":
        steering = [v for v, _ in s.facts.get("steering", Counter()).most_common(1)]
        if steering:
            reasons.append(
                f"Steering, not copying: {steering[0]}; the original packets are diverted "
                "through it and delivered from there, none is duplicated (severity info)."
            )
        else:
            reasons.append(
                f"A {s.protocol} tunnel: traffic carried to be delivered, not a copy "
                "(severity info)."
            )
    facts = _facts_sentence(s)
    if facts:
        reasons.append(facts)
    if s.fragments:
        evidence["fragmented_datagrams_frames"] = s.fragments
        reasons.append(f"Outer packets were IP-fragmented ({s.fragments} fragments reassembled).")
    sessions = s.session_values()
    for k, c in s.sessions.items():
        if len(c) > 1:
            evidence[f"{k}_values"] = [str(v) for v, _ in c.most_common(16)]
    evidence.update({k: v for k, v in s.extra.items() if isinstance(v, int | float | str | list)})

    basis = _basis(s, kind, copies_proven, evidence, never_leaves)
    scores = Scores(
        identification(share, s.strength, s.validated, _off_port(s)),
        certainty(
            basis,
            s.records if kind == "flow-export" else (s.carried_packets or s.validated),
            th.min_decide_packets,
            copy_match_share=float(evidence.get("copy_match_share", 0.0)),  # type: ignore[arg-type]
            both_way_share=both / convs if convs else 0.0,
            targeted=bool(evidence.get("targeted")),
        ),
    )
    evidence["certainty_basis"] = basis

    family, src, dst, dport, transport = group_key(s)
    watched = (
        _watched(s.hosts, total_carried)
        if s.hosts
        else _watched(s.record_hosts, 0.0)
        if s.record_hosts
        else []
    )
    port = s.dport if transport in ("udp", "tcp") else None
    packets, nbytes = s.packets, s.bytes
    if transport == "tcp" and "packets_back" not in evidence:
        # One direction of the connection validated; the other (acks, answers) is part of the
        # same stream, as when both directions validate.
        evidence["packets_back"] = s.return_packets
        evidence["bytes_back"] = s.return_bytes
        packets += s.return_packets
        nbytes += s.return_bytes
    return Finding(
        id=finding_id(family, src, dst, dport, transport),
        kind=kind,
        protocol=s.protocol,
        severity=severity,  # type: ignore[arg-type]
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
        session=sessions,
        watched=watched,
        reasons=reasons,
        evidence=evidence,
    )


def _evidence_cap(
    s: StreamEvidence, th: Thresholds, convs: int, shaped: bool, proven_both_ways: bool = False
) -> tuple[str, list[str]]:
    """The highest severity the evidence of a format without a magic number supports, and why
    it goes no higher: low on a few packets or on carried packets that are not plausible
    traffic, medium on plausible traffic with nothing that shows copies, and only with
    intercept-shaped evidence (both directions of inner conversations in one outer direction,
    copies matched to originals, a targeted pattern) what the format means."""
    what = f"{s.protocol} has no magic number"
    if s.protocol == "rpcap" and not s.carried_packets:
        messages = {m.removesuffix("-reply") for m in s.facts.get("message", {})}
        if messages >= RPCAP_SESSION:
            return "critical", []
        return "low", [
            f"{what}: these control messages ({', '.join(sorted(messages)) or 'none'}) are not "
            "an rpcap session (open, then start capture), so they may be other bytes that look "
            "like rpcap."
        ]
    if s.protocol == "pcap-over-ip":
        lag = (s.fact_min.get("record_lag_s"), s.fact_max.get("record_lag_s"))
        if lag[0] is not None and lag[1] is not None:
            worst = max(abs(lag[0]), abs(lag[1]))
            if worst > th.capture_time_slack:
                return "low", [
                    f"The records were captured up to {worst:.0f} s away from when they were "
                    "sent: a capture file being transferred (a download), not a live capture "
                    "stream."
                ]
    packets = round(s.carried_packets) if s.carried_packets else s.validated
    if packets < th.guess_min_packets:
        return "low", [
            f"Only {packets} packets: {what}, so a few matching packets are no more than a "
            f"guess (at least {th.guess_min_packets} are needed)."
        ]
    spread = len(s.hosts) >= th.guess_min_hosts and convs >= th.guess_min_conversations
    if not spread and not proven_both_ways:
        return "low", [
            f"Its carried packets involve {len(s.hosts)} hosts in {convs} conversations: not the "
            f"spread of traffic a copy shows ({what}; a control exchange or a tunnel looks so)."
        ]
    if not shaped:
        return "medium", [
            f"{what} and nothing here shows copies: no inner conversation seen both ways in this "
            "one outer direction, no carried packet matched to an original, no targeted pattern."
        ]
    return "critical", []


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
            f.reasons.append(f"Exported by {f.exporter.ip}, one of your routers (config).")
        why = ctx.allow(f) if ctx.allow is not None and f.kind != "tunnel" else None
        if why is not None:
            f.severity = "low"
            f.allow_listed = True
            f.reasons.append(why)
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
        g.reasons.append(
            f"Both directions: {g.packets} packets {g.exporter.ip} → {g.collector.ip}, "
            f"{f.packets} packets {f.exporter.ip} → {f.collector.ip}."
        )
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
