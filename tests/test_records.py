"""The report's records write the JSON pydantic writes for the same models (pydantic is only
loaded for the JSON Schema and the config file): numbers, text and conversions."""

from __future__ import annotations

import json
import random
import struct

import numpy as np
from pydantic import TypeAdapter
from pydantic_core import to_json

from detector.findings import Endpoint, Finding, Report, WatchedHost
from detector.records import float_json

EDGES = [0.0, -0.0, 1.0, 0.1, 1e-5, 1.5e-5, 9.9e-6, 2.5e-6, 1e-7, 0.0001, 1e15, 1e16, 1.5e16,
         123456789012345.67, 1e100, 5e-324, 1.7976931348623157e308, -2.5e-9, 12345678901234567.0,
         float("nan"), float("inf"), -float("inf")]  # fmt: skip


def test_floats_as_pydantic_writes_them() -> None:
    rng = random.Random(11)
    values = EDGES + [
        struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(3000)
    ]
    values += [
        round(rng.random() * 10 ** rng.randint(-12, 20), rng.randint(0, 8)) for _ in range(3000)
    ]
    # A report's model writes infinities and NaN as null.
    expected = [to_json(v, inf_nan_mode="null").decode() for v in values]
    assert [float_json(v) for v in values] == expected


def test_text_escapes_as_pydantic_writes_them() -> None:
    text = "".join(chr(c) for c in range(0x250)) + '\u2028\u2029\U0001f600\x7f\ufeff"\\'
    host = WatchedHost(ip="10.0.0.1", mac=text)
    assert host.model_dump_json() == to_json({"ip": "10.0.0.1", "mac": text, "packets": 0,
                                              "bytes": 0, "share": 0.0}).decode()  # fmt: skip


def test_evidence_values_convert_as_pydantic_converts_them() -> None:
    evidence = {
        "i": np.int64(3), "f": np.float32(0.5), "b": True, "nb": np.bool_(True), "t": (1, 2),
        "s": ("a", "b"), "w": [1.0, np.int64(2)], "x": "y", "n": 7,
    }  # fmt: skip
    adapter = TypeAdapter(dict[str, int | float | str | bool | list[str] | list[int]])
    f = _finding(evidence=evidence, session={"liid": 7, "name": "x"}, packets=np.int64(9))
    assert f.evidence == adapter.validate_python(evidence)
    assert json.loads(f.model_dump_json())["evidence"] == json.loads(
        adapter.dump_json(adapter.validate_python(evidence))
    )
    assert f.session == {"liid": "7", "name": "x"} and type(f.packets) is int


def test_report_round_trips_and_is_indented_as_pydantic_indents() -> None:
    f = _finding(watched=[WatchedHost(ip="", packets=2, share=1)])
    assert f.watched[0].ip is None and f.watched[0].share == 1.0
    report = Report(version="t", inputs=[], stats={"a": 1, "b": 0.5, "c": "x"}, findings=[f])
    text = report.model_dump_json(indent=2)
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    assert Report.model_validate(json.loads(text)) == report
    assert Finding.model_validate(json.loads(f.model_dump_json())) == f


def _finding(**fields: object) -> Finding:
    base: dict[str, object] = dict(
        id="mw-1", kind="mirror", protocol="tzsp", severity="high", confidence=0.5,
        exporter=Endpoint(ip="10.0.0.1"), collector=Endpoint(ip="10.0.0.2", port=37008),
        transport="udp", first_seen="2026-01-01T00:00:00Z", last_seen="2026-01-01T00:00:01Z",
        packets=3, bytes=300,
    )  # fmt: skip
    base.update(fields)
    return Finding(**base)  # type: ignore[arg-type]
