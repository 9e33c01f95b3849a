"""Reasons of a verdict: a stable code with its figures, and the sentence a reader gets.

The verdict (detector.policy.verdict) decides in codes; this module only words them. A finding
carries both, in the same order: ``reason_codes[i]`` is the code of ``reasons[i]``. Codes are
part of the output contract (docs/reasons.md lists them): tools and tests match codes and the
evidence figures, never the English.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.findings import Finding


@dataclass(repr=False, eq=False, frozen=True)
class Reason:
    code: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return PROSE[self.code](**self.params)


def add(finding: Finding, code: str, **params: Any) -> None:
    """Give ``finding`` one more reason."""
    finding.reason_codes.append(code)
    finding.reasons.append(Reason(code, params).text)


def _volume(packets: int, nbytes: int, src: str, dst: str, first: str, last: str) -> str:
    return f"{packets} packets, {nbytes} bytes from {src} to {dst} between {first} and {last}."


def _validated(
    validated: int, decoded: int, protocol: str, tcp: bool, sampled: bool, **volume: Any
) -> str:
    if tcp:
        what, how = "PDUs", " (every segment reassembled)"
    else:
        what = "packets"
        how = " (decoded in full at first, then a sample)" if sampled else ""
    head = f"{validated} of {decoded} decoded {what} validated as {protocol}{how}; "
    return head + _volume(**volume)


def _encrypted_volume(
    packets: int, nbytes: int, src: str, dst: str, first: str, last: str, tcp: bool
) -> str:
    return (
        f"{packets} packets, {nbytes} bytes from {src} to {dst}"
        + (" (both directions of the connection)" if tcp else "")
        + f"; compared with the span's traffic from {first} to {last}."
    )


def _tee_sightings(validated: int, **volume: Any) -> str:
    v = volume
    return (
        f"{validated} duplicate sightings among the packets sampled by fingerprint, so "
        f"about {v['packets']} copied packets ({v['nbytes']} bytes) from {v['src']} to "
        f"{v['dst']} between {v['first']} and {v['last']}: plain copies, as iptables TEE or "
        "nft dup send them."
    )


def _copies_matched(matched: int, checked: int, delay: Any, proven: bool) -> str:
    return (
        f"{matched} of {checked} carried packets checked (a sample, by fingerprint) "
        f"match packets seen natively on this link, the copy {delay} ms after the original "
        "(median)" + (": proven copies." if proven else ".")
    )


def _off_port(transport: str, port: int, usual: list[int]) -> str:
    return (
        f"Sent to {transport.upper()} port {port}, not the usual "
        f"{'/'.join(map(str, usual))}: recognised by content, not by port."
    )


def _carried_headers(right: int, zero: int, wrong: int, group: int) -> str:
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


def _header_bytes(distinct: int, shown: str) -> str:
    if not distinct:
        return "The carried packet starts right at the beginning of the payload."
    return (
        f"Header bytes before the carried packet, across {distinct} distinct headers: "
        f"{shown} (?? = varies: a counter, timestamp or direction; constant bytes identify "
        f"the stream)."
    )


def _tracks_span(
    carrier: Any, window: Any, series: Any, r: float, bins: Any, lag: Any, ratio: float
) -> str:
    followed = "all of it" if series == "all" else "that of the watched hosts' group"
    return (
        f"A stream over {carrier} whose content cannot be read, but whose bytes per {window} ms "
        f"follow the traffic seen in clear on this span ({followed}, its own endpoints left "
        f"out) with correlation {r:.2f} over {bins} bins of 100 ms, {lag} ms later, carrying "
        f"{ratio:.2f} times the bytes it follows: a copy of that traffic sent encrypted."
    )


def _inner_hosts(hosts: int, convs: int, both: int) -> str:
    return (
        f"Carries traffic of {hosts} inner hosts in {convs} conversations"
        + (f", {both} of them in both directions" if both else "")
        + "."
    )


NO_MAGIC = "{protocol} has no magic number"

# code → the sentence, from the reason's figures. Each code says one thing the verdict rests on
# (or, for the first few, what the stream is); the sentence may change, the code may not.
# fmt: off
PROSE: dict[str, Callable[..., str]] = {
    # What the stream is.
    "leading-bytes": "Leading bytes: {header}.".format,
    "validated": _validated,
    "encrypted-volume": _encrypted_volume,
    "tee-sightings": _tee_sightings,
    # Copies matched to originals seen natively on the link.
    "copies-matched": _copies_matched,
    "copies-partly-matched": _copies_matched,
    "copies-unmatched": (
        "None of the {checked} carried packets checked against this link's own traffic was seen "
        "there natively: the originals travel elsewhere (the span sees only the copies), or the "
        "copies were rewritten (anonymised addresses).").format,
    # The port it travels to.
    "usual-port": lambda transport, port, protocol: (
        f"Sent to {transport.upper()} port {port}, the usual port of {protocol}."),
    "off-port": _off_port,
    "carried-headers-odd": _carried_headers,
    "unknown-header-bytes": _header_bytes,
    "connection-log": (
        "{share:.0%} of its messages name connections of other hosts, about {records_per_s} per "
        "second while the span shows {span_flows_per_s} new flows per second: a connection "
        "log.").format,
    # Encrypted copies.
    "encrypted-tracks-span": _tracks_span,
    "encrypted-packet-overhead": (
        "{matched:.0%} of {checked} sampled packets are {low}-{high} bytes larger than a native "
        "packet seen in the 30 ms before them, beyond what an earlier window shows by chance: a "
        "constant per-packet overhead, as a tunnel adds.").format,
    "encrypted-blind-spots": (
        "What this cannot tell: a VPN gateway whose span sees both its clear side and its tunnel "
        "looks the same when the tunnel carries mostly one-way traffic (check whether the "
        "tracked hosts' traffic is meant for that tunnel); when the span sees only the copies, "
        "or the copied traffic is thin, nothing correlates and no copy is found.").format,
    "two-way-bytes": (
        "{back:.0%} as many bytes come back through it as go out: two-way traffic, as a VPN "
        "carries to be delivered, where a copy gets only acknowledgements back (medium).").format,
    "implausible-ratio": (
        "It carries {ratio:.2f} times the bytes it follows, not what a copy of them would: it "
        "may only move at the same times (medium).").format,
    # Encapsulations used both for mirrors and for tunnels.
    "copies-on-link": "Copies of traffic seen on this link: a mirror of {src}'s links.".format,
    "both-way-inner": (
        "{both} of {convs} inner conversations appear in both directions inside this one outer "
        "direction: a copy of traffic, which a tunnel or overlay never carries.").format,
    "nothing-back": "Nothing came back from {dst} to {src} in this format.".format,
    "tee-one-way": (
        "The copied packets all travel one way: this is also what a span that sees both sides of "
        "a router shows (each routed packet twice, to two next hops). Check whether the span "
        "includes the router's other interface before suspecting TEE.").format,
    "came-back": (
        "{returning} packets of this format came back from {dst} to {src} and the inner "
        "conversations each travel one way per outer direction: an overlay or L2 tunnel, not a "
        "mirror.").format,
    "too-few-to-decide": (
        "Only {carried} carried packets: too little traffic to tell a mirror from a one-way "
        "tunnel.").format,
    "one-way-inner": (
        "Nothing came back through it, but its inner conversations are one-way: it may be a "
        "mirror of one direction, or one half of a tunnel seen asymmetrically.").format,
    "copy-only-format": "{protocol} only ever carries copies of captured traffic.".format,
    # Whose traffic.
    "inner-hosts": _inner_hosts,
    "targeted": (
        "Targeted pattern: {share:.0%} of the copied packets involve {targets}, while the link "
        "carries {link_hosts} hosts: someone is watching these hosts in particular.").format,
    # Formats without a magic number: why the severity goes no higher.
    "rpcap-no-session": (
        NO_MAGIC + ": these control messages ({messages}) are not an rpcap session (open, then "
        "start capture), so they may be other bytes that look like rpcap.").format,
    "capture-file-transfer": (
        "The records were captured up to {lag:.0f} s away from when they were sent: a capture "
        "file being transferred (a download), not a live capture stream.").format,
    "few-packets": (
        "Only {packets} packets: " + NO_MAGIC + ", so a few matching packets are no more than a "
        "guess (at least {needed} are needed).").format,
    "few-hosts": (
        "Its carried packets involve {hosts} hosts in {convs} conversations: not the spread of "
        "traffic a copy shows (" + NO_MAGIC + "; a control exchange or a tunnel looks so).").format,
    "no-copy-shape": (
        NO_MAGIC + " and nothing here shows copies: no inner conversation seen both ways in this "
        "one outer direction, no carried packet matched to an original, no targeted "
        "pattern.").format,
    # Other verdicts.
    "never-leaves": (
        "Exporter and collector are the same host ({src}): the copies never leave it (a local "
        "capture or a test), so nothing is sent elsewhere (severity low).").format,
    "keepalive-only": (
        "Only keep-alives so far: an intercept channel that is set up and armed, waiting for a "
        "target's traffic to carry.").format,
    "flow-records": (
        "Flow metadata: {records} records decoded naming {hosts} hosts; it tells the collector "
        "who talked to whom, when and how much.").format,
    "steering": (
        "Steering, not copying: {how}; the original packets are diverted through it and "
        "delivered from there, none is duplicated (severity info).").format,
    "tunnel": (
        "This {protocol} stream is a tunnel: traffic carried to be delivered, not a copy "
        "(severity info).").format,
    # Details.
    "decoded-fields": lambda fields: "Decoded fields: " + "; ".join(fields) + ".",
    "fragmented": "Outer packets were IP-fragmented ({fragments} fragments reassembled).".format,
    "tunnel-both-directions": (
        "Both directions: {packets} packets {src} → {dst}, {back_packets} packets {back_src} → "
        "{back_dst}.").format,
    # From the configuration and the canary.
    "router-exporter": "Exported by {ip}, one of your routers (config).".format,
    "allow-listed": "{why}".format,
    "canary": (
        "A mirrorwatch canary: all {packets} packets carry a valid canary marker (HMAC-signed, "
        "docs/canary.md). It was judged like any other {protocol} stream: this proves the sensor "
        "sees and reports this format.").format,
}
# fmt: on
