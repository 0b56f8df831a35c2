"""TF1's control flow on fixed inputs (golden_tf1.npz, written by make_golden_tf1.py with
tf.compat.v1 in graph mode): the program of tf1_program.py (while_loop with
maximum_iterations and a namedtuple loop variable, case, scan, map_fn, foldl, and gradients
through them) built with graphc, on the reference and cpu targets."""

from pathlib import Path

import numpy as np
import pytest

import graphc as gc

from .helpers import TARGETS
from .tf1_program import RUNS, build

G = np.load(Path(__file__).with_name("golden_tf1.npz"))


@pytest.mark.parametrize("target", TARGETS)
def test_control_flow_matches_tf1(target):
    (x, w, n, limit), fetches = build(gc)
    with gc.Session(target=target) as sess:
        for tag, (nv, lv) in RUNS.items():
            got = sess.run(fetches, {x: G["x"], w: G["w"], n: nv, limit: lv})
            for key, value in got.items():
                np.testing.assert_allclose(value, G[f"{tag}_{key}"], rtol=1e-10, atol=1e-12,
                                           err_msg=f"{tag} {key}")  # fmt: skip
