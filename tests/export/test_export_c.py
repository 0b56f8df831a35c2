"""gc.export_c: name.h + libname.so run the model from plain C (and report errors as codes)."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc

needs_cc = pytest.mark.skipif(
    not (shutil.which("gcc") or shutil.which("cc")), reason="no C compiler"
)

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "mlp.h"

/* usage: driver BATCH IN.bin OUT.bin: reads BATCH x 20 floats, writes the probabilities */
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  int64_t dims[MLP_NUM_DIMS] = {atoll(argv[1])};
  int64_t shape[2];
  if (mlp_output_rank(0) != 2 || mlp_output_shape(dims, 0, shape) != 2) return 3;
  size_t n_in = (size_t)dims[0] * 20, n_out = (size_t)(shape[0] * shape[1]);
  float *x = malloc(n_in * sizeof(float)), *y = malloc(n_out * sizeof(float));
  FILE *f = fopen(argv[2], "rb");
  if (!f || fread(x, sizeof(float), n_in, f) != n_in) return 4;
  fclose(f);
  void *inputs[MLP_NUM_INPUTS] = {x};
  void *outputs[MLP_NUM_OUTPUTS] = {y};
  int rc = mlp_run(inputs, dims, outputs);
  if (rc != 0) { fprintf(stderr, "mlp_run: %d %s\n", rc, mlp_error(rc)); return 5; }
  /* a NaN input: CheckNumerics reports it as an error code, not a crash */
  x[0] = 0.0f / 0.0f;
  rc = mlp_run(inputs, dims, outputs);
  printf("nan: %d %s\n", rc, mlp_error(rc));
  dims[0] = -3;
  rc = mlp_run(inputs, dims, outputs);
  printf("negative: %d %s\n", rc, mlp_error(rc));
  rc = mlp_run(NULL, dims, outputs);
  printf("null: %d %s\n", rc, mlp_error(rc));
  f = fopen(argv[3], "wb");
  dims[0] = atoll(argv[1]);
  x[0] = 0.0f;
  FILE *g = fopen(argv[2], "rb");
  if (fread(x, sizeof(float), n_in, g) != n_in) return 6;
  fclose(g);
  if (mlp_run(inputs, dims, outputs) != 0) return 7;
  fwrite(y, sizeof(float), n_out, f);
  fclose(f);
  printf("shape %lld %lld\n", (long long)shape[0], (long long)shape[1]);
  return 0;
}
"""


def _mlp_session():
    rng = np.random.default_rng(3)
    x = gc.placeholder(gc.float32, (None, 20), name="x")
    w1 = gc.Variable(rng.normal(size=(20, 32)).astype(np.float32), name="w1")
    b1 = gc.Variable(rng.normal(size=32).astype(np.float32), name="b1")
    w2 = gc.Variable(rng.normal(size=(32, 5)).astype(np.float32), name="w2")
    h = gc.nn.relu(gc.matmul(x, w1) + b1)
    logits = gc.check_numerics(gc.matmul(h, w2), "logits")
    y = gc.nn.softmax(logits)
    sess = gc.Session(target="cpu")
    sess.run(gc.global_variables_initializer())
    return sess, x, y, h, w1


@needs_cc
def test_c_program_matches_session_run(tmp_path):
    sess, x, y, _, w1 = _mlp_session()
    paths = gc.export_c(sess, tmp_path / "out", {"x": x}, {"probs": y}, "mlp")
    header = (tmp_path / "out" / "mlp.h").read_text()
    assert "int mlp_run(void **inputs, const int64_t *dims, void **outputs);" in header
    assert "const char *mlp_error(int code);" in header
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["libmlp.so", "mlp.h"]
    (tmp_path / "driver.c").write_text(DRIVER)
    cc = shutil.which("gcc") or shutil.which("cc")
    exe = tmp_path / "driver"
    subprocess.run(
        [cc, "-O1", "-o", str(exe), str(tmp_path / "driver.c"), f"-I{tmp_path / 'out'}",
         f"-L{tmp_path / 'out'}", "-lmlp", f"-Wl,-rpath,{tmp_path / 'out'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    want_all = {}
    # one library, three sizes of the None dim; the largest splits its GEMM over the pool
    for batch in (7, 300, 70000):
        data = np.random.default_rng(batch).normal(size=(batch, 20)).astype(np.float32)
        data.tofile(tmp_path / "in.bin")
        want_all[batch] = (data, sess.run(y, {x: data}))
        proc = subprocess.run(
            [str(exe), str(batch), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        got = np.fromfile(tmp_path / "out.bin", np.float32).reshape(batch, 5)
        np.testing.assert_allclose(got, want_all[batch][1], rtol=1e-5, atol=1e-7)
        assert "nan: -1000 logits : Tensor had NaN values" in proc.stdout
        assert "negative: -2 a runtime dim is negative" in proc.stdout
        assert "null: -1 " in proc.stdout
        assert f"shape {batch} 5" in proc.stdout
    # the weights are embedded: later changes to the session's variables do not matter
    sess.run(w1.assign(np.zeros((20, 32), np.float32)))
    lib = ctypes.CDLL(paths["library"])
    data, want = want_all[7]
    out = np.empty((7, 5), np.float32)
    rc = lib.mlp_run((ctypes.c_void_p * 1)(data.ctypes.data), (ctypes.c_int64 * 1)(7),
                     (ctypes.c_void_p * 1)(out.ctypes.data))  # fmt: skip
    assert rc == 0
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)


def _load(tmp_path, sess, inputs, outputs, name):
    paths = gc.export_c(sess, tmp_path, inputs, outputs, name)
    lib = ctypes.CDLL(paths["library"])
    getattr(lib, f"{name}_error").restype = ctypes.c_char_p
    return lib


def _ptrs(*arrays):
    return (ctypes.c_void_p * max(len(arrays), 1))(
        *[None if a is None else a.ctypes.data for a in arrays]
    )


@needs_cc
def test_error_codes_instead_of_crashes(tmp_path):
    a = gc.placeholder(gc.float32, (None, 4), name="a")
    b = gc.placeholder(gc.float32, (None, 4), name="b")
    idx = gc.placeholder(gc.int32, (None,), name="idx")
    table = gc.constant(np.arange(12, dtype=np.float32).reshape(3, 4))
    s = a + b
    g = gc.gather(table, idx)
    sess = gc.Session(target="cpu")
    lib = _load(tmp_path, sess, {"a": a, "b": b, "idx": idx}, {"s": s, "g": g}, "m2")
    assert lib.m2_num_inputs() == 3 and lib.m2_num_outputs() == 2 and lib.m2_num_dims() == 3
    x = np.ones((2, 4), np.float32)
    i = np.array([2, 0], np.int32)
    out_s, out_g = np.empty((2, 4), np.float32), np.empty((2, 4), np.float32)
    rc = lib.m2_run(_ptrs(x, 2 * x, i), (ctypes.c_int64 * 3)(2, 2, 2), _ptrs(out_s, out_g))
    assert rc == 0, lib.m2_error(rc)
    np.testing.assert_array_equal(out_s, 3 * x)
    np.testing.assert_array_equal(out_g, np.arange(12).reshape(3, 4)[[2, 0]])
    # batch sizes that disagree: a shape check (or the size check) fails, nothing runs
    rc = lib.m2_run(_ptrs(x, 2 * x, i), (ctypes.c_int64 * 3)(2, 5, 2), _ptrs(out_s, out_g))
    assert rc < 0 and rc != -1, rc
    assert lib.m2_error(rc) != b"unknown error code"
    # an index out of range: the kernel's status flag becomes an error code
    bad = np.array([2, 7], np.int32)
    rc = lib.m2_run(_ptrs(x, 2 * x, bad), (ctypes.c_int64 * 3)(2, 2, 2), _ptrs(out_s, out_g))
    assert rc <= -1000, rc
    assert b"7" in lib.m2_error(rc) or b"range" in lib.m2_error(rc)
    # NULL pointers: for arrays with elements, for the dims, for the pointer tables
    assert lib.m2_run(_ptrs(x, None, i), (ctypes.c_int64 * 3)(2, 2, 2), _ptrs(out_s, out_g)) == -1
    assert lib.m2_run(_ptrs(x, 2 * x, i), None, _ptrs(out_s, out_g)) == -1
    assert lib.m2_run(_ptrs(x, 2 * x, i), (ctypes.c_int64 * 3)(2, 2, 2), None) == -1
    assert lib.m2_run(_ptrs(x, 2 * x, i), (ctypes.c_int64 * 3)(2, -2, 2), _ptrs(out_s)) == -2
    huge = (ctypes.c_int64 * 3)(1 << 62, 1 << 62, 2)
    assert lib.m2_run(_ptrs(x, 2 * x, i), huge, _ptrs(out_s, out_g)) in (-3, -4)
    # empty batch: nothing to read or write, NULLs allowed
    rc = lib.m2_run(_ptrs(None, None, None), (ctypes.c_int64 * 3)(0, 0, 0), _ptrs(None, None))
    assert rc == 0, lib.m2_error(rc)
    shape = (ctypes.c_int64 * 2)()
    assert lib.m2_output_shape((ctypes.c_int64 * 3)(6, 6, 6), 1, shape) == 2
    assert list(shape) == [6, 4]
    assert lib.m2_output_shape((ctypes.c_int64 * 3)(6, 6, 6), 9, shape) == -6
    assert lib.m2_error(-12345) == b"unknown error code"
    assert lib.m2_set_threads(0) == -7 and lib.m2_set_threads(1) == 0


def test_export_c_refuses_what_it_cannot_build(tmp_path, monkeypatch):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    with gc.Session(target="reference") as sess:
        with pytest.raises(gc.errors.UnimplementedError, match="cpu target only"):
            gc.export_c(sess, tmp_path, {"x": x}, {"y": x * 2}, "m")
    sess = gc.Session(target="cpu")
    with pytest.raises(ValueError, match="C identifier"):
        gc.export_c(sess, tmp_path, {"x": x}, {"y": x * 2}, "bad-name")
    u = gc.placeholder(gc.float32, None, name="unknown_rank")
    with pytest.raises(gc.errors.UnimplementedError, match="unknown rank"):
        gc.export_c(sess, tmp_path, {"u": u}, {"y": u * 2}, "m")
    import graphc.clib as ec

    monkeypatch.setattr(ec.shutil, "which", lambda name: None)
    with pytest.raises(gc.errors.UnavailableError, match="C compiler"):
        gc.export_c(sess, tmp_path, {"x": x}, {"y": x * 2}, "m")


def _cc_knows_cpu_feature(tmp_path, feature):
    src = tmp_path / "probe.c"
    src.write_text(f'int main(void) {{ return __builtin_cpu_supports("{feature}") ? 0 : 1; }}\n')
    cc = shutil.which("cc") or shutil.which("gcc")
    proc = subprocess.run([cc, str(src), "-o", str(tmp_path / "probe")], capture_output=True)
    if proc.returncode != 0:
        return None
    return subprocess.run([str(tmp_path / "probe")]).returncode == 0


def test_the_library_checks_the_cpu_features_it_was_built_for(tmp_path, monkeypatch):
    import graphc.clib as ec
    from graphc.backends.cpu.native import host

    x = gc.placeholder(gc.float32, (None, 4), name="x")
    y = gc.exp(x) * 2.0
    needed = ec.required_cpu_features(host())
    if host()["triple"].startswith("x86_64"):
        enabled = {f[1:] for f in host()["features"].split(",") if f.startswith("+")}
        assert needed == [f for f in ec.X86_FEATURES if f in enabled]
    lib = _load(tmp_path / "ok", gc.Session(target="cpu"), {"x": x}, {"y": y}, "cpuok")
    header = (tmp_path / "ok" / "cpuok.h").read_text()
    assert "CPUOK_ERR_CPU (-8)" in header
    assert all(f in header for f in needed)
    xv = np.ones((3, 4), np.float32)
    out = np.empty_like(xv)
    assert lib.cpuok_run(_ptrs(xv), (ctypes.c_int64 * 1)(3), _ptrs(out)) == 0
    np.testing.assert_allclose(out, 2 * np.exp(xv), rtol=1e-6)

    # A library built for a CPU with an extension this one lacks refuses to run: an error
    # code, not SIGILL. (avx512er: Xeon Phi only, absent from every CPU CI runs on.)
    if _cc_knows_cpu_feature(tmp_path, "avx512er") is not False:
        pytest.skip("the C compiler does not know avx512er, or this CPU has it")
    monkeypatch.setattr(ec, "required_cpu_features", lambda host: [*needed, "avx512er"])
    lib = _load(tmp_path / "phi", gc.Session(target="cpu"), {"x": x}, {"y": y}, "phi")
    rc = lib.phi_run(_ptrs(xv), (ctypes.c_int64 * 1)(3), _ptrs(out))
    assert rc == -8 and b"instruction set" in lib.phi_error(rc)
