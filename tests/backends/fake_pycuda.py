"""A stand-in for ``pycuda`` that runs graphc's CUDA runtime on the CPU, for tests.

"Device memory" is host memory (numpy arrays behind integer addresses), memcpy/memset are
``ctypes.memmove``/``memset``, and a module is the generated CUDA C built by the many-thread
host emulation (``cuda_emulation.build(threaded=True)``): a launch runs the kernel with
std::threads for CUDA threads. With it, ``graphc.backends.cuda.runtime`` (binding, launches,
gemm fallback, status flags, fetches, resident variables, traces) runs unmodified.
It mimics only the pycuda calls the runtime makes, with pycuda's signatures (checked against
the pycuda sources); it proves nothing about pycuda itself or a real GPU.
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from tests.backends import cuda_emulation as emu

#: grids are capped (kernels stride over the rest) and blocks shrunk to keep tests fast
MAX_BLOCKS = 4
MAX_THREADS = 64


class _Alloc:
    def __init__(self, nbytes: int):
        # like device memory, not zeroed: all-ones bytes read as NaN (float) or -1 (int),
        # so a kernel that reads storage nobody wrote fails the comparison loudly
        self.buf = np.full(max(nbytes, 1), 0xFF, np.uint8)

    def __int__(self) -> int:
        return self.buf.ctypes.data

    __index__ = __int__


class MemoryError(Exception):  # noqa: A001 - pycuda._driver.MemoryError has this name
    """What pycuda raises when cuMemAlloc fails."""


#: the fake device's memory (tests lower it to provoke out-of-memory)
TOTAL_MEMORY = 1 << 34


class DeviceMemoryPool:
    def __init__(self):
        self.allocations = 0
        self.limit = TOTAL_MEMORY  # bytes one allocation may have (tests lower it)

    def allocate(self, nbytes: int) -> _Alloc:
        if nbytes > self.limit:
            raise MemoryError("cuMemAlloc failed: out of memory")
        self.allocations += 1
        return _Alloc(int(nbytes))

    def free_held(self) -> None:
        pass


def mem_get_info() -> tuple:
    return TOTAL_MEMORY // 2, TOTAL_MEMORY


def _ptr(x) -> int:
    return int(x)


def memcpy_htod(dest, src) -> None:
    src = np.ascontiguousarray(src)
    ctypes.memmove(_ptr(dest), src.ctypes.data, src.nbytes)


def memcpy_dtoh(dest, src) -> None:
    ctypes.memmove(dest.ctypes.data, _ptr(src), dest.nbytes)


def memcpy_dtod(dest, src, size) -> None:
    ctypes.memmove(_ptr(dest), _ptr(src), int(size))


def memset_d8(dest, data, size) -> None:
    ctypes.memset(_ptr(dest), int(data), int(size))


class _Context:
    stack: list = []

    def push(self) -> None:
        _Context.stack.append(self)

    @staticmethod
    def pop() -> None:
        _Context.stack.pop()


Context = _Context


class Device:
    def __init__(self, ordinal: int):
        self.ordinal = ordinal

    @staticmethod
    def count() -> int:
        return 1

    def name(self) -> str:
        return "host emulation"

    def compute_capability(self) -> tuple:
        return (9, 0)

    def get_attribute(self, attr) -> int:
        return 4

    def retain_primary_context(self) -> _Context:
        return _Context()


device_attribute = types.SimpleNamespace(MULTIPROCESSOR_COUNT="MULTIPROCESSOR_COUNT")
function_attribute = types.SimpleNamespace(MAX_THREADS_PER_BLOCK="MAX_THREADS_PER_BLOCK")


class Stream:
    handle = 0x5EED  # a CUstream is a pointer; nonzero, so that it survives c_void_p

    def synchronize(self) -> None:
        pass  # launches run synchronously here


class Event:
    clock = 0.0

    def record(self, stream=None) -> Event:
        Event.clock += 1e-3  # every event a millisecond after the previous one
        self.t = Event.clock
        return self

    def synchronize(self) -> Event:
        return self

    def time_till(self, other) -> float:
        return (other.t - self.t) * 1e3


_ARG = {"P": ctypes.c_void_p, "q": ctypes.c_longlong, "i": ctypes.c_int, "f": ctypes.c_float,
        "d": ctypes.c_double}  # fmt: skip


class _Function:
    def __init__(self, lib, name: str):
        self.lib, self.name = lib, name
        self.launches = []

    def prepare(self, signature) -> _Function:
        self.signature = "".join(signature)
        return self

    def get_attribute(self, attr) -> int:
        return 1024

    def prepared_async_call(self, grid, block, stream, *args) -> None:
        assert len(args) == len(self.signature), (self.name, self.signature, args)
        grid = tuple(grid) + (1,) * (3 - len(grid))
        bx = block[0]
        if not self.name.startswith("gc_gemm_"):  # the tiled GEMM needs its full geometry
            grid = (min(grid[0], MAX_BLOCKS), 1, 1)
            bx = bx if bx == 1 else min(bx, MAX_THREADS)
        assert bx == 1 or bx % 32 == 0, bx
        self.launches.append((grid, block))
        cargs = [_ARG[c](int(a) if c in "Pqi" else float(a)) for c, a in zip(self.signature, args)]
        geometry = [ctypes.c_uint(g) for g in grid] + [ctypes.c_uint(bx)]
        getattr(self.lib, f"emu_{self.name}")(*geometry, *cargs)


class _Module:
    def __init__(self, source: str):
        self.lib = emu.build(source, CACHE, opt="-O0", threaded=True)

    def get_function(self, name: str) -> _Function:
        return _Function(self.lib, name)


CACHE = Path(tempfile.gettempdir()) / "graphc-cuda-test-cache"
_modules: dict = {}


def module_from_buffer(data: bytes) -> _Module:
    """``data`` is the module's CUDA C (the fake nvcc hands back the source)."""
    key = hash(data)
    if key not in _modules:
        _modules[key] = _Module(data.decode())
    return _modules[key]


def init() -> None:
    pass


def install(monkeypatch) -> None:
    """Make ``import pycuda.driver`` / ``pycuda.tools`` give this module's fakes."""
    this = sys.modules[__name__]
    pkg = types.ModuleType("pycuda")
    tools = types.ModuleType("pycuda.tools")
    tools.DeviceMemoryPool = DeviceMemoryPool
    pkg.driver, pkg.tools = this, tools
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", this)
    monkeypatch.setitem(sys.modules, "pycuda.tools", tools)
