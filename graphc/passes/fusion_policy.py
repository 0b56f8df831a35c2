"""The fusion policy: whether the driver tries merging a producer into a consumer's kernel
(GEMM operands, epilogues, expensive producers read several times, reductions over leading
axes in the column layout), whether a producer may be copied into several kernels, and the
reason each merge is reported with."""

from __future__ import annotations

from ..kernel import lowerings as L
from ..kernel import sym

#: The most reductions one kernel computes. Summing a gradient over the steps of an unrolled
#: loop offers one more reduction to the same kernel per step (and sibling fusion merges
#: the steps' reductions of one input): each merge is checked on the grown kernel, and LLVM
#: optimises a function of many reduction loops in time growing faster than its length
#: (W12's 64-step LSTM: its 16-reduction kernels took 0.12-0.15 s of LLVM each; with 4 a
#: kernel its LLVM CPU time fell from ~1.04 to ~0.86 s, the step's run time unchanged,
#: 67.9 vs 67.8 ms on one thread). Such kernels are memory-bound long before 4
#: reductions; a row kernel's own reductions (softmax, layer norm, batch norm) are fewer.
MAX_KERNEL_REDUCTIONS = 4


class FusionPolicy:
    """The policy half of the fusion driver: each method returns None (try it) or why not."""

    def policy(self, p, gi) -> str | None:
        """None to try the merge of producer ``p`` into group ``gi``, else why not."""
        node = self.node(p)
        kind = L.op_kind(node)
        kinds = self._kinds[gi]
        if "opaque" in kinds or None in kinds:
            return "the consumer needs a kernel of its own"
        readers = [c for c in self.compute_consumers(p) if c in self.groups[gi]]
        if any(self.kind(c) == "gemm" for c in readers):
            return "GEMM operands are read from memory by the BLAS library"
        if kind == "gemm" and ("reduction" in kinds or "gemm" in kinds):
            return "a GEMM kernel takes only an elementwise epilogue"
        if kind == "reduction" and "gemm" in kinds:
            return "a GEMM kernel takes only an elementwise epilogue"
        if kind == "reduction":
            why = self.too_many_reductions([gi], 1)
            if why:
                return why
        if kind == "reduction" and self.reduction_layout == "columns":
            why = self.column_refusal(p, gi)
            if why:
                return why
        if L.is_expensive(node) and "reduction" not in kinds and self.replicates(p, readers):
            # (in a row kernel a row-shaped value is computed once per row: no replication)
            return (f"{node.op} is expensive and its consumer reads each element several "
                    "times (broadcast): computed once in its own kernel instead")  # fmt: skip
        return self.too_long([gi], 1)

    def too_many_reductions(self, gis, extra=0) -> str | None:
        """Why the union of groups ``gis`` and ``extra`` more reductions is refused as a kernel
        computing more than MAX_KERNEL_REDUCTIONS reductions, else None."""
        n = extra + sum(1 for gi in gis for c in self.groups[gi] if self.kind(c) == "reduction")
        if n <= MAX_KERNEL_REDUCTIONS:
            return None
        return (f"the kernel would compute {n} reductions, more than the "
                f"{MAX_KERNEL_REDUCTIONS} one takes (MAX_KERNEL_REDUCTIONS)")  # fmt: skip

    def column_refusal(self, p, gi) -> str | None:
        """Why reduction ``p`` over leading axes (its row: the kept trailing axes) stays out of
        group ``gi``, which computes over more than its row; None when it may join."""
        node = self.node(p)
        spec = L.REDUCTIONS[node.op](node, self.lw.shapes) if node.op in L.REDUCTIONS else None
        if spec is None:
            return None
        space, axes = self.lw.shapes[spec.ref], sorted(spec.axes)
        if not axes or axes[-1] == len(space) - 1:
            return None  # the reduced axis is innermost: the row layout is unit-stride
        row = _strip(self.lw.shapes[(p, 0)])
        shapes = self.lw.shapes.shapes
        if all(_strip(shapes.get((n, 0), row)) == row for n in self.groups[gi]):
            return None  # an epilogue over its rows: the column kernel computes it
        return ("a reduction over leading axes is fused only with consumers of its rows: "
                f"{self.gname(gi)} computes over more than the row, and the kernel would "
                "sweep the reduced axes once per row element with a stride")  # fmt: skip

    def downstream_of_row(self, p) -> bool:
        """``p`` is an elementwise function of a reduction's row (it will live in a row
        kernel, computed once per row): the first reduction a depth-first walk up its
        elementwise inputs meets (last input first) has its shape."""
        if self.kind(p) not in ("elementwise", "reduction"):
            return False
        red = None
        for src, _ in reversed(self.node(p).inputs):
            red = self.first_reduction(src)
            if red is not None:
                break
        if red is None:
            return False
        return _strip(self.lw.shapes[(red, 0)]) == _strip(self.lw.shapes[(p, 0)])

    def first_reduction(self, nid):
        """The first reduction met walking up from ``nid`` through elementwise ops, depth
        first, last input first (``nid`` itself when it is one); None if none. Memoised for
        the whole program and computed with an explicit stack: chains of elementwise ops run
        through every step of an unrolled loop."""
        memo = self._first_reduction
        stack = [nid]
        while stack:
            n = stack[-1]
            if n in memo:
                stack.pop()
                continue
            node = self.node(n)
            kind = L.op_kind(node)
            if kind == "reduction":
                memo[n] = n
            elif kind != "elementwise":
                memo[n] = None
            else:
                pending = [src for src, _ in node.inputs if src not in memo]
                if pending:
                    stack.extend(pending)
                    continue
                memo[n] = next((memo[src] for src, _ in reversed(node.inputs)
                                if memo[src] is not None), None)  # fmt: skip
            stack.pop()
        return memo[nid]

    def replicates(self, p, readers) -> bool:
        if self.downstream_of_row(p):
            return False
        shape = self.lw.shapes[(p, 0)]
        for c in readers:
            cn = self.node(c)
            ck = L.op_kind(cn)
            if ck == "reduction":
                continue
            out = self.lw.shapes[(c, 0)]
            if ck == "index" and not cn.op_def.reads_each_once:
                return True
            if ck == "elementwise" and _strip(out) != _strip(shape):
                return True
        return False

    def duplication_refusal(self, p, cgroups) -> str | None:
        node = self.node(p)
        kind = L.op_kind(node)
        n = len(cgroups)
        if kind == "reduction":
            return f"producer is a reduction with consumers in {n} kernels (not duplicated)"
        if kind == "gemm":
            return f"producer is a GEMM with consumers in {n} kernels (not duplicated)"
        if L.is_expensive(node):
            return (f"producer {node.op} is expensive (transcendental/division/random) with "
                    f"consumers in {n} kernels: not duplicated")  # fmt: skip
        if any((p, k) in self.fetches for k in range(len(node.outs))):
            return f"producer is fetched and read by {n} kernels: stored once"
        if node.op_def.must_store:
            return f"{node.op} has an effect and runs once"
        for gi in cgroups:
            if any(self.kind(c) == "gemm" for c in self.compute_consumers(p)
                   if c in self.groups[gi]):  # fmt: skip
                return "GEMM operands are read from memory by the BLAS library"
        for gi in cgroups:
            too_long = self.too_long([gi], 1)
            if too_long:
                return too_long
        return None

    def fuse_reason(self, p, gi) -> str:
        node = self.node(p)
        kind = L.op_kind(node)
        kinds = self._kinds[gi]
        if kind == "gemm":
            return "elementwise epilogue fused after the GEMM"
        if kind == "reduction":
            return "reduction fused with its elementwise consumers (row kernel)"
        if "reduction" in kinds:
            return "input fusion into the reduction kernel"
        if "gemm" in kinds:
            return "epilogue fusion into the GEMM kernel"
        return "loop fusion into its consumer"


def _strip(shape):
    shape = list(shape)
    while shape and sym.const_value(shape[0]) == 1:
        shape.pop(0)
    return tuple(shape)
