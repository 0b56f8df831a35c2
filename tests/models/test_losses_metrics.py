"""gc.losses and gc.metrics against tf.compat.v1 (golden files of make_golden.py), and the
LOSSES / REGULARIZATION_LOSSES / LOCAL_VARIABLES bookkeeping."""

from pathlib import Path

import numpy as np
import pytest

import graphc as gc

GOLDEN = Path(__file__).resolve().parent / "golden"
TARGETS = ["reference", "cpu"]


def load(name):
    with np.load(GOLDEN / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


LOSSES = {
    "loss_mse": lambda p: gc.losses.mean_squared_error(p["labels"], p["predictions"]),
    "loss_mse_weighted": lambda p: gc.losses.mean_squared_error(
        p["labels"], p["predictions"], weights=p["weights"]),
    "loss_absolute_difference": lambda p: gc.losses.absolute_difference(
        p["labels"], p["predictions"]),
    "loss_softmax_ce_smoothing": lambda p: gc.losses.softmax_cross_entropy(
        p["onehot"], p["logits"], p["weights"], label_smoothing=0.1),
    "loss_sparse_softmax_ce": lambda p: gc.losses.sparse_softmax_cross_entropy(
        p["labels"], p["logits"]),
    "loss_sparse_softmax_ce_weighted": lambda p: gc.losses.sparse_softmax_cross_entropy(
        p["labels"], p["logits"], weights=p["weights"]),
    "loss_sigmoid_ce": lambda p: gc.losses.sigmoid_cross_entropy(
        p["labels"], p["logits"], label_smoothing=0.2),
    "loss_huber": lambda p: gc.losses.huber_loss(p["labels"], p["predictions"], delta=0.7),
}  # fmt: skip


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(LOSSES))
def test_loss_matches_tf1(case, target):
    r = load(case)
    inputs = {k[3:]: v for k, v in r.items() if k.startswith("in/")}
    phs = {k: gc.placeholder(gc.as_dtype(v.dtype), (None, *v.shape[1:]), name=k)
           for k, v in inputs.items()}  # fmt: skip
    loss = LOSSES[case](phs)
    assert loss.shape == () and loss.dtype == gc.float32
    assert gc.get_collection(gc.GraphKeys.LOSSES) == [loss]
    total = gc.losses.get_total_loss()
    keys = [k for k in r if k.startswith("grad/")]
    grads = gc.gradients(loss, [phs[k[5:]] for k in keys])
    with gc.Session(target=target) as sess:
        got, got_total, got_grads = sess.run(
            [loss, total, grads], {phs[k]: v for k, v in inputs.items()}
        )
    np.testing.assert_allclose(got, r["out"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_total, r["total"], rtol=1e-5, atol=1e-6)
    for k, g in zip(keys, got_grads):
        np.testing.assert_allclose(g, r[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_reductions_and_all_zero_weights():
    labels = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    preds = np.zeros((2, 2), np.float32)
    w = np.array([[2.0], [0.0]], np.float32)
    sq = (preds - labels) ** 2
    R = gc.losses.Reduction
    cases = {
        R.NONE: sq * w, R.SUM: (sq * w).sum(), R.MEAN: (sq * w).sum() / (w * np.ones((2, 2))).sum(),
        R.SUM_OVER_BATCH_SIZE: (sq * w).sum() / 4, R.SUM_BY_NONZERO_WEIGHTS: (sq * w).sum() / 2,
    }  # fmt: skip
    losses = {k: gc.losses.mean_squared_error(labels, preds, w, reduction=k) for k in cases}
    zero = gc.losses.mean_squared_error(labels, preds, weights=0.0)
    with gc.Session(target="reference") as sess:
        got = sess.run(losses)
        assert sess.run(zero) == 0.0  # no non-zero weight: 0, not NaN (TF's div_no_nan)
    for k, want in cases.items():
        np.testing.assert_allclose(got[k], want, rtol=1e-6, err_msg=k)
    with pytest.raises(ValueError, match="Invalid Reduction"):
        gc.losses.mean_squared_error(labels, preds, reduction="average")
    with pytest.raises(ValueError, match="not compatible"):
        gc.losses.mean_squared_error(labels, np.zeros((3, 2), np.float32))


def test_zero_weights_give_a_finite_gradient():
    p = gc.placeholder(gc.float32, (2, 2))
    loss = gc.losses.mean_squared_error(np.ones((2, 2), np.float32), p, weights=np.zeros((2, 1)))
    (g,) = gc.gradients(loss, [p])
    with gc.Session(target="reference") as sess:
        value, grad = sess.run([loss, g], {p: np.zeros((2, 2))})
    assert value == 0.0 and np.all(grad == 0.0)


def test_total_loss_adds_regularization_losses():
    x = gc.constant(np.ones((2, 3), np.float32))
    with gc.variable_scope("net", regularizer=lambda w: 0.5 * gc.reduce_sum(w * w)):
        w = gc.get_variable("w", initializer=np.full((3, 1), 2.0, np.float32))
    y = gc.layers.dense(x, 1, kernel_initializer=gc.ones_initializer(),
                        kernel_regularizer=lambda k: 0.1 * gc.reduce_sum(k))  # fmt: skip
    gc.losses.absolute_difference(np.zeros((2, 1), np.float32), x @ w + y)
    regs = gc.losses.get_regularization_losses()
    assert len(regs) == 2 and gc.get_collection(gc.GraphKeys.REGULARIZATION_LOSSES) == regs
    total = gc.losses.get_total_loss()
    no_reg = gc.losses.get_total_loss(add_regularization_losses=False)
    with gc.Session(target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        t, n, r = sess.run([total, no_reg, gc.losses.get_regularization_loss()])
    assert n == pytest.approx(9.0)  # |6 + 3|
    assert r == pytest.approx(0.5 * 12 + 0.1 * 3)
    assert t == pytest.approx(n + r)
    gc.reset_default_graph()
    with pytest.raises(ValueError, match="No losses"):
        gc.losses.get_total_loss()


def test_loss_collection_none_and_float64_inputs():
    a = gc.constant(np.array([1.0, 2.0]))
    loss = gc.losses.mean_squared_error(a, a * 2, loss_collection=None)
    assert gc.get_collection(gc.GraphKeys.LOSSES) == []
    assert loss.dtype == gc.float64


@pytest.mark.parametrize("target", TARGETS)
def test_accuracy_matches_tf1(target):
    r = load("metric_accuracy")
    labels = gc.placeholder(gc.int64, (None,))
    preds = gc.placeholder(gc.int64, (None,))
    acc, update = gc.metrics.accuracy(labels, preds)
    assert sorted(v.op.name for v in gc.local_variables()) == list(r["names"])
    assert gc.global_variables() == []  # metric counters are local: not saved, not trained
    assert set(gc.get_collection(gc.GraphKeys.METRIC_VARIABLES)) == set(gc.local_variables())
    with gc.Session(target=target) as sess:
        sess.run(gc.local_variables_initializer())
        assert sess.run(acc) == 0.0
        for i in range(len(r["updates"])):
            got = sess.run(update, {labels: r["labels"][i], preds: r["predictions"][i]})
            assert got == pytest.approx(r["updates"][i])
            assert sess.run(acc) == pytest.approx(r["values"][i])
        sess.run(gc.local_variables_initializer())  # resets the counters
        assert sess.run(acc) == 0.0


def test_accuracy_weights_collections_and_second_metric():
    labels = gc.constant(np.array([[1], [2], [3], [4]]))
    preds = gc.constant(np.array([1, 0, 3, 0]))  # int32 vs int64: cast, [4, 1] squeezed
    w = gc.constant(np.array([1.0, 1.0, 0.0, 2.0], np.float32))
    acc, update = gc.metrics.accuracy(labels, preds, weights=w, metrics_collections=["m"],
                                      updates_collections=["u"])  # fmt: skip
    acc2, _ = gc.metrics.accuracy(labels, preds)
    assert [v.op.name for v in gc.local_variables()] == [
        "accuracy/total",
        "accuracy/count",
        "accuracy_1/total",
        "accuracy_1/count",
    ]
    assert gc.get_collection("m") == [acc] and gc.get_collection("u") == [update]
    mean, mean_update = gc.metrics.mean(gc.constant([1.0, 2.0, 6.0]))
    with gc.Session(target="reference") as sess:
        sess.run(gc.local_variables_initializer())
        assert sess.run(update) == pytest.approx(1 / 4)
        assert sess.run(mean_update) == pytest.approx(3.0)
