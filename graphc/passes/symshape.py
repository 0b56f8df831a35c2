"""Symbolic shapes: which unknown (``None``) dimensions are provably equal at run time.

Each dimension of a value is either an ``int`` (static) or a *symbol*: a hashable key naming
the first value/axis the size came from (``("dim", node_id, output, axis)``). Symbols flow
through ops whose output sizes are those of an input (elementwise ops, matmul's batch and
row/column dims, transposes, reductions, expand/squeeze, the ``*_like`` ops...), so that
``sum_to_shape(g, x)`` can be seen to be a no-op when ``g`` and ``x`` share every symbol,
although both have an unknown batch dimension.

Which inputs' dims an op's output takes, and how, is the op's declared
``OpDef.symbolic_dims`` (elementwise ops broadcast): this module tests no op names.

Broadcasting rule: a static size other than 1 wins (the others must equal it or be 1);
sizes of 1 drop out; equal symbols stay; two different symbols make a fresh one (either may
be 1 at run time) named by the set of plain symbols broadcast together.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``OpDef.symbolic_dims`` rules derived from the dims of input 0 alone
_READS_INPUT0 = frozenset(
    {"input0", "split", "concat", "reduce", "transpose", "expand_dims", "squeeze", "reshape"}
)


def _rule(n) -> str:
    """How node ``n``'s output dims follow its inputs' (``OpDef.symbolic_dims``)."""
    op_def = n.op_def
    return op_def.symbolic_dims or ("broadcast" if op_def.elementwise else "")


class SymbolicShapes:
    """Memoised symbolic dims of the refs of a program being built.

    ``node_of(node_id)`` returns the (final) Node with that id; the Node must not change
    afterwards in a way that changes its output shape.
    """

    def __init__(self, node_of: Callable):
        self.node_of = node_of
        self.memo: dict = {}

    def dims(self, ref) -> tuple | None:
        """The symbolic dims of ``ref`` (None when its rank is unknown).

        The inputs a rule reads are computed first, deepest first, with an explicit stack:
        a chain of ops thousands deep needs no recursion as deep as itself.
        """
        ref = tuple(ref)
        memo = self.memo
        if ref in memo:
            return memo[ref]
        stack = [ref]
        while stack:
            r = stack[-1]
            if r in memo:
                stack.pop()
                continue
            pending = [i for i in self._reads(r) if i not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[r] = self._dims(r)
        return memo[ref]

    def _reads(self, ref) -> list:
        """The refs whose dims ``_dims(ref)`` reads (those ``_derive`` asks for)."""
        n = self.node_of(ref[0])
        shape = n.outs[ref[1]].shape
        rule = _rule(n)
        if shape is None or None not in shape or not n.inputs or ref[1] and rule != "split":
            return []
        if rule in _READS_INPUT0:
            picked = n.inputs[:1]
        elif rule == "input1":
            picked = n.inputs[1:2]
        elif rule == "broadcast":
            picked = n.inputs
        elif rule == "matmul":
            picked = n.inputs[:2]
        else:
            picked = ()
        return [tuple(r) for r in picked]

    def _fresh(self, ref, shape) -> tuple:
        # a loop body's Feed may name dims shared with other feeds (checked equal at run
        # time, graphc/backends/cpu/body_dims.py): one symbol per name
        shared = self.node_of(ref[0]).attrs.get("dim_names") or ()
        return tuple(
            d if d is not None
            else ("shared", shared[axis]) if axis < len(shared) and shared[axis]
            else ("dim", ref[0], ref[1], axis)
            for axis, d in enumerate(shape)
        )  # fmt: skip

    def _dims(self, ref):
        n = self.node_of(ref[0])
        shape = n.outs[ref[1]].shape
        if shape is None:
            return None
        fresh = self._fresh(ref, shape)
        rule = _rule(n)
        if None not in shape or not n.inputs or ref[1] and rule != "split":
            return fresh
        derived = self._derive(n, rule)
        if rule in ("split", "concat"):
            # one part along the axis (the output's own size); the other dims are input 0's
            # (a concat's inputs agree on them: checked at run time by kernel/shapes.py)
            axis = n.attrs["axis"]
            if derived is None or not 0 <= axis < len(derived):
                return fresh
            derived = derived[:axis] + (fresh[axis],) + derived[axis + 1 :]
        if derived is None or len(derived) != len(shape):
            return fresh
        # a static size known for the output beats a symbol derived from the inputs
        return tuple(s if s is not None else d for s, d in zip(shape, derived))

    def _derive(self, n, rule):
        # reads the dims of the inputs ``_reads`` names (keep the two in step)
        if rule in ("input0", "split", "concat"):  # see _dims
            return self.dims(n.inputs[0])
        if rule == "input1":
            return self.dims(n.inputs[1])
        if rule == "broadcast":
            return broadcast([self.dims(r) for r in n.inputs])
        if rule == "reduce":
            x = self.dims(n.inputs[0])
            axes = n.attrs.get("axes")
            if x is None:
                return None
            axes = range(len(x)) if axes is None else axes
            if n.attrs.get("keepdims"):
                return tuple(1 if i in axes else d for i, d in enumerate(x))
            return tuple(d for i, d in enumerate(x) if i not in axes)
        if rule == "transpose":
            x = self.dims(n.inputs[0])
            return None if x is None else tuple(x[p] for p in n.attrs["perm"])
        if rule == "expand_dims":
            x = self.dims(n.inputs[0])
            a = n.attrs["axis"]
            return None if x is None else x[:a] + (1,) + x[a:]
        if rule == "squeeze":
            x = self.dims(n.inputs[0])
            axes = n.attrs["axes"]
            return None if x is None else tuple(d for i, d in enumerate(x) if i not in axes)
        if rule == "matmul":
            return self._matmul(n)
        if rule == "reshape":
            return self._reshape(n)
        return None

    def _matmul(self, n):
        a, b = (self.dims(r) for r in n.inputs)
        if a is None or b is None or len(a) < 2 or len(b) < 2:
            return None
        m = a[-1] if n.attrs.get("transpose_a") else a[-2]
        k = b[-2] if n.attrs.get("transpose_b") else b[-1]
        batch = broadcast([a[:-2], b[:-2]])
        return None if batch is None else batch + (m, k)

    def _reshape(self, n):
        """Reshape keeps a symbol only in the plain case: one unknown dim in and one -1 out.
        The -1 is the unknown dim times the static sizes in over those out; when that ratio
        is whole, the output dim is the input's symbol scaled by it (``("scaled", symbol,
        factor)``): flattening ``[B, 128, 256]`` to ``(-1, 256)`` gives ``128 B``, and
        reshaping that to ``(-1, 128, 256)`` gives back ``B`` (W9's layer norm gradient:
        a SumToShape between the two is then seen to be a no-op)."""
        x = self.dims(n.inputs[0])
        target = n.attrs["shape"]
        if x is None or list(target).count(-1) != 1:
            return None
        syms = [d for d in x if not isinstance(d, int)]
        if len(syms) != 1:
            return None
        base, factor = _unscaled(syms[0])
        known_in = _product(d for d in x if isinstance(d, int)) * factor
        known_out = _product(d for d in target if d != -1)
        if known_out <= 0 or known_in % known_out:
            return None
        out = _scaled(base, known_in // known_out)
        return tuple(out if d == -1 else d for d in target)


def _unscaled(sym) -> tuple:
    """(symbol, whole factor) of a dim ``factor * symbol``."""
    if isinstance(sym, tuple) and sym and sym[0] == "scaled":
        return sym[1], sym[2]
    return sym, 1


def _scaled(sym, factor: int):
    """The dim ``factor * sym`` (``sym`` itself for a factor of 1)."""
    return sym if factor == 1 else ("scaled", sym, factor)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def broadcast(shapes) -> tuple | None:
    """Symbolic numpy broadcasting (see the module doc string); None if a rank is unknown."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        ints = {d for d in dims if isinstance(d, int) and d != 1}
        syms = {d for d in dims if not isinstance(d, int)}
        if ints:
            out.append(ints.pop() if len(ints) == 1 else ("conflict", i))
        elif len(syms) == 1:
            out.append(syms.pop())
        elif not syms:
            out.append(1)
        else:
            out.append(_bcast_symbol(syms))
    return tuple(out)


def _bcast_symbol(syms) -> tuple:
    """The symbol of the broadcast of several symbols: ``("bcast", *members)`` over the
    flat set of plain symbols, so that broadcasting ``bcast(a, b)`` against ``a`` again gives
    ``bcast(a, b)`` (the same size when the sizes broadcast) instead of a symbol nested one
    level deeper per op of a deep graph."""
    members = set()
    for s in syms:
        if isinstance(s, tuple) and s and s[0] == "bcast":
            members.update(s[1:])
        else:
            members.add(s)
    if len(members) == 1:
        return members.pop()
    return ("bcast",) + tuple(sorted(members, key=repr))


def fits(small, big) -> bool:
    """Broadcasting dims ``small`` against ``big`` leaves ``big`` unchanged."""
    if small is None or big is None or len(small) > len(big):
        return False
    tail = big[len(big) - len(small) :]
    return all(s == 1 or s == b for s, b in zip(small, tail))
