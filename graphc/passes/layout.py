"""Layout: transposes sunk below the elementwise ops and concats that read them.

Imported models put a layout change around every operator that graphc computes in another
layout: an ONNX (NCHW) convolution becomes ``Transpose(NCHW -> NHWC)``, the NHWC
``Conv2D``, then ``Transpose(NHWC -> NCHW)``; its batch norm, bias, ReLU and residual add
run in NCHW, and the next convolution transposes back. Fusion turns each transpose into
index arithmetic, but the tensors that several kernels read (a residual block's output:
the next convolution's input and the next residual add's operand) are then two different
values, one per layout, and the second is recomputed in each of its readers instead of
read.

The rules here move a transpose down through the ops that do not care about layout, so
that the transpose pairs meet and cancel (``simplify.transpose_transpose``, which runs
next in the pipeline):

* ``f(transpose(x, p), transpose(y, p), c)`` -> ``transpose(f(x, y, c'), p)`` for an
  elementwise ``f`` whose non-constant operands are all transposes by one ``p`` of one
  runtime shape, and whose constant operands (``c``: bias, scale, a splat) broadcast into
  that shape; ``c'`` is ``c`` at full rank, permuted by the inverse of ``p`` (not for
  integer operands, whose ops may report an element at run time);
* ``concat(transpose(x, p), transpose(y, p); axis=k)`` -> ``transpose(concat(x, y;
  axis=p[k]), p)``;
* ``transpose(transpose(x, p), q)`` -> ``transpose(x, p[q])`` (also in ``simplify``;
  here too so that one sweep carries a transpose through a chain of them).

Every rule keeps each result bit for bit: the same scalar operations on the same elements,
only the order in which they are stored changes.
"""

from __future__ import annotations

import numpy as np

from ..program import Program
from .rewrite import Replace, RuleTable

LAYOUT = RuleTable("layout")

#: the largest constant operand (elements) that sinking copies into a permuted constant
MAX_CONST_ELEMENTS = 1 << 20


def sink_transposes(program: Program) -> Program:
    """One sweep of the layout rules over ``program``."""
    return LAYOUT.apply(program)


def _transpose_perm(rw, ref):
    """``(perm, input ref)`` when ``ref`` is a transpose's output, else None."""
    p = rw.producer(ref)
    if p.op_def.symbolic_dims == "transpose" and p.op_def.kind == "index" and "perm" in p.attrs:
        return tuple(int(i) for i in p.attrs["perm"]), p.inputs[0]
    return None


def _is_identity(perm) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


def _elementwise(n) -> bool:
    return n.op_def.elementwise and len(n.outs) == 1 and len(n.inputs) >= 1


def _may_raise(n, rw) -> bool:
    """An integer op may check its operands at run time (division by zero, an index out of
    range): moved, the node and the element its error names would change."""
    return any(rw.dtype(r).is_integer for r in n.inputs)


@LAYOUT.rule(match=_elementwise)
def sink_through_elementwise(n, rw):
    """f(transpose(x, p), c) -> transpose(f(x, c'), p)  (f elementwise; every non-constant
    operand a transpose by p of one runtime shape; each constant c broadcasting into it; no
    integer operands)."""
    if _may_raise(n, rw):
        return None
    perm = None
    moved = []  # per operand: ("t", inner ref, ref) or ("c", value, ref)
    first = None
    for ref in n.inputs:
        t = _transpose_perm(rw, ref)
        if t is not None:
            if perm is None:
                perm, first = t[0], ref
            elif t[0] != perm or not rw.same_runtime_shape(ref, first):
                return None
            moved.append(("t", t[1], ref))
            continue
        value = rw.const(ref)
        if value is None or value.size > MAX_CONST_ELEMENTS:
            return None
        moved.append(("c", value, ref))
    if perm is None or _is_identity(perm):
        return None
    rank = len(perm)
    inverse = tuple(int(i) for i in np.argsort(perm))
    inputs = []
    for kind, what, ref in moved:
        if kind == "t":
            inputs.append(what)
            continue
        if what.ndim > rank or not rw.fits(ref, first):
            return None
        if what.size == 1 and what.ndim == 0:
            inputs.append(ref)  # a scalar broadcasts in any layout
            continue
        full = what.reshape((1,) * (rank - what.ndim) + what.shape)
        inputs.append(rw.const_node(np.transpose(full, inverse), "permuted"))
    inner = rw.add(n.op, inputs, n.attrs, suffix=f"{n.op}_sunk")
    return Replace("Transpose", (inner,), {"perm": perm})


@LAYOUT.rule("ConcatV2")
def sink_through_concat(n, rw):
    """concat(transpose(x, p), transpose(y, p); axis=k) -> transpose(concat(x, y; axis=p[k]),
    p)  (every operand a transpose by the same p)."""
    perm, inner = None, []
    for ref in n.inputs:
        t = _transpose_perm(rw, ref)
        if t is None or (perm is not None and t[0] != perm):
            return None
        perm = t[0]
        inner.append(t[1])
    if perm is None or _is_identity(perm):
        return None
    attrs = dict(n.attrs)
    attrs["axis"] = perm[int(n.attrs["axis"])]
    joined = rw.add(n.op, inner, attrs, suffix="concat_sunk")
    return Replace("Transpose", (joined,), {"perm": perm})


@LAYOUT.rule("Transpose")
def compose_transposes(n, rw):
    """transpose(transpose(x, p), q) -> transpose(x, p[q])  (-> x when p[q] is the identity)."""
    t = _transpose_perm(rw, n.inputs[0])
    if t is None:
        return None
    inner, outer = t[0], n.attrs["perm"]
    perm = tuple(int(inner[q]) for q in outer)
    if _is_identity(perm):
        return t[1]
    return Replace("Transpose", (t[1],), {"perm": perm})
