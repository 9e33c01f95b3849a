"""`mirrorwatch watch` on a span point while real software emits mirrors and exports.

Each test builds its namespaces, starts ``watch`` on the span interface, makes the emitter send
for a few seconds, and checks that every stream was reported with the right kind, protocol,
exporter, collector and at least one right watched host; the time from each stream's first
packet to its finding is printed at the end of the run.  A last test
runs ordinary traffic and a two-way VXLAN overlay and expects nothing high or critical.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

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
    sh,
    wait_capturing,
    wait_path,
)

pytestmark = pytest.mark.slow

# How long to wait for a finding before calling it missing: generous, so a loaded machine is
# slow, not failing.  How fast findings come is measured, not asserted: the table of first
# packet -> finding times printed at the end of the run (the target is within 10 s).
WAIT = 60.0
ROUTER_HOSTS = {CLIENT, SERVER}


def finish(request: pytest.FixtureRequest, w: Watcher, expects: list[Expect],
           timeout: float, before_last: Callable[[], None] | None = None) -> None:  # fmt: skip
    """Wait for every expected stream, stop the watcher, check its end and the latencies."""
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    for exp in expects:
        m = w.await_match(exp, max(0.5, deadline - time.monotonic()))
        if m is not None:
            found[exp.name] = m[1]
    if before_last is not None and len(found) < len(expects):
        before_last()
        for exp in expects:
            if exp.name not in found:
                m = w.await_match(exp, WAIT)
                if m is not None:
                    found[exp.name] = m[1]
    rc = w.stop()
    for name, secs in found.items():
        LATENCIES.append((request.node.name, name, secs))
    missing = [e.name for e in expects if e.name not in found]
    assert not missing, f"not reported: {missing}; findings:\n{w.describe()}"
    check_end(w, rc)


def check_end(w: Watcher, rc: int) -> None:
    assert rc in (0, 1), f"watch exit status {rc}: {w.net.log(w.log_name)[-2000:]}"
    final = [e for e in w.events if e["event"] == "summary" and e["final"]]
    assert len(final) == 1, "one final summary at exit"
    cap = final[0]["captures"][0]
    assert cap["read_packets"] > 0
    # tcpdump's counters, printed when it was stopped, made it into the summary.
    assert "dropped_by_kernel" in cap and cap["captured"] >= cap["read_packets"]
    assert "failures" not in final[0]


# ------------------------------------------------------------------ Open vSwitch port mirrors


def ovs_start(net: Net, ns: str) -> Callable[..., str]:
    d = net.dir / "ovs"
    d.mkdir()
    net.env.update(OVS_RUNDIR=str(d), OVS_LOGDIR=str(d), OVS_DBDIR=str(d), OVS_SYSCONFDIR=str(d))
    sh("ovsdb-tool", "create", str(d / "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema")
    net.bg(ns, "ovsdb-server", "ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d}/db.sock",
           f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log")  # fmt: skip
    wait_path(d / "db.sock")

    def vs(*args: str) -> str:
        return net.x(ns, "ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=10", *args)

    vs("--no-wait", "init")
    net.bg(ns, "ovs-vswitchd", "ovs-vswitchd", f"unix:{d}/db.sock",
           f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log")  # fmt: skip
    wait_path(d / "ovs-vswitchd.ctl")
    vs("set", "Open_vSwitch", ".", "other_config:max-idle=1000")
    return vs


def test_ovs_port_mirrors(make_net: Callable[[str], Net], request: pytest.FixtureRequest) -> None:
    need("ovs-vsctl", "ovs-vswitchd", "ovsdb-server", "ovsdb-tool", package="openvswitch-switch")
    need("ethtool", package="ethtool")
    net = make_net("ov")
    a, b, sw, col = (net.ns(r) for r in ("a", "b", "sw", "col"))
    net.veth(sw, "p-a", a, "eth0")
    net.veth(sw, "p-b", b, "eth0")
    net.veth(sw, "p-up", col, "col0")
    net.ip(a, "addr", "add", "10.200.1.2/24", "dev", "eth0")
    net.ip(b, "addr", "add", "10.200.1.3/24", "dev", "eth0")
    # OVS's userspace datapath forwards veth frames with unfinished checksums otherwise.
    for ns in (a, b):
        net.x(ns, "ethtool", "-K", "eth0", "tx", "off")
    for last in range(2, 7):
        net.ip(col, "addr", "add", f"10.200.9.{last}/24", "dev", "col0")
    vs = ovs_start(net, sw)
    vs("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
       "--", "add-port", "br-phy", "p-up")  # fmt: skip
    net.ip(sw, "addr", "add", "10.200.9.1/24", "dev", "br-phy")
    net.ip(sw, "link", "set", "br-phy", "up")
    vs("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
       "--", "add-port", "br0", "p-a", "--", "add-port", "br0", "p-b")  # fmt: skip
    tunnels = {
        "gre0": ("type=gre", "options:remote_ip=10.200.9.2", "options:key=100"),
        "ers1": ("type=erspan", "options:remote_ip=10.200.9.3", "options:key=101",
                 "options:erspan_ver=1", "options:erspan_idx=0x5"),
        "ers2": ("type=erspan", "options:remote_ip=10.200.9.4", "options:key=102",
                 "options:erspan_ver=2", "options:erspan_dir=1", "options:erspan_hwid=0x7"),
        "vx0": ("type=vxlan", "options:remote_ip=10.200.9.5", "options:key=103"),
        "gnv0": ("type=geneve", "options:remote_ip=10.200.9.6", "options:key=104"),
    }  # fmt: skip
    for port, opts in tunnels.items():
        vs("add-port", "br0", port, "--", "set", "interface", port, *opts)
    net.http_server(b, "10.200.1.3")
    net.sink(col, [4789, 6081])
    w = Watcher(net, col, "col0")
    w.wait_ready()
    # The mirrors go in last, so their first packets are seen by the running watch.
    for port in tunnels:
        vs("--", "--id=@out", "get", "port", port,
           "--", "--id=@m", "create", "mirror", f"name=m-{port}", "select_all=true",
           "output_port=@out", "--", "add", "bridge", "br0", "mirrors", "@m")  # fmt: skip
    hosts = {"10.200.1.2", "10.200.1.3"}
    net.traffic(a, "10.200.1.3", rounds=3)
    expects = [
        Expect("ovs gre-teb", {"gre-teb"}, "mirror", "10.200.9.1", "10.200.9.2", hosts),
        Expect("ovs erspan type II", {"erspan-2"}, "mirror", "10.200.9.1", "10.200.9.3", hosts),
        Expect("ovs erspan type III", {"erspan-3"}, "mirror", "10.200.9.1", "10.200.9.4", hosts),
        Expect("ovs vxlan", {"vxlan"}, "mirror", "10.200.9.1", "10.200.9.5", hosts, 4789),
        Expect("ovs geneve", {"geneve"}, "mirror", "10.200.9.1", "10.200.9.6", hosts, 6081),
    ]
    finish(request, w, expects, timeout=WAIT)


# ------------------------------------------------------------------ kernel VXLAN mirrors


def _vxlan_pair(net: Net, n: dict[str, str], vni: int = 4242) -> None:
    net.ip(n["rtr"], "link", "add", "vxlan0", "type", "vxlan", "id", str(vni), "local", ROUTER_UP,
           "remote", COLLECTOR, "dstport", "4789", "dev", "rtr-up")  # fmt: skip
    net.ip(n["rtr"], "link", "set", "vxlan0", "up")
    net.ip(n["col"], "link", "add", "vxlan0", "type", "vxlan", "id", str(vni), "local", COLLECTOR,
           "remote", ROUTER_UP, "dstport", "4789", "dev", "col0")  # fmt: skip
    net.ip(n["col"], "link", "set", "vxlan0", "up")


def _tc_mirred(net: Net, rtr: str) -> None:
    net.x(rtr, "tc", "qdisc", "add", "dev", "rtr-lan", "clsact")
    # This kernel has u32 and mirred but neither matchall nor flower.
    for hook in ("ingress", "egress"):
        net.x(rtr, "tc", "filter", "add", "dev", "rtr-lan", hook, "protocol", "all", "prio", "1",
              "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev",
              "vxlan0")  # fmt: skip


NFT_DUP = """table netdev mw_mirror {
  chain in  { type filter hook ingress device "rtr-lan" priority 0; policy accept;
              dup to "vxlan0"; }
  chain out { type filter hook egress  device "rtr-lan" priority 0; policy accept;
              dup to "vxlan0"; }
}
"""


def _nft_dup(net: Net, rtr: str) -> None:
    subprocess.run(["ip", "netns", "exec", rtr, "nft", "-f", "-"], input=NFT_DUP, text=True,
                   check=True, capture_output=True)  # fmt: skip


@pytest.mark.parametrize("method", ["tc-mirred", "nft-dup"])
def test_kernel_vxlan_mirror(
    method: str, make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    need("tc", package="iproute2")
    need("ping", package="iputils-ping")
    need("curl", package="curl")
    if method == "nft-dup":
        need("nft", package="nftables")
    net = make_net("vt" if method == "tc-mirred" else "vn")
    n = net.router_layout()
    net.http_server(n["srv"], SERVER)
    _vxlan_pair(net, n)
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    (_tc_mirred if method == "tc-mirred" else _nft_dup)(net, n["rtr"])
    net.traffic(n["cli"], SERVER, rounds=2)
    exp = Expect(f"vxlan ({method})", {"vxlan"}, "mirror", ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 4789)
    finish(request, w, [exp], timeout=WAIT)


# ------------------------------------------------------------------ flow exports


def test_pmacct_flow_exports(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    need("pmacctd", package="pmacct")
    need("ping", package="iputils-ping")
    need("curl", package="curl")
    net = make_net("pm")
    n = net.router_layout()
    net.http_server(n["srv"], SERVER)
    net.sink(n["col"], [2055, 9996, 4739, 6343])
    conf = net.dir / "pmacctd.conf"
    conf.write_text(
        f"daemonize: false\npcap_interface: rtr-lan\npidfile: {net.dir}/pmacctd.pid\n"
        "plugins: nfprobe[nf5], nfprobe[nf9], nfprobe[ipfix], sfprobe[sf]\n"
        f"nfprobe_receiver[nf5]: {COLLECTOR}:2055\nnfprobe_version[nf5]: 5\n"
        f"nfprobe_receiver[nf9]: {COLLECTOR}:9996\nnfprobe_version[nf9]: 9\n"
        "nfprobe_engine[nf9]: 9\n"
        f"nfprobe_receiver[ipfix]: {COLLECTOR}:4739\nnfprobe_version[ipfix]: 10\n"
        "nfprobe_engine[ipfix]: 10\n"
        "nfprobe_timeouts: tcp=2:tcp.rst=2:tcp.fin=2:udp=2:icmp=2:general=2:maxlife=3:expint=1\n"
        f"sfprobe_receiver[sf]: {COLLECTOR}:6343\nsfprobe_agentip[sf]: {ROUTER_UP}\n"
        "sampling_rate[sf]: 1\n"
    )
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    pmacctd = net.bg(n["rtr"], "pmacctd", "pmacctd", "-f", str(conf))
    wait_capturing(pmacctd, "pmacctd")
    net.traffic(n["cli"], SERVER, rounds=2)
    fx = "flow-export"
    expects = [
        Expect("pmacct netflow v5", {"netflow-v5"}, fx, ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 2055),
        Expect("pmacct netflow v9", {"netflow-v9"}, fx, ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 9996),
        Expect("pmacct ipfix", {"ipfix"}, fx, ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 4739),
        Expect("pmacct sflow", {"sflow"}, fx, ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 6343),
    ]
    # SIGTERM makes the nfprobe plugins flush their flow caches.
    finish(request, w, expects, timeout=8, before_last=lambda: Net.stop(pmacctd))


PCAP_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
typedef struct pcap pcap_t;
int pcap_set_timeout(pcap_t *p, int t) {
  static int (*real)(pcap_t *, int);
  if (!real) real = (int (*)(pcap_t *, int))dlsym(RTLD_NEXT, "pcap_set_timeout");
  return real(p, t ? t : 100);
}
pcap_t *pcap_open_live(const char *d, int s, int p, int t, char *e) {
  static pcap_t *(*real)(const char *, int, int, int, char *);
  if (!real)
    real = (pcap_t *(*)(const char *, int, int, int, char *))dlsym(RTLD_NEXT, "pcap_open_live");
  return real(d, s, p, t ? t : 100, e);
}
"""


def test_softflowd_flow_exports(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    need("softflowd", "softflowctl", package="softflowd")
    need("gcc", package="gcc")
    need("ping", package="iputils-ping")
    need("curl", package="curl")
    net = make_net("sf")
    # softflowd opens libpcap with a read timeout of 0, which starves on sparse traffic here;
    # this preload turns it into 100 ms.
    (net.dir / "shim.c").write_text(PCAP_SHIM)
    shim = net.dir / "shim.so"
    sh("gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(net.dir / "shim.c"), "-ldl")
    n = net.router_layout()
    net.http_server(n["srv"], SERVER)
    net.sink(n["col"], [2055, 9996, 4739, 4740])
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    timeouts = [a for t in ("maxlife=3", "expint=1", "general=2", "icmp=2", "udp=2", "tcp=2",
                            "tcp.rst=2", "tcp.fin=2") for a in ("-t", t)]  # fmt: skip
    for version, port in (("5", 2055), ("9", 9996), ("10", 4739), ("psamp", 4740)):
        sfd = net.bg(n["rtr"], f"softflowd-{version}", "softflowd", "-d", "-i", "rtr-lan",
                     "-v", version, "-n", f"{COLLECTOR}:{port}", *timeouts,
                     "-p", f"{net.dir}/sf{version}.pid", "-c", f"{net.dir}/sf{version}.ctl",
                     env={"LD_PRELOAD": str(shim)})  # fmt: skip
        wait_capturing(sfd, f"softflowd -v {version}")
        wait_path(net.dir / f"sf{version}.ctl")
    net.traffic(n["cli"], SERVER, rounds=2)

    def expire_all() -> None:
        for version in ("5", "9", "10", "psamp"):
            net.x(n["rtr"], "softflowctl", "-c", f"{net.dir}/sf{version}.ctl", "expire-all",
                  check=False)  # fmt: skip

    fx, up, col, hosts = "flow-export", ROUTER_UP, COLLECTOR, ROUTER_HOSTS
    expects = [
        Expect("softflowd netflow v5", {"netflow-v5"}, fx, up, col, hosts, 2055),
        Expect("softflowd netflow v9", {"netflow-v9"}, fx, up, col, hosts, 9996),
        Expect("softflowd ipfix", {"ipfix"}, fx, up, col, hosts, 4739),
        Expect("softflowd psamp", {"psamp"}, fx, up, col, hosts, 4740),
    ]
    finish(request, w, expects, timeout=8, before_last=expire_all)


# ------------------------------------------------------------------ software mirrors (scapy)

SOFT_MIRROR = r"""
import socket, struct, sys, signal
from scapy.all import sniff
iface, collector = sys.argv[1], sys.argv[2]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
TZSP = bytes([1, 0, 0, 1, 1])   # version 1, received, Ethernet, tag END
def handle(pkt):
    frame = bytes(pkt)
    out.sendto(TZSP + frame, (collector, 37008))
    if struct.unpack("!H", frame[12:14])[0] == 0x0800:
        ip = frame[14:]
        out.sendto(struct.pack("!II", 0x1234, 0x42) + ip, (collector, 30030))   # jmirror
        out.sendto(struct.pack("!I", 0xC0FFEE) + ip, (collector, 55555))       # PCLI
sniff(iface=iface, prn=handle, store=False)
"""


@pytest.mark.parametrize("method", ["afpacket", "tcpdump"])
def test_scapy_soft_mirrors(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest, method: str
) -> None:
    # Both capture paths: the kernel ring read in-process, and the tcpdump child.
    pytest.importorskip("scapy", reason="scapy (python3-scapy or pip) is not installed")
    need("ping", package="iputils-ping")
    need("curl", package="curl")
    net = make_net("sm" + method[0])
    n = net.router_layout()
    net.http_server(n["srv"], SERVER)
    net.sink(n["col"], [37008, 30030, 55555])
    (net.dir / "soft_mirror.py").write_text(SOFT_MIRROR)
    w = Watcher(net, n["rtr"], "rtr-up", "--capture", method)
    w.wait_ready()
    mirror = net.bg(n["rtr"], "soft_mirror", sys.executable, str(net.dir / "soft_mirror.py"),
                    "rtr-lan", COLLECTOR)  # fmt: skip
    wait_capturing(mirror, "the scapy mirror")  # scapy's import takes seconds under load
    net.traffic(n["cli"], SERVER, rounds=2)
    expects = [
        Expect("tzsp", {"tzsp"}, "mirror", ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 37008),
        Expect("jmirror", {"jmirror"}, "intercept", ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 30030),
        Expect("pcli", {"pcli"}, "intercept", ROUTER_UP, COLLECTOR, ROUTER_HOSTS, 55555),
    ]
    finish(request, w, expects, timeout=WAIT)


# ------------------------------------------------------------------ plain copies


def test_iptables_tee_copies(
    make_net: Callable[[str], Net], request: pytest.FixtureRequest
) -> None:
    """iptables TEE clones both directions of the LAN's traffic to a collector, unencapsulated:
    the copies differ from the originals only in their L2 destination."""
    need("iptables", package="iptables")
    need("ping", package="iputils-ping")
    need("curl", package="curl")
    net = make_net("te")
    n = net.router_layout()
    net.http_server(n["srv"], SERVER)
    for chain, way in (("PREROUTING", "-i"), ("POSTROUTING", "-o")):
        net.x(n["rtr"], "iptables", "-t", "mangle", "-A", chain, way, "rtr-lan", "-j", "TEE",
              "--gateway", COLLECTOR)  # fmt: skip
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    net.traffic(n["cli"], SERVER, rounds=2)
    # Plain copies have no IP endpoints of their own (null): exporter and collector are MACs.
    expects = [Expect("tee", {"tee-copy"}, "mirror", None, None, ROUTER_HOSTS)]
    finish(request, w, expects, timeout=WAIT)
    tee = [s.latest for s in w.by_id.values() if s.latest["protocol"] == "tee-copy"]
    assert any(f["severity"] in ("high", "critical") for f in tee), w.describe()


# ------------------------------------------------------------------ nothing to report

RANDOM_UDP = r"""
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    for port in (443, 53, 123, 4789, 2055):
        s.sendto(os.urandom(40 + os.urandom(1)[0] * 4), (sys.argv[1], port))
    time.sleep(0.02)
"""


def test_quiet_traffic_and_vxlan_overlay(make_net: Callable[[str], Net]) -> None:
    need("ping", package="iputils-ping")
    need("curl", package="curl")
    net = make_net("qt")
    n = net.router_layout()
    net.http_server(n["srv"], SERVER)
    # A two-way VXLAN overlay between the router and the collector host: an ordinary tunnel.
    _vxlan_pair(net, n, vni=77)
    net.ip(n["rtr"], "addr", "add", "10.200.77.1/24", "dev", "vxlan0")
    net.ip(n["col"], "addr", "add", "10.200.77.2/24", "dev", "vxlan0")
    net.http_server(n["col"], "10.200.77.2")
    net.sink(n["col"], [443, 53, 123, 2055])
    (net.dir / "random_udp.py").write_text(RANDOM_UDP)
    w = Watcher(net, n["rtr"], "rtr-up")
    w.wait_ready()
    noise = net.bg(n["rtr"], "random_udp", sys.executable, str(net.dir / "random_udp.py"),
                   COLLECTOR, "4")  # fmt: skip
    net.traffic(n["cli"], SERVER, rounds=2)
    net.traffic(n["rtr"], "10.200.77.2", rounds=2)
    net.x(n["col"], "ping", "-q", "-c", "3", "-i", "0.2", "10.200.77.1", check=False)
    noise.wait(60)  # its 4 s of noise all sent; stopping the watch then reads what it holds
    rc = w.stop()
    loud = [
        f"{e['event']}: {e['finding']['protocol']} {e['finding']['kind']} "
        f"{e['finding']['severity']}"
        for e in w.events
        if "finding" in e and e["finding"]["severity"] in ("high", "critical")
    ]
    assert not loud, f"ordinary traffic reported as high/critical: {loud}\n{w.describe()}"
    assert rc == 0, f"exit status {rc} with --fail-on high and nothing high"
    overlay = [s.latest for s in w.by_id.values() if s.latest["protocol"] == "vxlan"]
    assert overlay, f"the overlay was not seen at all:\n{w.describe()}"
    assert all(f["kind"] == "tunnel" for f in overlay), w.describe()
    check_end(w, rc)
