"""The cpu target's packed-filter convolution (``conv_packed``) measured two ways.

    python scripts/bench_conv_packed.py shapes [--model resnet50|squeezenet] [--batch 1]
    PYTHONPATH=. /path/to/venv-with-onnxruntime/bin/python scripts/bench_conv_packed.py \\
        models resnet50 --batch 1 --runs 15 [--threads 1]

``shapes``: every convolution shape of ResNet-50 or SqueezeNet (hard-coded below, from the
onnx package's light models), the kernel alone (compiled by itself, called through ctypes on
the calling thread) against numpy's sgemm on the same [M, K] x [K, N] product with the im2col
matrix ready, minimum of several runs; run it pinned to one core (``taskset -c 0``).

``models``: the whole model imported with ``gc.onnx``, graphc with the packed convolution
off (``lower_nn.PACKED_CONV``: im2col + sgemm) and on, and onnxruntime (CPU EP, the same
number of intra-op threads), interleaved run by run; process CPU time with one thread (what
another job on the machine disturbs least), wall time otherwise; medians. Needs onnx and
onnxruntime (the W13 peer's environment).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import numpy as np

import graphc as gc
from graphc.backends.llvm import jit, packedgemm
from graphc.kernel import conv_packed, lower_nn

#: (count, input channels, image size, window, output channels, stride, padding)
SHAPES = {
    "resnet50": [
        (1, 64, 56, 1, 64, 1, 0), (3, 64, 56, 3, 64, 1, 1), (4, 64, 56, 1, 256, 1, 0),
        (2, 256, 56, 1, 64, 1, 0), (1, 256, 56, 1, 128, 1, 0), (1, 128, 56, 3, 128, 2, 1),
        (1, 256, 56, 1, 512, 2, 0), (4, 128, 28, 1, 512, 1, 0), (3, 512, 28, 1, 128, 1, 0),
        (3, 128, 28, 3, 128, 1, 1), (1, 512, 28, 1, 256, 1, 0), (1, 256, 28, 3, 256, 2, 1),
        (1, 512, 28, 1, 1024, 2, 0), (6, 256, 14, 1, 1024, 1, 0), (5, 1024, 14, 1, 256, 1, 0),
        (5, 256, 14, 3, 256, 1, 1), (1, 1024, 14, 1, 512, 1, 0), (1, 512, 14, 3, 512, 2, 1),
        (1, 1024, 14, 1, 2048, 2, 0), (3, 512, 7, 1, 2048, 1, 0), (2, 2048, 7, 1, 512, 1, 0),
        (2, 512, 7, 3, 512, 1, 1), (1, 3, 224, 7, 64, 2, 3),
    ],
    "squeezenet": [
        (1, 3, 224, 3, 64, 2, 0), (1, 64, 55, 1, 16, 1, 0), (2, 16, 55, 1, 64, 1, 0),
        (2, 16, 55, 3, 64, 1, 1), (1, 128, 55, 1, 16, 1, 0), (1, 128, 27, 1, 32, 1, 0),
        (2, 32, 27, 1, 128, 1, 0), (2, 32, 27, 3, 128, 1, 1), (1, 256, 27, 1, 32, 1, 0),
        (1, 256, 13, 1, 48, 1, 0), (2, 48, 13, 1, 192, 1, 0), (2, 48, 13, 3, 192, 1, 1),
        (1, 384, 13, 1, 48, 1, 0), (1, 384, 13, 1, 64, 1, 0), (2, 64, 13, 1, 256, 1, 0),
        (2, 64, 13, 3, 256, 1, 1), (1, 512, 13, 1, 64, 1, 0), (1, 512, 13, 1, 1000, 1, 0),
    ],
}  # fmt: skip


class _Args(ctypes.Structure):
    _fields_ = [(f, ctypes.c_void_p if f in packedgemm.POINTER_FIELDS else ctypes.c_int64)
                for f in packedgemm.FIELDS]  # fmt: skip


def _kernels() -> dict:
    """{nv: ctypes function} of the kernels compiled alone for this machine."""
    obj, _, _ = jit.compile_module(packedgemm.kernels_ir(), opt_level=2)
    loaded = jit.LoadedObject(obj)
    fty = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
    out = {nv: fty(loaded.address(packedgemm.symbol(nv))) for nv in packedgemm.TILE_ROWS}
    out["_keep"] = loaded
    return out


def _im2col(x, k, s, pad):
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    cols = np.empty((n, oh, ow, k, k, c), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j] = xp[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s]
    return cols.reshape(n * oh * ow, k * k * c), oh, ow


def _best(fn, runs) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def shapes(model: str, batch: int) -> None:
    kernels = _kernels()
    rng = np.random.default_rng(0)
    total = [0.0, 0.0]
    for count, c, hw, k, o, s, pad in SHAPES[model]:
        x = rng.standard_normal((batch, hw, hw, c), np.float32)
        f = rng.standard_normal((k, k, c, o), np.float32)
        nv = conv_packed.panel_vectors(o)
        wp = conv_packed.pack_filters(f, nv)
        cols, oh, ow = _im2col(x, k, s, pad)
        m = cols.shape[0]
        out = np.empty((m, o), np.float32)
        args = _Args(m=m, o=o, c=c, h=hw, w=hw, oh=oh, ow=ow, kh=k, kw=k, sh=s, sw=s, dh=1,
                     dw=1, pt=pad, pl=pad, ldc=o, x=x.ctypes.data, wp=wp.ctypes.data,
                     out=out.ctypes.data, row_blocks=1, panels=1 << 20)  # fmt: skip
        fn = kernels[nv]
        fn(ctypes.byref(args), 0, 1)
        want = cols @ f.reshape(-1, o)
        assert np.allclose(out, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
        runs = max(3, min(200, int(2e8 / (m * o * k * k * c))))
        tk = _best(lambda fn=fn, args=args: fn(ctypes.byref(args), 0, 1), runs)
        wm = f.reshape(-1, o).copy()
        tg = _best(lambda a=cols, b=wm, out=out: np.matmul(a, b, out=out), runs)
        flop = 2 * m * o * k * k * c
        total[0] += count * tk
        total[1] += count * tg
        print(f"x{count} M={m} N={o} K={k * k * c} ({k}x{k} s{s}): packed {tk * 1e3:.3f} ms "
              f"({flop / tk / 1e9:.0f} GFLOP/s), sgemm {tg * 1e3:.3f} ms "
              f"({flop / tg / 1e9:.0f}), ratio {tk / tg:.2f}")  # fmt: skip
    print(f"{model} batch {batch}: packed {total[0] * 1e3:.1f} ms, sgemm {total[1] * 1e3:.1f} ms")


def models(name: str, batch: int, runs: int, threads: int) -> None:
    # optional dependencies: the W13 peer's environment
    from graphc.bench import onnx_models as lm
    from graphc.onnx.runner import OnnxModel

    model = lm.with_batch(lm.with_random_weights(lm.light_model(name), 0), batch)
    x = lm.random_input(model, batch, 0)
    peer = lm.onnxruntime_session(model, threads)
    feed = {lm.input_info(model).name: x}
    want = peer.run(None, feed)[0]
    opts = gc.CompileOptions(threads=threads, cache_dir=None)
    ours = {}
    for mode in ("off", "on"):
        lower_nn.PACKED_CONV = mode == "on"
        ours[mode] = OnnxModel(model, "cpu", opts)
        err = float(np.abs(ours[mode].run([x])[0] - want).max())
        print(f"graphc {mode}: max abs error against onnxruntime {err:.2e}")
    lower_nn.PACKED_CONV = True
    clock = time.process_time if threads == 1 else time.perf_counter
    calls = {"off": lambda: ours["off"].run([x]), "on": lambda: ours["on"].run([x]),
             "onnxruntime": lambda: peer.run(None, feed)}  # fmt: skip
    times: dict = {k: [] for k in calls}
    for f in calls.values():
        f()
    for _ in range(runs):
        for k, f in calls.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    what = "process CPU" if threads == 1 else "wall"
    print(f"{name} batch {batch}, {threads} thread(s), {what} ms, median of {runs}: graphc "
          f"off {med['off']:.2f}, on {med['on']:.2f}, onnxruntime {med['onnxruntime']:.2f}; "
          f"ratio {med['off'] / med['onnxruntime']:.2f} -> "
          f"{med['on'] / med['onnxruntime']:.2f}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("shapes", "models"))
    p.add_argument("model", nargs="?", default="resnet50", choices=("resnet50", "squeezenet",
                                                                     "inception_v1"))  # fmt: skip
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.what == "shapes":
        shapes(a.model if a.model in SHAPES else "resnet50", a.batch)
    else:
        models(a.model, a.batch, a.runs, a.threads)


if __name__ == "__main__":
    main()
