"""Progress lines for long compiles: one line on stderr saying what is being compiled, and
one at the end saying how long it took, so a user waiting on a large graph knows why.

``CompileOptions(verbose=...)``: True prints both lines for every compile; False never
prints; None (the default, "auto") prints when a compile is still running after
``THRESHOLD_S`` seconds and stderr is a terminal (so tests, pipes and logs stay quiet).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

THRESHOLD_S = 2.0


def describe(program, target: str) -> str:
    """``a 1,234-op program for cpu (fetches loss, accuracy)``."""
    names = [program.node(i).name or f"%{i}" for i, _ in program.fetches]
    names += [program.node(i).name or f"%{i}" for i in program.targets]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"a {len(program.nodes):,}-op program for {target} ({shown or 'no fetches'})"


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (AttributeError, ValueError, OSError):
        pass  # a closed or missing stderr must not fail the compile


@contextmanager
def compile_progress(program, target: str, verbose):
    """Wraps one compile; prints the lines ``verbose`` asks for (see the module doc)."""
    if verbose is False or (verbose is None and not _stderr_is_tty()):
        yield
        return
    what = describe(program, target)
    lock = threading.Lock()
    state = {"done": False, "printed": False}

    def start_line():
        with lock:
            if not state["done"]:
                _say(f"graphc: compiling {what} ...")
                state["printed"] = True

    t0 = time.perf_counter()
    timer = None
    if verbose:
        start_line()
    else:
        timer = threading.Timer(THRESHOLD_S, start_line)
        timer.daemon = True
        timer.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        if timer is not None:
            timer.cancel()
        with lock:
            state["done"] = True
        if state["printed"]:
            secs = time.perf_counter() - t0
            verb = "compiled" if ok else "failed compiling"
            _say(f"graphc: {verb} {what} in {secs:.1f} s")
