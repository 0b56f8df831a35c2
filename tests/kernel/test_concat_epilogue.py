"""A concat stored by a GEMM kernel's epilogue, or reached through transposes of the group,
is stored piece by piece (graphc/kernel/lower_rows.py ``concat_output`` and
``emit_concat_pieces``): one loop nest per input, no select between the inputs and no
clamped index. The pattern is SqueezeNet's fire module imported from ONNX: two expand
convolutions of one input, each with its bias and ReLU, concatenated along NCHW channels
between transposes to and from graphc's NHWC. Each case equals the reference interpreter,
fused and unfused, with a static and a run-time (None) batch size."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


def _run(build, feeds_np, fusion=True):
    """(kernel IR text, cpu results, reference results) of ``build(placeholders)``."""
    results = {}
    ir = ""
    for target in ("reference", "cpu"):
        g = gc.Graph()
        with g.as_default():
            phs = [gc.placeholder(gc.float32, shape) for shape, _ in feeds_np]
            fetch = build(*phs)
        feed = {p: v for p, (_, v) in zip(phs, feeds_np)}
        opts = gc.CompileOptions(cache_dir=None, fusion=fusion) if target == "cpu" else None
        with gc.Session(graph=g, target=target, options=opts) as sess:
            results[target] = sess.run(fetch, feed)
            if target == "cpu":
                ir = sess.compile(fetch, list(feed)).dump_ir("kernel")
    return ir, results["cpu"], results["reference"]


def _kernel(ir, op_types):
    """The text of the first kernel whose op list contains every name of ``op_types``."""
    for block in ir.split("\nkernel ")[1:]:
        head = block.splitlines()[0]
        if all(t in head for t in op_types):
            return block
    raise AssertionError(f"no kernel with {op_types} in:\n{ir}")


def _fire(x, nchw):
    """Squeeze 1x1 conv, then a 1x1 and a 3x3 expand conv (bias, ReLU) concatenated on
    channels: in NHWC directly, or (``nchw``) as an ONNX import builds it."""
    rng = np.random.default_rng(3)
    c = x.shape[3]

    def conv(h, k, cin, cout):
        w = gc.constant(rng.uniform(-0.5, 0.5, (k, k, cin, cout)).astype(np.float32))
        b = gc.constant(rng.uniform(-0.2, 0.2, (cout,)).astype(np.float32))
        return gc.nn.relu(gc.nn.conv2d(h, w, 1, "SAME") + b)

    s = conv(x, 1, c, 4)
    e1, e3 = conv(s, 1, 4, 8), conv(s, 3, 4, 8)
    if not nchw:
        return gc.concat([e1, e3], axis=3)
    to_nchw = (0, 3, 1, 2)
    cat = gc.concat([gc.transpose(e1, to_nchw), gc.transpose(e3, to_nchw)], axis=1)
    back = gc.transpose(cat, (0, 2, 3, 1))
    return conv(back, 1, 16, 5)  # a consumer in NHWC, as the next fire module's squeeze


@pytest.mark.parametrize("nchw", [False, True])
@pytest.mark.parametrize("batch", [2, None])
@pytest.mark.parametrize("fusion", [True, False])
def test_fire_module_concat_equals_the_reference(nchw, batch, fusion):
    xv = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    ir, got, want = _run(lambda x: _fire(x, nchw), [((batch, 7, 6, 3), xv)], fusion)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if fusion:
        # the 3x3 expand's kernel stores the concat: each piece in its own nest
        k = _kernel(ir, ("Conv2D", "ConcatV2"))
        # (the GEMM: im2col + gemm, or the cpu's conv_packed for constant filters)
        epilogue = k[max(k.rfind("call gemm"), k.rfind("call conv_packed")) :].split("\n", 1)[1]
        assert "select" not in epilogue and "min(" not in epilogue
        if "call conv_packed" in k and "for parallel row" in epilogue:
            # run per task of the convolution's rows (backends/llvm/epilogue.py row_nest):
            # one loop over the output pixels, the two pieces' channel loops in it
            assert epilogue.count("for parallel") == 1 and epilogue.count("\n    for ") == 2
        else:
            assert epilogue.count("for parallel") == 2


@pytest.mark.parametrize("batch", [3, None])
@pytest.mark.parametrize("axis", [0, 1])
def test_matmul_epilogue_concat(axis, batch):
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((3, 4)).astype(np.float32)
    wv = rng.standard_normal((4, 5)).astype(np.float32)
    yv = rng.standard_normal((3, 5)).astype(np.float32)

    def build(x, y):
        h = gc.nn.relu(gc.matmul(x, gc.constant(wv)) + 1.0)
        return gc.concat([y * 2.0, h], axis=axis)

    ir, got, want = _run(build, [((batch, 4), xv), ((batch, 5), yv)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    k = _kernel(ir, ("MatMul", "ConcatV2"))
    epilogue = k[k.rindex("call gemm") :].split("\n", 1)[1]
    assert "select" not in epilogue and epilogue.count("for parallel") == 2


@pytest.mark.parametrize("batch", [2, None])
def test_loop_group_transpose_of_a_concat(batch):
    rng = np.random.default_rng(2)
    av = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    bv = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)

    def build(a, b):
        cat = gc.concat([gc.exp(a), b * 3.0], axis=1)
        return gc.transpose(gc.transpose(cat, (0, 2, 3, 1)), (2, 0, 1, 3))

    ir, got, want = _run(build, [((batch, 3, 4, 5), av), ((batch, 2, 4, 5), bv)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    k = _kernel(ir, ("ConcatV2", "Transpose"))
    assert "select" not in k and k.count("for parallel") == 2
