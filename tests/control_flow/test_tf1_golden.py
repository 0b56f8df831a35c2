"""TF1's control flow on fixed inputs (golden_tf1.npz, written by make_golden_tf1.py with
tf.compat.v1 in graph mode): while_loop with maximum_iterations and a namedtuple loop
variable, case (first true pair, the last pair as default), scan with and without an
initializer in both directions, map_fn with a tuple result, foldl, and gradients through
them, on the reference and cpu targets."""

import collections
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

from .helpers import TARGETS

G = np.load(Path(__file__).with_name("golden_tf1.npz"))
F64 = gc.float64
Pair = collections.namedtuple("Pair", ["a", "b"])


def _graph():
    x = gc.placeholder(F64, (None, 3), name="x")
    w = gc.placeholder(F64, (3,), name="w")
    n = gc.placeholder(gc.int32, (), name="n")
    limit = gc.placeholder(gc.int32, (), name="limit")

    def body(i, p):
        return i + 1, Pair(gc.sin(p.a * w) + p.b, p.b * 0.9 + gc.reduce_sum(p.a))

    i_end, p_end = gc.while_loop(lambda i, p: i < n, body, (gc.constant(0), Pair(x, x[0])),
                                 maximum_iterations=limit)  # fmt: skip
    loss_w = gc.reduce_sum(p_end.a**2) + gc.reduce_sum(p_end.b)
    gw_x, gw_w = gc.gradients(loss_w, [x, w])
    s = gc.reduce_sum(x)
    case_first = gc.case([(s < -100.0, lambda: x * 2.0), (s > -100.0, lambda: x * 3.0)],
                         default=lambda: x)  # fmt: skip
    case_last = gc.case([(s > 100.0, lambda: x * 2.0), (s > -100.0, lambda: x * 5.0)])
    (g_case,) = gc.gradients(gc.reduce_sum(case_first * w), [x])
    scan_init = gc.scan(lambda a, e: gc.tanh(a * w + e), x, initializer=gc.zeros_like(w))
    scan_none_rev = gc.scan(lambda a, e: a * e + w, x, reverse=True)
    mapped = gc.map_fn(lambda e: (gc.reduce_sum(e * w), e * e), x, dtype=(F64, F64))
    folded = gc.foldl(lambda a, e: a * gc.cos(e) + w, x)
    parts = [scan_init**2, scan_none_rev, mapped[0] ** 2, mapped[1], folded]
    total = sum(gc.reduce_sum(p) for p in parts)
    g_sx, g_sw = gc.gradients(total, [x, w])
    fetches = {
        "while_i": i_end, "while_a": p_end.a, "while_b": p_end.b, "while_gx": gw_x,
        "while_gw": gw_w, "case_first": case_first, "case_last": case_last, "case_gx": g_case,
        "scan_init": scan_init, "scan_none_rev": scan_none_rev, "map_0": mapped[0],
        "map_1": mapped[1], "foldl": folded, "seq_gx": g_sx, "seq_gw": g_sw,
    }  # fmt: skip
    return (x, w, n, limit), fetches


@pytest.mark.parametrize("target", TARGETS)
def test_control_flow_matches_tf1(target):
    (x, w, n, limit), fetches = _graph()
    with gc.Session(target=target) as sess:
        for tag, (nv, lv) in {"short": (2, 10), "capped": (9, 3)}.items():
            got = sess.run(fetches, {x: G["x"], w: G["w"], n: nv, limit: lv})
            for key, value in got.items():
                np.testing.assert_allclose(value, G[f"{tag}_{key}"], rtol=1e-10, atol=1e-12,
                                           err_msg=f"{tag} {key}")  # fmt: skip
