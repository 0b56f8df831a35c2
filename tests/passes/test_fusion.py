"""Structure tests of the fusion decisions, each also checked for values against the
reference interpreter through the Kernel IR interpreter."""

import numpy as np
import pytest

import graphc as gc
from graphc.options import CompileOptions
from graphc.passes.fusion import fuse
from graphc.program import extract
from tests.kernel.helpers import assert_close, compile_kernels, run_both


def _build(fn, *arrays, dynamic=True):
    phs = [
        gc.placeholder(gc.as_dtype(a.dtype), (None,) + a.shape[1:] if dynamic else a.shape)
        for a in arrays
    ]
    out = fn(*phs)
    return phs, out if isinstance(out, list | tuple) else [out]


def _check(fn, *arrays, fusion=True, rtol=1e-5, atol=1e-6):
    phs, outs = _build(fn, *arrays)
    prog, plan, kp = compile_kernels(outs, phs, fusion)
    ref, got, _, _ = run_both(prog, kp, arrays)
    assert_close(got, ref, rtol, atol)
    return prog, plan, kp


def w1(x):
    a = x * 1.702
    s = 1 / (1 + gc.exp(-a))
    y = x * s
    return gc.tanh(y * 0.5 + 0.1) * y + x


def softmax(x):
    m = gc.reduce_max(x, axis=-1, keepdims=True)
    e = gc.exp(x - m)
    return e / gc.reduce_sum(e, axis=-1, keepdims=True)


def layer_norm(x, gamma, beta):
    mean = gc.reduce_mean(x, axis=-1, keepdims=True)
    d = x - mean
    var = gc.reduce_mean(d * d, axis=-1, keepdims=True)
    return d * gc.rsqrt(var + 1e-5) * gamma + beta


rng = np.random.default_rng(0)
X = rng.standard_normal((6, 10)).astype(np.float32)


def test_w1_chain_is_one_kernel_with_one_flat_loop():
    prog, plan, kp = _check(w1, X)
    assert len(plan.groups) == 1 and plan.groups[0].kind == "loop"
    assert len(kp.kernels) == 1
    body = kp.kernels[0].body
    assert (
        len(body) == 1
        and body[0].parallel
        and not any(type(s).__name__ == "Loop" for s in body[0].body)
    ), "elementwise chain without broadcasting should be a single flat loop"
    assert all(d == "fuse" for _, d, _ in plan.decisions)


def test_w1_unfused_has_one_kernel_per_op():
    prog, plan, kp = _check(w1, X, fusion=False)
    compute = [n for n in prog.nodes if n.op not in ("Feed", "Const")]
    assert len(kp.kernels) == len(compute) == 11  # 10 arithmetic ops + the final add
    assert any("fusion disabled" in why for _, _, why in plan.decisions)


def test_softmax_is_at_most_two_kernels():
    prog, plan, kp = _check(softmax, X)
    assert len(kp.kernels) <= 2
    assert {g.kind for g in plan.groups} == {"reduction"}


def test_nn_softmax_and_log_softmax_are_at_most_two_kernels():
    for fn in (gc.nn.softmax, gc.nn.log_softmax):
        prog, plan, kp = _check(fn, X)
        assert len(kp.kernels) <= 2, (fn, plan.report())


def test_layer_norm_forward_is_at_most_two_kernels():
    gamma = rng.standard_normal(10).astype(np.float32)
    beta = rng.standard_normal(10).astype(np.float32)

    def build(x):
        return layer_norm(x, gc.constant(gamma), gc.constant(beta))

    prog, plan, kp = _check(build, X, rtol=1e-4, atol=1e-5)
    assert len(kp.kernels) <= 2, plan.report()


def test_matmul_bias_relu_is_gemm_plus_fused_epilogue():
    w = rng.standard_normal((10, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)

    def build(x):
        return gc.nn.relu(gc.matmul(x, gc.constant(w)) + gc.constant(b))

    prog, plan, kp = _check(build, X, rtol=1e-4, atol=1e-5)
    assert len(kp.kernels) == 1
    (k,) = kp.kernels
    assert plan.groups[0].kind == "gemm"
    assert set(k.op_types) == {"MatMul", "Add", "Relu"}
    calls = [s for s in k.body if type(s).__name__ == "LibCall"]
    assert len(calls) == 1 and calls[0].fn == "gemm"
    # the epilogue writes the GEMM's output in place: no temporary for the raw product
    assert not [b for b in kp.buffers.values() if b.kind == "temp"]


def test_gemm_read_by_two_kernels_takes_the_epilogue_of_one():
    """A GELU after a GEMM in a train step: the GELU's gradient reads the pre-activation, so
    the product has consumers in two kernels; it still takes the GELU as its epilogue,
    storing the product for the gradient's kernel."""
    w = rng.standard_normal((10, 7)).astype(np.float32)
    w2 = rng.standard_normal((7, 3)).astype(np.float32)

    def build(x):
        h = gc.matmul(x, gc.constant(w))
        y = gc.matmul(gc.nn.gelu(h), gc.constant(w2))
        (dh,) = gc.gradients(gc.reduce_sum(y * y), [h])
        return [y, dh]

    prog, plan, kp = _check(build, X, rtol=1e-4, atol=1e-5)
    mm = next(n.id for n in prog.nodes if n.op == "MatMul")
    (group,) = [g for g in plan.groups if mm in g.nodes]
    ops = {prog.node(n).op for n in group.nodes}
    assert {"MatMul", "Gelu"} <= ops and group.kind == "gemm", ops
    gelu = next(n.id for n in prog.nodes if n.op == "Gelu")
    assert [g for g in plan.groups if gelu in g.nodes] == [group]
    assert any(d == "fuse" and "stored for 1 other kernel" in why
               for _, d, why in plan.decisions)  # fmt: skip


def test_gemm_epilogue_that_another_consumer_feeds_is_refused():
    """The GEMM's product also reaches its elementwise consumer through a running sum (a
    kernel of its own): merging the GEMM with that consumer would make a cycle of kernels,
    so the product stays in a kernel of its own."""
    w = rng.standard_normal((10, 7)).astype(np.float32)

    def build(x):
        h = gc.matmul(x, gc.constant(w))
        return gc.exp(h) - gc.cumsum(h, axis=1)

    prog, plan, kp = _check(build, X, rtol=1e-4, atol=1e-5)
    mm = next(n.id for n in prog.nodes if n.op == "MatMul")
    (group,) = [g for g in plan.groups if mm in g.nodes]
    assert {prog.node(n).op for n in group.nodes} == {"MatMul"}


def test_kernels_computing_copies_of_one_producer_are_siblings():
    """Four gates, each computed from its own copy of one split (as an LSTM gradient step
    recomputes its gates): a copy a kernel computes itself is no dependency on the kernels
    computing the others, so sibling fusion merges the four into one pass over the input."""
    x12 = rng.standard_normal((6, 12)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)

    def build(x):
        i, f, g, o = gc.split(x + gc.constant(b), 4, axis=1)
        return [gc.sigmoid(i), gc.sigmoid(f + 1.0), gc.tanh(g), gc.sigmoid(o)]

    prog, plan, kp = _check(build, x12)
    assert len(kp.kernels) == 1, [k.op_types for k in kp.kernels]
    assert any(d == "fuse" and w.startswith("siblings") for w, d, _ in plan.decisions)


def test_expensive_producer_with_two_consumer_kernels_is_not_duplicated():
    def build(x):
        e = gc.exp(x)  # read by two reductions over different axes
        return [gc.reduce_sum(e, axis=0), gc.reduce_sum(e, axis=1)]

    prog, plan, kp = _check(build, X)
    refusals = [(w, why) for w, d, why in plan.decisions if d == "refuse"]
    assert any("Exp" in w and "expensive" in why for w, why in refusals), refusals
    assert len(kp.kernels) == 3


def test_reduction_with_consumers_in_two_kernels_is_refused_with_reason():
    def build(x):
        s = gc.reduce_sum(x, axis=1, keepdims=True)
        return [x / s, gc.transpose(s) * 2.0]

    prog, plan, kp = _check(build, X)
    reasons = [why for w, d, why in plan.decisions if d == "refuse" and "Sum" in w]
    assert reasons and all(why for why in reasons)


def test_cheap_producer_is_duplicated_into_consumers():
    def build(x):
        y = x * 2.0
        return [gc.reduce_sum(y, axis=0), gc.reduce_max(y, axis=1)]

    prog, plan, kp = _check(build, X)
    assert any(d == "fuse" and "duplicated" in why for _, d, why in plan.decisions)
    mul = next(n.id for n in prog.nodes if n.op == "Mul")
    assert sum(mul in g.nodes for g in plan.groups) == 2
    assert not any(b.kind == "temp" for b in kp.buffers.values())


def test_sibling_reductions_over_the_same_input_share_a_kernel():
    def build(x):
        return [gc.reduce_sum(x, axis=1), gc.reduce_max(x, axis=1)]

    prog, plan, kp = _check(build, X)
    assert len(kp.kernels) == 1
    assert any(d == "fuse" and "siblings" in w for w, d, _ in plan.decisions)


def test_kernels_sharing_only_a_scalar_are_not_siblings():
    # Adam's updates all read one learning-rate scalar: no pass over a large input is saved
    # by merging them, so each stays its own (small, deduplicated) kernel
    Y = rng.standard_normal(X.shape).astype(np.float32)

    def decisions(shared_tensor):
        x, y = (gc.placeholder(gc.float32, X.shape) for _ in range(2))
        lr = gc.reduce_sum(x[:1, :1])  # a one-element value computed in the graph
        first = gc.reduce_sum(y if shared_tensor else x, axis=1) * lr
        outs = [first, gc.reduce_max(y, axis=1) * lr]
        prog, plan, kp = compile_kernels(outs, [x, y], True)
        ref, got, _, _ = run_both(prog, kp, [X, Y])
        assert_close(got, ref, 1e-5, 1e-6)
        return [w for w, d, _ in plan.decisions if d == "fuse" and "siblings" in w]

    assert decisions(shared_tensor=False) == []
    assert len(decisions(shared_tensor=True)) == 1  # a shared tensor still merges them


def test_gemm_operand_producer_is_refused():
    w = rng.standard_normal((10, 4)).astype(np.float32)

    def build(x):
        return gc.matmul(x * 2.0, gc.constant(w))

    prog, plan, kp = _check(build, X, rtol=1e-4, atol=1e-5)
    assert any(d == "refuse" and "BLAS" in why for _, d, why in plan.decisions)
    assert len(kp.kernels) == 2


def test_broadcast_bias_forces_nested_loops_but_stays_one_kernel():
    b = rng.standard_normal(10).astype(np.float32)
    prog, plan, kp = _check(lambda x: gc.tanh(x + gc.constant(b)) * 3.0, X)
    assert len(kp.kernels) == 1
    text = kp.text()
    assert "//" not in text and "%" not in text, "no div/mod in the index arithmetic"


def test_fusion_plan_interface():
    x = gc.placeholder(gc.float32, (None, 3))
    y = gc.exp(x) + 1.0
    prog = extract([y], [], [x])
    plan = fuse(prog, CompileOptions(cache_dir=None))
    (g,) = plan.groups
    assert g.kind == "loop" and g.name and len(g.nodes) == 2  # exp, add (constants inline)
    for what, decision, reason in plan.decisions:
        assert decision in ("fuse", "refuse") and what and reason
    unfused = fuse(prog, CompileOptions(fusion=False, cache_dir=None))
    assert len(unfused.groups) == 2


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_one_kernel_program_serves_every_batch_size(batch):
    phs, outs = _build(softmax, X)
    prog, plan, kp = compile_kernels(outs, phs)
    x = rng.standard_normal((batch, 10)).astype(np.float32)
    ref, got, _, _ = run_both(prog, kp, [x])
    assert_close(got, ref)


def test_conv_bias_relu_is_one_conv_kernel_and_matches_reference():
    f = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    xs = rng.standard_normal((2, 6, 5, 2)).astype(np.float32)

    def build(x):
        y = gc.nn.conv2d(x, gc.constant(f), strides=1, padding="SAME")
        return gc.nn.relu(y + gc.constant(b))

    prog, plan, kp = _check(build, xs, rtol=1e-4, atol=1e-5)
    assert len(kp.kernels) == 1 and plan.groups[0].kind == "conv"


def test_small_cnn_training_step_matches_reference():
    f = gc.Variable(rng.standard_normal((3, 3, 1, 4)).astype(np.float32) * 0.3, name="f")
    x = gc.placeholder(gc.float32, (None, 8, 8, 1))
    h = gc.nn.max_pool2d(gc.nn.relu(gc.nn.conv2d(x, f, 1, "VALID")), 2, 2, "VALID")
    loss = gc.reduce_mean(gc.square(h))
    (g,) = gc.gradients(loss, [f])
    step = gc.assign_sub(f, 0.1 * g)
    prog, plan, kp = compile_kernels([loss], [x], targets=[step.op])
    xs = rng.standard_normal((3, 8, 8, 1)).astype(np.float32)
    state = {"f": rng.standard_normal((3, 3, 1, 4)).astype(np.float32)}
    ref, got, ref_ctx, ctx = run_both(prog, kp, [xs], state)
    assert_close(got, ref, 1e-4, 1e-5)
    np.testing.assert_allclose(ctx.pending["f"], ref_ctx.pending["f"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "index_op,fused",
    [
        (lambda t: t[1::2, ::-1], True),  # strided slice: each element read once
        (lambda t: gc.reverse(t, [1]), True),
        (lambda t: gc.split(t, 2, axis=1)[1], True),
        (lambda t: gc.tile(t, [2, 1]), False),  # each element read twice
        (lambda t: gc.pad(t, [[1, 1], [0, 0]]), False),  # masked reads outside the input
    ],
    ids=["slice", "reverse", "split", "tile", "pad"],
)
def test_expensive_producer_fuses_only_into_index_ops_that_read_each_element_once(index_op, fused):
    def build(x):
        return index_op(gc.exp(x)) * 2.0

    prog, plan, kp = _check(build, X)
    exp = next(n.id for n in prog.nodes if n.op == "Exp")
    (group,) = [g for g in plan.groups if exp in g.nodes]
    assert (len(group.nodes) > 1) == fused, plan.report()
