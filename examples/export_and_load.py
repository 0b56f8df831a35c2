"""Train a small classifier, export it to one file, load it back and serve predictions.

    python examples/export_and_load.py                 # writes digits_mlp.gcx in a temp dir
    python examples/export_and_load.py --out model.gcx --steps 300

``gc.export`` stores the optimised graph, the trained weights and the compiled code;
``gc.load`` needs neither this script nor a recompilation on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import graphc as gc
except ImportError:  # run from a source checkout without installing: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import graphc as gc


def train_and_export(path: Path, steps: int, target: str, seed: int = 0) -> dict:
    """Train a 64-64-10 MLP on the digits for ``steps`` steps; export it; return its outputs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, (None, 64), name="x")
        y = gc.placeholder(gc.int64, (None,), name="y")
        w1 = gc.Variable(gc.random_normal((64, 64), stddev=0.1, seed=seed), name="w1")
        b1 = gc.Variable(np.zeros(64, np.float32), name="b1")
        w2 = gc.Variable(gc.random_normal((64, 10), stddev=0.1, seed=seed + 1), name="w2")
        b2 = gc.Variable(np.zeros(10, np.float32), name="b2")
        logits = gc.nn.relu(x @ w1 + b1) @ w2 + b2
        probs = gc.nn.softmax(logits, name="probs")
        labels_out = gc.argmax(logits, axis=1, name="label")
        loss = gc.reduce_mean(
            gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )
        train_op = gc.train.AdamOptimizer(5e-3).minimize(loss)
        init = gc.global_variables_initializer()
    rng = np.random.default_rng(seed)
    with gc.Session(graph=graph, target=target) as sess:
        sess.run(init)
        for _ in range(steps):
            idx = rng.integers(0, len(data), 64)
            sess.run(train_op, {x: data[idx], y: labels[idx]})
        t0 = time.perf_counter()
        gc.export(sess, path, inputs={"x": x}, outputs={"probs": probs, "label": labels_out})
        print(f"exported to {path} ({path.stat().st_size:,} bytes) in "
              f"{time.perf_counter() - t0:.3f}s")  # fmt: skip
        want = sess.run({"probs": probs, "label": labels_out}, {x: data[:100]})
    accuracy = float(np.mean(want["label"] == labels[:100]))
    return {"data": data[:100], "want": want, "accuracy": accuracy}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="artifact path (default: temp dir)")
    p.add_argument("--steps", type=int, default=300, help="training steps before export")
    p.add_argument("--target", choices=["cpu", "reference"], default="cpu")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="graphc-export-")) / "digits_mlp.gcx"
    trained = train_and_export(out, args.steps, args.target)

    t0 = time.perf_counter()
    model = gc.load(out)
    first = model(x=trained["data"])
    elapsed = time.perf_counter() - t0
    print(f"loaded {out.name}: {model.signature}")
    print(f"load + first prediction: {elapsed * 1e3:.1f} ms "
          f"({'stored native code' if model.loaded_native else 'recompiled'})")  # fmt: skip
    np.testing.assert_allclose(first["probs"], trained["want"]["probs"], rtol=1e-5, atol=1e-6)
    assert np.array_equal(first["label"], trained["want"]["label"])
    print(f"predictions match the training session; accuracy on 100 images "
          f"{trained['accuracy']:.0%}")  # fmt: skip
    return {"model": model, "first": first, **trained}


if __name__ == "__main__":
    main()
