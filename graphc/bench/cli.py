"""Command line of the benchmark: ``graphc bench ...`` and ``python -m graphc.bench ...``."""

from __future__ import annotations

import argparse
import sys

from .. import errors
from .plot import PlotUnavailableError, _pyplot, plot
from .report import format_table, write_json
from .runner import run_suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``graphc bench`` (shared by both entry points)."""
    parser.add_argument(
        "--suite", default=None, help="workloads to run, e.g. W1 or W1,W3 or W12 (default: W1..W8)"
    )
    parser.add_argument(
        "--target",
        default="cpu",
        choices=("cpu", "cuda"),
        help="graphc target of the unfused and fused runs (default: cpu)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON here")
    parser.add_argument(
        "--plot", metavar="FILE", help="also draw a PNG bar chart here (needs matplotlib)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=10,
        metavar="N",
        help="timed runs per implementation (default 10)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="stop timing one implementation after this long, once it has 3 runs (default 10)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a smoke test of the suite, not a measurement",
    )
    parser.add_argument(
        "--peers",
        default=None,
        help="comma-separated peer names to compare with (default: all "
        "importable ones; 'none' for none)",
    )
    parser.add_argument(
        "--scale",
        default=None,
        metavar="N,N,...",
        help="W12 only: the unrolled steps and MLP layers of its points (default 8,16,32,64; "
        "--quick: 2,4)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    # fmt: skip


def run(args) -> int:
    """Run the benchmark for parsed ``args``; returns the process exit status."""
    if args.repeat < 1:
        print(f"graphc bench: --repeat must be at least 1, got {args.repeat}", file=sys.stderr)
        return 2
    if args.plot:  # fail before the long run, not after it
        try:
            _pyplot()
        except PlotUnavailableError as exc:
            print(f"graphc bench: {exc}", file=sys.stderr)
            return 2
    peers = None
    if args.peers is not None:
        peers = [] if args.peers.strip().lower() == "none" else [
            p.strip() for p in args.peers.split(",") if p.strip()]  # fmt: skip
    scale = None
    if args.scale is not None:
        try:
            scale = [int(n) for n in args.scale.split(",") if n.strip()]
        except ValueError:
            print(f"graphc bench: --scale takes integers like 8,16, got {args.scale!r}",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        result = run_suite(
            suite=args.suite, quick=args.quick, target=args.target, repeat=args.repeat,
            budget_s=args.budget, peers=peers, progress=not args.no_progress, scale=scale,
        )  # fmt: skip
    except (ValueError, errors.UnavailableError) as exc:
        print(f"graphc bench: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        try:
            plot(result, args.plot)
            print(f"wrote {args.plot}", file=sys.stderr)
        except ValueError as exc:
            print(f"graphc bench: no plot: {exc}", file=sys.stderr)
    return 0 if result.ok else 1


def main(argv=None) -> int:
    """``python -m graphc.bench [options]``."""
    parser = argparse.ArgumentParser(
        prog="python -m graphc.bench",
        description="Benchmark graphc (reference, unfused, fused) against the peers installed "
        "here on the workloads of docs/benchmarks.md.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
