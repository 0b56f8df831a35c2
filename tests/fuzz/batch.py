"""Batched differential fuzzing: several random programs compiled as one graph.

Compiling (LLVM's optimiser and code emission) costs most of a program's check, and much
of it is per compile, not per op: a batch of programs in one graph, one compile per
target, checks them about twice as fast. A batch that disagrees with the reference (or
raises) is re-checked program by program with ``differential.check``, so a failure is
still reported and shrunk for its own seed; a batch that fails while each of its programs
passes alone is reported with the seeds of the batch (a bug of programs side by side).
"""

from __future__ import annotations

import numpy as np

import graphc as gc

from .differential import (
    TARGETS,
    TOLERANCES,
    Failure,
    Outcome,
    _compare,
    check,
    data,
    reproducer,
    shrink,
)
from .programs import generate


def check_batch(programs, options=None) -> Outcome | None:
    """None when fused and unfused cpu equal the reference for every program of the batch
    (built side by side in one graph: each target compiles once per run's sizes)."""
    try:
        g = gc.Graph()
        parts = []
        with g.as_default():
            for p in programs:
                ns = {"gc": gc, "np": np}
                exec(compile(p.source(), "<fuzz program>", "exec"), ns)  # noqa: S102
                parts.append((p, ns))
        fetch = [f for _, ns in parts for f in ns["fetch"]]
        if not fetch:
            return None
        sessions = {"reference": gc.Session(graph=g, target="reference")}
        for name, fusion in TARGETS:
            opts = gc.CompileOptions(fusion=fusion, **(options or {}))
            sessions[name] = gc.Session(graph=g, target="cpu", options=opts)
        try:
            runs = max(len(ns["SIZES"]) for _, ns in parts)
            for run in range(runs):
                feeds = {}
                for p, ns in parts:
                    shapes = ns["SIZES"][run % len(ns["SIZES"])]
                    for k, (ph, s) in enumerate(zip(ns["phs"], shapes)):
                        feeds[ph] = data(k, s, p.dtype)
                want = sessions["reference"].run(fetch, feeds)
                for name, _ in TARGETS:
                    got = sessions[name].run(fetch, feeds)
                    at = 0
                    for p, ns in parts:
                        m = len(ns["fetch"])
                        rtol, atol = TOLERANCES[p.dtype]
                        bad = _compare(want[at : at + m], got[at : at + m], rtol, atol)
                        if bad:
                            return Outcome("mismatch", name, f"run {run}: {bad}")
                        at += m
        finally:
            for s in sessions.values():
                s.close()
    except Exception as exc:  # noqa: BLE001 - re-checked program by program
        return Outcome("error", "batch", f"{type(exc).__name__}: {exc}")
    return None


def fuzz_batched(seeds, batch=8, options=None, shrink_budget_s=120.0, on_program=None,
                 stop_after=None) -> list:  # fmt: skip
    """``differential.fuzz`` with ``batch`` programs checked together (same failures)."""
    seeds = list(seeds)
    failures = []
    for start in range(0, len(seeds), batch):
        chunk = seeds[start : start + batch]
        programs = [generate(s) for s in chunk]
        together = check_batch(programs, options)
        if together is None:
            for s in chunk:
                if on_program is not None:
                    on_program(s, None)
            continue
        found = False
        for s, p in zip(chunk, programs):
            out = check(p, options)
            if on_program is not None:
                on_program(s, out)
            if out is None:
                continue
            found = True
            if out.kind == "invalid":
                failures.append(Failure(s, out, reproducer(p, out)))
            else:
                small, small_out = shrink(p, out, shrink_budget_s, options)
                failures.append(Failure(s, small_out, reproducer(small, small_out)))
        if not found:
            detail = f"only when seeds {chunk} are compiled together: {together.detail}"
            out = Outcome(together.kind, together.target, detail)
            failures.append(Failure(chunk[0], out, f"# batch of seeds {chunk}\n"))
        if stop_after is not None and len(failures) >= stop_after:
            break
    return failures
