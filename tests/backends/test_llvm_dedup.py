"""The cpu target emits one native function per distinct kernel and drives the kernels from
tables, so the native code of a deep or unrolled program does not grow with its depth;
results and run-time checks stay those of each kernel."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def _deep(layers: int):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 16), name="x")
        h = x
        for i in range(layers):
            w = gc.constant(np.full((16, 16), 0.01 * (i + 1), np.float32))
            b = gc.constant(np.full((16,), 0.1 * i, np.float32))
            h = gc.tanh(gc.matmul(h, w) + b)
    return g, x, h


def _entry_lines(exe) -> int:
    """Lines of the entry point's body in the optimised LLVM IR."""
    ir = exe.dump_ir("llvm")
    start = ir.index("@gc_entry(")
    return ir[start : ir.index("\n}\n", start)].count("\n")


def _compile_and_run(g, fetch, feed, fusion):
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with gc.Session(graph=g, options=opts) as s:
        exe = s.compile(fetch, list(feed))
        return exe, s.run(fetch, feed)


@pytest.mark.parametrize("fusion", [True, False])
def test_deep_program_shares_kernel_functions_and_matches_reference(fusion):
    g, x, h = _deep(12)
    feed = {x: np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)}
    exe, got = _compile_and_run(g, h, feed, fusion)
    with gc.Session(graph=g, target="reference") as s:
        want = s.run(h, feed)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    kernels = len(exe.kernels)
    assert kernels >= 12
    assert exe.stats["kernel_functions"] <= kernels // 3, (exe.stats["kernel_functions"], kernels)


def test_entry_point_code_does_not_grow_with_kernel_count():
    sizes = []
    for layers in (4, 32):
        g, x, h = _deep(layers)
        feed = {x: np.ones((2, 16), np.float32)}
        exe, _ = _compile_and_run(g, h, feed, fusion=False)
        sizes.append((len(exe.kernels), exe.stats["kernel_functions"], _entry_lines(exe)))
    (k4, f4, e4), (k32, f32, e32) = sizes
    assert k32 > 4 * k4 and f32 == f4  # 8x the kernels, the same functions
    assert e32 == e4  # the tables grow, the code does not


def _gathers(n: int):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (10, 4), name="x")
        idx = [gc.placeholder(gc.int64, (3,), name=f"idx{i}") for i in range(n)]
        outs = [gc.gather(x * float(i + 1), ix, name=f"g{i}") for i, ix in enumerate(idx)]
        total = outs[0]
        for o in outs[1:]:
            total = total + o
    return g, x, idx, total


@pytest.mark.parametrize("bad", [0, 3, 5])
def test_shared_kernels_report_their_own_check(bad):
    """The gathers are one native function; each kernel sets its own check flag (the
    function writes through a pointer moved to that kernel's slot), so the error names the
    gather that read out of range."""
    g, x, idx, total = _gathers(6)
    feed = {x: np.arange(40, dtype=np.float32).reshape(10, 4)}
    for ix in idx:
        feed[ix] = np.array([0, 9, 2])
    exe, got = _compile_and_run(g, total, feed, fusion=False)
    assert exe.stats["kernel_functions"] < len(exe.kernels)
    with gc.Session(graph=g, target="reference") as s:
        np.testing.assert_allclose(got, s.run(total, feed))
    feed[idx[bad]] = np.array([1, 10, 2])
    with gc.Session(graph=g, options=gc.CompileOptions(fusion=False, cache_dir=None)) as s:
        with pytest.raises(gc.errors.InvalidArgumentError, match=f"'g{bad}'"):
            s.run(total, feed)
