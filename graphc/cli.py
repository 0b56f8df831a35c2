"""The ``graphc`` command: ``graphc --version``, ``graphc bench``, ``graphc inspect``,
``graphc dot``.

"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from . import errors, exporter
from . import onnx as gc_onnx
from .bench.cli import add_arguments, run
from .version import __version__


def _export_function(name: str):
    """graphc.exporter.<name>, or a clear error while this build does not provide it."""
    fn = getattr(exporter, name, None)
    if fn is None:
        raise SystemExit(f"graphc: graphc.exporter.{name} is not implemented in this build yet")
    return fn


def _artifact_errors():
    return (errors.GraphcError, OSError)


def _fail(command: str, path: str, exc: Exception) -> int:
    """Print ``graphc COMMAND: PATH: why`` (the path once: most messages already name it)."""
    why = str(exc)
    where = "" if str(path) in why else f"{path}: "
    print(f"graphc {command}: {where}{why}", file=sys.stderr)
    return 1


def _inspect(args) -> int:
    describe = _export_function("describe")
    if str(args.artifact).endswith(".onnx"):  # an ONNX model (needs the onnx package)
        describe = gc_onnx.describe
    try:
        print(describe(args.artifact))
    except _artifact_errors() as exc:
        return _fail("inspect", args.artifact, exc)
    return 0


# Output suffixes rendered by Graphviz's ``dot``; anything else gets the DOT text itself.
_RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}


def _dot(args) -> int:
    to_dot = _export_function("to_dot")
    try:
        text = to_dot(args.artifact)
    except _artifact_errors() as exc:
        return _fail("dot", args.artifact, exc)
    if args.output == "-":  # the DOT text on stdout (graphc dot m.gcx -o - | dot -Tsvg)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    out = Path(args.output)
    fmt = _RENDERED.get(out.suffix.lower())
    if fmt is None:
        out.write_text(text)
    else:
        exe = shutil.which("dot")
        if exe is None:
            print(f"graphc dot: writing {out.suffix} needs Graphviz's 'dot' program, which is not "
                  f"installed; write the DOT text instead with -o {out.with_suffix('.dot')}",
                  file=sys.stderr)  # fmt: skip
            return 1
        proc = subprocess.run([exe, f"-T{fmt}", "-o", str(out)], input=text, text=True,
                              capture_output=True)  # fmt: skip
        if proc.returncode != 0:
            print(f"graphc dot: Graphviz failed: {proc.stderr.strip()}", file=sys.stderr)
            return 1
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _bench(args) -> int:
    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphc", description="graphc: a static-graph deep-learning compiler."
    )
    parser.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="run the benchmark suite (fused vs unfused vs peers)")
    add_arguments(bench)
    bench.set_defaults(func=_bench)
    inspect = sub.add_parser("inspect", help="print an exported artifact's signature and parts")
    inspect.add_argument("artifact", help="path of an artifact written by gc.export")
    inspect.set_defaults(func=_inspect)
    dot = sub.add_parser("dot", help="draw an exported artifact's graph (Graphviz DOT)")
    dot.add_argument("artifact", help="path of an artifact written by gc.export")
    dot.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="where to write it: .dot (text), - (the text on stdout) or .svg/.png/.pdf "
        "(needs Graphviz)",
    )
    dot.set_defaults(func=_dot)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``graphc`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
