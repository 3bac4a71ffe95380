"""``python -m bench [STEP ...]`` (steps: parse inventory prowler intake rto provisioning backup, or ``all``,
the default): run the benchmarks, write ``bench/results/<step>.{md,json}``, and, when more than one step ran,
one table of every comparison of this run: ``bench/results/summary.{md,json}`` (bench/summary.py).

``BENCH_QUICK=1`` (``make bench QUICK=1``): smaller sizes everywhere (see :data:`QUICK`); a variable set
explicitly wins over the quick default.

Environment knobs (all optional):

=========================  =======  ==========================================================
``BENCH_PARSE_REPEATS``    7        parses per DAG file (and of the empty DAG)
``BENCH_REPEATS``          3        measured runs per side on the seeded estate
``BENCH_SCALE_RESOURCES``  10000    size of the scale estate
``BENCH_SCALE_REPEATS``    1        measured runs per side on the scale estate
``BENCH_PROWLER_SCALE``    0        1: also run Prowler (and our scan) on the scale estate
``BENCH_PROWLER_REPEATS``  1        measured runs per side per estate in the Prowler step
``BENCH_RESULTS_DIR``      bench/results
=========================  =======  ==========================================================
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # `python -m bench` from the project root, PYTHONPATH or not
    sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("PYTHONPATH", str(PROJECT_ROOT))

STEPS = ("parse", "inventory", "prowler", "intake", "rto", "provisioning", "backup")
#: The module running each step (its ``run()`` returns the figures the summary table reads).
MODULES = {"parse": "parse", "inventory": "scale", "prowler": "prowler", "intake": "intake", "rto": "rto",
           "provisioning": "provisioning", "backup": "backup"}
#: ``BENCH_QUICK=1``: sizes for a run of about a quarter of an hour on 2 shared cores (defaults in brackets).
QUICK = {
    "BENCH_PARSE_REPEATS": "5",  # [7]
    "BENCH_REPEATS": "3",  # seeded inventory runs per side [3]
    "BENCH_SCALE_RESOURCES": "2000",  # scale estate for inventory (and Prowler if BENCH_PROWLER_SCALE=1) [10000]
    "BENCH_INTAKE_SECONDS": "10",  # [30] at BENCH_INTAKE_RATE 100/s
    "BENCH_PROVISIONING_RESOURCES": "100",  # [500]
    "BENCH_PROVISIONING_REPEATS": "2",  # [3]
    "BENCH_BACKUP_SMALL": "200",  # objects of 64 KiB [2000]
    "BENCH_BACKUP_LARGE": "3",  # objects of BENCH_BACKUP_LARGE_MIB [10]
    "BENCH_BACKUP_LARGE_MIB": "16",  # [64]
    "BENCH_BACKUP_NOCHANGE": "1000",  # objects of 4 KiB [10000]
    "BENCH_BACKUP_HUGE_MIB": "256",  # the peak-memory object [1024]
    "BENCH_BACKUP_REPEATS": "1",  # [3]
}
#: Variables that change what a run measures: recorded in the summary when set.
SETTINGS_PREFIX = "BENCH_"


def run_step(step: str) -> dict[str, object]:
    module = __import__(f"bench.{MODULES[step]}", fromlist=["run"])
    result: dict[str, object] = module.run()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", nargs="*", default="all", choices=[*STEPS, "all"], metavar="STEP")
    args = parser.parse_args(argv)
    chosen = [args.steps] if isinstance(args.steps, str) else args.steps
    steps = list(STEPS) if "all" in chosen else list(dict.fromkeys(chosen))
    if os.environ.get("BENCH_QUICK", "").strip() not in ("", "0"):
        for name, value in QUICK.items():
            os.environ.setdefault(name, value)
    settings = {k: v for k, v in sorted(os.environ.items()) if k.startswith(SETTINGS_PREFIX)}
    from bench.common import enable_bytecode_cache

    enable_bytecode_cache()
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    failed: dict[str, str] = {}
    results: dict[str, dict[str, object]] = {}
    seconds: dict[str, float] = {}
    for step in steps:
        t0 = time.perf_counter()
        print(f"\n=== bench {step} ===", flush=True)
        try:
            results[step] = run_step(step)
        except Exception as exc:
            failed[step] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            print(f"[bench] {step} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        seconds[step] = time.perf_counter() - t0
        print(f"[bench] {step} took {seconds[step]:.0f} s", file=sys.stderr, flush=True)
    from bench.common import RESULTS_DIR

    if len(steps) > 1:
        from bench import summary

        data = summary.build(results, steps=steps, failed=failed, seconds=seconds, settings=settings,
                             load_before=load_before)
        _, md_path = summary.write(data)
        print("\n" + md_path.read_text(), flush=True)
    print(f"[bench] total {time.perf_counter() - started:.0f} s; results in {RESULTS_DIR}", file=sys.stderr)
    if failed:
        print(f"[bench] failed steps: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
