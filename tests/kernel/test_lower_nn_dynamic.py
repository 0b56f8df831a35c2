"""Window ops with unknown spatial and channel dims: one KernelProgram serves several image
sizes, and sizes that do not fit fail with InvalidArgumentError before any kernel runs."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError
from graphc.kernel import interp
from graphc.runtime_state import RunContext
from tests.kernel.helpers import assert_close, compile_kernels
from tests.oracle import run


def _cnn(padding, strides):
    x = gc.placeholder(gc.float32, (None, None, None, None), name="x")
    f = gc.placeholder(gc.float32, (3, 3, None, 4), name="f")
    y = gc.nn.relu(gc.nn.conv2d(x, f, strides, padding))
    p = gc.nn.max_pool2d(y, 2, 2, "SAME")
    q = gc.nn.avg_pool2d(y, 3, 1, "SAME")
    loss = gc.reduce_sum(p * p) + gc.reduce_sum(q)
    dx, df = gc.gradients(loss, [x, f])
    return [x, f], [loss, dx, df]


@pytest.mark.parametrize("fusion", [True, False])
@pytest.mark.parametrize("padding,strides", [("SAME", 1), ("VALID", 2), ("SAME", 2)])
def test_one_program_serves_several_image_sizes(padding, strides, fusion):
    g = gc.Graph()
    with g.as_default():
        phs, outs = _cnn(padding, strides)
    prog, _, kp = compile_kernels(outs, phs, fusion)
    rng = np.random.default_rng(0)
    for shape in [(2, 7, 6, 3), (1, 5, 9, 2), (3, 4, 4, 1)]:
        xs = rng.standard_normal(shape).astype(np.float32)
        fs = rng.standard_normal((3, 3, shape[3], 4)).astype(np.float32)
        want = run(g, outs, {phs[0]: xs, phs[1]: fs})
        got = interp.run(kp, RunContext({}, {}, [xs, fs]))
        assert_close(got, want, 1e-4, 1e-4)


def test_valid_window_larger_than_the_image_is_an_error():
    x = gc.placeholder(gc.float32, (None, None, None, 2))
    y = gc.nn.max_pool2d(x, 4, 1, "VALID")
    _, _, kp = compile_kernels([y], [x])
    with pytest.raises(InvalidArgumentError, match="VALID window"):
        interp.run(kp, RunContext({}, {}, [np.ones((1, 3, 5, 2), np.float32)]))
    (ok,) = interp.run(kp, RunContext({}, {}, [np.ones((1, 4, 5, 2), np.float32)]))
    assert ok.shape == (1, 1, 2, 2)


def test_channel_mismatch_at_run_time_is_an_error():
    x = gc.placeholder(gc.float32, (None, 5, 5, None))
    f = gc.placeholder(gc.float32, (3, 3, None, 2))
    y = gc.nn.conv2d(x, f, 1, "SAME")
    _, _, kp = compile_kernels([y], [x, f])
    bad = [np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 2, 2), np.float32)]
    with pytest.raises(InvalidArgumentError, match="channels"):
        interp.run(kp, RunContext({}, {}, bad))
