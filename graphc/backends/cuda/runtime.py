"""Run a rendered KernelProgram on the GPU with pycuda.

Imported only when ``availability()`` found pycuda and a GPU. One ``Device`` per process
(the primary context of GPU 0, shared with cuBLAS), one stream, a pooled allocator.

A run: dims from the feed shapes and shape checks -> variables bound (uninitialised ones
fail before anything runs) -> feeds copied in once -> kernels launched in order (cuBLAS
or the tiled kernel for ``gemm``) -> status flags checked -> fetches copied out once ->
variable updates handed to the session as ``DeviceArray``s, which stay on the GPU for the
next run (numpy sees them through ``__array__``, copied to the host on first use).
A failed run commits nothing: in-place variable updates write a private copy.

Everything that depends only on the run's sizes (buffer sizes, launch geometry, kernel
argument lists, GEMM arguments, fetch shapes) is worked out once per distinct set of dims
and kept (``_SizePlan``): a repeated run does no size arithmetic in Python, which would
otherwise cost more than the kernels of a small training step.

This module cannot run on machines without a GPU; keep it small and plain.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pycuda.driver as drv
from pycuda.tools import DeviceMemoryPool

from ...errors import InvalidArgumentError, ResourceExhaustedError
from ...kernel.ir import RNG_BUFFER, STATUS_BUFFER
from ...kernel.runtime import (
    bind_variables,
    check_dims,
    check_sizes,
    dim_values,
    raise_status,
    rng_keys,
    shape_of,
)
from . import cublas as _cublas
from . import launch as L

_device = None
_device_lock = threading.Lock()

#: what pycuda raises when cuMemAlloc fails (pycuda._driver.MemoryError)
_OUT_OF_MEMORY = getattr(drv, "MemoryError", MemoryError)


def device() -> Device:
    """The process-wide GPU (created on first use)."""
    global _device
    with _device_lock:
        if _device is None:
            _device = Device()
        return _device


class Device:
    """GPU 0's primary context, its stream, memory pool, cuBLAS handle and loaded modules."""

    def __init__(self):
        drv.init()
        self.device = drv.Device(0)
        self.name = self.device.name()
        major, minor = self.device.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self.sm_count = self.device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
        self.context = self.device.retain_primary_context()
        self.lock = threading.RLock()  # one run at a time on the one stream
        self.modules: dict = {}  # cubin sha -> drv.Module (in-memory module cache)
        with self.active():
            self.stream = drv.Stream()
            self.pool = DeviceMemoryPool()
            self.cublas = _cublas.load()

    @contextmanager
    def active(self):
        self.context.push()
        try:
            yield self
        finally:
            drv.Context.pop()

    def allocate(self, nbytes: int):
        """Pooled device memory; ResourceExhaustedError when the GPU has no more, after
        giving the pool's cached blocks back to the driver once."""
        nbytes = max(int(nbytes), 16)
        try:
            return self.pool.allocate(nbytes)
        except _OUT_OF_MEMORY:
            self.pool.free_held()
        try:
            return self.pool.allocate(nbytes)
        except _OUT_OF_MEMORY as exc:
            free, total = drv.mem_get_info()
            raise ResourceExhaustedError(
                f"out of memory on {self.name}: {nbytes} bytes requested, {free} of {total} "
                f"bytes free ({exc})"
            ) from None

    def load_module(self, key: str, cubin: bytes):
        with self.lock:
            module = self.modules.get(key)
            if module is None:
                with self.active():
                    module = drv.module_from_buffer(cubin)
                self.modules[key] = module
            return module


class DeviceArray:
    """A variable's value resident on the GPU (immutable: runs never write into it)."""

    __graphc_device__ = True

    def __init__(self, dev: Device, alloc, shape: tuple, dtype: np.dtype, ptr: int | None = None):
        self.device = dev
        self.alloc = alloc  # (held: the storage lives as long as this array)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        # the device address (fixed for the allocation's life); ``ptr``: a view inside
        # ``alloc`` (a row of a loop's stacked output)
        self.ptr = int(alloc) if ptr is None else int(ptr)
        self._host = None

    def row(self, i: int) -> DeviceArray:
        """Row ``i`` along the first axis: a view sharing this array's storage."""
        shape = self.shape[1:]
        step = math.prod(shape) * self.dtype.itemsize
        return DeviceArray(self.device, self.alloc, shape, self.dtype, self.ptr + i * step)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __array__(self, dtype=None, copy=None):
        if self._host is None:
            host = np.empty(self.shape, self.dtype)
            if host.nbytes:
                with self.device.lock, self.device.active():
                    self.device.stream.synchronize()
                    drv.memcpy_dtoh(host, self.ptr)
            host.setflags(write=False)
            self._host = host
        out = self._host
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out.copy() if copy else out

    def __repr__(self) -> str:
        return f"<DeviceArray {self.dtype}{list(self.shape)} on {self.device.name}>"


def to_device(dev: Device, value) -> DeviceArray:
    """``value`` as a DeviceArray on ``dev``: itself when it is one, else a copy of the host
    array (one host->device copy)."""
    if isinstance(value, DeviceArray) and value.device is dev:
        return value
    host = np.asarray(value, order="C")  # (ascontiguousarray would make a scalar 1-d)
    with dev.lock, dev.active():
        alloc = dev.allocate(host.nbytes)
        if host.nbytes:
            drv.memcpy_htod(int(alloc), host)
    return DeviceArray(dev, alloc, host.shape, host.dtype)


def device_empty(dev: Device, shape: tuple, dtype) -> DeviceArray:
    """Fresh, uninitialised device storage of ``shape``."""
    dtype = np.dtype(dtype)
    return DeviceArray(dev, dev.allocate(math.prod(shape) * dtype.itemsize), shape, dtype)


def _is_device(value) -> bool:
    return getattr(value, "__graphc_device__", False)


def _signature(params) -> str:
    return "".join("P" if kind == "buffer" else "q" for kind, _ in params)


@dataclass
class _SizePlan:
    """What a run with one set of dims does, with every size already evaluated.

    roots: (root buffer, bytes) of every storage group; steps: per RenderedKernel, its
    launches as ("kernel", function, grid, block, args) with each argument a root buffer
    name (its pointer at run time) or an np.int64, or ("gemm", dtype, calls) with calls
    from ``_gemm_calls``; shapes: every buffer's concrete shape.
    Only the plan used last keeps its scratch storage, so memory stays that of one run.
    """

    roots: list
    steps: list  # [(RenderedKernel, [step...])]
    shapes: dict
    #: device storage kept between runs with these dims, root -> (allocation, address):
    #: every root except those whose new value is handed to a variable (a run overwrites
    #: or zeroes what it reads)
    scratch: dict = field(default_factory=dict)


#: distinct dims sets whose plans a runner keeps (a few batch sizes in turn stay cached)
PLAN_CACHE = 16


class CudaRunner:
    """Runs one KernelProgram's module; ``run(ctx, trace)`` as every backend's runner."""

    target = "cuda"

    def __init__(self, dev: Device, kp, module, cubin_key: str, cubin: bytes):
        self.device = dev
        self.kp = kp
        self.module = module
        self.variant = None  # tests: "rows" / "threads" forces that function where both exist
        self.cu_module = dev.load_module(cubin_key, cubin)
        self.functions: dict = {}
        self.limits: dict = {}
        self.consts: dict = {}
        self.root = {name: self._find_root(name) for name in kp.buffers}
        self.in_place = {self.root[b] for b in kp.var_updates.values()}
        self.plans: OrderedDict = OrderedDict()  # (dims..., variant) -> _SizePlan
        self._last_plan = None
        with dev.lock, dev.active():
            for rk in module.kernels:
                for launch in rk.launches:
                    if launch.kind == "gemm":
                        continue
                    self._prepare(launch.function, launch.params)
                    if launch.alt:
                        self._prepare(launch.alt, launch.alt_params)
            for name, buf in kp.buffers.items():
                if buf.kind == "const":
                    host = np.ascontiguousarray(np.asarray(buf.value, buf.dtype.np))
                    alloc = dev.allocate(host.nbytes)
                    if host.nbytes:
                        drv.memcpy_htod(int(alloc), host)
                    self.consts[name] = alloc

    def _prepare(self, name: str, params) -> None:
        fn = self.cu_module.get_function(name)
        fn.prepare(_signature(params))
        self.functions[name] = fn
        self.limits[name] = fn.get_attribute(drv.function_attribute.MAX_THREADS_PER_BLOCK)

    def _find_root(self, name: str) -> str:
        while self.kp.buffers[name].alias_of is not None:
            name = self.kp.buffers[name].alias_of
        return name

    def close(self) -> None:
        self.consts.clear()  # pooled allocations return to the pool when dropped
        self.plans.clear()
        self._last_plan = None

    # -- a run -----------------------------------------------------------------------------
    def run(self, ctx, trace: list | None = None) -> list:
        return self._run(ctx, trace, None)

    def run_device(self, ctx, trace: list | None = None, into: dict | None = None) -> list:
        """A run whose feeds may be DeviceArrays (used where they are, no copy) and whose
        outputs stay on the device: a list of DeviceArrays, each fresh storage (or a
        feed, constant or resident variable returned as it is; nothing writes into them
        later). ``into``: {output position: DeviceArray} where that output may be written
        (a row of a loop's stacked output): it is, and that very array is returned, when
        the output has its own storage of that shape and dtype. Control-flow loops call
        bodies this way (``control.py``): no loop variable leaves the device."""
        return self._run(ctx, trace, into or {})

    def _run(self, ctx, trace, into) -> list:
        kp = self.kp
        dims = dim_values(kp, ctx.feeds)
        dev = self.device
        # the plan and its kept storage change only under the device lock: a concurrent
        # run of this runner must not drop storage another run is using
        with dev.lock, dev.active():
            plan = self._plan(dims)
            values = bind_variables(kp, ctx)
            owned: dict = {}  # root buffer -> pooled allocation this run owns
            dests = None if into is None else self._destinations(plan, into)
            ptrs = self._bind(plan, ctx, values, owned, dests)
            events = self._launch_all(plan, ptrs, trace is not None)
            if dests is None or events or STATUS_BUFFER in kp.buffers:
                # (a run_device that reads nothing back does not wait: the next launches
                # are queued on the same stream, after these)
                dev.stream.synchronize()
            if STATUS_BUFFER in kp.buffers:
                status = np.empty(plan.shapes[STATUS_BUFFER], np.int32)
                drv.memcpy_dtoh(status, ptrs[self.root[STATUS_BUFFER]])
                raise_status(kp, status)
            if dests is None:
                outputs = [self._fetch(name, plan, ptrs, ctx) for name in kp.outputs]
            else:
                outputs = [self._device_output(name, plan, ptrs, ctx, values, owned, dests)
                           for name in kp.outputs]  # fmt: skip
            self._commit(plan, ptrs, owned, ctx)
        if events:
            self._trace(events, trace)
        return outputs

    def _destinations(self, plan: _SizePlan, into: dict) -> dict:
        """root -> DeviceArray: the outputs of ``into`` written straight into the caller's
        storage (an output buffer is its own storage group; shape and dtype must match)."""
        dests: dict = {}
        for pos, dest in into.items():
            name = self.kp.outputs[pos]
            buf = self.kp.buffers[name]
            root = self.root[name]
            fits = dest.shape == plan.shapes[name] and dest.dtype == buf.dtype.np
            if buf.kind == "output" and root == name and root not in dests and fits:
                dests[root] = dest
        return dests

    def _device_output(self, name, plan, ptrs, ctx, values, owned, dests) -> DeviceArray:
        kp, dev = self.kp, self.device
        buf = kp.buffers[name]
        root = self.root[name]
        if buf.kind == "input":
            return to_device(dev, ctx.feeds[kp.inputs.index(name)])
        if root in dests:
            return dests[root]
        shape, dtype = plan.shapes[name], buf.dtype.np
        if buf.kind == "output" and root in owned:
            return DeviceArray(dev, owned.pop(root), shape, dtype)
        value = values.get(root) if kp.buffers[root].kind == "var" else None
        if isinstance(value, DeviceArray) and value.device is dev and root not in self.in_place:
            return value  # a resident variable, read only: immutable
        out = device_empty(dev, shape, dtype)  # storage the runner keeps: copy it out
        if out.nbytes:
            drv.memcpy_dtod(out.ptr, ptrs[root], out.nbytes)
        return out

    def _plan(self, dims: dict) -> _SizePlan:
        """The cached plan for these dims (checked and built on first sight)."""
        key = (*dims.values(), self.variant)
        plan = self.plans.get(key)
        if plan is None:
            check_dims(self.kp, dims)  # a failing check raises before anything is cached
            plan = self._build_plan(dims)
            self.plans[key] = plan
            if len(self.plans) > PLAN_CACHE:
                self.plans.popitem(last=False)
        self.plans.move_to_end(key)
        if self._last_plan is not None and self._last_plan is not plan:
            self._last_plan.scratch.clear()  # back to the pool: one set of sizes holds memory
        self._last_plan = plan
        return plan

    def _build_plan(self, dims: dict) -> _SizePlan:
        kp = self.kp
        shapes = {name: shape_of(kp, name, dims) for name in kp.buffers}
        # exact sizes, refused past the limit before any device memory is touched
        nbytes_of = check_sizes(shapes, {n: b.dtype.itemsize for n, b in kp.buffers.items()})
        sizes: dict = {}
        for name, nbytes in nbytes_of.items():  # a storage group is as large as its largest
            root = self.root[name]
            sizes[root] = max(sizes.get(root, 0), nbytes)
        steps = []
        for rk in self.module.kernels:
            launches = []
            for launch in rk.launches:
                if launch.kind == "gemm":
                    dtype = kp.buffers[launch.args[2]].dtype
                    calls = [g for g in L.gemm_calls(launch, dims) if g.m and g.n and g.batch]
                    launches.append(("gemm", dtype, self._gemm_calls(dtype, calls)))
                    continue
                geo = self._geometry(launch, dims)
                if geo.function is None:
                    continue
                args = tuple(self.root[n] if kind == "buffer" else np.int64(dims[n])
                             for kind, n in geo.params)  # fmt: skip
                launches.append(("kernel", self.functions[geo.function], geo.grid, geo.block,
                                 args))  # fmt: skip
            steps.append((rk, launches))
        return _SizePlan(list(sizes.items()), steps, shapes)

    def _geometry(self, launch, dims) -> L.Geometry:
        geo = L.configure(launch, dims, self.device.sm_count, self.limits)
        if geo.function is None:
            return geo
        if self.variant == "threads" and launch.alt:
            return L.configure_alt(launch, dims)
        if self.variant == "rows" and launch.kind == "rows":
            block = (min(256, self.limits[launch.function]) // 32 * 32, 1, 1)
            return L.Geometry(launch.function, launch.params, geo.grid, block)
        return geo

    def _bind(self, plan: _SizePlan, ctx, values, owned, dests=None) -> dict:
        """Device pointer of every buffer: inputs/vars/rng copied in, the rest allocated.
        ``dests`` (a ``run_device``): a feed already on the device is used where it is
        (kernels never write an input), outputs get fresh storage or their destination."""
        kp, dev = self.kp, self.device
        ptrs: dict = {}
        for root, nbytes in plan.roots:
            buf = kp.buffers[root]
            if buf.kind == "const":
                ptrs[root] = int(self.consts[root])
                continue
            if dests is not None:
                if buf.kind == "input":
                    feed = ctx.feeds[kp.inputs.index(root)]
                    if _is_device(feed):
                        ptrs[root] = self._device_feed(root, feed, plan)
                        continue
                elif buf.kind == "output":
                    dest = dests.get(root)
                    if dest is not None:
                        ptrs[root] = dest.ptr
                    else:
                        alloc = owned[root] = dev.allocate(nbytes)
                        ptrs[root] = int(alloc)
                    continue
            value = values.get(root) if buf.kind == "var" else None
            resident = isinstance(value, DeviceArray) and value.device is dev
            if resident and root not in self.in_place:
                ptrs[root] = value.ptr  # resident and only read: no copy at all
                continue
            if root in self.in_place:  # its new value goes to a variable: fresh storage
                alloc = owned[root] = dev.allocate(nbytes)
                ptrs[root] = int(alloc)
            else:
                kept = plan.scratch.get(root)
                if kept is None:
                    alloc = dev.allocate(nbytes)
                    kept = plan.scratch[root] = (alloc, int(alloc))
                ptrs[root] = kept[1]
            if buf.kind == "input":
                feed = ctx.feeds[kp.inputs.index(root)]
                host = np.ascontiguousarray(feed, dtype=buf.dtype.np)
                if host.nbytes:
                    drv.memcpy_htod(ptrs[root], host)
            elif buf.kind == "var":
                if resident:
                    if value.nbytes:  # private copy for an in-place update
                        drv.memcpy_dtod(ptrs[root], value.ptr, value.nbytes)
                else:
                    host = np.ascontiguousarray(np.asarray(value), dtype=buf.dtype.np)
                    if host.nbytes:
                        drv.memcpy_htod(ptrs[root], host)
            elif root == RNG_BUFFER:
                keys = rng_keys(kp, ctx)
                if keys.nbytes:
                    drv.memcpy_htod(ptrs[root], keys)
            elif buf.kind == "status":
                drv.memset_d8(ptrs[root], 0, nbytes)
        return ptrs

    def _device_feed(self, root: str, feed, plan: _SizePlan) -> int:
        """The address of a DeviceArray fed to input ``root``, after checking it is this
        GPU's and has the buffer's dtype and shape (kernels read it as such)."""
        buf = self.kp.buffers[root]
        if feed.device is not self.device:
            raise InvalidArgumentError(f"input {root}: a value on another device")
        if feed.dtype != buf.dtype.np or tuple(feed.shape) != tuple(plan.shapes[root]):
            raise InvalidArgumentError(
                f"input {root}: expected {buf.dtype.name} {tuple(plan.shapes[root])}, given "
                f"{feed.dtype.name} {tuple(feed.shape)} (on the device)"
            )
        return feed.ptr

    def _launch_all(self, plan: _SizePlan, ptrs: dict, timed: bool) -> list:
        stream = self.device.stream
        events = []
        for rk, launches in plan.steps:
            if timed:
                start = drv.Event()
                start.record(stream)
            for step in launches:
                if step[0] == "gemm":
                    self._gemm(step[1], step[2], ptrs)
                    continue
                _, fn, grid, block, args = step
                fn.prepared_async_call(
                    grid, block, stream, *[ptrs[a] if type(a) is str else a for a in args]
                )
            if timed:
                end = drv.Event()
                end.record(stream)
                events.append((rk, start, end))
        return events

    def _gemm_calls(self, dtype, calls: list) -> list:
        """Per library GEMM: (A, B, C as (root, byte offset), how to run it): cuBLAS when it
        takes the call, else the tiled kernel with its argument tail evaluated."""
        dev = self.device
        size = dtype.itemsize
        out = []
        for g in calls:
            operands = tuple((self.root[b], off * size)
                             for b, off in ((g.a, g.offset_a), (g.b, g.offset_b),
                                            (g.c, g.offset_c)))  # fmt: skip
            if dev.cublas is not None and dev.cublas.supports(dtype, g):
                out.append((operands, None, g))
                continue
            name, scalar = {
                "float32": ("gc_gemm_f32", np.float32),
                "float64": ("gc_gemm_f64", np.float64),
                "float16": ("gc_gemm_f16", np.float32),
            }[dtype.name]
            fn = self.functions.get(name)
            if fn is None:
                fn = self.cu_module.get_function(name)
                fn.prepare("PPPiiqqqqqqq" + ("dd" if scalar is np.float64 else "ff"))
                self.functions[name] = fn
            tail = (np.int32(g.trans_a), np.int32(g.trans_b),
                    np.int64(g.m), np.int64(g.n), np.int64(g.k), np.int64(g.batch),
                    np.int64(g.stride_a), np.int64(g.stride_b), np.int64(g.stride_c),
                    scalar(g.alpha), scalar(g.beta))  # fmt: skip
            out.append((operands, (fn, g.tiled_grid(), tail), g))
        return out

    def _gemm(self, dtype, calls: list, ptrs: dict) -> None:
        dev = self.device
        for operands, tiled, g in calls:
            a, b, c = (ptrs[root] + offset for root, offset in operands)
            if tiled is None:
                dev.cublas.gemm(dtype, g, a, b, c, dev.stream.handle)
            else:
                fn, grid, tail = tiled
                fn.prepared_async_call(grid, (256, 1, 1), dev.stream, a, b, c, *tail)

    def _fetch(self, name, plan: _SizePlan, ptrs, ctx) -> np.ndarray:
        buf = self.kp.buffers[name]
        if buf.kind == "input":
            return np.array(ctx.feeds[self.kp.inputs.index(name)], dtype=buf.dtype.np)
        host = np.empty(plan.shapes[name], buf.dtype.np)
        if host.nbytes:
            drv.memcpy_dtoh(host, ptrs[self.root[name]])
        return host

    def _commit(self, plan: _SizePlan, ptrs, owned, ctx) -> None:
        """Hand each updated variable to the session as a DeviceArray (no host copy)."""
        kp, dev = self.kp, self.device
        for var, name in kp.var_updates.items():
            buf = kp.buffers[name]
            shape = plan.shapes[name]
            root = self.root[name]
            alloc = owned.pop(root, None)
            if alloc is None:
                # storage this run does not own (a feed, a constant, a resident variable, or
                # one already handed to another variable): the new value gets its own copy
                nbytes = int(np.prod(shape, dtype=np.int64)) * buf.dtype.itemsize
                alloc = dev.allocate(nbytes)
                if nbytes:
                    drv.memcpy_dtod(int(alloc), ptrs[root], nbytes)
            ctx.write_variable(var, DeviceArray(dev, alloc, shape, buf.dtype.np))

    @staticmethod
    def _trace(events, trace: list) -> None:
        t0 = time.perf_counter()
        first = events[0][1]
        last = events[-1][2]
        base = t0 - first.time_till(last) / 1e3  # the first kernel started this long ago
        for rk, start, end in events:
            s = base + first.time_till(start) / 1e3
            e = base + first.time_till(end) / 1e3
            trace.append((rk.name, rk.op_types or rk.ops, s, e))
