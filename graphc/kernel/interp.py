"""numpy interpreter of the Kernel IR: the executable specification of ``ir.py``.

Loops are vectorised where the contract allows (see ``ir.py``): each loop of a kernel owns
one numpy axis, a vectorisable loop evaluates its body once with its variable as an
``arange`` along that axis, ``reduce=True`` accumulators reduce over the axes of the loops
inside their definition, and only loops that carry values (scans, argmax) or contain a
LibCall run iteration by iteration. Every Load/Store is bounds-checked and every Let/Store
dtype-checked, so a lowering bug fails loudly here instead of crashing a native backend.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..expr import NUMPY_MATH, Call, Cast, Const, Dim, Load, Math, Var, cast_values
from .conv_packed import packed_size, unpack_filters
from .ir import (
    LIBCALLS,
    STATUS_BUFFER,
    If,
    Kernel,
    KernelProgram,
    Let,
    LibCall,
    Loop,
    Store,
)
from .runtime import bind_variables, check_dims, dim_values, eval_int, raise_status, rng_keys


class KernelIRError(AssertionError):
    """The Kernel IR broke its contract (a lowering bug, never a user error)."""


def run(kp: KernelProgram, ctx) -> list:
    """Run ``kp`` with the feeds/variables/rng of ``ctx``; returns the fetched arrays.

    Variable updates go to ``ctx.write_variable`` only after every kernel and check passed.
    """
    dims = dim_values(kp, ctx.feeds)
    check_dims(kp, dims)
    storage = _allocate(kp, ctx, dims)
    for kernel in kp.kernels:
        _Exec(kernel, storage, dims).run()
    if STATUS_BUFFER in storage:
        raise_status(kp, storage[STATUS_BUFFER])
    shapes = {}

    def value(name):
        shape = shapes.setdefault(name, tuple(eval_int(d, dims) for d in kp.buffers[name].shape))
        return np.array(storage[name][: int(np.prod(shape, dtype=np.int64))].reshape(shape))

    for var, buf in kp.var_updates.items():
        ctx.write_variable(var, value(buf))
    return [value(name) for name in kp.outputs]


def _allocate(kp: KernelProgram, ctx, dims) -> dict:
    """name -> flat numpy array; aliased buffers share bytes with their root."""
    sizes = {
        name: int(np.prod([eval_int(d, dims) for d in b.shape], dtype=np.int64))
        for name, b in kp.buffers.items()
    }
    variables = bind_variables(kp, ctx)
    in_place_vars = {
        kp.buffers[b].alias_of for b in kp.var_updates.values() if kp.buffers[b].alias_of
    }
    storage: dict = {}
    for k, name in enumerate(kp.inputs):
        if name is None:
            continue
        b = kp.buffers[name]
        arr = np.ascontiguousarray(ctx.feeds[k], dtype=b.dtype.np).reshape(-1)
        if arr.size != sizes[name]:
            raise InvalidArgumentError(f"feed {k}: {arr.size} elements, expected {sizes[name]}")
        storage[name] = _readonly(arr if arr.size else np.zeros(1, arr.dtype))
    roots: dict = {}
    for name, b in kp.buffers.items():
        if name in storage:
            continue
        if b.kind == "const":
            v = np.ascontiguousarray(b.value, dtype=b.dtype.np).reshape(-1)
            storage[name] = _readonly(v if v.size else np.zeros(1, v.dtype))
        elif b.kind == "var":
            v = np.ascontiguousarray(variables[name], dtype=b.dtype.np).reshape(-1)
            storage[name] = v.copy() if name in in_place_vars else _readonly(v)
        elif b.kind == "rng":
            storage[name] = rng_keys(kp, ctx)
        elif b.kind == "status":
            storage[name] = np.zeros(sizes[name], np.int32)
        elif b.alias_of is None:
            storage[name] = np.zeros(max(sizes[name], 1), b.dtype.np)
        else:
            roots[name] = b.alias_of
    for name, root in roots.items():
        while root in roots:
            root = roots[root]
        raw = storage[root].view(np.uint8)
        nbytes = sizes[name] * kp.buffers[name].dtype.itemsize
        if nbytes > raw.size:
            raise KernelIRError(f"buffer {name} ({nbytes} bytes) aliases smaller {root}")
        storage[name] = raw[:nbytes].view(kp.buffers[name].dtype.np)
    return storage


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.setflags(write=False)
    return a


_REDUCE = {
    Math.ADD: (np.add, 0), Math.MUL: (np.multiply, 1), Math.MAX: (np.maximum, None),
    Math.MIN: (np.minimum, None), Math.AND: (np.logical_and, True),
    Math.OR: (np.logical_or, False),
}  # fmt: skip


def _depth(body) -> int:
    d = 0
    for s in body:
        if isinstance(s, Loop):
            d = max(d, 1 + _depth(s.body))
        elif isinstance(s, If):
            d = max(d, _depth(s.then), _depth(s.orelse))
    return d


class _Exec:
    """Executes one kernel."""

    def __init__(self, kernel: Kernel, storage: dict, dims: dict):
        self.kernel = kernel
        self.storage = storage
        self.dims = dims
        self.ndim = _depth(kernel.body)
        self.env: dict = {}  # var -> array
        self.def_depth: dict = {}  # var -> loop depth of its first Let
        self.vector_axes: list = []  # (depth, extent) of enclosing vectorised loops
        self.depth = 0
        self.mask = None

    def run(self):
        self.block(self.kernel.body)

    # -- statements -----------------------------------------------------------------------
    def block(self, body):
        for s in body:
            if isinstance(s, Let):
                self.let(s)
            elif isinstance(s, Store):
                self.store(s)
            elif isinstance(s, Loop):
                self.loop(s)
            elif isinstance(s, If):
                self.if_(s)
            elif isinstance(s, LibCall):
                self.libcall(s)
            else:
                raise KernelIRError(f"unknown statement {s!r}")

    def let(self, s: Let):
        if s.reduce:
            self.reduce_let(s)
            return
        v = self.expr(s.value)
        self._check_dtype(v, s.dtype, f"Let {s.var}")
        if self.mask is not None and s.var in self.env:
            v = np.where(self.mask, v, self.env[s.var])
        if s.var not in self.env:
            self.def_depth[s.var] = self.depth
        self.env[s.var] = np.asarray(v)

    def reduce_let(self, s: Let):
        e = s.value
        if (
            not (isinstance(e, Call) and e.fn in _REDUCE and e.args[0] == Var(s.var, s.dtype))
            or s.var not in self.env
        ):
            raise KernelIRError(f"reduce Let {s.var} is not 'acc = OP(acc, e)' after a Let")
        fn, identity = _REDUCE[e.fn]
        val = np.asarray(self.expr(e.args[1]))
        self._check_dtype(val, s.dtype, f"Let {s.var}")
        axes = [(d, n) for d, n in self.vector_axes if d >= self.def_depth[s.var]]
        if axes:
            shape = list(np.broadcast_shapes(val.shape, (1,) * self.ndim))
            for d, n in axes:
                shape[d] = n
            val = np.broadcast_to(val, shape)
            if self.mask is not None:
                ident = identity
                if ident is None:
                    ident = -np.inf if e.fn is Math.MAX else np.inf
                    if s.dtype.is_integer:
                        info = np.iinfo(s.dtype.np)
                        ident = info.min if e.fn is Math.MAX else info.max
                val = np.where(self.mask, val, np.asarray(ident).astype(s.dtype.np))
            val = fn.reduce(val, axis=tuple(d for d, _ in axes), keepdims=True)
        elif self.mask is not None:
            val = np.where(self.mask, fn(self.env[s.var], val), self.env[s.var])
            self.env[s.var] = np.asarray(val).astype(s.dtype.np)
            return
        with np.errstate(all="ignore"):
            self.env[s.var] = np.asarray(fn(self.env[s.var], val)).astype(s.dtype.np)

    def store(self, s: Store):
        buf = self.storage[s.buffer]
        idx = np.asarray(self.expr(s.index))
        val = np.asarray(self.expr(s.value))
        self._check_dtype(val, _dtype_of_array(buf), f"Store to {s.buffer}")
        if not buf.flags.writeable:
            raise KernelIRError(f"kernel {self.kernel.name} stores to read-only {s.buffer}")
        if self.mask is not None:
            idx, val, m = np.broadcast_arrays(idx, val, self.mask)
            idx, val = idx[m], val[m]
        else:
            idx, val = np.broadcast_arrays(idx, val)
        self._bounds(idx, buf, s.buffer)
        buf[idx] = val

    def loop(self, s: Loop):
        start, stop = self.expr(s.start), self.expr(s.stop)
        if np.ndim(start) or np.ndim(stop):
            raise KernelIRError(f"loop {s.var}: bounds must not depend on vectorised loops")
        start, stop = int(start), int(stop)
        keys = set(self.env)
        self.depth += 1
        d = self.depth - 1
        if stop > start:
            if _vectorisable(s, keys):
                shape = [1] * self.ndim
                shape[d] = stop - start
                self.env[s.var] = np.arange(start, stop, dtype=np.int64).reshape(shape)
                self.def_depth[s.var] = self.depth
                self.vector_axes.append((d, stop - start))
                self.block(s.body)
                self.vector_axes.pop()
            else:
                for i in range(start, stop):
                    self.env[s.var] = np.asarray(np.int64(i))
                    self.def_depth[s.var] = self.depth
                    self.block(s.body)
        self.depth -= 1
        for k in set(self.env) - keys:
            del self.env[k]
            self.def_depth.pop(k, None)

    def if_(self, s: If):
        cond = np.asarray(self.expr(s.cond))
        if cond.dtype != np.bool_:
            raise KernelIRError("If condition must be bool")
        if cond.ndim == 0 and self.mask is None:
            self.block(s.then if cond else s.orelse)
            return
        outer = self.mask
        base = np.ones((), bool) if outer is None else outer
        self.mask = base & cond
        if self.mask.any():
            self.block(s.then)
        self.mask = base & ~cond
        if s.orelse and self.mask.any():
            self.block(s.orelse)
        self.mask = outer

    def libcall(self, s: LibCall):
        if s.fn == "conv_packed":
            self.conv_packed(s)
            return
        if s.fn == "gemm_packed":
            self.gemm_packed(s)
            return
        if s.fn != "gemm":
            raise KernelIRError(f"unknown library call {s.fn}")
        a = dict(zip(LIBCALLS["gemm"], s.args))
        v = {k: (a[k] if k in "ABC" else self.expr(a[k])) for k in a}
        for k in v:
            if k not in "ABC" and np.ndim(v[k]):
                raise KernelIRError("gemm arguments must not depend on vectorised loops")
        A, B, C = (self.storage[v[k]] for k in "ABC")
        if not C.flags.writeable:
            raise KernelIRError(f"gemm writes read-only {a['C']}")
        m, n, k_, batch = (int(v[x]) for x in ("M", "N", "K", "batch"))
        ta, tb = int(v["trans_a"]), int(v["trans_b"])
        for b in range(batch):
            oa = int(v["offset_a"]) + b * int(v["stride_a"])
            ob = int(v["offset_b"]) + b * int(v["stride_b"])
            oc = int(v["offset_c"]) + b * int(v["stride_c"])
            _check_spans("gemm", ((A, oa, m * k_, "A"), (B, ob, k_ * n, "B"), (C, oc, m * n, "C")))
            am = A[oa : oa + m * k_].reshape((k_, m) if ta else (m, k_))
            bm = B[ob : ob + k_ * n].reshape((n, k_) if tb else (k_, n))
            am = am.T if ta else am
            bm = bm.T if tb else bm
            prod = am @ bm if m * n else np.zeros((m, n), C.dtype)
            cm = C[oc : oc + m * n].reshape(m, n)
            alpha, beta = v["alpha"], v["beta"]
            new = alpha * prod if alpha != 1 else prod
            if beta:
                new = new + beta * cm
            cm[...] = new.astype(C.dtype, copy=False)

    def _packed_call(self, s: LibCall, operands: tuple):
        """(integer arguments by name, the arrays of ``operands``, the last one written) of a
        ``conv_packed`` or ``gemm_packed`` call; KernelIRError when that one is read-only."""
        a = dict(zip(LIBCALLS[s.fn], s.args))
        v = {k: int(self.expr(a[k])) for k in a if k not in operands}
        arrays = [self.storage[a[k]] for k in operands]
        if not arrays[-1].flags.writeable:
            raise KernelIRError(f"{s.fn} writes read-only {a[operands[-1]]}")
        return v, arrays

    def conv_packed(self, s: LibCall):
        """The convolution of ``conv_packed`` (see ir.LIBCALLS), from the unpacked filters."""
        v, (X, W, C) = self._packed_call(s, ("X", "W", "C"))
        m, o, c, h, w, oh, ow = (v[k] for k in ("m", "o", "c", "h", "w", "oh", "ow"))
        kh, kw, nv = v["kh"], v["kw"], v["nv"]
        if m % max(oh * ow, 1) or X.size < (m // max(oh * ow, 1)) * h * w * c:
            raise KernelIRError("conv_packed input out of bounds")
        ldc, oc = v["ldc"], v["oc"]
        if ldc < o or oc < 0 or W.size < packed_size(kh, kw, c, o, nv):
            raise KernelIRError("conv_packed filters or output rows out of bounds")
        if m and C.size < oc + (m - 1) * ldc + o:
            raise KernelIRError("conv_packed output out of bounds")
        f = unpack_filters(W, kh, kw, c, o, nv)
        n = m // max(oh * ow, 1)
        x = X[: n * h * w * c].reshape(n, h, w, c)
        if v["nchw"] not in (0, 1):
            raise KernelIRError(f"conv_packed layout flag nchw={v['nchw']}: not 0 or 1")
        if v["nchw"]:
            x = X[: n * c * h * w].reshape(n, c, h, w).transpose(0, 2, 3, 1)
        out = np.zeros((n, oh, ow, o), np.float64)
        oy = np.arange(oh)[:, None] * v["sh"] - v["pt"]
        ox = np.arange(ow)[None, :] * v["sw"] - v["pl"]
        for i in range(kh):
            for j in range(kw):
                y, xx = oy + i * v["dh"], ox + j * v["dw"]
                ok = (y >= 0) & (y < h) & (xx >= 0) & (xx < w)
                tap = x[:, np.clip(y, 0, h - 1), np.clip(xx, 0, w - 1)] * ok[None, :, :, None]
                out += tap.astype(np.float64) @ f[i, j].astype(np.float64)
        if ldc == o:
            rows = C[oc : oc + m * o].reshape(m, o)
        else:  # (every row inside C: checked above)
            rows = np.lib.stride_tricks.as_strided(C[oc:], (m, o), (ldc * C.itemsize, C.itemsize))
        rows[...] = out.reshape(m, o).astype(C.dtype)

    def gemm_packed(self, s: LibCall):
        """The products of ``gemm_packed`` (see ir.LIBCALLS), from the unpacked matrices."""
        v, (A, W, C) = self._packed_call(s, ("A", "W", "C"))
        m, o, c, nv = v["m"], v["o"], v["c"], v["nv"]
        size = packed_size(1, 1, c, o, nv)
        for b in range(v["batch"]):
            oa, ow_, oc = (b * v[k] for k in ("stride_a", "stride_w", "stride_c"))
            _check_spans("gemm_packed", ((A, oa, m * c, "A"), (W, ow_, size, "W"),
                                         (C, oc, m * o, "C")))  # fmt: skip
            f = unpack_filters(W[ow_ : ow_ + size], 1, 1, c, o, nv)[0, 0]
            am = A[oa : oa + m * c].reshape(m, c).astype(np.float64)
            C[oc : oc + m * o] = (am @ f.astype(np.float64)).reshape(-1).astype(C.dtype)

    # -- expressions ----------------------------------------------------------------------
    def expr(self, e):
        if isinstance(e, Var):
            try:
                return self.env[e.name]
            except KeyError:
                raise KernelIRError(
                    f"kernel {self.kernel.name}: {e.name} used before its Let"
                ) from None
        if isinstance(e, Const):
            return np.asarray(e.value, dtype=e.dtype.np)
        if isinstance(e, Dim):
            return np.asarray(self.dims[e.name], dtype=np.int64)
        if isinstance(e, Load):
            buf = self.storage[e.buffer]
            idx = np.asarray(self.expr(e.index))
            if idx.dtype != np.int64:
                raise KernelIRError(f"index into {e.buffer} is {idx.dtype}, not int64")
            if self.mask is not None:
                idx = np.where(self.mask, idx, 0) if buf.size else idx
            self._bounds(idx, buf, e.buffer)
            out = buf[idx]
            if out.dtype != e.dtype.np:
                raise KernelIRError(f"Load of {e.buffer} declared {e.dtype.name}, is {out.dtype}")
            return out
        if isinstance(e, Call):
            args = [np.asarray(self.expr(a)) for a in e.args]
            return np.asarray(NUMPY_MATH[e.fn](*args))
        if isinstance(e, Cast):
            return cast_values(self.expr(e.x), e.dtype.np)
        raise KernelIRError(f"not a kernel expression: {e!r}")

    def _bounds(self, idx, buf, name):
        if idx.size and (idx.min() < 0 or idx.max() >= buf.size):
            raise KernelIRError(
                f"kernel {self.kernel.name}: index {int(idx.min())}..{int(idx.max())} out of "
                f"bounds of {name} (size {buf.size})"
            )

    @staticmethod
    def _check_dtype(v, dtype, what):
        want = dtype if isinstance(dtype, np.dtype) else dtype.np
        if np.asarray(v).dtype != want:
            raise KernelIRError(f"{what}: value is {np.asarray(v).dtype}, expected {want}")


def _dtype_of_array(a):
    return a.dtype


def _vectorisable(loop: Loop, outer_vars: set) -> bool:
    """True when no value flows between iterations (see the contract in ``ir.py``)."""
    stores: dict = {}
    loads: dict = {}
    carried = False

    def visit_expr(e):
        if isinstance(e, Load):
            loads.setdefault(e.buffer, set()).add(e.index)
            visit_expr(e.index)
        elif isinstance(e, Call):
            for a in e.args:
                visit_expr(a)
        elif isinstance(e, Cast):
            visit_expr(e.x)

    def visit(body):
        nonlocal carried
        for s in body:
            if isinstance(s, Let):
                if not s.reduce and s.var in outer_vars:
                    carried = True
                visit_expr(s.value)
            elif isinstance(s, Store):
                stores.setdefault(s.buffer, set()).add(s.index)
                visit_expr(s.index)
                visit_expr(s.value)
            elif isinstance(s, Loop):
                visit_expr(s.start)
                visit_expr(s.stop)
                visit(s.body)
            elif isinstance(s, If):
                visit_expr(s.cond)
                visit(s.then)
                visit(s.orelse)
            elif isinstance(s, LibCall):
                carried = True

    visit(loop.body)
    if carried:
        return False
    loaded_vars = _load_dependent_vars(loop.body)
    for buf, idxs in stores.items():
        if buf == STATUS_BUFFER:
            continue  # flags: every writer writes the same value
        if buf in loads and (len(idxs) != 1 or loads[buf] != idxs):
            return False
        if buf in loads and any(_reads_loaded(i, loaded_vars) for i in idxs):
            return False  # out[idx[i]] += ...: indices may repeat (scatter-add)
        if buf in loads and not any(_mentions(i, loop.var) for i in idxs):
            return False  # every iteration updates the same element: carried
    return True


def _mentions(e, name) -> bool:
    if isinstance(e, Var):
        return e.name == name
    if isinstance(e, Load):
        return _mentions(e.index, name)
    if isinstance(e, Call):
        return any(_mentions(a, name) for a in e.args)
    if isinstance(e, Cast):
        return _mentions(e.x, name)
    return False


def _load_dependent_vars(body) -> set:
    """Locals defined in ``body`` (at any depth) whose value depends on a Load."""
    lets = []

    def collect(b):
        for s in b:
            if isinstance(s, Let):
                lets.append(s)
            elif isinstance(s, Loop):
                collect(s.body)
            elif isinstance(s, If):
                collect(s.then)
                collect(s.orelse)

    collect(body)
    out: set = set()
    changed = True
    while changed:
        changed = False
        for s in lets:
            if s.var not in out and _reads_loaded(s.value, out):
                out.add(s.var)
                changed = True
    return out


def _reads_loaded(e, loaded_vars) -> bool:
    if isinstance(e, Load):
        return True
    if isinstance(e, Var):
        return e.name in loaded_vars
    if isinstance(e, Call):
        return any(_reads_loaded(a, loaded_vars) for a in e.args)
    if isinstance(e, Cast):
        return _reads_loaded(e.x, loaded_vars)
    return False


def _check_spans(call: str, spans) -> None:
    """Raise KernelIRError unless each (buffer, offset, count, name) of a library call's
    operands lies inside its buffer (an empty span anywhere)."""
    for buf, off, cnt, name in spans:
        if cnt and (off < 0 or off + cnt > buf.size):
            raise KernelIRError(f"{call} operand {name} out of bounds")
