"""``python -m bench [parse|inventory|prowler|intake|rto|provisioning|backup|all]`` (default ``all``): run benchmarks, write bench/results/.

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", default="all", choices=[*STEPS, "all"])
    args = parser.parse_args(argv)
    steps = STEPS if args.step == "all" else (args.step,)
    from bench.common import enable_bytecode_cache

    enable_bytecode_cache()
    started = time.perf_counter()
    failed = []
    for step in steps:
        t0 = time.perf_counter()
        print(f"\n=== bench {step} ===", flush=True)
        try:
            if step == "parse":
                from bench import parse

                parse.run()
            elif step == "inventory":
                from bench import scale

                scale.run()
            elif step == "provisioning":  # a 500-resource spec vs the minimal SDK calls (bench/provisioning.py)
                __import__("bench.provisioning").provisioning.run()
            elif step == "backup":  # backup_object_stores vs rclone, memory, restore drill (bench/backup.py)
                __import__("bench.backup").backup.run()
            elif step == "rto":  # failover_service's RTO through the REST API (bench/rto.py)
                __import__("bench.rto").rto.run()
            elif step == "intake":
                from bench import intake

                intake.run()
            else:
                from bench import prowler

                prowler.run()
        except Exception as exc:
            failed.append(step)
            print(f"[bench] {step} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        print(f"[bench] {step} took {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    from bench.common import RESULTS_DIR

    print(f"[bench] total {time.perf_counter() - started:.0f} s; results in {RESULTS_DIR}", file=sys.stderr)
    if failed:
        print(f"[bench] failed steps: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
