"""``GroupEmitter``: emits one fusion group as a kernel body; ``value(ref, ix)`` computes a
member's element inline at the index its consumer asks for (each (tensor, index) once per
iteration, as a Let)."""

from __future__ import annotations

from .. import dtypes as _dt
from ..errors import UnimplementedError
from ..expr import Const, Expr, Load, Math, i64
from . import lowerings as L
from . import sym
from .builder import Illegal, Ix, KernelBuilder, broadcast_index
from .ir import RNG_BUFFER, STATUS_BUFFER, If, Store


class GroupEmitter(KernelBuilder):
    """Emits one fusion group: ``value(ref, ix)`` computes a member's element inline."""

    def __init__(self, lw, name, members):
        super().__init__(lw, name)
        self.members = set(members)
        self.row_values: dict = {}  # reduction node id -> local holding this row's value
        self.row_flat = None  # flat row index in the current row kernel
        self.overrides: dict = {}  # ref -> buffer to load instead of computing (gemm output)
        self.k = 0  # output index of the node being lowered (multi-output ops)
        # row kernels: expensive members computed at the full index in several passes over
        # a row are stored (in an output row) by the first pass and loaded by later ones
        self.full_flat = None  # flat full-space index of the current pass over the row
        self.pass_no = 0  # number of the current pass over the row
        self.expensive_seen: dict = {}  # ref -> passes computing it at the full index
        self.row_cache: dict = {}  # ref -> (buffer, pass that stores it, passes reading it)

    def ix(self, shape, dims=None, flat=None) -> Ix:
        return Ix(self, shape, dims, flat)

    def scalar_ix(self) -> Ix:
        return Ix(self, (), (), sym.ZERO)

    def broadcast_ix(self, ix: Ix, ref) -> Ix:
        """Index into input ``ref`` (numpy broadcasting) for output index ``ix``."""
        return broadcast_index(self, ix, self.shape(ref))

    def value(self, ref, ix: Ix) -> Expr:
        ref = tuple(ref)
        v = self._known_value(ref, ix)
        if v is not None:
            return v
        node = self.lw.program.node(ref[0])
        key = ("value", ref, ix.flat())
        at_full = self.full_flat is not None and ix.flat() == self.full_flat
        cached = self.row_cache.get(ref) if at_full else None
        fn = L.value_fn(node)
        if fn is None:
            raise UnimplementedError(f"no lowering for op type {node.op} ('{node.name}')")
        if fn is L.scalar_body:
            self._operands_first(node, ix)
        dt = node.outs[ref[1]].dtype
        saved, self.k = self.k, ref[1]
        expr = fn(self, node, ix)
        self.k = saved
        v = self.bind(expr, dt)
        if at_full and L.is_expensive(node):
            self.expensive_seen.setdefault(ref, set()).add(self.pass_no)
            if cached is not None and cached[1] == self.pass_no:
                self.emit(Store(cached[0], ix.flat(), v))
                self.writes.add(cached[0])
        self.remember(key, v)
        return v

    def _known_value(self, ref, ix: Ix) -> Expr | None:
        """The value of ``ref`` at ``ix`` when it needs no computing here: a scalar
        constant, a load (of a non-member, an override or a row cache), a row's reduced
        value or one computed before; else None (nothing emitted)."""
        node = self.lw.program.node(ref[0])
        if node.op_def.source == "const" and node.attrs["value"].size == 1:
            v = node.attrs["value"].reshape(())
            return Const(v.item(), node.outs[0].dtype)
        if ref in self.overrides:
            return self._load_buffer(self.overrides[ref], ref, ix.flat())
        if node.id not in self.members:
            return self.load(ref, ix.flat())
        if node.id in self.row_values:
            if self.row_flat is None or ix.flat() != self.row_flat:
                raise Illegal(f"{node.op} '{node.name}' (a reduction) is read at another row")
            return self.row_values[node.id]
        kind = L.op_kind(node)
        if kind == "reduction":
            raise Illegal(f"{node.op} '{node.name}' is read before its row is reduced")
        key = ("value", ref, ix.flat())
        hit = self.lookup(key)
        if hit is not None:
            return hit
        at_full = self.full_flat is not None and ix.flat() == self.full_flat
        cached = self.row_cache.get(ref) if at_full else None
        if cached is not None and self.pass_no > cached[1]:
            v = self._load_buffer(cached[0], ref, ix.flat())
            self.reads.add(cached[0])
            self.remember(key, v)
            return v
        return None

    def _operands_first(self, node, ix: Ix) -> None:
        """Compute the operands of elementwise member ``node`` before it, and theirs down a
        chain of such members, exactly in the order ``lowerings.scalar_body`` asks for them
        (each operand at its broadcast index), with an explicit stack: a fused chain of
        hundreds of ops then needs no recursion as deep as itself."""
        stack = [(None, node, ix, 0)]
        while stack:
            ref, n, x, i = stack.pop()
            if i < len(n.inputs):
                stack.append((ref, n, x, i + 1))
                r = tuple(n.inputs[i])
                rx = self.broadcast_ix(x, r)
                if self._known_value(r, rx) is None:
                    src = self.lw.program.node(r[0])
                    if L.value_fn(src) is L.scalar_body:
                        stack.append((r, src, rx, 0))
                    else:
                        self.value(r, rx)
            elif ref is not None:
                self.value(ref, x)

    def _load_buffer(self, buf, ref, flat):
        dt = self.lw.program.spec(ref).dtype
        key = ("load", buf, flat)
        hit = self.lookup(key)
        if hit is None:
            hit = self.bind(Load(buf, flat, dt), dt)
            self.remember(key, hit)
        return hit

    def check_numerics(self, node, v):
        """Flag NaN (first slot) or Inf (second) of value ``v`` of ``node`` in the status
        buffer."""
        nan_slot, inf_slot = self.lw.check_slots(node)
        one = Const(1, _dt.int32)
        flag = If(
            Math.ISNAN(v),
            (Store(STATUS_BUFFER, i64(nan_slot), one),),
            (Store(STATUS_BUFFER, i64(inf_slot), one),),
        )
        self.emit(If(Math.NOT(Math.ISFINITE(v)), (flag,)))
        self.writes.add(STATUS_BUFFER)

    def var_before(self, node, ix):
        buf = self.lw.var_before[node.id]
        self.reads.add(buf)
        return self._load_buffer(buf, (node.id, 0), ix.flat())

    def rng_slot(self, node) -> int:
        self.reads.add(RNG_BUFFER)
        return self.lw.rng_slot(node)
