"""A reduction loop with a short static trip count (a classifier's loss over its classes) is
left scalar: LLVM's vectorizer turned the 10-class sum of sparse softmax cross-entropy into
masked 8-lane loads, the costliest function of a small training step to compile. The
results stay equal to the reference interpreter's, whatever the row count."""

import re

import numpy as np
import pytest

import graphc as gc


def _loss_graph(classes):
    g = gc.Graph()
    with g.as_default():
        logits = gc.placeholder(gc.float32, (None, classes), name="logits")
        labels = gc.placeholder(gc.int64, (None,), name="labels")
        xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        (dlogits,) = gc.gradients(gc.reduce_mean(xent), [logits])
    return g, logits, labels, xent, dlogits


_ROW_REDUCTION = re.compile(r"define [^@]*@k\d+\.reduction\d+_(max|sum)\b")


def _functions(ir_text):
    return re.split(r"\n(?=define )", ir_text)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_short_class_reduction_matches_reference_and_is_not_vectorized(rows):
    rng = np.random.default_rng(rows)
    g, logits, labels, xent, dlogits = _loss_graph(10)
    feed = {
        logits: rng.standard_normal((rows, 10)).astype(np.float32),
        labels: rng.integers(0, 10, rows).astype(np.int64),
    }
    with gc.Session(graph=g, target="reference") as ref:
        want = ref.run([xent, dlogits], feed)
    with gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None)) as s:
        got = s.run([xent, dlogits], feed)
        exe = s.compile([xent, dlogits], [logits, labels])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the per-row max and sum over the 10 classes (kernels of a reduction alone): no masked
    # vector loads (the vectorizer's remainder handling for a loop shorter than a vector)
    sums = [f for f in _functions(exe.dump_ir("llvm")) if _ROW_REDUCTION.match(f)]
    assert len(sums) >= 2
    assert not any("llvm.masked.load" in f for f in sums)


def test_long_reductions_are_still_vectorized():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 1000), name="x")
        total = gc.reduce_sum(x, axis=1)
    with gc.Session(graph=g, options=gc.CompileOptions(cache_dir=None)) as s:
        xv = np.random.default_rng(0).standard_normal((5, 1000)).astype(np.float32)
        np.testing.assert_allclose(s.run(total, {x: xv}), xv.sum(axis=1), rtol=1e-4)
        exe = s.compile([total], [x])
    sums = [f for f in _functions(exe.dump_ir("llvm")) if _ROW_REDUCTION.match(f)]
    assert sums
    assert any(re.search(r"<\d+ x float>", f) for f in sums)
