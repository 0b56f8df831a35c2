"""The control-flow program of the TF1 goldens, written once against TF1's names: the
generator (make_golden_tf1.py) builds it with ``tf.compat.v1``, the test
(test_tf1_golden.py) with graphc, whose names are TF1's. Imports neither, so the generator
runs where only TensorFlow is installed and the test where only graphc is.

while_loop with maximum_iterations and a namedtuple loop variable, case (first true pair,
the last pair as default), scan with and without an initializer in both directions, map_fn
with a tuple result, foldl, and gradients through them; float64."""

import collections

Pair = collections.namedtuple("Pair", ["a", "b"])

#: the runs compared: tag -> (n, maximum_iterations): the loop ends by its condition, or capped
RUNS = {"short": (2, 10), "capped": (9, 3)}


def build(tf):
    """In ``tf``'s default graph: the placeholders (x, w, n, limit) and the fetches by name.
    ``tf``: ``tensorflow.compat.v1`` or ``graphc``."""
    f64 = tf.float64
    x = tf.placeholder(f64, (None, 3), name="x")
    w = tf.placeholder(f64, (3,), name="w")
    n = tf.placeholder(tf.int32, (), name="n")
    limit = tf.placeholder(tf.int32, (), name="limit")

    # while_loop over (counter, Pair(a, b)) with maximum_iterations
    def body(i, p):
        return i + 1, Pair(tf.sin(p.a * w) + p.b, p.b * 0.9 + tf.reduce_sum(p.a))

    i_end, p_end = tf.while_loop(lambda i, p: i < n, body, (tf.constant(0), Pair(x, x[0])),
                                 maximum_iterations=limit)  # fmt: skip
    loss_w = tf.reduce_sum(p_end.a**2) + tf.reduce_sum(p_end.b)
    gw_x, gw_w = tf.gradients(loss_w, [x, w])

    # case
    s = tf.reduce_sum(x)
    case_first = tf.case([(s < -100.0, lambda: x * 2.0), (s > -100.0, lambda: x * 3.0)],
                         default=lambda: x)  # fmt: skip
    case_last = tf.case([(s > 100.0, lambda: x * 2.0), (s > -100.0, lambda: x * 5.0)])
    (g_case,) = tf.gradients(tf.reduce_sum(case_first * w), [x])

    # scan / map_fn / foldl
    scan_init = tf.scan(lambda a, e: tf.tanh(a * w + e), x, initializer=tf.zeros_like(w))
    scan_none_rev = tf.scan(lambda a, e: a * e + w, x, reverse=True)
    mapped = tf.map_fn(lambda e: (tf.reduce_sum(e * w), e * e), x, dtype=(f64, f64))
    folded = tf.foldl(lambda a, e: a * tf.cos(e) + w, x)
    total = (
        tf.reduce_sum(scan_init**2)
        + tf.reduce_sum(scan_none_rev)
        + tf.reduce_sum(mapped[0] ** 2)
        + tf.reduce_sum(mapped[1])
        + tf.reduce_sum(folded)
    )
    g_sx, g_sw = tf.gradients(total, [x, w])

    fetches = {
        "while_i": i_end, "while_a": p_end.a, "while_b": p_end.b, "while_gx": gw_x,
        "while_gw": gw_w, "case_first": case_first, "case_last": case_last, "case_gx": g_case,
        "scan_init": scan_init, "scan_none_rev": scan_none_rev, "map_0": mapped[0],
        "map_1": mapped[1], "foldl": folded, "seq_gx": g_sx, "seq_gw": g_sw,
    }  # fmt: skip
    return (x, w, n, limit), fetches
