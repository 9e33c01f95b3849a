"""Connection logs sent as syslog: every dialect's tuple, both TCP framings, and ordinary syslog
kept out."""

from __future__ import annotations

import pytest
from mwtest import PCAPS, heads, scan

from detector.protocols.base import PacketContext
from detector.protocols.syslog_connlog import (
    SyslogTcpDecoder,
    SyslogUdpDecoder,
    connection_tuple,
    syslog_header,
)

TUPLE = ("10.0.0.5", "1.2.3.4", 6, 51234, 443)

DIALECTS = [
    (
        "routeros",
        "firewall,info forward: in:bridge out:ether1, src-mac 00:11:22:33:44:55, "
        "proto TCP (SYN), 10.0.0.5:51234->1.2.3.4:443, len 60",
    ),
    (
        "routeros",
        "forward: in:bridge out:ether1, proto TCP (ACK,PSH), 10.0.0.5:51234->1.2.3.4:443, "
        "NAT (10.0.0.5:51234->203.0.113.1:51234)->1.2.3.4:443, len 52",
    ),
    (
        "iptables-log",
        "kernel: [1234.5] FWD IN=eth1 OUT=eth0 MAC=00:11:22 SRC=10.0.0.5 DST=1.2.3.4 LEN=60 "
        "TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=51234 DPT=443 WINDOW=64240 SYN URGP=0",
    ),
    (
        "ulogd2",
        "ulogd[77]: FWD IN=eth1 OUT=eth0 MAC= SRC=10.0.0.5 DST=1.2.3.4 LEN=60 TOS=00 PREC=0x00 "
        "TTL=63 ID=1 DF PROTO=TCP SPT=51234 DPT=443 SEQ=1 ACK=0 WINDOW=64240 SYN URGP=0",
    ),
    (
        "ulogd2-nfct",
        "ulogd[123]: [NEW] ORIG: SRC=10.0.0.5 DST=1.2.3.4 PROTO=TCP SPT=51234 DPT=443 PKTS=0 "
        "BYTES=0 , REPLY: SRC=1.2.3.4 DST=203.0.113.1 PROTO=TCP SPT=443 DPT=51234",
    ),
    (
        "ulogd2-json",
        '{"timestamp": "2026-01-15T10:00:00", "src_ip": "10.0.0.5", "dest_ip": "1.2.3.4", '
        '"src_port": 51234, "dest_port": 443, "ip.protocol": 6}',
    ),
    (
        "cisco-asa",
        "%ASA-6-302013: Built outbound TCP connection 1234 for outside:1.2.3.4/443 "
        "(1.2.3.4/443) to inside:10.0.0.5/51234 (203.0.113.1/51234)",
    ),
    (
        "cisco-ios-nat",
        "%IPNAT-6-CREATED: tcp 10.0.0.5:51234 203.0.113.1:51234 1.2.3.4:443 1.2.3.4:443",
    ),
    (
        "cisco-ios-fw",
        "%FW-6-SESS_AUDIT_TRAIL_START: Start tcp session: initiator (10.0.0.5:51234) -- "
        "responder (1.2.3.4:443)",
    ),
    (
        "juniper-rt-flow",
        "RT_FLOW: RT_FLOW_SESSION_CREATE: session created 10.0.0.5/51234->1.2.3.4/443 0x0 "
        "junos-https 203.0.113.1/51234->1.2.3.4/443 0x0 source rule r1 N/A N/A 6 p1 trust "
        "untrust 1234 N/A(N/A) ge-0/0/1.0",
    ),
    (
        "juniper-rt-flow",
        'RT_FLOW_SESSION_CREATE [junos@2636.1.1.1.2.129 source-address="10.0.0.5" '
        'source-port="51234" destination-address="1.2.3.4" destination-port="443" '
        'service-name="junos-https" protocol-id="6"]',
    ),
    (
        "conntrack",
        " [NEW] tcp      6 120 SYN_SENT src=10.0.0.5 dst=1.2.3.4 sport=51234 dport=443 [UNREPLIED]",
    ),
]


@pytest.mark.parametrize(
    ("dialect", "msg"), DIALECTS, ids=[f"{d}-{i}" for i, (d, _) in enumerate(DIALECTS)]
)
def test_dialect_tuple(dialect: str, msg: str) -> None:
    found = connection_tuple(msg)
    assert found is not None
    got, flow = found
    assert got == dialect
    assert (flow.src, flow.dst, flow.proto, flow.sport, flow.dport) == TUPLE


def test_asa_inbound_puts_the_initiator_first() -> None:
    found = connection_tuple(
        "%ASA-6-302015: Built inbound UDP connection 99 for outside:5.6.7.8/5353 "
        "(5.6.7.8/5353) to inside:10.0.0.9/53 (10.0.0.9/53)"
    )
    assert found is not None
    assert (found[1].src, found[1].sport, found[1].dst, found[1].dport) == (
        "5.6.7.8",
        5353,
        "10.0.0.9",
        53,
    )


def test_routeros_ipv6_and_icmp() -> None:
    v6 = connection_tuple(
        "forward: in:bridge out:ether1, proto UDP, [2001:db8::5]:5353->[2001:db8:1::9]:53, len 80"
    )
    assert v6 is not None and (v6[1].src, v6[1].dst, v6[1].dport) == (
        "2001:db8::5",
        "2001:db8:1::9",
        53,
    )
    icmp = connection_tuple(
        "forward: in:bridge out:ether1, proto ICMP (type 8, code 0), 10.0.0.5->1.2.3.4, len 84"
    )
    assert icmp is not None and icmp[1].proto == 1


@pytest.mark.parametrize(
    "msg",
    [
        "sshd[12]: Accepted password for root from 1.2.3.4 port 22 ssh2",
        "dhcp,info defconf assigned 192.168.88.254 to 00:11:22:33:44:55",
        'conn=1159023 op=44 SRCH base="ou=people" scope=2 filter="(uid=x)"',
        "Local Port Connection Type= LOOP: loopId=0x7D",
        "SRC=10.0.0.999 DST=1.2.3.4 PROTO=TCP SPT=1 DPT=2",  # not an address
        "SRC=10.0.0.5 DST=10.0.0.5 PROTO=TCP SPT=1 DPT=2",  # one host talking to itself
    ],
)
def test_ordinary_messages_name_no_connection(msg: str) -> None:
    assert connection_tuple(msg) is None


def test_header_styles() -> None:
    assert syslog_header(b"<134>1 2026-01-15T10:00:00Z gw fw - - - hello")[1] == "rfc5424"
    assert syslog_header(b"<134>Jan  5 10:00:00 gw fw: hello")[1] == "bsd"
    assert syslog_header(b"<190>43: R1: *Sep 22 13:42:27.536: %SYS-6-X: y")[1] == "other"
    assert syslog_header(b"<192>Jan  5 10:00:00 gw fw: hello") is None  # PRI above 191
    assert syslog_header(b"<013>Jan  5 10:00:00 gw fw: hello") is None  # leading zero
    assert syslog_header(b"GET / HTTP/1.1") is None


def test_prefilters() -> None:
    good = [b"<134>Jan  5 x", b"<4>1 2026", b"<13>hello", b"123 <13>1 x"]
    bad = [b"<html><body>", b"<x>abc", b"<1234>abc", b"1234567 <13>x", b"GET / HTTP/1.1"]
    head, length = heads(good + bad)
    tcp = SyslogTcpDecoder().prefilter(head, length)
    udp = SyslogUdpDecoder().prefilter(head, length)
    assert tcp.tolist() == [True] * 4 + [False] * 5
    assert udp.tolist() == [True] * 3 + [False] * 6


def _ctx() -> PacketContext:
    return PacketContext(src="10.0.0.1", dst="10.9.0.9", sport=40000, dport=514)


def test_udp_datagram_with_several_lines_and_own_connections() -> None:
    payload = (
        b"<134>Jan  5 10:00:00 gw kernel: SRC=10.0.0.5 DST=1.2.3.4 PROTO=UDP SPT=5353 DPT=53 \n"
        b"<134>Jan  5 10:00:00 gw kernel: SRC=10.0.0.1 DST=1.2.3.4 PROTO=UDP SPT=123 DPT=123 \n"
        b"<30>Jan  5 10:00:00 gw ntpd[1]: synchronised\n"
    )
    d = SyslogUdpDecoder().decode(payload, _ctx(), None)
    assert d is not None and d.kind == "flow-export" and d.protocol == "syslog-connlog"
    assert [(r.src, r.dport) for r in d.records] == [("10.0.0.5", 53)]
    assert d.facts["lines"] == 3 and d.facts["own_connections"] == 1


def test_tcp_octet_counting_across_segments() -> None:
    dec = SyslogTcpDecoder()
    line = b"<4>1 2026-01-15T10:00:00Z gw kernel - - - " + DIALECTS[2][1].encode()
    data = b"".join(b"%d %s" % (len(line), line) for _ in range(3))
    state = dec.new_state()
    got = [dec.feed(data[i : i + 37], _ctx(), state) for i in range(0, len(data), 37)]
    pdus = [d for chunk in got for d in chunk]
    assert len(pdus) == 3
    assert all(d.records[0].dport == 443 for d in pdus)
    assert "octet counting" in pdus[0].header


def test_tcp_line_framing_and_garbage() -> None:
    dec = SyslogTcpDecoder()
    state = dec.new_state()
    pdus = dec.feed(
        b"<13>Jan  1 00:00:00 h a: hello\r\n<13>Jan  1 00:00:00 h a: x\n<13>J", _ctx(), state
    )
    assert len(pdus) == 2 and not pdus[0].records
    assert dec.feed(b"an 1 00:00:00 h a: y\nnot syslog at all\n", _ctx(), state) != []
    assert state.dead  # the line that does not start with a PRI ends the stream
    assert dec.decode(b"\x16\x03\x01\x02\x00" + bytes(200), _ctx(), None) is None


def test_samples() -> None:
    (f,) = scan(PCAPS / "syslog-connlog.pcap").findings
    assert (f.kind, f.protocol, f.severity) == ("flow-export", "syslog-connlog", "medium")
    assert f.collector.port == 514
    assert 0.5 < f.evidence["connection_line_share"] < 1.0  # daemon lines are mixed in
    assert f.evidence["records_per_s"] > 0 and f.evidence["span_new_flows_per_s"] > 0
    assert any(w.ip and w.ip.startswith("192.168.10.") for w in f.watched[:3])
    (t,) = scan(PCAPS / "syslog-connlog-tcp.pcap").findings
    assert (t.protocol, t.transport, t.collector.port) == ("syslog-connlog", "tcp", 514)
    assert t.evidence["connection_line_share"] == 1.0
    assert scan(PCAPS / "syslog-daemons.pcap").findings == []
