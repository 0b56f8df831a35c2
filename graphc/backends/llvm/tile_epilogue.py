"""Convolution epilogues applied in the tile, before its store (the cpu renderer's choice).

A convolution's epilogue (``epilogue.row_nest``: a loop over its output pixels after the
``conv_packed`` call) mostly maps each element of C through a few steps: a batch norm's
scale and shift per channel, a residual added element by element, a ReLU. Run per task
after the tiles, it reads C back from the cache, and a residual (3.2 MB for one of
ResNet-50's 56 x 56 layers at batch 1) from memory while no multiply-add runs: on one
core a 64 -> 256 layer took 1.09-1.14 ms with its batch norm, residual and ReLU against 0.95
without. In the tile the steps apply to the accumulators before the one store, and the
residual's loads overlap the multiply-adds of the other tiles.

``tile_steps`` recognises such a loop: its only statement a channel loop of o iterations
storing ``C[row * o + col]`` (a concat's piece: ``C[row * ldc + oc + col]``, see
``concat_store.py``; or ``D[row * o + col]`` of another buffer D, which the kernel then
stores into: ``residual_in_place.py``) = a chain over that element itself of

- ``* S[col]`` or ``+ S[col]`` (``S``: float32, at least o elements),
- ``+ R[row * o + col]`` (``R``: float32 of C's layout, storage apart from C's), or ``+``
  such an element through a chain of per-channel scales and shifts of its own (``add_x``),
- ``max(v, 0)`` or ``max(0, v)``,

in any order (multiplication and addition commute exactly in IEEE arithmetic; the two
forms of max differ for -0.0 and are kept apart), and returns the steps. The kernel applies
them with the loop's own operations (no contraction into multiply-adds, numpy's maximum:
NaN wins), so the results are bit for bit the loop's.
"""

from __future__ import annotations

import math

from ... import dtypes as _dt
from ...expr import Call, Const, Load, Math, Var
from ...kernel import sym
from ...kernel.ir import Let, LibCall, Loop, Store
from .epilogue import affine_index, counted

#: step kinds: (code in the kernel's name, takes a buffer)
KINDS = {
    "mul_c": ("m", True),  # * S[col]
    "add_c": ("a", True),  # + S[col]
    "add_e": ("r", True),  # + R[row * o + col]
    "max0": ("x", False),  # max(v, 0)
    "max0_first": ("y", False),  # max(0, v)
}
#: most buffers of a chain's steps (fields of the kernel's argument struct)
MAX_OPERANDS = 6
#: most steps in all
MAX_STEPS = 6


def signature(kinds) -> str:
    """A chain's kinds (``kinds(steps)``) as the kernel's name suffix (one kernel per
    distinct chain): a letter per step, an ``add_x`` as q, its steps' letters, q."""
    return "".join(
        "q" + "".join(KINDS[i][0] for i in k[1]) + "q" if isinstance(k, tuple) else KINDS[k][0]
        for k in kinds
    )


def tile_steps(call: LibCall, loop, kp, root: dict):
    """``((kind, buffer or None), ...)`` innermost first when the row loop ``loop`` after the
    ``conv_packed`` call is such a chain (module docstring); else None."""
    if call.fn != "conv_packed" or not isinstance(loop, Loop) or len(loop.body) != 1:
        return None
    c, o_e, ldc, oc = call.args[2], call.args[5], call.args[19], call.args[20]
    if not all(isinstance(e, Const) for e in (o_e, ldc, oc)):
        return None
    o = int(o_e.value)
    if not isinstance(call.args[4], Const):
        return None
    m, ldc, oc = int(call.args[4].value), int(ldc.value), int(oc.value)
    if kp.buffers[c].dtype != _dt.float32:
        return None
    chan = loop.body[0]
    if not (isinstance(chan, Loop) and counted(chan) and int(chan.stop.value) == o):
        return None
    *lets, store = chan.body
    if not (isinstance(store, Store) and all(isinstance(s, Let) for s in lets)):
        return None
    row, col = loop.var, chan.var
    own = ({row: ldc, col: 1}, oc)  # (a concat's piece: rows ldc apart, from column oc)
    if affine_index(store.index) != own:
        return None
    target = store.buffer
    if target != c and not _other_target(target, c, (ldc, oc), o, m, kp, root):
        return None
    env = {}
    for s in lets:
        if s.var in env or s.var in (row, col) or s.dtype != _dt.float32:
            return None
        env[s.var] = s.value
    steps = []
    e = _resolve(store.value, env)
    while True:
        if isinstance(e, Load):
            if e.buffer != c or affine_index(e.index) != own:
                return None
            break
        if not (isinstance(e, Call) and len(e.args) == 2):
            return None
        a, b = (_resolve(x, env) for x in e.args)
        if e.fn is Math.MAX:
            zero_a, zero_b = _zero(a), _zero(b)
            if zero_b and not zero_a:
                steps.append(("max0", None))
                e = a
            elif zero_a and not zero_b:
                steps.append(("max0_first", None))
                e = b
            else:
                return None
            continue
        if e.fn not in (Math.MUL, Math.ADD):
            return None
        step, rest = _operand(e.fn, b, row, col, o, m, c, kp, root), a
        if step is None:
            step, rest = _operand(e.fn, a, row, col, o, m, c, kp, root), b
        if step is None and e.fn is Math.ADD:
            step, rest = _element_chain(b, env, row, col, o, m, c, kp, root), a
            if step is None:
                step, rest = _element_chain(a, env, row, col, o, m, c, kp, root), b
        if step is None or (step[0] in ("add_e", "add_x") and (ldc, oc) != (o, 0)):
            return None  # (an element operand has C's rows: o apart, from 0)
        steps.append(step)
        e = rest
    steps.reverse()
    if not steps or len(steps) > MAX_STEPS:
        return None
    if len(operands(steps)) > MAX_OPERANDS:
        return None
    if target != c:  # a per-channel operand is read for every row: apart from the rows stored
        per_channel = [n for st in steps for n in _per_channel(st)]
        if any(root.get(n) == root.get(target) for n in per_channel):
            return None
    return tuple(steps)


def tile_target(loop) -> str:
    """The buffer the tile epilogue's loop (one ``tile_steps`` took) stores: the call's C, or
    another of C's layout (``residual_in_place``), which the kernel then stores into."""
    return loop.body[0].body[-1].buffer


def _other_target(target, c, piece, o, m, kp, root) -> bool:
    """Whether the loop may store into ``target`` instead of the call's C: C's rows o floats
    apart from 0, ``target`` float32 of at least m * o elements, storage apart from C's."""
    b = kp.buffers[target]
    n = sym.const_value(sym.product(b.shape))
    return (piece == (o, 0) and b.dtype == _dt.float32 and n is not None and n >= m * o
            and root.get(target) != root.get(c))  # fmt: skip


def _per_channel(step) -> list:
    if step[0] in ("mul_c", "add_c"):
        return [step[1]]
    if step[0] == "add_x":
        return [n for _, n in step[2]]
    return []


def operands(steps) -> list:
    """The buffers of ``steps`` in the order of the kernel's operand fields: each step's,
    an ``add_x``'s element buffer then its own steps'."""
    out = []
    for step in steps:
        if step[0] == "add_x":
            out += [step[1], *(name for _, name in step[2])]
        elif step[1] is not None:
            out.append(step[1])
    return out


def kinds(steps) -> tuple:
    """What the kernel is specialised on: each step's kind (an ``add_x``'s with its own)."""
    return tuple(("add_x", tuple(k for k, _ in s[2])) if s[0] == "add_x" else s[0] for s in steps)


def _resolve(e, env):
    """``e`` with a local's name replaced by its value (one level: chains are built of
    Lets, each resolved when it is reached)."""
    while isinstance(e, Var) and e.name in env:
        e = env[e.name]
    return e


def _zero(e) -> bool:
    """+0.0 (a max against -0.0 is left to the loop)."""
    if not (isinstance(e, Const) and e.dtype == _dt.float32):
        return False
    v = float(e.value)
    return v == 0.0 and math.copysign(1.0, v) > 0


def _element_chain(e, env, row, col, o, m, c, kp, root):
    """``("add_x", R, steps)`` when ``e`` is a chain of per-channel scales and shifts over
    ``R[row * o + col]`` (a residual through its own batch norm: ResNet's downsampling
    shortcut), added to C's chain; else None."""
    inner = []
    e = _resolve(e, env)
    while isinstance(e, Call) and e.fn in (Math.MUL, Math.ADD) and len(e.args) == 2:
        a, b = (_resolve(x, env) for x in e.args)
        step, rest = _operand(e.fn, b, row, col, o, m, c, kp, root), a
        if step is None or step[0] == "add_e":
            step, rest = _operand(e.fn, a, row, col, o, m, c, kp, root), b
        if step is None or step[0] == "add_e":
            return None
        inner.append(step)
        e = rest
    if not inner or not isinstance(e, Load):
        return None
    base = _operand(Math.ADD, e, row, col, o, m, c, kp, root)
    if base is None or base[0] != "add_e":
        return None
    return ("add_x", e.buffer, tuple(reversed(inner)))


def _operand(fn, e, row, col, o, m_rows, c, kp, root):
    """The step ``v fn e`` for an operand ``e`` of the chain's forms; else None."""
    if not isinstance(e, Load) or kp.buffers[e.buffer].dtype != _dt.float32:
        return None
    if root.get(e.buffer) == root.get(c):
        return None
    if isinstance(e.index, Var) and e.index.name == col:
        n = sym.const_value(sym.product(kp.buffers[e.buffer].shape))
        if n is None or n < o:
            return None
        return ("mul_c" if fn is Math.MUL else "add_c", e.buffer)
    if fn is Math.ADD and affine_index(e.index) == ({row: o, col: 1}, 0):
        n = sym.const_value(sym.product(kp.buffers[e.buffer].shape))
        if n is None or n < m_rows * o:
            return None
        return ("add_e", e.buffer)
    return None
