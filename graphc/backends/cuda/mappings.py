"""How parallel loops map onto the GPU, for the CUDA renderer: ``threads`` (perfect nests and
element-wise inner maps collapsed into one grid-stride index space, vectorised where
``vectorize.py`` allows) and ``rows`` (one block per row, inner loops strided over the block's
threads and their accumulators combined with the block reduction of ``reduce.cuh``)."""

from __future__ import annotations

from ... import dtypes as _dt
from ...expr import Call, Load, Math, Var, sub_exprs
from ...kernel.analysis import (
    REDUCERS,
    buffers_read,
    buffers_written,
    extent,
    linear_coeff,
    product_of,
    reads_before_write,
    reduction_identity,
    reduction_of,
    replace_loads,
    substitute,
    var_names,
)
from ...kernel.ir import (
    STATUS_BUFFER,
    If,
    Let,
    LibCall,
    Loop,
    Store,
    exprs_in,
    stmt_exprs,
    walk_stmts,
)
from .function import _Function
from .mathtable import VALUE_TYPE
from .rendered import Launch
from .vectorize import LANES, VectorPlan, plan_vectors, vector_type


class MappingEmitter:
    """The loop-mapping half of the module renderer: parallel loops to ``threads`` and
    ``rows`` launches (a ``rows`` launch also gets its one-thread-per-row alternative)."""

    @staticmethod
    def _collapse(loop: Loop):
        """Perfect nest of parallel loops with independent bounds -> [(var, start, stop)], body."""
        nest, body = [(loop.var, loop.start, loop.stop)], loop.body
        while len(body) == 1 and isinstance(body[0], Loop) and body[0].parallel:
            inner = body[0]
            outer_vars = {v for v, _, _ in nest}
            if (var_names(inner.start) | var_names(inner.stop)) & outer_vars:
                break
            nest.append((inner.var, inner.start, inner.stop))
            body = inner.body
        return nest, list(body)

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

    def _parallel(self, name: str, prefix: list, loop: Loop, rk) -> Launch:
        nest, body = self._collapse(loop)
        nest, body = self._flatten_maps(nest, body)
        count = product_of([extent(start, stop) for _, start, stop in nest])
        threads = _Function(self, name)
        threads.stmts(prefix, 1)
        n = threads.tmp(_dt.int64)
        threads.emit(f"{threads.expr(n)} = {threads.expr(count)};", 1)
        vec = plan_vectors(nest, body, self.program.buffers, self.root)
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
        rows = self._rows_function(name + "_rows", prefix, body, nest, rk)
        if rows is None:
            launch = Launch("threads", threads.name, threads.params(), count)
            launch.vector = vec.width if vec is not None else 1
            return launch
        fn, inner, contiguous = rows
        launch = Launch("rows", fn.name, fn.params(), count, inner, threads.name, contiguous)
        launch.alt_params = threads.params()
        return launch

    def _flatten_maps(self, nest, body):
        """Absorb inner sequential loops whose iterations are independent element-wise maps
        (no accumulator, distinct stores: what a block-per-row mapping would also accept)
        into the parallel index space: one thread per element, not per row."""
        nest = list(nest)
        while len(body) == 1 and isinstance(body[0], Loop) and not body[0].parallel:
            inner = body[0]
            bounds = [x for e in (inner.start, inner.stop) for x in sub_exprs(e)]
            if any(isinstance(x, Var | Load) for x in bounds):
                break  # the launch size must be computable from the run's dims alone
            if any(isinstance(s, Let) and s.reduce for s in inner.body):
                break
            if self._coop_refusal(inner, []) is not None:
                break
            nest.append((inner.var, inner.start, inner.stop))
            body = list(inner.body)
        return nest, body

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
    def _rows_function(self, name, prefix, body, nest, rk):
        """A block-per-row function for ``body``, or None when it lacks the row shape.

        Returns (function, inner length expression, whether inner loads are contiguous).
        """
        checked = self._check_rows(body, rk)
        if checked is None:
            return None
        coop, inner = checked
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
        for s in body:
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
            elif id(s) in coop:
                self._coop_loop(fn, s, depth)
            else:  # store-free sequential loop: every thread computes the same scalars
                fn.stmts([s], depth)
        if nest is not None:
            fn.emit("}", 1)
        self._add(fn)
        contiguous = any(
            linear_coeff(x.index, s.var) == 1
            for s in body
            if id(s) in coop
            for x in exprs_in(s.body)
            if isinstance(x, Load)
        )
        return fn, inner, contiguous

    def _check_rows(self, body, rk):
        """(ids of cooperative loops, their longest trip count) if ``body`` has the row shape."""
        coop, trips = set(), []
        for i, s in enumerate(body):
            if isinstance(s, LibCall):
                return None
            if isinstance(s, If) and any(isinstance(x, Loop) for x in walk_stmts([s])):
                return None
            if not isinstance(s, Loop):
                continue
            if s.parallel:
                return None
            reason = self._coop_refusal(s, body[i + 1 :])
            if reason is None:
                coop.add(id(s))
                trips.append(extent(s.start, s.stop))
            elif buffers_written([s]):
                rk.notes.append(f"threads only: loop {s.var}: {reason}")
                return None
        if not coop:
            return None
        inner = trips[0]
        for t in trips[1:]:
            inner = Call(Math.MAX, (inner, t))
        return coop, inner

    @staticmethod
    def _coop_refusal(loop: Loop, after) -> str | None:
        """Why the iterations of ``loop`` cannot be spread over a block (None: they can)."""
        accs, stores, local = {}, {}, set()
        for s in loop.body:
            if isinstance(s, Loop | LibCall):
                return "nested loop"
            if isinstance(s, If):
                # status flags: every racing thread stores the same value to one slot
                if not all(isinstance(x, If) or (isinstance(x, Store) and x.buffer == STATUS_BUFFER)
                           for x in walk_stmts([s])):  # fmt: skip
                    return "conditional other than a status flag"
                continue
            if isinstance(s, Let) and s.reduce:
                red = reduction_of(s)
                if red is None or s.var in accs:
                    return f"'{s.var}' is not a plain sum/product/max/min/all/any accumulator"
                accs[s.var] = red
            elif isinstance(s, Let):
                local.add(s.var)
            else:
                stores.setdefault(s.buffer, set()).add(s.index)
        if accs.keys() & local:
            return "an accumulator is also assigned directly"
        for s in loop.body:
            others = [e for e in stmt_exprs(s)]
            if isinstance(s, Let) and s.var in accs:
                others = [accs[s.var][1]]
            if any(var_names(e) & accs.keys() for e in others):
                return "an accumulator is read inside its loop"
        for v in local:
            if reads_before_write(loop.body, v) or reads_before_write(after, v):
                return f"scalar '{v}' carries a value between iterations"
        for b, indices in stores.items():
            if len(indices) != 1:
                return f"several stores to '{b}'"
            (index,) = indices
            c = linear_coeff(index, loop.var)
            if not c:
                return f"store index of '{b}' is not injective in {loop.var}"
            loads = {x.index for x in exprs_in(loop.body) if isinstance(x, Load) and x.buffer == b}
            if loads - {index}:
                return f"'{b}' is read and written at different indices"
        if any(loop.var in var_names(e) for s in after for e in stmt_exprs(s)):
            return "loop variable used after the loop"
        return None

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
