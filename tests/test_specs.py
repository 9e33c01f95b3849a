"""Every protocol a finding can report is declared once, beside its decoder (ProtocolSpec), and
the tables of the rest of the product are derived from those declarations: each protocol has a
doc page, a sample in pcaps/ listed in pcaps/expected.tsv, a golden output and an EVE number."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from mwtest import PCAPS, ROOT, expected_samples

from detector import engine, explain
from detector.policy import verdict
from detector.protocols import registry
from detector.protocols.base import Decoded, ip_protocol, transport_name
from detector.report import eve

SPECS = registry.protocol_specs()
ROWS = expected_samples()
GOLDEN = ROOT / "tests" / "formats"


def test_protocols_of_the_samples_are_declared() -> None:
    named = {r["protocol"] for r in ROWS if r["kind"] != "none"}
    assert named, "pcaps/expected.tsv names no protocol"
    assert named - set(SPECS) == set()


def test_every_decoder_declares_what_it_reports() -> None:
    for d in registry.all_decoders():
        assert d.emits, f"decoder {d.name!r} declares no protocol"
        for spec in d.emits:
            assert SPECS[spec.name].kind in ("mirror", "intercept", "flow-export", "tunnel")


def test_decoder_names_that_are_not_protocols_are_explicit() -> None:
    emitted = {d.name: {s.name for s in d.emits} for d in registry.all_decoders()}
    assert emitted["netflow"] == {"netflow-v1", "netflow-v5", "netflow-v7"}
    assert emitted["netflow-v8"] == {"netflow-v8"}
    assert emitted["ipfix"] >= {"ipfix", "psamp"}
    assert emitted["ip-in-ip"] == {"ipip", "6in4", "4in6", "6in6"}
    assert "netflow" not in SPECS and "ip-in-ip" not in SPECS


def test_signature_numbers_are_unique_and_kept() -> None:
    numbers = Counter(s.sid for s in registry.table_specs().values())
    assert [n for n, c in numbers.items() if c > 1] == []
    # Numbers issued once keep their meaning.
    assert eve.PROTOCOL_SID["tzsp"] == 1 and eve.PROTOCOL_SID["pcli20"] == 23
    assert eve.PROTOCOL_SID["netflow-v9"] == 43 and eve.PROTOCOL_SID["wccp"] == 86
    assert eve.PROTOCOL_SID["6in6"] == 710


def test_tables_are_derived_from_the_specs() -> None:
    assert {n for n, s in SPECS.items() if s.role == "copy"} == verdict.COPY_BY_CONSTRUCTION
    assert {"tzsp", "erspan-2", "rpcap"} <= verdict.COPY_BY_CONSTRUCTION
    assert {"gre-teb", "vxlan", "geneve", "eoip"} | {
        "unknown-encapsulation",
        "tee-copy",
    } == verdict.AMBIGUOUS
    # Usual ports: the decoder's, unless the spec says otherwise (IPFIX's own ports).
    assert verdict.DEFAULT_PORTS["tzsp"] == (37008,)
    assert verdict.DEFAULT_PORTS["ipfix"] == (4739, 4740)
    assert verdict.DEFAULT_PORTS["syslog-connlog"] == (514, 601, 6514)  # over UDP and TCP
    assert "pcli" not in verdict.DEFAULT_PORTS
    assert explain.DISSECTIONS["pcli12"].dissector == "pcli12"
    assert explain.DISSECTIONS["netflow-v5"].dissector == "cflow"
    assert "unknown-encapsulation" in explain.NO_DISSECTOR


def test_guessed_formats_are_the_heuristic_ones() -> None:
    # A decoder that guesses (no magic number) makes every protocol it reports guessed; the
    # plain copies, found by no decoder, say so in their spec.
    heuristic = {s.name for d in registry.all_decoders() if d.heuristic for s in d.emits}
    assert heuristic == verdict.GUESSED - {"tee-copy"}
    assert {n for n, s in SPECS.items() if s.guessed} == verdict.GUESSED
    assert {"pcli", "jmirror", "rpcap", "pcap-over-ip", "unknown-encapsulation"} < verdict.GUESSED
    assert "tee-copy" in verdict.GUESSED and "tzsp" not in verdict.GUESSED
    assert not {"netflow-v9", "erspan-2", "vxlan"} & verdict.GUESSED


def test_logs_are_declared() -> None:
    assert (
        engine.LOG_EXPORTS
        == {n for n, s in SPECS.items() if s.log}
        == {
            "syslog-connlog",
            "dnstap",
        }
    )
    # Only a log of everything (syslog) must show enough connection lines to be an export.
    assert {"syslog-connlog"} == verdict.CONNECTION_LOGS
    assert all(SPECS[n].role == "records" for n in engine.LOG_EXPORTS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_protocol_has_a_sample(name: str) -> None:
    spec = SPECS[name]
    assert spec.samples, f"{name}: no sample declared"
    for sample in spec.samples:
        assert (PCAPS / sample).is_file(), f"{name}: pcaps/{sample} is missing"
        rows = [r for r in ROWS if r["file"] == sample and r["protocol"] == name]
        assert rows, f"{name}: pcaps/expected.tsv has no row for {sample}"


def golden(protocol: str, sample: str) -> Path:
    """tests/formats/<protocol>/<sample>.json (tests/formats/README.md)."""
    return GOLDEN / protocol / (sample.replace("/", "-") + ".json")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_protocol_has_a_golden_output(name: str) -> None:
    missing = [s for s in SPECS[name].samples if not golden(name, s).is_file()]
    assert not missing, f"{name}: no golden output under tests/formats/{name}/ for {missing}"


def test_shims_on_unclaimed_gre_and_ip_are_the_fallback() -> None:
    assert [d.name for d in registry.all_decoders() if d.fallback] == ["unknown-encapsulation"]


def test_ipfix_stream_with_packet_sections_becomes_psamp() -> None:
    (ipfix,) = [d for d in registry.decoders_for("udp") if d.name == "ipfix"]
    psamp = Decoded("psamp", "flow-export", "")
    assert ipfix.stream_protocol("ipfix", psamp) == "psamp"
    assert ipfix.stream_protocol("psamp", Decoded("ipfix", "flow-export", "")) == "psamp"
    (sflow,) = [d for d in registry.all_decoders() if d.name == "sflow"]
    assert sflow.stream_protocol("sflow", psamp) == "sflow"


def test_transport_names_of_ip_protocols() -> None:
    # One naming for decoded streams and encrypted copies alike (an ESP or GRE carrier).
    names = [transport_name(p) for p in (6, 17, 47, 50, 4)]
    assert names == ["tcp", "udp", "gre", "ip/50", "ip/4"]
    # EVE and explain read the number back from the name.
    assert [ip_protocol(transport_name(p)) for p in range(256)] == list(range(256))
    assert ip_protocol("l2") is None and eve.proto_name("gre") == "GRE"
