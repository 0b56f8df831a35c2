"""Fusion for the column reduction layout (cpu): a reduction over leading axes (batch norm's
moments over N, H, W) is fused only with consumers of its rows, so it stays a unit-stride
column kernel; the full-space normalisation gets a loop kernel of its own. In the row layout
(cuda) the whole batch norm stays one row kernel, as before."""

import numpy as np
import pytest

import graphc as gc
from graphc.passes.fusion import fuse
from graphc.program import extract

rng = np.random.default_rng(0)
X = (rng.standard_normal((4, 6, 6, 8)) * 2 + 1).astype(np.float32)


def _batch_norm_program():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 6, 6, 8), name="x")
        y = gc.nn.relu(gc.layers.batch_normalization(x, training=True))
        gc.global_variables_initializer()
    return g, x, [y]


def _bias_update_program():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 6, 6, 8), name="x")
        step = gc.reduce_sum(x, axis=[0, 1, 2]) * 0.1 + 1.0  # an epilogue over the row
        gc.global_variables_initializer()
    return g, x, [step]


def _groups(plan, program):
    return [[program.node(n).op for n in grp.nodes] for grp in plan.groups]


def test_columns_layout_keeps_leading_axis_reductions_apart_from_full_space_ops():
    g, x, fetches = _batch_norm_program()
    opts = gc.CompileOptions(cache_dir=None)
    with gc.Session(graph=g, options=opts) as sess:  # cpu: the column layout
        exe = sess.compile(fetches, [x])
    program = exe.program  # after the graph passes, as fusion sees it
    cols = [list(k.op_types) for k in exe.kernels]
    rows = _groups(fuse(program, reduction_layout="rows"), program)
    # rows: the moments and the normalisation are one row kernel
    assert len(rows) == 1 and rows[0].count("Mean") == 2 and "Relu" in rows[0], rows
    # columns: the mean alone, the variance with its full-space producers (input fusion) and
    # its row epilogue, the normalisation in a loop kernel of its own
    assert cols[0] == ["Mean"] and sum("Mean" in ops for ops in cols) == 2, cols
    assert not any("Mean" in ops and "Relu" in ops for ops in cols), cols
    decisions = fuse(program, reduction_layout="columns").decisions
    assert any(d[1] == "refuse" and "leading axes" in d[2] for d in decisions), decisions


def test_columns_layout_keeps_an_epilogue_over_the_rows():
    g, x, fetches = _bias_update_program()
    program = extract(fetches, [], [x])
    cols = _groups(fuse(program, reduction_layout="columns"), program)
    assert len(cols) == 1 and {"Sum", "Mul", "Add"} <= set(cols[0]), cols


@pytest.mark.parametrize("build", [_batch_norm_program, _bias_update_program])
@pytest.mark.parametrize("fusion", [True, False])
def test_batch_norm_on_cpu_matches_reference(build, fusion):
    g, x, fetches = build()
    opts = gc.CompileOptions(fusion=fusion, cache_dir=None)
    with gc.Session(graph=g, target="reference") as ref, gc.Session(graph=g, options=opts) as s:
        init = g.get_operation_by_name("init")
        ref.run(init)
        s.run(init)
        expected = ref.run(fetches, {x: X})
        got = s.run(fetches, {x: X})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
