"""Differential fuzzer: random programs (matmul, batched matmul, transpose, tile, concat, stack,
squeeze, expand_dims, broadcast_to, reshape, reductions, softmax, elementwise ops) with
``None`` and static dims, on fused cpu and unfused cpu against the reference interpreter,
forward values and gradients. A failure prints the program's seed and a shrunk reproducer.

    python scripts/fuzz.py [--seed S] [--n N] [--batch B] [--jobs J] [--shrink-seconds T]
                           [--keep-going]
    python scripts/fuzz.py --only SEED          # one program: its source, then the check

``--batch B`` checks B programs compiled together as one graph (about twice as fast; a
failing batch is re-checked program by program); ``--jobs J`` runs J processes on
consecutive slices of the seeds.

Program ``i`` of a run has seed ``S + i``: ``--only S+i`` re-runs it. Exit status 1 when a
program failed. ``make fuzz SEED=... N=...`` runs this.
"""

from __future__ import annotations

import argparse
import faulthandler
import re
import selectors
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzz.batch import fuzz_batched  # noqa: E402
from tests.fuzz.differential import check, fuzz, reproducer  # noqa: E402
from tests.fuzz.programs import generate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the first program")
    ap.add_argument("--n", type=int, default=1000, help="number of programs")
    ap.add_argument("--shrink-seconds", type=float, default=300.0,
                    help="time spent shrinking each failure")  # fmt: skip
    ap.add_argument("--keep-going", action="store_true", help="go on after a failure")
    ap.add_argument("--cache", action="store_true", help="use the on-disk compile cache")
    ap.add_argument("--only", type=int, default=None, help="check the program of one seed")
    ap.add_argument("--batch", type=int, default=1, help="programs compiled together")
    ap.add_argument("--jobs", type=int, default=1, help="processes (seeds split between them)")
    args = ap.parse_args(argv)
    if args.jobs > 1 and args.only is None:
        return _parallel(args, argv if argv is not None else sys.argv[1:])
    faulthandler.enable()  # a crash in native code names the Python frame (and so the seed)
    options = None if args.cache else {"cache_dir": None}
    if args.only is not None:
        p = generate(args.only)
        print(p.source())
        out = check(p, options)
        print("ok" if out is None else reproducer(p, out))
        return 0 if out is None else 1
    t0 = time.monotonic()
    counts = {"programs": 0, "failed": 0}

    def on_program(seed, outcome):
        counts["programs"] += 1
        if outcome is not None:
            counts["failed"] += 1
            print(f"seed {seed}: {outcome.kind} on {outcome.target} (shrinking...)", flush=True)
        if counts["programs"] % 500 == 0:
            rate = counts["programs"] / (time.monotonic() - t0)
            print(f"{counts['programs']} programs, {counts['failed']} failed, "
                  f"{rate:.1f} programs/s, last seed {seed}", flush=True)  # fmt: skip

    seeds = range(args.seed, args.seed + args.n)
    stop = None if args.keep_going else 1
    if args.batch > 1:
        failures = fuzz_batched(seeds, args.batch, options, args.shrink_seconds, on_program,
                                stop_after=stop)  # fmt: skip
    else:
        failures = fuzz(seeds, options, args.shrink_seconds, on_program, stop_after=stop)
    for f in failures:
        print(f.report(), flush=True)
    secs = time.monotonic() - t0
    print(f"{counts['programs']} programs (seeds {args.seed}..{args.seed + counts['programs'] - 1})"
          f", {len(failures)} failure(s), {secs:.0f} s")  # fmt: skip
    return 1 if failures else 0


def _parallel(args, argv) -> int:
    """Run ``args.jobs`` copies of this script on consecutive slices of the seeds; their
    lines are passed on prefixed with the job number, and the counts summed."""
    rest = []
    skip = False
    for a in argv:  # drop --seed/--n/--jobs (and their values): each job gets its own
        if skip:
            skip = False
            continue
        if a in ("--seed", "--n", "--jobs"):
            skip = True
            continue
        if re.match(r"--(seed|n|jobs)=", a):
            continue
        rest.append(a)
    per = -(-args.n // args.jobs)
    procs = []
    for j in range(args.jobs):
        first, count = args.seed + j * per, max(0, min(per, args.n - j * per))
        if count:
            cmd = [sys.executable, __file__, "--seed", str(first), "--n", str(count), *rest]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    t0 = time.monotonic()
    total = failed = 0
    sel = selectors.DefaultSelector()
    for j, p in enumerate(procs):
        sel.register(p.stdout, selectors.EVENT_READ, j)
    open_ = len(procs)
    while open_:
        for key, _ in sel.select():
            line = key.fileobj.readline()
            if not line:
                sel.unregister(key.fileobj)
                open_ -= 1
                continue
            m = re.match(r"(\d+) programs \(seeds .*\), (\d+) failure", line)
            if m:
                total += int(m.group(1))
                failed += int(m.group(2))
            print(f"[job {key.data}] {line}", end="", flush=True)
    codes = [p.wait() for p in procs]
    secs = time.monotonic() - t0
    print(f"{total} programs (seeds {args.seed}..{args.seed + total - 1}) in {len(procs)} jobs"
          f", {failed} failure(s), {secs:.0f} s")  # fmt: skip
    return 1 if failed or any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
