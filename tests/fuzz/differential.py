"""The differential fuzzer: random programs (``programs.py``) on fused cpu and unfused cpu
against the reference interpreter, forward values and gradients; a failing program is
shrunk to a small Python reproducer.

    from tests.fuzz.differential import fuzz
    failures = fuzz(range(100))          # program seeds; [] when every program agreed

``python scripts/fuzz.py --seed S --n N`` is the long run (``make fuzz``).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import numpy as np

import graphc as gc

from .programs import Program, fixed, generate, substitute

#: (rtol, atol relative to the largest reference magnitude) per dtype
TOLERANCES = {"float32": (2e-3, 2e-3), "float64": (1e-9, 1e-9)}
TARGETS = (("fused", True), ("unfused", False))


@dataclass
class Outcome:
    """What went wrong with one program (``kind``: mismatch | error | invalid)."""

    kind: str
    target: str  # fused | unfused | reference | build
    detail: str

    def signature(self) -> tuple:
        """Two outcomes with one signature are taken to be the same bug (shrinking)."""
        first = self.detail.split(":", 1)[0] if self.kind == "error" else ""
        return (self.kind, self.target, first)


def data(seed: int, shape, dtype):
    """The feed values of a run: uniform in [-1, 1), one stream per placeholder."""
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


def build(program: Program):
    """(graph, namespace of the program's source) or raises."""
    g = gc.Graph()
    ns = {"gc": gc, "np": np}
    with g.as_default():
        exec(compile(program.source(), "<fuzz program>", "exec"), ns)  # noqa: S102
    return g, ns


def check(program: Program, options=None) -> Outcome | None:
    """None when fused and unfused cpu equal the reference in every run of ``program``."""
    try:
        g, ns = build(program)
    except Exception as exc:  # noqa: BLE001 - a valid program that does not build is a bug
        return Outcome("error", "build", f"{type(exc).__name__}: {exc}")
    fetch, phs = ns["fetch"], ns["phs"]
    if not fetch:
        return None
    rtol, atol = TOLERANCES[program.dtype]
    sessions = {"reference": gc.Session(graph=g, target="reference")}
    for name, fusion in TARGETS:
        opts = gc.CompileOptions(fusion=fusion, **(options or {}))
        sessions[name] = gc.Session(graph=g, target="cpu", options=opts)
    try:
        for run, shapes in enumerate(ns["SIZES"]):
            feeds = {p: data(k, s, program.dtype) for k, (p, s) in enumerate(zip(phs, shapes))}
            try:
                want = sessions["reference"].run(fetch, feeds)
            except Exception as exc:  # noqa: BLE001 - the generator made an invalid program
                return Outcome("invalid", "reference", f"{type(exc).__name__}: {exc}")
            for name, _ in TARGETS:
                try:
                    got = sessions[name].run(fetch, feeds)
                except Exception as exc:  # noqa: BLE001
                    tb = traceback.format_exc(limit=-3)
                    return Outcome("error", name, f"{type(exc).__name__}: {exc}\n{tb}")
                bad = _compare(want, got, rtol, atol)
                if bad:
                    return Outcome("mismatch", name, f"run {run}: {bad}")
    finally:
        for s in sessions.values():
            s.close()
    return None


def _compare(want, got, rtol, atol) -> str:
    for k, (w, v) in enumerate(zip(want, got)):
        w, v = np.asarray(w), np.asarray(v)
        if w.shape != v.shape or w.dtype != v.dtype:
            return f"fetch {k}: {v.dtype}{list(v.shape)}, reference {w.dtype}{list(w.shape)}"
        finite = np.abs(w[np.isfinite(w)])
        scale = 1.0 + (float(finite.max()) if finite.size else 0.0)
        ok = np.isclose(v, w, rtol=rtol, atol=atol * scale, equal_nan=True)
        if not ok.all():
            i = np.unravel_index(int(np.argmin(ok)), w.shape) if w.shape else ()
            return (f"fetch {k}: {int((~ok).sum())} of {w.size} elements differ, at {list(i)}: "
                    f"{v[i]!r}, reference {w[i]!r}")  # fmt: skip
    return ""


# -- shrinking -----------------------------------------------------------------------------------


def _dce(p: Program) -> Program:
    """Drop nodes no output needs; renumber."""
    need = set(p.outputs)
    for i in range(len(p.nodes) - 1, -1, -1):
        if i in need:
            need.update(p.nodes[i].args)
    keep = sorted(need)
    new = {old: k for k, old in enumerate(keep)}
    q = p.copy()
    q.nodes = [p.nodes[i].replace(args=tuple(new[a] for a in p.nodes[i].args)) for i in keep]
    q.outputs = sorted({new[i] for i in p.outputs})
    return q


def _as_placeholder(p: Program, i: int) -> Program:
    q = p.copy()
    n = p.nodes[i]
    declared = tuple(None if fixed(d) is None else fixed(d) for d in n.shape)
    q.nodes[i] = n.replace(kind="placeholder", args=(), attrs={"declared": declared})
    return q


def _bypass(p: Program, i: int, j: int) -> Program:
    """Uses of node ``i`` read its input ``j`` instead (same shape)."""
    q = p.copy()
    for k, n in enumerate(q.nodes):
        if i in n.args:
            q.nodes[k] = n.replace(args=tuple(j if a == i else a for a in n.args))
    q.outputs = sorted({j if o == i else o for o in q.outputs})
    return q


def _candidates(p: Program):
    """Smaller programs, biggest cuts first."""
    if len(p.outputs) > 1:
        for o in p.outputs:
            q = p.copy()
            q.outputs = [o]
            yield q
        if len(p.outputs) > 2:
            for o in p.outputs:
                q = p.copy()
                q.outputs = [x for x in p.outputs if x != o]
                yield q
    for o in p.outputs:  # fetch an input of an output instead (drops the output's op)
        for j in dict.fromkeys(p.nodes[o].args):
            if p.nodes[j].kind not in ("placeholder", "const"):
                q = p.copy()
                q.outputs = sorted({j if x == o else x for x in p.outputs})
                yield q
    if p.grad and p.fetch_forward:
        q = p.copy()
        q.grad = False
        yield q
        q = p.copy()
        q.fetch_forward = False
        yield q
    if len(p.sizes) > 1:
        q = p.copy()
        q.sizes = q.sizes[:1]
        yield q
    for i in range(len(p.nodes)):
        n = p.nodes[i]
        if n.kind in ("placeholder", "const"):
            continue
        yield _as_placeholder(p, i)
        for j in dict.fromkeys(n.args):
            if p.nodes[j].shape == n.shape:
                yield _bypass(p, i, j)
    # static declarations where the dim is the same in every run
    for i, n in enumerate(p.nodes):
        if n.kind != "placeholder":
            continue
        for k, d in enumerate(n.shape):
            declared = n.attrs.get("declared")
            if declared is not None and declared[k] is None:
                v = {p.concrete((d,), r)[0] for r in range(len(p.sizes))}
                if len(v) == 1:
                    q = p.copy()
                    dec = list(declared)
                    dec[k] = v.pop()
                    q.nodes[i] = n.replace(attrs={**n.attrs, "declared": tuple(dec)})
                    yield q


def _simplify_sizes(p: Program) -> Program:
    """One run only: its symbols become fixed dims (declared None where they were)."""
    if len(p.sizes) != 1:
        return p
    q = p.copy()
    pins = dict(q.sizes[0])
    nodes = []
    for n in q.nodes:
        shape = tuple(substitute(d, pins) for d in n.shape)
        attrs = dict(n.attrs)
        if n.kind == "placeholder":
            old = n.attrs.get("declared") or tuple(None for _ in n.shape)
            attrs["declared"] = tuple(None if fixed(d) is None else dec
                                      for d, dec in zip(n.shape, old))  # fmt: skip
        nodes.append(n.replace(shape=shape, attrs=attrs))
    q.nodes = nodes
    return q


def shrink(p: Program, outcome: Outcome, budget_s: float = 120.0, options=None, test=None):
    """The smallest program found (within ``budget_s``) failing with ``outcome``'s
    signature, and its outcome. ``test(program, options)``: ``check`` unless given."""
    test = test or check
    sig = outcome.signature()
    deadline = time.monotonic() + budget_s
    best, best_out = _dce(p), outcome
    again = test(best, options)
    if again is None or again.signature() != sig:
        best = p
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for cand in _candidates(best):
            if time.monotonic() > deadline:
                break
            cand = _simplify_sizes(_dce(cand))
            out = test(cand, options)
            if out is not None and out.signature() == sig:
                best, best_out, progress = cand, out, True
                break
    return best, best_out


def reproducer(p: Program, outcome: Outcome) -> str:
    """A Python snippet that rebuilds ``p`` and compares the targets."""
    return (
        "import numpy as np\nimport graphc as gc\n\n"
        + p.source()
        + "\n"
        + _HARNESS.format(dtype=p.dtype)
        + f"# expected failure: {outcome.kind} on {outcome.target}: "
        + outcome.detail.splitlines()[0]
        + "\n"
    )


_HARNESS = """for shapes in SIZES:
    feeds = {{p: np.random.default_rng(k).uniform(-1, 1, s).astype(np.{dtype})
             for k, (p, s) in enumerate(zip(phs, shapes))}}
    want = gc.Session(target="reference").run(fetch, feeds)
    for fusion in (True, False):
        opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
        got = gc.Session(target="cpu", options=opts).run(fetch, feeds)
        for w, v in zip(want, got):
            print("fused" if fusion else "unfused", np.shape(v), np.max(np.abs(v - w), initial=0))
"""


# -- driving -------------------------------------------------------------------------------------


@dataclass
class Failure:
    seed: int
    outcome: Outcome
    reproducer: str

    def report(self) -> str:
        return (f"fuzz program seed {self.seed}: {self.outcome.kind} on {self.outcome.target}\n"
                f"{self.outcome.detail}\nshrunk reproducer:\n{self.reproducer}")  # fmt: skip


def fuzz(seeds, options=None, shrink_budget_s=120.0, on_program=None, stop_after=None):
    """Check the program of each seed; returns the Failures (shrunk). ``on_program(seed,
    outcome)`` is called after each program; ``stop_after``: failures before giving up."""
    failures = []
    for seed in seeds:
        p = generate(seed)
        out = check(p, options)
        if on_program is not None:
            on_program(seed, out)
        if out is None:
            continue
        if out.kind == "invalid":
            failures.append(Failure(seed, out, reproducer(p, out)))
        else:
            small, small_out = shrink(p, out, shrink_budget_s, options)
            failures.append(Failure(seed, small_out, reproducer(small, small_out)))
        if stop_after is not None and len(failures) >= stop_after:
            break
    return failures


def assert_agree(fetch, runs, rtol=1e-5, atol=1e-5):
    """Fused cpu, unfused cpu and the reference give the same ``fetch`` for each feed dict of
    ``runs`` (one Session per target serves every run: later runs reuse its executable)."""
    sessions = [gc.Session(target="reference")]
    sessions += [gc.Session(target="cpu", options=gc.CompileOptions(fusion=f, cache_dir=None))
                 for _, f in TARGETS]  # fmt: skip
    try:
        for feeds in runs:
            want = sessions[0].run(fetch, feeds)
            for (name, _), sess in zip(TARGETS, sessions[1:]):
                got = sess.run(fetch, feeds)
                for k, (w, v) in enumerate(zip(want, got)):
                    assert np.shape(v) == np.shape(w), (name, k, np.shape(v), np.shape(w))
                    np.testing.assert_allclose(v, w, rtol=rtol, atol=atol, err_msg=f"{name} #{k}")
    finally:
        for s in sessions:
            s.close()
