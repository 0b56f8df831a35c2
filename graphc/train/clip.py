"""Gradient clipping by global norm (``gc.clip_by_global_norm``)."""

from __future__ import annotations

from ..graph.core import Tensor
from ..ops.elementwise import cast, is_finite, maximum, minimum, sqrt, where
from ..ops.reduce import reduce_sum
from ..ops.registry import convert_to_tensor

__all__ = ["clip_by_global_norm", "global_norm", "clip_by_norm"]


def _present(t_list, what):
    if isinstance(t_list, Tensor) or not hasattr(t_list, "__iter__"):
        raise TypeError(f"{what} takes a list of tensors, got {t_list!r}")
    tensors = [None if t is None else convert_to_tensor(t) for t in t_list]
    for t in tensors:
        if t is not None and not t.dtype.is_floating:
            raise TypeError(f"{what}: tensor {t.name} must be floating, got {t.dtype.name}")
    return tensors


def global_norm(t_list, name=None) -> Tensor:
    """``sqrt(sum over tensors of sum(t ** 2))``; None entries are ignored."""
    tensors = [t for t in _present(t_list, "global_norm") if t is not None]
    if not tensors:
        raise ValueError("global_norm needs at least one tensor that is not None")
    dtype = tensors[0].dtype
    graph = tensors[0].graph
    with graph.as_default(), graph.name_scope(name or "global_norm"):
        total = None
        for t in tensors:
            part = reduce_sum(t * t)
            part = part if part.dtype == dtype else cast(part, dtype)
            total = part if total is None else total + part
        return sqrt(total)


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """Scale ``t_list`` by ``clip_norm / max(global_norm, clip_norm)``.

    Returns ``(clipped list, global_norm)``. None entries stay None. As in TF1, a non-finite
    global norm makes every clipped tensor NaN (training must not silently go on).
    """
    tensors = _present(t_list, "clip_by_global_norm")
    present = [t for t in tensors if t is not None]
    if not present:
        raise ValueError("clip_by_global_norm needs at least one tensor that is not None")
    graph = present[0].graph
    with graph.as_default(), graph.name_scope(name or "clip_by_global_norm"):
        norm = global_norm(present) if use_norm is None else convert_to_tensor(use_norm)
        dtype = norm.dtype
        clip = _as(clip_norm, dtype)
        # clip * min(1/norm, 1/clip): 1 when norm <= clip, and no 0/0 when norm == 0.
        scale = clip * minimum(1.0 / norm, 1.0 / clip)
        scale = where(is_finite(norm), scale, convert_to_tensor(float("nan"), dtype=dtype))
        out = []
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            s = scale if t.dtype == dtype else cast(scale, t.dtype)
            out.append(t * s)
        return out, norm


def clip_by_norm(t, clip_norm, axes=None, name=None) -> Tensor:
    """Scale ``t`` so that its L2 norm (over ``axes``) is at most ``clip_norm``."""
    t = convert_to_tensor(t)
    graph = t.graph
    with graph.as_default(), graph.name_scope(name or "clip_by_norm"):
        sq = reduce_sum(t * t, axis=axes, keepdims=True)
        clip = convert_to_tensor(clip_norm, dtype=t.dtype)
        # Where the norm is 0 leave t alone (t is 0 there), avoiding 0/0.
        safe = where(sq > 0, sq, 1.0 + 0 * sq)
        norm = sqrt(safe)
        return t * clip / maximum(norm, clip)


def _as(value, dtype) -> Tensor:
    if isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor"):
        t = convert_to_tensor(value)
        return t if t.dtype == dtype else cast(t, dtype)
    return convert_to_tensor(value, dtype=dtype)
