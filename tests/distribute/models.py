"""The small models the MPI jobs of tests/distribute train (W3's MLP and W7's CNN, smaller).

Initial values depend on the rank (scaled by 1 + rank / 2), so that only
``broadcast_global_variables`` makes the processes start equal; the data does not (every
process sees the same global batches and takes its rows).
"""

import numpy as np

import graphc as gc

STEPS = 20
ROWS = STEPS * 3 * 8  # enough global rows for 20 steps of 3 processes x batch 8
INPUTS, CLASSES, IMAGE = 64, 10, 8

OPTIMIZERS = {
    "adam": lambda: gc.train.AdamOptimizer(1e-2),
    "momentum": lambda: gc.train.MomentumOptimizer(0.05, 0.9, use_nesterov=True),
    "sgd": lambda: gc.train.GradientDescentOptimizer(0.1),
    "rmsprop": lambda: gc.train.RMSPropOptimizer(1e-2),
    "adagrad": lambda: gc.train.AdagradOptimizer(0.1),
}


def _scaled(a, rank):
    return (a * np.float32(1 + 0.5 * rank)).astype(np.float32)


def build_mlp(rank, hidden=32):
    """(x, labels, loss, params, (xs, ys)) of the MLP INPUTS-hidden-hidden-CLASSES."""
    rng = np.random.default_rng(0)
    xs = rng.random((ROWS, INPUTS), dtype=np.float32)
    ys = rng.integers(0, CLASSES, ROWS).astype(np.int64)
    x = gc.placeholder(gc.float32, (None, INPUTS), name="x")
    labels = gc.placeholder(gc.int64, (None,), name="labels")
    h, params = x, []
    for i, (a, b) in enumerate([(INPUTS, hidden), (hidden, hidden), (hidden, CLASSES)]):
        w0 = rng.standard_normal((a, b)).astype(np.float32) * np.float32(np.sqrt(2 / a))
        w = gc.Variable(_scaled(w0, rank), name=f"w{i + 1}")
        bias = gc.Variable(_scaled(rng.standard_normal(b).astype(np.float32) * 0.1, rank),
                           name=f"b{i + 1}")  # fmt: skip
        params += [w, bias]
        h = gc.matmul(h, w) + bias
        if i < 2:
            h = gc.nn.relu(h)
    xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=h)
    return x, labels, gc.reduce_mean(xent), params, (xs, ys)


def build_cnn(rank, hidden=4):
    """(x, labels, loss, params, (xs, ys)): conv3x3xhidden, relu, maxpool, conv3x3x8, relu,
    maxpool, dense CLASSES on IMAGE x IMAGE x 1 images."""
    rng = np.random.default_rng(1)
    xs = rng.random((ROWS, IMAGE, IMAGE, 1), dtype=np.float32)
    ys = rng.integers(0, CLASSES, ROWS).astype(np.int64)
    flat = (IMAGE // 4) ** 2 * 8
    shapes = {"k1": (3, 3, 1, hidden), "c1": (hidden,), "k2": (3, 3, hidden, 8), "c2": (8,),
              "wd": (flat, CLASSES), "bd": (CLASSES,)}  # fmt: skip
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
        init = rng.standard_normal(shape).astype(np.float32) * np.float32(np.sqrt(2 / fan_in))
        params[name] = gc.Variable(_scaled(init, rank), name=name)
    x = gc.placeholder(gc.float32, (None, IMAGE, IMAGE, 1), name="x")
    labels = gc.placeholder(gc.int64, (None,), name="labels")
    p = params
    h = gc.nn.relu(gc.nn.conv2d(x, p["k1"], strides=1, padding="SAME") + p["c1"])
    h = gc.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
    h = gc.nn.relu(gc.nn.conv2d(h, p["k2"], strides=1, padding="SAME") + p["c2"])
    h = gc.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
    logits = gc.matmul(gc.reshape(h, (-1, flat)), p["wd"]) + p["bd"]
    xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return x, labels, gc.reduce_mean(xent), list(params.values()), (xs, ys)
