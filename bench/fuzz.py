"""A long fuzz campaign over every decoder, the prefilters, the reader and the whole scan.

    nice -n 19 python bench/fuzz.py --minutes 60               # mutation fuzzing, all targets
    nice -n 19 python bench/fuzz.py --minutes 60 --atheris     # coverage-guided (pip atheris)

Inputs are mutations of the real payloads and captures in pcaps/ (the same seeds and mutator as
tests/test_fuzz.py) and, one time in eight, random bytes.  Every input that raises is written to
tests/fuzz_regressions/<target>-<sha1>.bin (one per distinct exception and place), which
tests/test_fuzz.py replays; the campaign goes on after a crash.  It prints, per target, the
inputs run and crashes found, and a total at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

ft: Any = None  # tests/fuzztargets.py, imported by main() (under atheris's instrumentation)


def _load_targets() -> None:
    global ft
    import fuzztargets

    ft = fuzztargets


# How often each target is drawn: the cheap ones more (a scan costs ~50 decoder passes).
WEIGHTS = {"decoders": 8, "prefilters": 3, "reader": 3, "scan": 1}


def crash_key(exc: BaseException) -> tuple[str, str, int]:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return type(exc).__name__, frame.filename, frame.lineno or 0


def save(target: str, data: bytes, exc: BaseException, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{target}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
    path.write_bytes(data)
    return path


def make_input(target: str, rng: random.Random) -> bytes:
    if target in ("reader", "scan"):
        files = tuple(b for _, b in ft.seed_files())
        data = rng.choice(files)
        for _ in range(rng.randrange(1, 4)):
            data = ft.mutate(data, rng, files)
        return data
    seeds = ft.seed_payloads()
    if rng.randrange(8) == 0:
        return rng.randbytes(rng.randrange(1, 1600))
    return ft.mutate(rng.choice(seeds), rng, seeds)


def mutation_campaign(minutes: float, seed: int, out: Path) -> int:
    rng = random.Random(seed)
    names = list(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    runs = dict.fromkeys(names, 0)
    seen: dict[tuple[str, str, int], Path] = {}
    start = time.monotonic()
    end = start + minutes * 60
    next_report = start + 60
    while time.monotonic() < end:
        target = rng.choices(names, weights)[0]
        data = make_input(target, rng)
        runs[target] += 1
        try:
            ft.TARGETS[target](data)
        except Exception as exc:
            key = crash_key(exc)
            if key not in seen:
                seen[key] = save(target, data, exc, out)
                print(f"CRASH {target}: {type(exc).__name__}: {exc} at {key[1]}:{key[2]} "
                      f"-> {seen[key]}", flush=True)  # fmt: skip
        if time.monotonic() >= next_report:
            next_report += 60
            mins = (time.monotonic() - start) / 60
            print(f"{mins:.0f} min: {sum(runs.values())} inputs {runs}, "
                  f"{len(seen)} distinct crash(es)", flush=True)  # fmt: skip
    mins = (time.monotonic() - start) / 60
    print(f"done: {mins:.1f} min, {sum(runs.values())} inputs {runs}, "
          f"{len(seen)} distinct crash(es)")  # fmt: skip
    return 1 if seen else 0


def atheris_campaign(minutes: float, out: Path) -> int:
    """libFuzzer's coverage-guided search; the first byte of an input picks the target."""
    import atheris  # type: ignore[import-not-found]

    names = list(WEIGHTS)
    corpus = out / "fuzz_corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(ft.seed_payloads()):
        (corpus / f"p{i}").write_bytes(bytes([0]) + p)
    for i, (_, data) in enumerate(ft.seed_files()):
        if len(data) < 16 << 10:
            (corpus / f"f{i}").write_bytes(bytes([2]) + data)

    def one(data: bytes) -> None:
        if not data:
            return
        target = names[data[0] % len(names)]
        if target == "scan" and len(data) > 1 << 16:
            return
        ft.TARGETS[target](data[1:])

    argv = [sys.argv[0], f"-max_total_time={int(minutes * 60)}", "-max_len=65536"]
    atheris.Setup([*argv, f"-artifact_prefix={out}/atheris-", str(corpus)], one)
    atheris.Fuzz()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=None, help="default: a new one each run")
    ap.add_argument("--atheris", action="store_true", help="coverage-guided (needs atheris)")
    ap.add_argument("--out", type=Path, help="default: tests/fuzz_regressions/")
    args = ap.parse_args()
    if args.atheris:
        import atheris  # type: ignore[import-not-found]

        # Coverage of mirrorwatch's own code only: instrumenting numpy, scapy and the standard
        # library as well takes minutes and gigabytes before the first input runs.
        with atheris.instrument_imports(include=["detector"]):
            _load_targets()
            ft.decoders()  # every decoder module, imported (and instrumented) here
            import detector.report.html
            import detector.scan  # noqa: F401
        return atheris_campaign(args.minutes, Path("bench/out"))
    _load_targets()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed}", flush=True)
    return mutation_campaign(args.minutes, seed, args.out or ft.REGRESSIONS)


if __name__ == "__main__":
    sys.exit(main())
