"""Artifacts of graphs with control flow: bodies are stored as nested programs, gc.load
runs them (reference and cpu) with the session's results; a stored body that disagrees
with its op is refused on load; C libraries refuse control flow clearly."""

import json

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArtifactError, UnimplementedError
from graphc.program import extract
from graphc.serialize import dumps_program, loads_program


def _model():
    x = gc.placeholder(gc.float32, (None, 2), name="x")
    n = gc.placeholder(gc.int32, (), name="n")
    w = gc.Variable(np.array([0.5, -1.0], np.float32), name="w")
    _, y = gc.while_loop(lambda i, y: i < n, lambda i, y: (i + 1, gc.tanh(y * w + 0.1)), (0, x))
    s = gc.scan(lambda a, row: a + row * 2.0, x)
    c = gc.cond(gc.reduce_sum(x) > 0.0, lambda: x * 3.0, lambda: x - 1.0)
    (gw,) = gc.gradients(gc.reduce_sum(y), [w])
    return x, n, {"y": y, "s": s, "c": c, "gw": gw}


@pytest.mark.parametrize("target", ["cpu", "reference"])
def test_export_and_load_run_loops_branches_and_their_gradients(tmp_path, target):
    x, n, outs = _model()
    feed = {"x": np.array([[0.2, -0.4], [1.0, 0.3], [0.0, 2.0]], np.float32), "n": 4}
    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        want = sess.run(outs, {x: feed["x"], n: feed["n"]})
        path = gc.export(sess, str(tmp_path / "m.gcx"), {"x": x, "n": n}, outs)
    model = gc.load(path, target=target)
    got = model(**feed)
    for k in outs:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    zero = model(x=feed["x"], n=0)  # the trip count is still decided at run time
    np.testing.assert_allclose(zero["y"], feed["x"])


def test_a_stored_body_that_disagrees_with_its_op_is_refused():
    x = gc.placeholder(gc.float32, (2,), name="x")
    y = gc.while_loop(lambda v: gc.reduce_sum(v) < 10.0, lambda v: v * 2.0, [x])
    text, blob = dumps_program(extract([y], [], [x]))
    assert loads_program(text, blob).hash() == extract([y], [], [x]).hash()
    doc = json.loads(text)
    (loop,) = [d for d in doc["nodes"] if d["op"] == "While"]
    loop["attrs"]["body"]["v"]["fetches"].pop()  # the body returns one value too few
    with pytest.raises(InvalidArtifactError, match="body program returns"):
        loads_program(json.dumps(doc).encode(), blob)


def test_export_c_refuses_control_flow(tmp_path):
    x, n, outs = _model()
    with gc.Session(target="cpu") as sess:
        sess.run(gc.global_variables_initializer())
        with pytest.raises(UnimplementedError, match="While"):
            gc.export_c(sess, str(tmp_path / "lib"), {"x": x, "n": n}, {"y": outs["y"]})
