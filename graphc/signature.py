"""The named inputs and outputs of an exported model: ``{"x": x}`` dicts checked once for
``gc.export`` and ``gc.export_c`` alike (names are identifiers, values tensors of the
session's graph)."""

from __future__ import annotations

from .graph.core import Tensor


def named_tensors(sess, mapping, what) -> list:
    """``[(name, tensor), ...]`` from a user's ``{name: tensor}``; TypeError/ValueError say
    which entry is wrong."""
    if not isinstance(mapping, dict) or not mapping:
        raise TypeError(f"export: {what} must be a non-empty dict of name -> tensor")
    out = []
    for name, t in mapping.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"export: {what} name {name!r} must be a Python identifier")
        t = sess.graph.as_graph_element(t)
        if not isinstance(t, Tensor):
            raise TypeError(f"export: {what}[{name!r}] must be a tensor, got {t!r}")
        out.append((name, t))
    return out
