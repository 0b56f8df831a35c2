"""Control flow on the cuda target (graphc/backends/cuda/control.py), run by the unmodified
cuda runtime on the fake pycuda whose kernels run in the host emulation
(tests/backends/fake_pycuda.py): while_loop, cond, scan, dynamic_rnn and their gradients,
compared with the reference interpreter, and the device->host copies a loop makes counted.

This checks the host-side loop logic and the generated kernels of the bodies without a GPU;
what only a GPU shows (pycuda against a driver, timings) is not checked here.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu import loop_bodies
from tests.backends import cuda_emulation as emu
from tests.backends import fake_pycuda
from tests.backends.test_cuda_render import batch_source, needs_nvcc, ptx_cache  # noqa: F401
from tests.backends.test_cuda_runtime_emulated import (
    REAL_COMPILE_SOURCE,
    fake_gpu,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.skipif(emu.available() is not None, reason=str(emu.available()))

OPTS = gc.CompileOptions(cache_dir=None)


@pytest.fixture
def gpu(monkeypatch, fake_gpu):  # noqa: F811 - the fixture above
    """fake_gpu, with backends/cuda/control.py imported afresh over its runtime module."""
    monkeypatch.delitem(sys.modules, "graphc.backends.cuda.control", raising=False)
    yield fake_gpu
    monkeypatch.delitem(sys.modules, "graphc.backends.cuda.control", raising=False)


@pytest.fixture
def dtoh(monkeypatch, gpu):
    """The emulated memcpy_dtoh calls, as (bytes,) per call, while the fixture is active."""
    calls: list = []
    real = fake_pycuda.memcpy_dtoh

    def counting(dest, src):
        calls.append(dest.nbytes)
        real(dest, src)

    monkeypatch.setattr(fake_pycuda, "memcpy_dtoh", counting)
    return calls


def run_on(graph, fetches, feed, target, init=False):
    with gc.Session(graph=graph, target=target, options=OPTS) as s:
        if init:
            s.run(gc.global_variables_initializer())
        return s.run(fetches, feed), s


def compare(graph, fetches, feed=None, init=False, rtol=1e-5, atol=1e-6):
    """Runs on the reference and the (emulated) cuda target; returns the cuda results."""
    want, _ = run_on(graph, fetches, feed, "reference", init)
    got, _ = run_on(graph, fetches, feed, "cuda", init)
    for w, g in zip(_leaves(want), _leaves(got)):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return got


def _leaves(x):
    if isinstance(x, list | tuple):
        return [v for item in x for v in _leaves(item)]
    return [x]


def test_while_loop_data_dependent_trips_reads_one_flag_per_iteration(dtoh):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 3))
        limit = gc.placeholder(gc.float32, ())

        def body(i, v):
            return i + 1, v * 1.5 + 0.25

        i, v = gc.while_loop(lambda i, v: gc.reduce_sum(v) < limit, body,
                             [gc.constant(0), x])  # fmt: skip
    a = np.linspace(0.1, 0.6, 6, dtype=np.float32).reshape(2, 3)
    for lim in (40.0, 1.0):  # 5 trips, then zero trips
        before = len(dtoh)
        got = compare(g, [i, v], {x: a, limit: np.float32(lim)})
        cuda_reads = len(dtoh) - before
        trips = int(got[0])
        assert trips == (6 if lim == 40.0 else 0)
        # the reference reads nothing from the device: every copy counted is cuda's, one
        # one-byte flag per condition evaluated (trips + 1) and the two fetches
        assert cuda_reads <= trips + 1 + 2, dtoh[before:]
        assert all(n <= 6 * 4 for n in dtoh[before:])


def test_maximum_iterations_and_nested_loops(gpu):
    g = gc.Graph()
    with g.as_default():
        w = gc.placeholder(gc.float32, (None,))
        m = gc.placeholder(gc.int32, ())
        capped = gc.while_loop(lambda i: i < 100, lambda i: i + 1, [gc.constant(0)],
                               maximum_iterations=m)  # fmt: skip

        def outer(i, acc):
            def inner(j, a):
                return j + 1, a + w * 0.5  # captures from two levels up

            _, a = gc.while_loop(lambda j, a: j < i, inner, (gc.constant(0), acc))
            return i + 1, a

        _, acc = gc.while_loop(lambda i, a: i < 4, outer, (gc.constant(0), gc.zeros_like(w)))
    for trips in (0, 7):
        got = compare(g, [capped, acc], {w: np.array([2.0, 4.0, 6.0], np.float32), m: trips})
        assert int(got[0]) == trips
        np.testing.assert_allclose(got[1], np.array([2.0, 4.0, 6.0]) * 0.5 * 6)


def test_cond_runs_only_the_taken_branch(gpu):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 4))
        p = gc.placeholder(gc.bool, ())
        y = gc.cond(p, lambda: gc.nn.softmax(x * 2.0), lambda: gc.tanh(x) - 1.0)
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        exe = s.compile(y, [x, p])
        (step,) = [st for st in exe.runner.steps if st[0] == "control"]
        branches = step[2].runners

        def launches(attr):
            return sum(len(fn.launches) for fn in branches[attr].functions.values())

        for pred in (True, False, True):
            before = {attr: launches(attr) for attr in ("then", "else")}
            want, _ = run_on(g, y, {x: a, p: pred}, "reference")
            np.testing.assert_allclose(s.run(y, {x: a, p: pred}), want, rtol=1e-5, atol=1e-6)
            taken, other = ("then", "else") if pred else ("else", "then")
            assert launches(taken) > before[taken] and launches(other) == before[other]
        assert exe.stats["host_fallback_ops"] == ["If"]


class _Unbuilt:
    """A fake module that builds no host library (for tests that only compile)."""

    def get_function(self, name):
        return fake_pycuda._Function(None, name)


def _lstm(batch_dim=None):
    """A small LSTM over x [batch, time, 5] (float64): (x, loss, outputs, grads)."""
    x = gc.placeholder(gc.float64, (batch_dim, None, 5), name="x")
    w = (np.random.default_rng(0).standard_normal((5 + 4, 16)) * 0.4).astype(np.float64)
    cell = gc.nn.rnn_cell.LSTMCell(4, initializer=lambda shape, dtype: gc.constant(w))
    outputs, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float64)
    loss = gc.reduce_sum(outputs * outputs) + gc.reduce_sum(gc.tanh(state.c))
    grads = gc.gradients(loss, [x] + list(cell.variables))
    return x, loss, outputs, grads


def test_dynamic_rnn_lstm_forward_and_gradient_copy_nothing_back_per_step(dtoh, monkeypatch):
    """A scan's trip count is known: no device->host copy at all inside the loops; only the
    fetches come back. Several batch sizes (None dims) and sequence lengths, zero steps
    included, on one compiled executable. On the device, one copy a step: the new state c
    is written by the step into the forward loop's history (the next step's row), the
    output h is stacked in place and copied into the history."""
    copies: list = []
    real = fake_pycuda.memcpy_dtod
    monkeypatch.setattr(fake_pycuda, "memcpy_dtod",
                        lambda d, src, size: (copies.append(size), real(d, src, size)))  # fmt: skip
    g = gc.Graph()
    with g.as_default():
        x, loss, outputs, grads = _lstm()
    fetches = [loss, outputs, *grads]
    rng = np.random.default_rng(1)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        s.run(gc.global_variables_initializer())
        per_run = []
        for batch, steps in ((3, 6), (1, 2), (2, 0)):
            xs = rng.standard_normal((batch, steps, 5))
            want, _ = run_on(g, fetches, {x: xs}, "reference", init=True)
            before, copied = len(dtoh), len(copies)
            got = s.run(fetches, {x: xs})
            per_run.append(len(copies) - copied)
            # the fetches (a 0-byte one copies nothing) and the predicates of dynamic_rnn's
            # two If ops (time-major or not: one byte each, once a run), whatever the steps
            reads = dtoh[before:]
            assert len(reads) <= len(fetches) + 2 and reads.count(1) == 2, reads
            for a, b in zip(got, want):
                assert np.shape(a) == np.shape(b)
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
        assert s.cache_info()["compiles"] == 2  # the initialiser and the step
    assert per_run[0] - per_run[1] == 6 - 2, per_run


def test_scan_rows_are_written_in_place_and_reverse_scan_gradient(gpu, monkeypatch):
    """A scan's stacked rows go straight into one preallocated device array: the body
    writes rows 1.. itself, so the device-to-device copies of a run do not grow with the
    number of steps, nor do the host's waits for the stream (the steps' launches are
    queued without waiting). Values and gradients of a reverse scan match the reference."""
    copies: list = []
    real = fake_pycuda.memcpy_dtod

    def counting(dest, src, size):
        copies.append(int(size))
        real(dest, src, size)

    monkeypatch.setattr(fake_pycuda, "memcpy_dtod", counting)
    waits: list = []
    monkeypatch.setattr(fake_pycuda.Stream, "synchronize", lambda self: waits.append(1))
    g = gc.Graph()
    with g.as_default():
        e = gc.placeholder(gc.float32, (None, 3))
        w = gc.placeholder(gc.float32, (3,))
        fwd = gc.scan(lambda a, x: gc.tanh(a * w + x), e, initializer=gc.zeros_like(w),
                      back_prop=False)  # fmt: skip
        rev = gc.scan(lambda a, x: a * gc.cos(x) + w, e, reverse=True)
        loss = gc.reduce_sum(rev * rev)
        grads = gc.gradients(loss, [e, w])
    rng = np.random.default_rng(4)
    wv = np.array([0.5, -0.3, 0.8], np.float32)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        counts = []
        for steps in (3, 12):
            ev = rng.uniform(-1, 1, (steps, 3)).astype(np.float32)
            want, _ = run_on(g, fwd, {e: ev, w: wv}, "reference")
            before, waited = len(copies), len(waits)
            np.testing.assert_allclose(s.run(fwd, {e: ev, w: wv}), want, rtol=1e-5, atol=1e-6)
            counts.append((len(copies) - before, len(waits) - waited))
        # (the first row, ...): not per step; the host waits for the GPU only to fetch
        assert counts[0] == counts[1] and counts[0][0] <= 3 and counts[0][1] <= 2, counts
        # with the gradient: the forward loop's accumulator is both a stacked output and the
        # history (the variable at the start of each step): one device copy a step, no more
        counts = []
        for steps in (3, 12):
            feed = {e: rng.uniform(-1, 1, (steps, 3)).astype(np.float32), w: wv}
            want, _ = run_on(g, [loss, *grads], feed, "reference")
            before = len(copies)
            got = s.run([loss, *grads], feed)
            counts.append(len(copies) - before)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert counts[1] - counts[0] <= 12 - 3, counts


def test_while_loop_gradient_and_variables_in_the_body(gpu):
    """The gradient of a while_loop with a data-dependent trip count (a loop whose history
    is stacked from device rows at the end); a variable updated in a loop body is seen by
    the next iteration and committed with the run."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, (None, 2))
        wv = gc.placeholder(gc.float64, (2,))
        n = gc.placeholder(gc.int32, ())

        def body(i, y, s):
            return i + 1, gc.sin(y) * wv + y, s + gc.reduce_sum(y * y)

        _, y, s = gc.while_loop(lambda i, y, s: i < n, body, (0, x, gc.constant(0.0, gc.float64)))
        loss = gc.reduce_sum(y) + s
        grads = gc.gradients(loss, [x, wv])
        v = gc.Variable(np.float32(1.0), name="v")

        def step(i):
            with gc.control_dependencies([v.assign(v * 2.0)]):
                return i + 1

        counted = gc.while_loop(lambda i: i < 3, step, [gc.constant(0)])
    rng = np.random.default_rng(5)
    for trips, batch in ((0, 3), (4, 2)):
        feed = {x: rng.uniform(-1, 1, (batch, 2)), wv: rng.uniform(0.5, 1.5, 2), n: trips}
        compare(g, [loss, *grads], feed, rtol=1e-9, atol=1e-11)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        s.run(v.initializer)
        assert s.run(counted) == 3 and s.run(v) == 8.0
        s.run(counted)
        assert s.run(v) == 64.0


def test_bad_input_gives_clear_errors(gpu):
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, (None,))
        b = gc.placeholder(gc.float32, (None,))
        pair = gc.scan(lambda acc, xy: acc + xy[0] * xy[1], (a, b), initializer=gc.constant(0.0))
        grow = gc.while_loop(lambda v: gc.size(v) < 4, lambda v: gc.concat([v, v], 0), [a],
                             shape_invariants=[(None,)])  # fmt: skip
        v = gc.Variable(np.float32(1.0), name="v")

        def halve(i, x):
            with gc.control_dependencies([v.assign(x)]):
                return i + 1, gc.debugging.check_numerics(gc.log(x - 1.0), "bad log") * 0.0 + x

        _, checked = gc.while_loop(lambda i, x: i < 2, halve, [gc.constant(0), gc.constant(3.0)])
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        with pytest.raises(gc.errors.InvalidArgumentError, match="different lengths"):
            s.run(pair, {a: np.ones(3, np.float32), b: np.ones(4, np.float32)})
        np.testing.assert_allclose(
            s.run(pair, {a: np.ones(3, np.float32), b: np.full(3, 2.0, np.float32)}), [2, 4, 6]
        )
        np.testing.assert_allclose(s.run(grow, {a: np.ones(1, np.float32)}), np.ones(4))
        s.run(v.initializer)
        assert s.run(checked) == 3.0 and s.run(v) == 3.0
    g2 = gc.Graph()
    with g2.as_default():
        x = gc.placeholder(gc.float32, ())
        w = gc.Variable(np.float32(5.0), name="w")

        def body(i, y):
            with gc.control_dependencies([w.assign(y)]):
                return i + 1, gc.debugging.check_numerics(gc.log(y), "negative") * 0.0 + y - 2.0

        _, y = gc.while_loop(lambda i, y: i < 3, body, [gc.constant(0), x])
    with gc.Session(graph=g2, target="cuda", options=OPTS) as s:
        s.run(w.initializer)
        with pytest.raises(gc.errors.InvalidArgumentError, match="negative"):
            s.run(y, {x: np.float32(3.0)})  # the third iteration logs -1
        assert s.run(w) == 5.0  # the failed run committed nothing
        assert s.run(y, {x: np.float32(7.0)}) == 1.0 and s.run(w) == 3.0
    g3 = gc.Graph()
    with g3.as_default():
        x = gc.placeholder(gc.float32, ())
        printed = gc.while_loop(lambda v: v < 3.0, lambda v: gc.print(v) + 1.0, [x])
    with gc.Session(graph=g3, target="cuda", options=OPTS) as s:
        # an op the cuda target has no kernel for, inside a body: refused, naming the op
        with pytest.raises(gc.errors.UnimplementedError, match="Print"):
            s.run(printed, {x: np.float32(0.0)})


@needs_nvcc
def test_loop_bodies_compile_to_ptx(gpu, monkeypatch, ptx_cache):  # noqa: F811
    """Every module of the LSTM's forward and gradient loops (segments, bodies, branches)
    goes through the real nvcc, to PTX, as one unit (compiled only: the fake pycuda builds
    no host library here)."""
    import graphc.backends.cuda as cuda_backend
    from graphc.backends.cuda.render import render_program

    kps: list = []

    def recording(kp):
        kps.append(kp)
        return render_program(kp)

    monkeypatch.setattr(cuda_backend, "render_program", recording)
    monkeypatch.setattr(fake_pycuda, "module_from_buffer", lambda data: _Unbuilt())
    g = gc.Graph()
    with g.as_default():
        x, loss, outputs, grads = _lstm()
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        exe = s.compile([loss, outputs, *grads], [x])
    assert sorted(exe.stats["host_fallback_ops"]) == ["If", "While"]
    assert len(kps) >= 6
    modules = [render_program(kp, prefix=f"m{i}_") for i, kp in enumerate(kps)]
    ptx, _ = REAL_COMPILE_SOURCE(batch_source(modules), "sm_90", "ptx", cache_dir=ptx_cache)
    text = ptx.decode()
    for m in modules:
        for fn in m.functions:
            assert f".entry {fn}(" in text, fn


def test_random_draws_in_a_body_match_the_reference(gpu):
    """Each iteration of a loop body draws its own numbers, the same as the reference's
    (the iteration's stream counter reaches the kernels through the run's random keys)."""
    g = gc.Graph()
    with g.as_default():
        e = gc.placeholder(gc.float32, (None, 8))
        r = gc.scan(lambda a, x: a + gc.nn.dropout(x, rate=0.5, seed=3), e,
                    initializer=gc.zeros((8,)))  # fmt: skip
    got = compare(g, r, {e: np.ones((4, 8), np.float32)})
    assert len({tuple(row) for row in np.diff(got, axis=0, prepend=0)}) > 1  # fresh per step


def test_bodies_come_from_the_disk_cache_and_runs_trace(gpu, tmp_path, monkeypatch):
    """With a cache_dir, a second session compiles no segment or body (no pass, no nvcc);
    a traced run lists the loops and the segments' kernels; an exported program with a
    loop loads and runs on cuda."""
    from graphc.backends.cuda import nvcc

    g = gc.Graph()
    with g.as_default():
        e = gc.placeholder(gc.float32, (None, 8), name="e")
        w = gc.Variable(np.full(8, 0.5, np.float32), name="w")
        r = gc.scan(lambda a, x: gc.tanh(a * w + x), e, initializer=gc.zeros((8,)))
        loss = gc.reduce_sum(r)
        grad = gc.gradients(loss, [w])[0]
    ev = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    want, _ = run_on(g, [loss, grad], {e: ev}, "reference", init=True)
    opts = gc.CompileOptions(cache_dir=tmp_path)
    for second in (False, True):
        with monkeypatch.context() as m:
            if second:
                m.setattr(nvcc, "compile_source", lambda *a, **k: 1 / 0)
            with gc.Session(graph=g, target="cuda", options=opts) as s:
                s.run(w.initializer)
                meta = gc.RunMetadata()
                got = s.run([loss, grad], {e: ev}, gc.RunOptions(trace=True), meta)
                names = [st.name for st in meta.step_stats]
                path = gc.export(s, tmp_path / "m.gcx", {"e": e}, {"loss": loss})
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert "host_fallback:scan/While" in names and len(names) > 2, names
    np.testing.assert_allclose(gc.load(path, target="cuda")(e=ev)["loss"], want[0], rtol=1e-5)


def test_shared_batch_size_fuses_the_gradient_body_and_broadcasts_run_the_plain_body(
    gpu, monkeypatch
):
    """The cpu target's shared dims (backends/cpu/body_dims.py) and loop-invariant prologue
    on cuda: the LSTM gradient body compiles to fewer kernels; inputs whose sizes broadcast
    (a batch of 1 against 2) run the bodies compiled without them, and a size that really
    mismatches fails clearly."""

    def grad_body_kernels():
        g = gc.Graph()
        with g.as_default():
            x, loss, outputs, grads = _lstm()
        with monkeypatch.context() as m:  # compiled only
            m.setattr(fake_pycuda, "module_from_buffer", lambda data: _Unbuilt())
            with gc.Session(graph=g, target="cuda", options=OPTS) as s:
                exe = s.compile([loss, *grads], [x])
        # the step product's transposed weight is made once per run (loop_invariant.py)
        assert any("While_grad/While/prologue/" in k.name for k in exe.kernels)
        return [k for k in exe.kernels if "While_grad/While/body/" in k.name]

    shared = grad_body_kernels()
    with monkeypatch.context() as m:
        m.setattr(loop_bodies, "share_dims", lambda *a: None)  # (cuda prepares bodies there)
        plain = grad_body_kernels()
    assert not any("SumToShape" in k.op_types for k in shared)
    assert len(shared) < len(plain), (len(shared), len(plain))

    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, (None, None, 2), name="a")
        b = gc.placeholder(gc.float32, (None, None, 2), name="b")
        out = gc.scan(lambda acc, ab: acc + ab[0] * ab[1], (a, b), initializer=gc.zeros_like(a[0]))
    rng = np.random.default_rng(1)
    for shape_b in ((3, 2, 2), (3, 1, 2)):
        feed = {a: rng.standard_normal((3, 2, 2)).astype(np.float32),
                b: rng.standard_normal(shape_b).astype(np.float32)}  # fmt: skip
        got = compare(g, out, feed)
        np.testing.assert_allclose(got, np.cumsum(feed[a] * feed[b], axis=0), rtol=1e-5)
    with gc.Session(graph=g, target="cuda", options=OPTS) as s:
        with pytest.raises(gc.errors.InvalidArgumentError, match="broadcast"):
            s.run(out, {a: np.ones((3, 2, 2), np.float32), b: np.ones((3, 3, 2), np.float32)})


def test_loop_overhead_script_runs():
    """scripts/cuda_loop_overhead.py (the host's work per loop iteration, without a GPU)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "cuda_loop_overhead.py"
    proc = subprocess.run([sys.executable, str(script), "--steps", "5", "--runs", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("us per step") == 3, proc.stdout
