"""Network namespaces, emitters and a running ``mirrorwatch watch`` for the end-to-end tests.

Every namespace is named ``mw-<tag>-<role>`` and every address is in 10.200.0.0/16.  A ``Net``
remembers what it created and ``teardown`` removes it all (processes by pid, then whatever still
lives in its namespaces, then the namespaces), so a failing test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# Router layout (as on a small site: the span point is the router's uplink, rtr-up):
#   mw-T-cli cli0 10.200.1.2 -- rtr-lan 10.200.1.1 [mw-T-rtr] rtr-up 10.200.2.1 -- bridge in mw-T-sw
#   mw-T-srv srv0 10.200.2.10 (http :8080)          mw-T-col col0 10.200.2.20 (collector)
CLIENT, ROUTER_LAN, ROUTER_UP, SERVER, COLLECTOR = (
    "10.200.1.2", "10.200.1.1", "10.200.2.1", "10.200.2.10", "10.200.2.20",
)  # fmt: skip


# (test, stream, seconds from the stream's first packet to the event that reported it)
LATENCIES: list[tuple[str, str, float]] = []


def need(*tools: str, package: str) -> None:
    """Skip unless these programs are installed (from the named Debian package)."""
    import pytest

    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian package {package})")


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


def until(ready: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``ready`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def wait_path(p: Path, timeout: float = 60.0) -> None:
    if not until(p.exists, timeout):
        raise RuntimeError(f"{p} did not appear")


def _holds_packet_socket(pid: int) -> bool:
    """Whether process ``pid`` or one of its children has an AF_PACKET socket open."""
    try:
        lines = Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]
        inodes = {line.split()[-1] for line in lines}
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        kids = [
            int(c)
            for t in os.listdir(f"/proc/{pid}/task")
            for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()
        ]
    except OSError:
        return False
    if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
        return True
    return any(_holds_packet_socket(k) for k in kids)


def wait_capturing(p: subprocess.Popen[Any], name: str, timeout: float = 90.0) -> None:
    """Wait until a started capture tool has opened its packet socket (it then sees traffic)."""
    if not until(lambda: p.poll() is not None or _holds_packet_socket(p.pid), timeout):
        raise RuntimeError(f"{name} opened no packet socket within {timeout:.0f} s")
    if p.poll() is not None:
        raise RuntimeError(f"{name} exited ({p.returncode}) before capturing")


class Net:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.dir = Path(tempfile.mkdtemp(prefix=f"mw-e2e-{tag}-"))
        self.env: dict[str, str] = {}

    # ---------------------------------------------------------------- building

    def ns(self, role: str) -> str:
        name = f"mw-{self.tag}-{role}"
        sh("ip", "netns", "del", name, check=False)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns1: str, if1: str, ns2: str, if2: str) -> None:
        peer = ("peer", "name", if2, "netns", ns2)
        sh("ip", "link", "add", if1, "netns", ns1, "type", "veth", *peer)
        sh("ip", "-n", ns1, "link", "set", if1, "up")
        sh("ip", "-n", ns2, "link", "set", if2, "up")

    def ip(self, ns: str, *args: str) -> None:
        sh("ip", "-n", ns, *args)

    def x(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        return sh("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout).stdout

    def bg(self, ns: str, name: str, *cmd: str, **kw: Any) -> subprocess.Popen[Any]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, **self.env, **kw.pop("env", {})}
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd], stdout=kw.pop("stdout", log), stderr=log,
            stdin=subprocess.DEVNULL, env=env, **kw,
        )  # fmt: skip
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        p = self.dir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    @staticmethod
    def stop(p: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 3.0) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def teardown(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + 2
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.0, deadline - time.monotonic()))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for n in self.namespaces:
                for pid in self._pids(n):
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), sig)
            if sig == signal.SIGTERM:
                # Until they are gone (or 2 s): what is left then gets SIGKILL.
                until(lambda: not any(self._pids(n) for n in self.namespaces), 2.0)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(1)
        for n in self.namespaces:
            sh("ip", "netns", "del", n, check=False)
        if not os.environ.get("MW_E2E_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _pids(ns: str) -> list[str]:
        return sh("ip", "netns", "pids", ns, check=False).stdout.split()

    # ---------------------------------------------------------------- layouts

    def router_layout(self) -> dict[str, str]:
        n = {r: self.ns(r) for r in ("cli", "rtr", "sw", "srv", "col")}
        self.veth(n["cli"], "cli0", n["rtr"], "rtr-lan")
        self.veth(n["rtr"], "rtr-up", n["sw"], "sw-rtr")
        self.veth(n["srv"], "srv0", n["sw"], "sw-srv")
        self.veth(n["col"], "col0", n["sw"], "sw-col")
        self.ip(n["sw"], "link", "add", "br0", "type", "bridge")
        for p in ("sw-rtr", "sw-srv", "sw-col"):
            self.ip(n["sw"], "link", "set", p, "master", "br0")
        self.ip(n["sw"], "link", "set", "br0", "up")
        self.ip(n["cli"], "addr", "add", f"{CLIENT}/24", "dev", "cli0")
        self.ip(n["rtr"], "addr", "add", f"{ROUTER_LAN}/24", "dev", "rtr-lan")
        self.ip(n["rtr"], "addr", "add", f"{ROUTER_UP}/24", "dev", "rtr-up")
        self.ip(n["srv"], "addr", "add", f"{SERVER}/24", "dev", "srv0")
        self.ip(n["col"], "addr", "add", f"{COLLECTOR}/24", "dev", "col0")
        self.ip(n["cli"], "route", "add", "default", "via", ROUTER_LAN)
        self.ip(n["srv"], "route", "add", "10.200.1.0/24", "via", ROUTER_UP)
        self.x(n["rtr"], "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return n

    def http_server(self, ns: str, ip: str) -> None:
        www = self.dir / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text("hello from the test server\n")
        self.bg(ns, "http", sys.executable, "-m", "http.server", "8080", "--bind", ip,
                "--directory", str(www))  # fmt: skip
        probe = f"exec 3<>/dev/tcp/{ip}/8080"
        if not until(
            lambda: sh("ip", "netns", "exec", ns, "bash", "-c", probe, check=False).returncode == 0,
            60.0,
            0.1,
        ):
            raise RuntimeError("test http server did not start: " + self.log("http"))

    def sink(self, ns: str, ports: list[int]) -> None:
        """A UDP sink, so the collector answers no ICMP port-unreachable."""
        code = (
            "import socket,select,signal,sys\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "ss=[]\n"
            f"for p in {ports!r}:\n"
            "    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "    s.bind(('0.0.0.0',p)); ss.append(s)\n"
            "while True:\n"
            "    for s in select.select(ss,[],[],0.5)[0]: s.recv(65535)\n"
        )
        self.bg(ns, "sink", sys.executable, "-c", code)

    def traffic(self, ns: str, ip: str, rounds: int = 2) -> None:
        """Ping and HTTP from ``ns`` to ``ip``: conversations in both directions."""
        for _ in range(rounds):
            self.x(ns, "ping", "-q", "-c", "2", "-i", "0.2", "-W", "1", ip, check=False)
            self.x(ns, "curl", "-s", "-m", "3", "-o", "/dev/null", f"http://{ip}:8080/",
                   check=False)  # fmt: skip
            time.sleep(0.2)


# -------------------------------------------------------------------- the watcher


def parse_time(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass
class Seen:
    """What the stream said about one finding id so far."""

    first_event: dict[str, Any]
    latest: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)


class Watcher:
    """``mirrorwatch watch --format jsonl`` in a namespace, its events parsed as they come."""

    def __init__(self, net: Net, ns: str, iface: str, *args: str) -> None:
        self.net = net
        env = {"PYTHONPATH": str(REPO)}
        self.log_name = f"watch-{iface}"
        self.proc = net.bg(
            ns, self.log_name, sys.executable, "-m", "detector.cli", "watch", "-i", iface,
            "--format", "jsonl", "--summary-every", "1", *args,
            stdout=subprocess.PIPE, cwd=str(REPO), env=env,
        )  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self.by_id: dict[str, Seen] = {}
        self.cond = threading.Condition()
        self.ended = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.returncode: int | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            with self.cond:
                self.events.append(ev)
                f = ev.get("finding")
                if f is not None:
                    seen = self.by_id.get(f["id"])
                    if seen is None:
                        seen = self.by_id[f["id"]] = Seen(ev, f)
                    seen.latest = f
                    seen.events.append(ev)
                    seen.hosts.update(w["ip"] or w["mac"] for w in f["watched"])
                self.cond.notify_all()
        with self.cond:  # end of output: every line the watch wrote is in self.events
            self.ended = True
            self.cond.notify_all()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """The first summary is written after the captures are open."""
        ok = self.wait(lambda: any(e["event"] == "summary" for e in self.events), timeout)
        if not ok:
            raise RuntimeError("watch did not start: " + self.net.log(self.log_name))

    def wait(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            # Until it holds, or the watch's output ended (then nothing more can come).
            self.cond.wait_for(lambda: predicate() or self.ended, timeout)
            return bool(predicate())

    def match(self, exp: Expect) -> tuple[Seen, float] | None:
        """The finding that meets ``exp`` and the seconds from its first packet to the event
        that completed it, or None."""
        for seen in self.by_id.values():
            f = seen.first_event["finding"]
            if not exp.same_stream(f):
                continue
            hosts: set[str] = set()
            for ev in seen.events:
                g = ev["finding"]
                hosts.update(w["ip"] or w["mac"] for w in g["watched"])
                if g["kind"] == exp.kind and g["protocol"] in exp.protocols and hosts & exp.hosts:
                    return seen, parse_time(ev["time"]) - parse_time(g["first_seen"])
        return None

    def await_match(self, exp: Expect, timeout: float) -> tuple[Seen, float] | None:
        got: list[tuple[Seen, float]] = []

        def found() -> bool:
            m = self.match(exp)
            if m:
                got.append(m)
            return m is not None

        self.wait(found, timeout)
        return got[0] if got else None

    def stop(self) -> int:
        Net.stop(self.proc, signal.SIGINT, wait=90)  # the final verdict may be slow under load
        self.thread.join(60)  # until the output is read to its end (at once, unless loaded)
        self.returncode = self.proc.returncode
        return self.proc.returncode

    def exited(self, timeout: float) -> int | None:
        """The exit status of a watch that ends by itself, once its output is all read."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.thread.join(timeout)
        self.returncode = self.proc.returncode
        return self.returncode

    def describe(self) -> str:
        return (
            "\n".join(
                f"  {s.latest['protocol']} {s.latest['kind']} {s.latest['severity']} "
                f"{s.latest['exporter']['ip']} -> {s.latest['collector']['ip']}:"
                f"{s.latest['collector']['port']} watched={sorted(s.hosts)[:6]}"
                for s in self.by_id.values()
            )
            or "  (no findings)"
        )


@dataclass
class Expect:
    name: str
    protocols: set[str]
    kind: str
    exporter: str | None
    collector: str | None
    hosts: set[str]
    collector_port: int | None = None

    def same_stream(self, f: dict[str, Any]) -> bool:
        return (
            f["exporter"]["ip"] == self.exporter
            and f["collector"]["ip"] == self.collector
            and (self.collector_port is None or f["collector"]["port"] == self.collector_port)
        )
