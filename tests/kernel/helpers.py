"""Build a graph, lower it (fused or not) and run it through the Kernel IR interpreter."""

from __future__ import annotations

import numpy as np

from graphc.backends.reference.interpreter import run_program
from graphc.kernel import interp
from graphc.kernel.lower import lower
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from graphc.runtime_state import RunContext


def compile_kernels(outs, feeds, fusion=True, targets=()):
    """(program, plan, kernel program) for fetching ``outs`` given ``feeds`` placeholders."""
    prog = extract(list(outs), list(targets), list(feeds))
    plan = fuse(prog, CompileOptions(fusion=fusion, cache_dir=None))
    return prog, plan, lower(prog, plan)


def run_both(prog, kp, arrays, variables=None, rng=None):
    """(reference results, interpreter results, reference ctx, interpreter ctx)."""
    ref_ctx = RunContext(dict(variables or {}), dict(rng or {}), list(arrays))
    ref = run_program(prog, ref_ctx)
    ctx = RunContext(dict(variables or {}), dict(rng or {}), list(arrays))
    got = interp.run(kp, ctx)
    return ref, got, ref_ctx, ctx


def assert_close(got, ref, rtol=1e-5, atol=1e-6):
    for g, r in zip(got, ref):
        g, r = np.asarray(g), np.asarray(r)
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        assert g.shape == r.shape, (g.shape, r.shape)
        if r.dtype.kind == "f":
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(g, r)
