"""Helpers to build an op example on placeholders and evaluate it (used by many tests)."""

from __future__ import annotations

import numpy as np

import graphc as gc


def build_example(example, dynamic=False, float64=False):
    """Returns (graph, placeholders, outputs, feed arrays)."""
    g = gc.Graph()
    arrays = [np.asarray(a) for a in example.inputs]
    if float64:
        arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    with g.as_default():
        phs = []
        for i, a in enumerate(arrays):
            shape = tuple(None for _ in a.shape) if dynamic else a.shape
            phs.append(gc.placeholder(gc.as_dtype(a.dtype), shape, name=f"in{i}"))
        out = example.build(*phs)
        outs = list(out) if isinstance(out, list | tuple) else [out]
    return g, phs, outs, arrays


def run(graph, fetches, feeds, target="reference", options=None):
    with gc.Session(graph=graph, target=target, options=options) as sess:
        return sess.run(fetches, feeds)
