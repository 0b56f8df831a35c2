"""CompileOptions(dump_dir=...) writes a DOT file with fusion groups as clusters."""

import numpy as np

import graphc as gc


def test_dump_dir_has_dot_with_fusion_clusters(tmp_path):
    x = gc.placeholder(gc.float32, (None, 8), name="x")
    y = gc.tanh(x * 2.0 + 1.0) * x
    opts = gc.CompileOptions(dump_dir=tmp_path, cache_dir=None)
    with gc.Session(options=opts) as sess:
        np.testing.assert_allclose(
            sess.run(y, {x: np.ones((2, 8))}), np.full((2, 8), np.tanh(3.0)), rtol=1e-6
        )
        exe = sess.compile(y, [x])
    dot = (tmp_path / "cpu.graph.dot").read_text()
    assert dot.startswith("digraph") and dot == exe.to_dot()
    assert "subgraph cluster_" in dot  # the fused elementwise chain is one cluster
    for op in ("Mul", "Tanh"):
        assert op in dot
    assert any(p.name.endswith(".txt") for p in tmp_path.iterdir())  # per-pass programs too
