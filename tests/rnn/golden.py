"""Reading tests/rnn/golden_tf1.npz (written by make_golden.py with TF1): cell specs, weights,
inputs and TF1's results, and building the same cells in graphc."""

import json
from pathlib import Path

import numpy as np

import graphc as gc

GOLDEN = np.load(Path(__file__).resolve().parent / "golden_tf1.npz")
CELL_CASES = [str(n) for n in GOLDEN["cell_cases"]]
DYNAMIC_CASES = [str(n) for n in GOLDEN["dynamic_cases"]]


def case(name) -> dict:
    """Every array of case ``name`` by its key without the ``name/`` prefix."""
    prefix = name + "/"
    return {k[len(prefix) :]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix)}


def make_cell(spec):
    """The graphc cell of a TF1 spec ``[class name, kwargs]`` / ``["MultiRNNCell", [...]]``."""
    name, args = spec
    if name == "MultiRNNCell":
        return gc.nn.rnn_cell.MultiRNNCell([make_cell(s) for s in args])
    return getattr(gc.nn.rnn_cell, name)(**args)


def spec_of(data):
    return json.loads(str(data["spec"]))


def leaves(data, prefix):
    """Arrays ``prefix0``, ``prefix1``... of a case, in order."""
    out, i = [], 0
    while f"{prefix}{i}" in data:
        out.append(data[f"{prefix}{i}"])
        i += 1
    return out


def load_weights(sess, data, dtype=np.float32):
    """Load TF1's weights into the graphc variables of the same names; returns the names."""
    names = [str(n) for n in data["var_names"]]
    by_name = {v.op.name: v for v in gc.global_variables()}
    for n in names:
        by_name[n].load(data[f"var/{n}"].astype(dtype), sess)
    return names
