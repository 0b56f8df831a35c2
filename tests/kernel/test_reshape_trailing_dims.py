"""A reshape keeps the index of the trailing dims its input and output share
(``kernel/lowerings.py`` ``_bitcast``): ``[B*T, H]`` read from a transposed ``[T, B, H]``
divides only the row index, not every element's flat index by run-time sizes (W11's output
transpose ran at ~1 GB/s). Values equal numpy for run-time sizes including 1 and 0, and the
kernel's element index has no division or remainder of the inner loop variable."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc


@pytest.mark.parametrize("t,b", [(4, 3), (1, 5), (3, 1), (0, 2)])
def test_transposing_reshape_with_run_time_sizes(t, b):
    x = gc.placeholder(gc.float32, (None, None, 8))
    y = gc.reshape(gc.transpose(x, (1, 0, 2)), (-1, 8))
    z = gc.reshape(gc.transpose(x, (1, 0, 2)) * 2.0, (-1, 4, 2))
    a = np.arange(t * b * 8, dtype=np.float32).reshape(t, b, 8)
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        got_y, got_z = sess.run([y, z], {x: a})
        text = sess.compile(y, [x]).dump_ir("kernel")
    np.testing.assert_array_equal(got_y, a.transpose(1, 0, 2).reshape(-1, 8))
    np.testing.assert_array_equal(got_z, (a.transpose(1, 0, 2) * 2).reshape(-1, 4, 2))
    inner = re.findall(r"for i(\d+) in 0\.\.8:", text)
    assert inner, text
    assert not re.search(rf"i{inner[-1]}\) (//|%)", text), text
