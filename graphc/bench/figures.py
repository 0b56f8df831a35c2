"""The compiled-code figures of a benchmark row: kernel count, bytes moved per run, peak
temporary memory and compile time, read from ``exe.stats``. Backends state sizes that depend
on ``None`` dimensions as expression text; ``size_value`` evaluates it (safely: integer
arithmetic only) for the run's feeds."""

from __future__ import annotations

import ast
import operator

import numpy as np

# exe.stats keys the backends may use for the two memory figures (first one present wins).
BYTES_KEYS = ("bytes_moved", "bytes_moved_per_run", "estimated_bytes_moved")
PEAK_KEYS = ("peak_temp_bytes", "peak_temporary_bytes", "peak_temp_memory", "peak_bytes")

_SIZE_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}  # fmt: skip


def size_value(expr: str, dims: dict) -> int | None:
    """Evaluate a size expression such as ``"((d0_0 * 4) + 64)"`` or ``"max(a, b)"``.

    Backends state sizes that depend on ``None`` dimensions as such text, naming the
    runtime dims ``d<feed>_<axis>``. Only integer arithmetic, max/min and known dim names
    are accepted; anything else gives None (reported as "n/a").
    """

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in dims:
            return dims[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _SIZE_OPS:
            return _SIZE_OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if is_call and node.func.id in ("max", "min") and node.args and not node.keywords:
            return (max if node.func.id == "max" else min)(ev(a) for a in node.args)
        raise ValueError("not a size expression")

    try:
        return int(ev(ast.parse(expr.strip(), mode="eval")))
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, RecursionError):
        return None


def feed_dims(feeds: dict) -> dict:
    """``d<feed>_<axis>`` -> size for a feed dict, feeds in the Session's order."""
    ordered = sorted(feeds, key=lambda t: (t.op._id, t.value_index))
    return {
        f"d{i}_{axis}": int(n)
        for i, t in enumerate(ordered)
        for axis, n in enumerate(np.shape(feeds[t]))
    }


def _number(v, dims=None):
    if isinstance(v, str) and dims is not None:
        return size_value(v, dims)
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return None
    return int(v)


def _first(stats: dict, keys, dims):
    for k in keys:
        v = _number(stats.get(k), dims)
        if v is not None:
            return v
    return None


def exe_figures(exe, dims: dict | None = None) -> dict:
    """Kernel count, bytes moved per run, peak temporary memory and compile time of ``exe``.

    Backends fill ``exe.stats`` as they can; a figure they do not provide is None ("n/a").
    ``dims`` gives the runtime sizes for figures that depend on ``None`` dimensions.
    """
    stats = getattr(exe, "stats", {}) or {}
    out = {"kernels": len(exe.kernels)}
    out["bytes_moved"] = _first(stats, BYTES_KEYS, dims)
    if out["bytes_moved"] is None and exe.kernels:
        per_kernel = [_number(getattr(k, "bytes_moved", None), dims) for k in exe.kernels]
        if all(b is not None for b in per_kernel):
            out["bytes_moved"] = sum(per_kernel)
    out["peak_temp_bytes"] = _first(stats, PEAK_KEYS, dims)
    seconds = stats.get("compile_seconds") or {}
    total = seconds.get("total") if isinstance(seconds, dict) else None
    out["compile_s"] = float(total) if isinstance(total, int | float) else None
    return out
