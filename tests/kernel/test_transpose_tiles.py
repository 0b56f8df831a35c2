"""Strided 2-D transposes copy in tiles of TILE rows (``kernel/transpose_tiles.py``): values
equal numpy for sizes that are and are not multiples of the tile, run-time sizes, slices
(W11's ``W_h^T``) and float64; the Kernel IR of such a transpose is tiled, other nests are
not; the pass on Kernel IR matches the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.kernel import interp
from graphc.kernel.transpose_tiles import TILE, tile_transposes
from graphc.runtime_state import RunContext

from .helpers import compile_kernels

OPTS = gc.CompileOptions(cache_dir=None)


@pytest.mark.parametrize(
    "shape,start,dtype",
    [((321, 1024), 65, np.float32), ((40, 33), 0, np.float32), ((17, 100), 1, np.float64),
     ((64, 16), 0, np.float32), ((1, 50), 0, np.float32), ((50, 1), 0, np.float32)],
)  # fmt: skip
@pytest.mark.parametrize("threads", [1, 2])
def test_transpose_of_a_slice_equals_numpy(shape, start, dtype, threads):
    x = gc.placeholder(gc.as_dtype(dtype), shape)
    y = gc.transpose(x[start:, :]) * 2.0
    a = np.random.default_rng(shape[0]).standard_normal(shape).astype(dtype)
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None, threads=threads)) as s:
        got = s.run(y, {x: a})
    np.testing.assert_array_equal(got, a[start:].T * 2)


@pytest.mark.parametrize("rows,cols", [(5, 40), (37, 70), (0, 20)])
def test_run_time_sizes(rows, cols):
    x = gc.placeholder(gc.float32, (None, None))
    y = gc.transpose(x) + 1.0
    a = np.random.default_rng(rows).standard_normal((rows, cols)).astype(np.float32)
    with gc.Session(target="cpu", options=OPTS) as s:
        got = s.run(y, {x: a})
    np.testing.assert_array_equal(got, a.T + 1)


def test_the_kernel_is_tiled_and_row_copies_are_not():
    x = gc.placeholder(gc.float32, (321, 1024))
    v = gc.placeholder(gc.float32, (40, 33))
    y = gc.transpose(x[65:, :])
    z = x[65:, :] * 3.0
    with gc.Session(target="cpu", options=OPTS) as s:
        text = s.compile(y, [x]).dump_ir("kernel")
        rest = s.compile(gc.transpose(v), [v]).dump_ir("kernel")
        plain = s.compile(z, [x]).dump_ir("kernel")
    assert f"for i1.in in 0..{TILE}:" in text, text
    assert "for parallel i1 in" not in text, text  # 1024 rows: 64 whole tiles
    assert "for parallel i1 in 32..33:" in rest, rest  # 33 rows: 2 tiles and one row
    assert ".tile" not in plain, plain


def test_the_pass_on_kernel_ir_matches_the_interpreter():
    x = gc.placeholder(gc.float32, (None, 48))
    y = gc.transpose(x)
    w = gc.transpose(x[3:, 5:]) - 1.0
    _, _, kp = compile_kernels([y, w], [x])
    bodies = [tile_transposes(k.body) for k in kp.kernels]
    assert any(b is not k.body for b, k in zip(bodies, kp.kernels))
    tiled = kp.__class__(**{**kp.__dict__, "kernels": [
        k.__class__(**{**k.__dict__, "body": b}) for k, b in zip(kp.kernels, bodies)]})  # fmt: skip
    a = np.random.default_rng(0).standard_normal((35, 48)).astype(np.float32)
    want = interp.run(kp, RunContext({}, {}, [a]))
    got = interp.run(tiled, RunContext({}, {}, [a]))
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)
    np.testing.assert_array_equal(got[0], a.T)
