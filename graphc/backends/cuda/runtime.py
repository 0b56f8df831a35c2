"""Run a rendered KernelProgram on the GPU with pycuda.

Imported only when ``availability()`` found pycuda and a GPU. One ``Device`` per process
(the primary context of GPU 0, shared with cuBLAS), one stream, a pooled allocator.

A run: dims from the feed shapes and shape checks -> variables bound (uninitialised ones
fail before anything runs) -> feeds copied in once -> kernels launched in order (cuBLAS
or the tiled kernel for ``gemm``) -> status flags checked -> fetches copied out once ->
variable updates handed to the session as ``DeviceArray``s, which stay on the GPU for the
next run (numpy sees them through ``__array__``, copied to the host on first use).
A failed run commits nothing: in-place variable updates write a private copy.

This module cannot run on machines without a GPU; keep it small and plain.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy as np
import pycuda.driver as drv
from pycuda.tools import DeviceMemoryPool

from ...kernel.ir import RNG_BUFFER, STATUS_BUFFER
from ...kernel.runtime import (
    bind_variables,
    check_dims,
    dim_values,
    raise_status,
    rng_keys,
    shape_of,
)
from . import cublas as _cublas
from . import launch as L

_device = None
_device_lock = threading.Lock()


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
        return self.pool.allocate(max(int(nbytes), 16))

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

    def __init__(self, dev: Device, alloc, shape: tuple, dtype: np.dtype):
        self.device = dev
        self.alloc = alloc
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._host = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __array__(self, dtype=None, copy=None):
        if self._host is None:
            host = np.empty(self.shape, self.dtype)
            if host.nbytes:
                with self.device.lock, self.device.active():
                    self.device.stream.synchronize()
                    drv.memcpy_dtoh(host, int(self.alloc))
            host.setflags(write=False)
            self._host = host
        out = self._host
        if dtype is not None and np.dtype(dtype) != out.dtype:
            return out.astype(dtype)
        return out.copy() if copy else out

    def __repr__(self) -> str:
        return f"<DeviceArray {self.dtype}{list(self.shape)} on {self.device.name}>"


def _signature(params) -> str:
    return "".join("P" if kind == "buffer" else "q" for kind, _ in params)


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

    def close(self) -> None:
        self.consts.clear()  # pooled allocations return to the pool when dropped

    # -- a run -----------------------------------------------------------------------------
    def run(self, ctx, trace: list | None = None) -> list:
        kp = self.kp
        dims = dim_values(kp, ctx.feeds)
        check_dims(kp, dims)
        values = bind_variables(kp, ctx)
        dev = self.device
        with dev.lock, dev.active():
            owned: dict = {}  # root buffer -> pooled allocation this run owns
            ptrs = self._bind(dims, ctx, values, owned)
            events = self._launch_all(dims, ptrs, trace is not None)
            dev.stream.synchronize()
            if STATUS_BUFFER in kp.buffers:
                status = np.empty(shape_of(kp, STATUS_BUFFER, dims), np.int32)
                drv.memcpy_dtoh(status, ptrs[STATUS_BUFFER])
                raise_status(kp, status)
            outputs = [self._fetch(name, dims, ptrs, ctx) for name in kp.outputs]
            self._commit(dims, ptrs, owned, ctx)
        if events:
            self._trace(events, trace)
        return outputs

    def _nbytes(self, name: str, dims: dict) -> int:
        buf = self.kp.buffers[name]
        return int(np.prod(shape_of(self.kp, name, dims), dtype=np.int64)) * buf.dtype.itemsize

    def _root(self, name: str) -> str:
        while self.kp.buffers[name].alias_of is not None:
            name = self.kp.buffers[name].alias_of
        return name

    def _bind(self, dims, ctx, values, owned) -> dict:
        """Device pointer of every buffer: inputs/vars/rng copied in, the rest allocated."""
        kp, dev = self.kp, self.device
        sizes: dict = {}
        for name in kp.buffers:  # a storage group is as large as its largest member
            root = self._root(name)
            sizes[root] = max(sizes.get(root, 0), self._nbytes(name, dims))
        in_place = {self._root(b) for b in kp.var_updates.values()}
        ptrs: dict = {}
        for root, nbytes in sizes.items():
            buf = kp.buffers[root]
            if buf.kind == "const":
                ptrs[root] = int(self.consts[root])
                continue
            value = values.get(root) if buf.kind == "var" else None
            if isinstance(value, DeviceArray) and value.device is dev and root not in in_place:
                ptrs[root] = int(value.alloc)  # resident and only read: no copy at all
                continue
            alloc = dev.allocate(nbytes)
            owned[root] = alloc
            ptrs[root] = int(alloc)
            if buf.kind == "input":
                feed = ctx.feeds[kp.inputs.index(root)]
                host = np.ascontiguousarray(feed, dtype=buf.dtype.np)
                if host.nbytes:
                    drv.memcpy_htod(ptrs[root], host)
            elif buf.kind == "var":
                if isinstance(value, DeviceArray) and value.device is dev:
                    if value.nbytes:  # private copy for an in-place update
                        drv.memcpy_dtod(ptrs[root], int(value.alloc), value.nbytes)
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
        for name in kp.buffers:
            ptrs[name] = ptrs[self._root(name)]
        return ptrs

    def _launch_all(self, dims, ptrs, timed: bool) -> list:
        dev = self.device
        events = []
        for rk in self.module.kernels:
            if timed:
                start = drv.Event()
                start.record(dev.stream)
            for launch in rk.launches:
                if launch.kind == "gemm":
                    self._gemm(launch, dims, ptrs)
                    continue
                geo = L.configure(launch, dims, dev.sm_count, self.limits)
                if geo.function is None:
                    continue
                if self.variant == "threads" and launch.alt:
                    geo = L.configure_alt(launch, dims)
                elif self.variant == "rows" and launch.kind == "rows":
                    geo = L.Geometry(
                        launch.function,
                        launch.params,
                        geo.grid,
                        (min(256, self.limits[launch.function]) // 32 * 32, 1, 1),
                    )
                args = [ptrs[n] if kind == "buffer" else np.int64(dims[n])
                        for kind, n in geo.params]  # fmt: skip
                self.functions[geo.function].prepared_async_call(
                    geo.grid, geo.block, dev.stream, *args
                )
            if timed:
                end = drv.Event()
                end.record(dev.stream)
                events.append((rk, start, end))
        return events

    def _gemm(self, launch, dims, ptrs) -> None:
        dev, kp = self.device, self.kp
        dtype = kp.buffers[launch.args[2]].dtype
        size = dtype.itemsize
        for g in L.gemm_calls(launch, dims):
            if g.m == 0 or g.n == 0 or g.batch == 0:
                continue
            a = ptrs[g.a] + g.offset_a * size
            b = ptrs[g.b] + g.offset_b * size
            c = ptrs[g.c] + g.offset_c * size
            if dev.cublas is not None and dev.cublas.supports(dtype, g):
                dev.cublas.gemm(dtype, g, a, b, c, dev.stream.handle)
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
            fn.prepared_async_call(
                g.tiled_grid(), (256, 1, 1), dev.stream,
                a, b, c, np.int32(g.trans_a), np.int32(g.trans_b),
                np.int64(g.m), np.int64(g.n), np.int64(g.k), np.int64(g.batch),
                np.int64(g.stride_a), np.int64(g.stride_b), np.int64(g.stride_c),
                scalar(g.alpha), scalar(g.beta),
            )  # fmt: skip

    def _fetch(self, name, dims, ptrs, ctx) -> np.ndarray:
        buf = self.kp.buffers[name]
        if buf.kind == "input":
            return np.array(ctx.feeds[self.kp.inputs.index(name)], dtype=buf.dtype.np)
        host = np.empty(shape_of(self.kp, name, dims), buf.dtype.np)
        if host.nbytes:
            drv.memcpy_dtoh(host, ptrs[name])
        return host

    def _commit(self, dims, ptrs, owned, ctx) -> None:
        """Hand each updated variable to the session as a DeviceArray (no host copy)."""
        kp, dev = self.kp, self.device
        for var, name in kp.var_updates.items():
            buf = kp.buffers[name]
            shape = shape_of(kp, name, dims)
            root = self._root(name)
            alloc = owned.pop(root, None)
            if alloc is None:
                # storage this run does not own (a feed, a constant, a resident variable, or
                # one already handed to another variable): the new value gets its own copy
                nbytes = self._nbytes(name, dims)
                alloc = dev.allocate(nbytes)
                if nbytes:
                    drv.memcpy_dtod(int(alloc), ptrs[name], nbytes)
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
