"""Programs split into several LLVM modules compiled on parallel threads (llvm/split.py)."""

import re

import llvmlite.binding as llvm
import numpy as np
import pytest

import graphc as gc
from graphc.backends.llvm import jit, split
from graphc.bench.workloads import build_mlp_step, mlp_inputs

SIZES = {"inputs": 20, "hidden": 16, "classes": 5, "batch": 7}


@pytest.fixture
def always_split(monkeypatch):
    """Split even small programs, and record the module texts handed to LLVM."""
    monkeypatch.setattr(split, "MIN_SPLIT_COST", 0)
    texts = []
    orig = jit.compile_modules

    def spy(ir_texts, opt_level=3, pic=False, cpu=None):
        texts.append(list(ir_texts))
        return orig(ir_texts, opt_level, pic, cpu)

    monkeypatch.setattr(jit, "compile_modules", spy)
    return texts


def _mlp():
    inputs = mlp_inputs(SIZES, np.random.default_rng(0), SIZES["batch"])
    g, x, labels, loss, step, params, init = build_mlp_step(SIZES, inputs)
    feed = {x: inputs["x"], labels: inputs["labels"]}
    return g, feed, [loss, step], params, init


def _train(target, options=None, steps=2):
    g, feed, fetches, params, init = _mlp()
    with gc.Session(graph=g, target=target, options=options) as s:
        s.run(init)
        losses = [s.run(fetches, feed_dict=feed)[0] for _ in range(steps)]
        exe = s.compile(fetches, list(feed)) if target == "cpu" else None
        return losses, s.run(params), exe


def _step(compiled):
    """The module texts of the training step: the largest program compiled."""
    return max(compiled, key=lambda texts: sum(map(len, texts)))


def _defined(text):
    return set(re.findall(r'^define [^@]*@"?([\w.]+)"?\(', text, re.M))


def test_split_step_matches_reference(always_split):
    want_losses, want_params, _ = _train("reference")
    losses, params, exe = _train("cpu", gc.CompileOptions(threads=2, cache_dir=None))
    texts = _step(always_split)
    assert len(texts) == 2
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5, atol=1e-6)
    for p, w in zip(params, want_params):
        np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)
    assert exe.dump_ir("llvm").count(jit.MODULE_SEP) == 1


def test_split_modules_structure(always_split):
    _train("cpu", gc.CompileOptions(threads=2, cache_dir=None), steps=1)
    texts = _step(always_split)
    defs = [_defined(t) for t in texts]
    assert "gc_entry" in defs[0]
    # the worker pool is linked from llvm/pool.py, never defined by a program module
    assert all("gc_parallel_for" not in d for d in defs)
    kernels = {n for d in defs for n in d if n.startswith("k")}
    assert kernels and all(any(n in d for d in defs) for n in kernels)
    for a in range(len(defs)):  # each kernel function in exactly one module ...
        for b in range(a + 1, len(defs)):
            assert not {n for n in defs[a] & defs[b] if not n.startswith("gc.")}
    for d in defs:  # ... with the other functions of its kernel
        for n in d:
            if n.startswith("k"):
                head = n.split(".")[0]
                assert {m for dd in defs for m in dd if m.split(".")[0] == head} <= d
    exp_users = [t for t in texts if "@gc.exp.f32" in t or '@"gc.exp.f32"' in t]
    assert exp_users and all("gc.exp.f32" in _defined(t) for t in exp_users)
    ctx = llvm.create_context()
    for t in texts:  # every module is valid on its own
        llvm.parse_assembly(t, context=ctx).verify()


def test_one_thread_or_small_program_is_not_split(always_split, monkeypatch):
    _train("cpu", gc.CompileOptions(threads=1, cache_dir=None), steps=1)
    monkeypatch.setattr(split, "MIN_SPLIT_COST", 10**9)
    _train("cpu", gc.CompileOptions(threads=2, cache_dir=None), steps=1)
    assert always_split and all(len(t) == 1 for t in always_split)


def test_split_program_loads_from_disk_cache(always_split, tmp_path):
    opts = gc.CompileOptions(threads=2, cache_dir=tmp_path)
    losses, params, exe = _train("cpu", opts)
    compiles = len(always_split)
    assert len(_step(always_split)) == 2
    assert not exe.stats["loaded_from_disk"]
    losses2, params2, exe2 = _train("cpu", opts)
    assert exe2.stats["loaded_from_disk"] and len(always_split) == compiles  # all loaded
    np.testing.assert_array_equal(losses, losses2)
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p, q)


def test_compile_modules_reraises_error_of_a_worker_thread():
    ok = "define i32 @f() {\n  ret i32 1\n}\n"
    with pytest.raises(RuntimeError):
        jit.compile_modules([ok, "this is not LLVM IR"])
    objs, text, secs = jit.compile_modules([ok, ok.replace("@f", "@g")])
    assert len(objs) == 2 and text.count(jit.MODULE_SEP) == 1 and secs["llvm_wall"] > 0


def _twin_program():
    """Three kernels: a = x * 2 and b = y * 2 (the same code on other buffers), c = x + y."""
    from graphc import dtypes as dt
    from graphc.expr import Const, Dim, Load, Math, Var, i64
    from graphc.kernel.ir import Buffer, Kernel, KernelProgram, Loop, Store

    f32 = dt.float32
    n = Dim("n")
    i = Var("i", dt.int64)

    def loop(out, value):
        return (Loop("i", i64(0), n, (Store(out, i, value),), parallel=True),)

    buf = {k: Buffer(k, f32, (n,), "input" if k in "xy" else "output") for k in "xyabc"}
    two = Const(2.0, f32)
    return KernelProgram(
        buffers=buf,
        kernels=[
            Kernel("double_x", loop("a", Math.MUL(Load("x", i, f32), two)), ops=("a",)),
            Kernel("double_y", loop("b", Math.MUL(Load("y", i, f32), two)), ops=("b",)),
            Kernel("sum", loop("c", Math.ADD(Load("x", i, f32), Load("y", i, f32))), ops=("c",)),
        ],
        dims={"n": (0, 0)},
        inputs=("x", "y"),
        outputs=("a", "b", "c"),
    )


def test_identical_kernels_are_compiled_once(rng):
    from graphc.backends.llvm import compile_kernel_program
    from graphc.backends.llvm.render import Renderer
    from graphc.runtime_state import RunContext

    jit.host()
    module = Renderer(_twin_program()).render()
    (text,) = split.split_module(module, 1)
    kernels = {n.split(".")[0] for n in _defined(text) if n.startswith("k")}
    assert kernels == {"k0", "k2"}  # k1 (double_y) runs k0's code
    assert '@"k0.double_x"(' in text.split('@"gc_entry"', 1)[1]

    c = compile_kernel_program(_twin_program(), gc.CompileOptions(cache_dir=None))
    x, y = rng.standard_normal((2, 1001)).astype(np.float32)
    trace = []
    a, b, s = c.runner.run(RunContext({}, {}, [x, y]), trace)
    np.testing.assert_array_equal(a, x * 2)
    np.testing.assert_array_equal(b, y * 2)
    np.testing.assert_array_equal(s, x + y)
    assert [t[0] for t in trace] == ["double_x", "double_y", "sum"]  # still one per kernel


def test_compile_modules_without_a_free_thread(monkeypatch):
    """A module whose thread cannot start is compiled on the calling thread."""
    import threading

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ok = "define i32 @f() {\n  ret i32 1\n}\n"
    objs, text, _ = jit.compile_modules([ok, ok.replace("@f", "@g"), ok.replace("@f", "@h")])
    assert len(objs) == 3 and all(objs) and "@h" in text


def test_concurrent_split_compiles_in_two_sessions(always_split):
    """Two threads compiling split programs at once (four LLVM modules in flight) give the
    reference results: each module has an LLVM context of its own."""
    import threading
    import traceback

    want_losses, want_params, _ = _train("reference")
    results, errors = [], []

    def train():
        try:
            results.append(_train("cpu", gc.CompileOptions(threads=2, cache_dir=None)))
        except BaseException:  # reported below, with where it came from
            errors.append(traceback.format_exc())

    for _ in range(2):
        threads = [threading.Thread(target=train) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(results) == 4
    for losses, params, _ in results:
        np.testing.assert_allclose(losses, want_losses, rtol=1e-5, atol=1e-6)
        for p, w in zip(params, want_params):
            np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)
