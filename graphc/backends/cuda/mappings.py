"""CUDA C of the GPU mappings that ``launch_plan.py`` chose, for the module renderer:
``threads`` (the flattened nest as one grid-stride index space, each thread moving the
planned accesses as 128-bit vectors where the plan has a ``VectorPlan``) and ``rows`` (one
block per row, the plan's cooperative loops strided over the block's threads and their
accumulators combined with the block reduction of ``reduce.cuh``). Nothing here decides a
mapping: a unit's plan says which one, this module writes it."""

from __future__ import annotations

from ... import dtypes as _dt
from ...expr import Call, Var
from ...kernel.analysis import (
    REDUCERS,
    buffers_read,
    buffers_written,
    extent,
    product_of,
    reduction_identity,
    reduction_of,
    replace_loads,
    substitute,
)
from ...kernel.ir import If, Let, Loop, Store
from .function import _Function
from .launch_plan import RowsPlan, ThreadsUnit
from .mathtable import VALUE_TYPE
from .rendered import Launch
from .vectorize import LANES, VectorPlan, vector_type


class MappingEmitter:
    """The loop-mapping half of the module renderer: ``ThreadsUnit`` plans to ``threads``
    and ``rows`` launches (a ``rows`` launch also gets its one-thread-per-row alternative),
    ``RowsPlan``s to block-per-row functions."""

    def _index_space(self, fn: _Function, nest, depth: int, flat: str) -> None:
        """Assign the nest's loop variables from the flat index ``flat`` (row-major)."""
        extents = [extent(start, stop) for _, start, stop in nest]
        rest = flat
        for i, (var, start, _) in enumerate(nest):
            v = fn.var(var, _dt.int64)
            if fn._nonneg(start):
                fn.nonneg.add(var)
            if i == len(nest) - 1:
                fn.emit(f"{v} = {fn.expr(start)} + {rest};", depth)
            else:
                inner = fn.expr(product_of(extents[i + 1 :]))
                fn.emit(f"{v} = {fn.expr(start)} + {rest} / ({inner});", depth)
                rest = f"({rest} % ({inner}))"

    def _threads(self, name: str, unit: ThreadsUnit) -> Launch:
        """The launch of a ``ThreadsUnit``: its grid-stride function, and when the plan has
        a block-per-row alternative, a ``rows`` launch with the grid-stride one as ``alt``."""
        prefix, nest, body, vec = unit.prefix, unit.nest, unit.body, unit.vector
        count = product_of([extent(start, stop) for _, start, stop in nest])
        threads = _Function(self, name)
        threads.stmts(prefix, 1)
        n = threads.tmp(_dt.int64)
        threads.emit(f"{threads.expr(n)} = {threads.expr(count)};", 1)
        first = "(gc_i64)blockIdx.x * blockDim.x + threadIdx.x"
        if vec is not None:
            done = self._vector_loop(threads, nest, body, vec, threads.expr(n))
            first = f"{done} + {first}"  # the scalar loop finishes what quads left
        gi = threads.tmp(_dt.int64)
        g = threads.expr(gi)
        threads.emit(
            f"for ({g} = {first}; {g} < {threads.expr(n)}; "
            f"{g} += (gc_i64)gridDim.x * blockDim.x) {{",
            1,
        )
        self._index_space(threads, nest, 2, g)
        threads.stmts(body, 2)
        threads.emit("}", 1)
        self._add(threads)
        if unit.rows is None:
            launch = Launch("threads", threads.name, threads.params(), count)
            launch.vector = vec.width if vec is not None else 1
            return launch
        fn = self._rows_function(name + "_rows", prefix, unit.rows, nest)
        rows = unit.rows
        launch = Launch("rows", fn.name, fn.params(), count, rows.inner, threads.name,
                        rows.contiguous)  # fmt: skip
        launch.alt_params = threads.params()
        return launch

    def _vector_loop(self, fn: _Function, nest, body, vec: VectorPlan, n: str) -> str:
        """Emit the quad loop of ``vec`` (each thread: ``width`` iterations, vector loads at
        the start, vector stores at the end); returns the C expression of how many flat
        iterations it covered (0 when a pointer is not aligned for the vectors)."""
        w = vec.width
        buffers = self.program.buffers
        moved = list(dict.fromkeys([b for b, _ in vec.loads] + list(vec.stores)))
        aligned = " | ".join(f"(unsigned long long){fn.buf(b)}" for b in moved)
        mask = w * max(buffers[b].dtype.itemsize for b in moved) - 1
        nq, q, base = fn.tmp(_dt.int64), fn.tmp(_dt.int64), fn.tmp(_dt.int64)
        fn.emit(f"{fn.expr(nq)} = (({aligned}) & {mask}ULL) == 0 ? {n} / {w} : 0;", 1)
        fn.emit(
            f"for ({fn.expr(q)} = (gc_i64)blockIdx.x * blockDim.x + threadIdx.x; "
            f"{fn.expr(q)} < {fn.expr(nq)}; {fn.expr(q)} += (gc_i64)gridDim.x * blockDim.x) {{",
            1,
        )
        self._index_space(fn, nest, 2, f"({fn.expr(q)} * {w})")
        inner = fn.var(nest[-1][0], _dt.int64)
        fn.emit(f"{fn.expr(base)} = {inner};", 2)
        loaded = {}
        for k, (b, index) in enumerate(vec.loads):
            vt = vector_type(buffers[b].dtype, w)
            v = fn.vec(f"__vl{k}", vt)
            fn.emit(f"{v} = *reinterpret_cast<const {vt}*>({fn.buf(b)} + ({fn.expr(index)}));", 2)
            loaded[(b, index)] = (v, buffers[b].dtype)
        stored = {b: [] for b in vec.stores}
        for j in range(w):
            if j:
                fn.emit(f"{inner} = {fn.expr(base)} + {j};", 2)
            names = {}
            for key, (v, dtype) in loaded.items():
                lane = fn.tmp(dtype)
                fn.emit(f"{fn.expr(lane)} = {v}.{LANES[j]};", 2)
                names[key] = lane
            copy = []
            for s in body:
                s = replace_loads(s, names)
                if isinstance(s, Store) and s.buffer in stored:
                    lane = fn.tmp(buffers[s.buffer].dtype)
                    stored[s.buffer].append(lane)
                    copy.append(Let(lane.name, lane.dtype, s.value))
                else:
                    copy.append(s)
            fn.stmts(copy, 2)
        fn.emit(f"{inner} = {fn.expr(base)};", 2)
        indices = {s.buffer: s.index for s in body if isinstance(s, Store)}
        for k, (b, lanes) in enumerate(stored.items()):
            vt = vector_type(buffers[b].dtype, w)
            v = fn.vec(f"__vs{k}", vt)
            for j, lane in enumerate(lanes):
                fn.emit(f"{v}.{LANES[j]} = {fn.expr(lane)};", 2)
            fn.written.add(b)
            fn.emit(f"*reinterpret_cast<{vt}*>({fn.buf(b)} + ({fn.expr(indices[b])})) = {v};", 2)
        fn.emit("}", 1)
        return f"{fn.expr(nq)} * {w}"

    # -- one block per row --------------------------------------------------------------------
    def _rows_function(self, name, prefix, rows: RowsPlan, nest) -> _Function:
        """The block-per-row function of ``rows`` (one row when ``nest`` is None, else one
        per iteration of the flattened nest)."""
        fn = _Function(self, name)
        fn.stmts(prefix, 1)
        depth = 1
        if nest is not None:
            count = product_of([extent(start, stop) for _, start, stop in nest])
            n, row = fn.tmp(_dt.int64), fn.tmp(_dt.int64)
            fn.emit(f"{fn.expr(n)} = {fn.expr(count)};", 1)
            r = fn.expr(row)
            fn.emit(f"for ({r} = blockIdx.x; {r} < {fn.expr(n)}; {r} += gridDim.x) {{", 1)
            self._index_space(fn, nest, 2, r)
            depth = 2
        else:
            fn.emit("if (blockIdx.x != 0) return;", 1)
        written, read = set(), set()
        for i, s in enumerate(rows.body):
            s_reads, s_writes = buffers_read([s]), buffers_written([s])
            if (s_reads & written) or (s_writes & (written | read)):
                fn.emit("__syncthreads();", depth)
                written, read = set(), set()
            written |= s_writes
            read |= s_reads
            if isinstance(s, Let):
                fn.stmts([s], depth)
            elif isinstance(s, Store):
                fn.store(s, depth, guard="if (threadIdx.x == 0) ")
            elif isinstance(s, If):
                fn.if_(s, depth, stores_guard="if (threadIdx.x == 0) ")
            elif i in rows.coop:
                self._coop_loop(fn, s, depth)
            else:  # store-free sequential loop: every thread computes the same scalars
                fn.stmts([s], depth)
        if nest is not None:
            fn.emit("}", 1)
        self._add(fn)
        return fn

    def _coop_loop(self, fn: _Function, loop: Loop, depth: int) -> None:
        partial, combine = {}, []
        for s in loop.body:
            if isinstance(s, Let) and s.reduce:
                red_fn, _ = reduction_of(s)
                p = fn.tmp(s.dtype)
                partial[s.var] = p.name
                fn.emit(f"{fn.expr(p)} = {fn.expr(reduction_identity(red_fn, s.dtype))};", depth)
                combine.append((s, red_fn, p))
        fn.loop_header(loop, depth, start=f"{fn.expr(loop.start)} + threadIdx.x",
                       step="{v} += blockDim.x")  # fmt: skip
        body = []
        for s in loop.body:
            if isinstance(s, Let) and s.var in partial:
                body.append(Let(partial[s.var], s.dtype, substitute(s.value, partial), True))
            else:
                body.append(s)
        fn.stmts(body, depth + 1)
        fn.emit("}", depth)
        for s, red_fn, p in combine:
            fn.uses_smem = True
            total = fn.tmp(s.dtype)
            op = REDUCERS[red_fn]
            if s.dtype.is_bool:
                fn.emit(f"{fn.expr(total)} = gc_block_reduce<int>((int){fn.expr(p)}, {op}(), "
                        f"(int*)gc_smem) != 0;", depth)  # fmt: skip
            else:
                ctype = VALUE_TYPE[s.dtype.name]
                fn.emit(f"{fn.expr(total)} = gc_block_reduce<{ctype}>({fn.expr(p)}, {op}(), "
                        f"({ctype}*)gc_smem);", depth)  # fmt: skip
            acc = Var(s.var, s.dtype)
            fn.stmts([Let(s.var, s.dtype, Call(red_fn, (acc, total)), True)], depth)
