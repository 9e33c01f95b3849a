"""Copies the router tries to hide, from real software in network namespaces: a capture piped
through TLS or SSH, a port mirror bridged into an OpenVPN tunnel, connection logs forwarded by
rsyslog, a resolver's dnstap; and their honest counterparts (an HTTPS download, a VPN carrying
the host's own traffic), which must stay below high.

Each test records the span with tcpdump while ``watch`` runs, and checks ``scan`` of that capture
as well.  The time from a stream's first packet to its finding in ``watch`` goes to the table
printed at the end of the run.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netlib import (
    CLIENT,
    COLLECTOR,
    LATENCIES,
    ROUTER_UP,
    SERVER,
    Expect,
    Net,
    Watcher,
    need,
    parse_time,
    until,
    wait_capturing,
)

from detector.scan import scan_paths

pytestmark = pytest.mark.slow

HOSTS = {CLIENT, SERVER}

# Web browsing of a sort: files of random sizes fetched with random pauses, so the byte rate
# varies the way a copy must follow.
BROWSE = r"""
import random, sys, time, urllib.request
host, seconds, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
end = time.time() + seconds
while time.time() < end:
    try:
        urllib.request.urlopen(f"http://{host}:8080/f{rng.randrange(12)}.bin", timeout=3).read()
    except OSError:
        pass
    time.sleep(rng.random() * 0.3)
"""


def web(net: Net, ns: str, ip: str) -> None:
    """An HTTP server on ``ip`` with files of 2-300 kB."""
    www = net.dir / "www"
    www.mkdir(exist_ok=True)
    rng = random.Random(5)
    for i in range(12):
        (www / f"f{i}.bin").write_bytes(rng.randbytes(rng.randrange(2_000, 300_000)))
    net.http_server(ns, ip)


def browse(net: Net, ns: str, ip: str, seconds: float, seed: int = 1) -> subprocess.Popen[Any]:
    script = net.dir / "browse.py"
    script.write_text(BROWSE)
    return net.bg(ns, f"browse-{seed}", sys.executable, str(script), ip, str(seconds), str(seed))


def record(net: Net, ns: str, iface: str) -> tuple[subprocess.Popen[Any], Path]:
    """tcpdump of the span, to scan afterwards what watch saw live."""
    cap = net.dir / f"span-{iface}.pcap"
    p = net.bg(ns, f"record-{iface}", "tcpdump", "-i", iface, "--immediate-mode", "-U", "-n",
                 "-w", str(cap))  # fmt: skip
    wait_capturing(p, "tcpdump (recording)")
    return p, cap


def certificate(net: Net) -> tuple[Path, Path]:
    key, cert = net.dir / "key.pem", net.dir / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=collector",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def listening(net: Net, ns: str, port: int, proto: str = "tcp") -> bool:
    flag = "-ltn" if proto == "tcp" else "-lun"
    return until(lambda: f":{port} " in net.x(ns, "ss", flag, check=False), 10.0)


def summary(findings: list[dict[str, Any]] | list[Any]) -> str:
    out = []
    for f in findings:
        g = f if isinstance(f, dict) else f.model_dump(mode="json")
        ev = g.get("evidence", {})
        out.append(
            f"{g['protocol']} {g['kind']} {g['severity']} {g['exporter']['ip']} -> "
            f"{g['collector']['ip']}:{g['collector']['port']} r={ev.get('correlation')} "
            f"ratio={ev.get('bytes_ratio')} matched={ev.get('matched_share')}"
        )
    return "\n".join(out) or "(none)"


def watch_and_scan(
    request: pytest.FixtureRequest,
    net: Net,
    w: Watcher,
    rec: subprocess.Popen[Any],
    cap: Path,
    expects: list[Expect],
    timeout: float,
    severity: str,
) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """Wait for every expected stream in watch, stop, then scan the recording: both must report
    each one with ``severity``.  Returns the scan's findings and the latest watch finding per
    expectation."""
    deadline = time.monotonic() + timeout
    found: dict[str, tuple[Any, float]] = {}
    for exp in expects:
        m = w.await_match(exp, max(0.5, deadline - time.monotonic()))
        if m is None:
            continue
        seen = m[0]

        def reached() -> bool:
            return any(e["finding"]["severity"] == severity for e in seen.events)  # noqa: B023

        # A stream tunnel is medium from its first seconds and high once its 1 s windows count.
        w.wait(reached, max(0.5, deadline - time.monotonic()))
        at = [e for e in seen.events if e["finding"]["severity"] == severity]
        first = seen.first_event["finding"]["first_seen"]
        if at:
            found[exp.name] = (seen, parse_time(at[0]["time"]) - parse_time(first))
        if m[1] and at and severity == "high":
            LATENCIES.append((request.node.name, f"{exp.name} (first reported)", m[1]))
    rc = w.stop()
    Net.stop(rec, wait=5)
    missing = [e.name for e in expects if e.name not in found]
    assert not missing, f"not reported in watch: {missing}; findings:\n{w.describe()}"
    latest = {}
    for exp in expects:
        seen, secs = found[exp.name]
        ev = seen.latest["evidence"]
        measure = (
            f" r={ev['correlation']} x{ev['bytes_ratio']}"
            + (f" matched={ev['matched_share']}" if "matched_share" in ev else "")
            if "correlation" in ev
            else ""
        )
        LATENCIES.append((request.node.name, exp.name + measure, secs))
        latest[exp.name] = seen.latest
        assert seen.latest["severity"] == severity, summary([seen.latest])
    assert rc in (0, 1), net.log(w.log_name)[-2000:]
    report = scan_paths([str(cap)]).report
    for exp in expects:
        got = [
            f for f in report.findings
            if f.kind == exp.kind and f.protocol in exp.protocols
            and f.exporter.ip == exp.exporter and f.collector.ip == exp.collector
        ]  # fmt: skip
        assert got, f"scan of the recording missed {exp.name}:\n{summary(report.findings)}"
        assert got[0].severity == severity, summary(got)
        assert {w.ip for w in got[0].watched} & exp.hosts, summary(got)
    return report.findings, latest


def nothing_high(w: Watcher, rec: subprocess.Popen[Any], cap: Path) -> list[Any]:
    rc = w.stop()
    Net.stop(rec, wait=5)
    loud = [
        e["finding"] for e in w.events
        if "finding" in e and e["finding"]["severity"] in ("high", "critical")
    ]  # fmt: skip
    assert not loud, f"honest traffic reported high in watch:\n{summary(loud)}"
    assert rc == 0
    report = scan_paths([str(cap)]).report
    high = [f for f in report.findings if f.severity in ("high", "critical")]
    assert not high, f"honest traffic reported high by scan:\n{summary(high)}"
    return report.findings


# ------------------------------------------------------------------ a capture piped through TLS


def test_capture_piped_through_tls(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    """tcpdump -U -w - | openssl s_client on the router, to an openssl s_server collector."""
    need("openssl", package="openssl")
    need("curl", package="curl")
    net = make_net("hid1")
    n = net.router_layout()
    web(net, n["srv"], SERVER)
    key, cert = certificate(net)
    # s_server ends a connection when its own input ends: give it one that does not.
    serve = f"sleep 600 | openssl s_server -quiet -accept 4443 -cert {cert} -key {key} >/dev/null"
    net.bg(n["col"], "s_server", "sh", "-c", serve)
    assert listening(net, n["col"], 4443), net.log("s_server")
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    pipe = f"tcpdump -U -n -i rtr-lan -w - | openssl s_client -quiet -connect {COLLECTOR}:4443"
    net.bg(n["rtr"], "tls-copy", "sh", "-c", pipe)
    browse(net, n["cli"], SERVER, 14)
    exp = Expect("tcpdump | openssl s_client", {"encrypted-copy"}, "mirror", ROUTER_UP,
                 COLLECTOR, HOSTS, 4443)  # fmt: skip
    _, latest = watch_and_scan(request, net, w, rec, cap, [exp], 40, "high")
    assert latest[exp.name]["session"]["carrier"] == "tls"


def test_https_download_is_not_a_copy(make_net: Callable[[str], Net]) -> None:
    """Honest: a large HTTPS download while the client also browses in clear."""
    need("openssl", package="openssl")
    need("curl", package="curl")
    net = make_net("hid2")
    n = net.router_layout()
    web(net, n["srv"], SERVER)
    key, cert = certificate(net)
    (net.dir / "www" / "big.bin").write_bytes(random.Random(9).randbytes(8_000_000))
    net.bg(n["srv"], "https", "openssl", "s_server", "-quiet", "-WWW", "-accept", "8443",
           "-cert", str(cert), "-key", str(key), cwd=str(net.dir / "www"))  # fmt: skip
    assert listening(net, n["srv"], 8443), net.log("https")
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    clear = browse(net, n["cli"], SERVER, 10)
    for _ in range(3):
        net.x(n["cli"], "curl", "-sk", "--limit-rate", "3M", "-o", "/dev/null",
              f"https://{SERVER}:8443/big.bin", check=False, timeout=30)  # fmt: skip
    clear.wait(30)
    nothing_high(w, rec, cap)


# ------------------------------------------------------------------ metadata leaving as logs

ULOGD_CONF = """[global]
logfile="{dir}/ulogd.log"
loglevel=3
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_NFLOG.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_raw2packet_BASE.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IFINDEX.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IP2STR.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_PRINTPKT.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_LOGEMU.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU

[log1]
group=5

[emu1]
file="{dir}/ulogd_syslogemu.log"
sync=1
"""

RSYSLOG_CONF = """global(workDirectory="{dir}/rsyslog")
module(load="imfile")
input(type="imfile" File="{dir}/ulogd_syslogemu.log" Tag="ulogd:" Facility="local4")
action(type="omfwd" Target="{collector}" Port="514" Protocol="{protocol}"
       TCP_Framing="octet-counted" Template="RSYSLOG_SyslogProtocol23Format")
"""


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_connection_log_forwarded_by_rsyslog(
    protocol: str, make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    """The router logs each new forwarded connection (iptables NFLOG → ulogd2) and rsyslog
    forwards the log to a remote server."""
    need("ulogd", package="ulogd2")
    need("rsyslogd", package="rsyslog")
    need("iptables", package="iptables")
    net = make_net("hid3" if protocol == "udp" else "hid4")
    n = net.router_layout()
    web(net, n["srv"], SERVER)
    if protocol == "udp":
        net.sink(n["col"], [514])
    else:
        net.bg(
            n["col"], "collector", "socat", "-u", "TCP-LISTEN:514,reuseaddr,fork", "OPEN:/dev/null"
        )
        assert listening(net, n["col"], 514), net.log("collector")
    (net.dir / "rsyslog").mkdir()
    (net.dir / "ulogd.conf").write_text(ULOGD_CONF.format(dir=net.dir))
    (net.dir / "ulogd_syslogemu.log").write_text("")
    (net.dir / "rsyslog.conf").write_text(
        RSYSLOG_CONF.format(dir=net.dir, collector=COLLECTOR, protocol=protocol)
    )
    net.x(n["rtr"], "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW",
          "-j", "NFLOG", "--nflog-group", "5", "--nflog-prefix", "FWD")  # fmt: skip
    net.bg(n["rtr"], "ulogd", "ulogd", "-c", str(net.dir / "ulogd.conf"))
    net.bg(n["rtr"], "rsyslogd", "rsyslogd", "-n", "-f", str(net.dir / "rsyslog.conf"),
           "-i", str(net.dir / "rsyslog.pid"))  # fmt: skip
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    browse(net, n["cli"], SERVER, 8)
    exp = Expect(f"ulogd2 + rsyslog ({protocol})", {"syslog-connlog"}, "flow-export",
                 ROUTER_UP, COLLECTOR, HOSTS, 514)  # fmt: skip
    _, latest = watch_and_scan(request, net, w, rec, cap, [exp], 30, "medium")
    f = latest[exp.name]
    assert f["evidence"]["connection_line_share"] > 0.9, summary([f])


FSTRM_COLLECTOR = r"""
import socket, struct, sys
CT = b"protobuf:dnstap.Dnstap"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(4)
while True:
    conn, _ = srv.accept()
    conn.recv(4096)  # READY
    body = struct.pack("!III", 1, 1, len(CT)) + CT  # ACCEPT, content type
    conn.sendall(struct.pack("!II", 0, len(body)) + body)
    while conn.recv(65536):
        pass
"""

UNBOUND_CONF = """server:
  interface: {resolver}
  access-control: 0.0.0.0/0 allow
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: "{dir}/unbound-own.log"
  module-config: "iterator"
  local-zone: "site.test." static
{records}
dnstap:
  dnstap-enable: yes
  dnstap-ip: "{collector}@6000"
  dnstap-tls: no
  dnstap-send-identity: yes
  dnstap-identity: "rtr-resolver"
  dnstap-log-client-query-messages: yes
  dnstap-log-client-response-messages: yes
"""

QUERIES = r"""
import random, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for i in range(int(sys.argv[2])):
    name = f"host{i % 20}.site.test"
    q = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0\0\1\0\1"
    s.sendto(q, (sys.argv[1], 53))
    try:
        s.recv(512)
    except OSError:
        pass
    time.sleep(0.05)
"""


def test_unbound_dnstap(make_net: Callable[[str], Net], request: pytest.FixtureRequest) -> None:
    """The router's resolver (unbound) exports every client query over dnstap (TCP)."""
    need("unbound", package="unbound")
    net = make_net("hid5")
    n = net.router_layout()
    (net.dir / "fstrm.py").write_text(FSTRM_COLLECTOR)
    net.bg(n["col"], "fstrm", sys.executable, str(net.dir / "fstrm.py"), COLLECTOR, "6000")
    assert listening(net, n["col"], 6000), net.log("fstrm")
    records = "\n".join(
        f'  local-data: "host{i}.site.test. A 10.200.2.{100 + i}"' for i in range(20)
    )
    conf = net.dir / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(resolver="10.200.1.1", dir=net.dir, collector=COLLECTOR,
                                        records=records))  # fmt: skip
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    net.bg(n["rtr"], "unbound", "unbound", "-d", "-c", str(conf))
    assert listening(net, n["rtr"], 53, "udp"), net.log("unbound")
    (net.dir / "queries.py").write_text(QUERIES)
    net.x(n["cli"], sys.executable, str(net.dir / "queries.py"), "10.200.1.1", "80", timeout=60)
    exp = Expect("unbound dnstap", {"dnstap"}, "flow-export", ROUTER_UP, COLLECTOR, {CLIENT}, 6000)
    _, latest = watch_and_scan(request, net, w, rec, cap, [exp], 20, "medium")
    f = latest[exp.name]
    assert f["session"].get("identity") == "rtr-resolver", summary([f])


# ------------------------------------------------------------------ a mirror inside OpenVPN


def wire_sized(net: Net, n: dict[str, str]) -> None:
    """Segmentation offloads off: the span then sees packets as a wire carries them, not the
    64 kB aggregates of veth, which a tap device would not take either."""
    for role, ifaces in (("cli", ["cli0"]), ("rtr", ["rtr-lan", "rtr-up"]), ("srv", ["srv0"])):
        for iface in ifaces:
            net.x(n[role], "ethtool", "-K", iface, "tso", "off", "gso", "off", "gro", "off",
                  check=False)  # fmt: skip


def openvpn_pair(net: Net, n: dict[str, str], dev: str, *ifconfig: str) -> None:
    """A static-key OpenVPN tunnel over UDP 1194 from the router to the collector host."""
    key = net.dir / "static.key"
    subprocess.run(["openvpn", "--genkey", "secret", str(key)], check=True, capture_output=True)
    common = ["openvpn", "--dev", dev, "--proto", "udp", "--port", "1194", "--secret", str(key),
              "--cipher", "AES-256-CBC", "--verb", "3"]  # fmt: skip
    side = {"col": [], "rtr": ["--remote", COLLECTOR]}
    for role, local, peer in (
        (("col", *ifconfig[::-1]), ("rtr", *ifconfig))
        if ifconfig
        else (("col", "", ""), ("rtr", "", ""))
    ):
        extra = ["--ifconfig", local, peer] if ifconfig else []
        net.bg(n[role], f"openvpn-{role}", *common, *side[role], *extra)
    for role in ("col", "rtr"):
        up = until(lambda r=role: dev in net.x(n[r], "ip", "-o", "link", check=False), 15.0)
        assert up, net.log(f"openvpn-{role}")
        net.ip(n[role], "link", "set", dev, "up")
    done = "Initialization Sequence Completed"
    assert until(lambda: done in net.log("openvpn-rtr"), 15.0), net.log("openvpn-rtr")


def test_port_mirror_into_openvpn(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    """tc mirred copies the LAN port into the tap device of an OpenVPN tunnel (static key, UDP)."""
    need("openvpn", package="openvpn")
    need("tc", package="iproute2")
    need("ethtool", package="ethtool")
    net = make_net("hid6")
    n = net.router_layout()
    wire_sized(net, n)
    web(net, n["srv"], SERVER)
    openvpn_pair(net, n, "tap0")
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    net.x(n["rtr"], "tc", "qdisc", "add", "dev", "rtr-lan", "clsact")
    for hook in ("ingress", "egress"):
        net.x(n["rtr"], "tc", "filter", "add", "dev", "rtr-lan", hook, "protocol", "all", "prio",
              "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev",
              "tap0")  # fmt: skip
    browse(net, n["cli"], SERVER, 14)
    exp = Expect("tc mirred into OpenVPN", {"encrypted-copy"}, "mirror", ROUTER_UP, COLLECTOR,
                 HOSTS, 1194)  # fmt: skip
    _, latest = watch_and_scan(request, net, w, rec, cap, [exp], 40, "high")
    assert latest[exp.name]["session"]["carrier"] == "openvpn"


def test_openvpn_carrying_own_traffic_is_not_a_copy(make_net: Callable[[str], Net]) -> None:
    """Honest: the same tunnel carrying the router's own traffic, while the LAN browses in
    clear."""
    need("openvpn", package="openvpn")
    net = make_net("hid7")
    n = net.router_layout()
    web(net, n["srv"], SERVER)
    openvpn_pair(net, n, "tun0", "10.200.8.1", "10.200.8.2")
    net.http_server(n["col"], "10.200.8.2")
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    own = browse(net, n["rtr"], "10.200.8.2", 12, seed=2)
    clear = browse(net, n["cli"], SERVER, 12, seed=3)
    own.wait(40)
    clear.wait(40)
    nothing_high(w, rec, cap)
    tunnelled = net.x(n["rtr"], "tcpdump", "-n", "-r", str(cap), "udp port 1194", check=False)
    assert len(tunnelled.splitlines()) > 100, "the router's own traffic did not use the tunnel"


# ------------------------------------------------------------------ a capture piped through SSH


def test_capture_piped_through_ssh(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    """tcpdump -U -w - | ssh collector 'cat > /dev/null', to an sshd on the collector host."""
    need("sshd", package="openssh-server")
    need("ssh", package="openssh-client")
    net = make_net("hid8")
    n = net.router_layout()
    web(net, n["srv"], SERVER)
    d = net.dir
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True, capture_output=True)  # fmt: skip
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    (d / "sshd_config").write_text(
        f"ListenAddress {COLLECTOR}\nPort 22\nHostKey {d}/host\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    net.bg(n["col"], "sshd", "/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config"))
    assert listening(net, n["col"], 22), net.log("sshd")
    rec, cap = record(net, n["rtr"], "rtr-up")
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    ssh = (
        f"ssh -i {d}/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o BatchMode=yes root@{COLLECTOR} 'cat > /dev/null'"
    )
    net.bg(n["rtr"], "ssh-copy", "sh", "-c", f"tcpdump -U -n -i rtr-lan -w - | {ssh}")
    browse(net, n["cli"], SERVER, 14)
    exp = Expect("tcpdump | ssh", {"encrypted-copy"}, "mirror", ROUTER_UP, COLLECTOR, HOSTS, 22)
    _, latest = watch_and_scan(request, net, w, rec, cap, [exp], 40, "high")
    assert latest[exp.name]["session"]["carrier"] == "ssh"
