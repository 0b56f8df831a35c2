"""gc.export / gc.export_c for another CPU (``cpu=``): "generic" code runs on any CPU of the
architecture, code for a CPU this one cannot run is never executed, unknown names are refused."""

import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
import graphc.backends.cpu.native as native
from graphc.artifact import read_container
from graphc.backends.llvm import cpus, jit
from graphc.errors import FailedPreconditionError

X86 = jit.host()["triple"].startswith("x86_64")
needs_cc = pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")), reason="no cc")


def _model():
    """A small MLP whose softmax uses exp (vector ldexp: vscalef where AVX-512 is on)."""
    rng = np.random.default_rng(5)
    x = gc.placeholder(gc.float32, (None, 20), name="x")
    w1 = gc.Variable(rng.normal(size=(20, 32)).astype(np.float32), name="w1")
    b1 = gc.Variable(rng.normal(size=32).astype(np.float32), name="b1")
    w2 = gc.Variable(rng.normal(size=(32, 5)).astype(np.float32), name="w2")
    y = gc.nn.softmax(gc.matmul(gc.nn.relu(gc.matmul(x, w1) + b1), w2))
    sess = gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None))
    sess.run(gc.global_variables_initializer())
    return sess, x, y


def _objects(path) -> list:
    header, sections = read_container(path)
    code, objs, pos = sections["native/code.bin"], [], 0
    for n in header["native"]["object_sizes"]:
        objs.append(code[pos : pos + n])
        pos += n
    return objs


def _vector_registers(tmp_path, blobs) -> set:
    """The x86 vector register kinds ("xmm", "ymm", "zmm") the code of ``blobs`` (objects or
    shared libraries) uses, from objdump's disassembly; None without objdump."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    kinds = set()
    for i, blob in enumerate(blobs):
        p = tmp_path / f"code{i}.o"
        p.write_bytes(blob)
        text = subprocess.run([objdump, "-d", str(p)], capture_output=True, text=True).stdout
        kinds |= {k for k in ("xmm", "ymm", "zmm", "vscalef") if k in text}
    return kinds


def _baseline() -> set:
    return {f[1:] for f in jit.target("generic")["features"].split(",") if f.startswith("+")}


def test_generic_export_runs_natively_and_uses_only_the_baseline(tmp_path, monkeypatch):
    sess, x, y = _model()
    feeds = [np.random.default_rng(n).normal(size=(n, 20)).astype(np.float32) for n in (3, 40)]
    want = [sess.run(y, {x: f}) for f in feeds]
    gc.export(sess, tmp_path / "g.gca", {"x": x}, {"y": y}, cpu="generic")
    gc.export(sess, tmp_path / "h.gca", {"x": x}, {"y": y})
    header, _ = read_container(tmp_path / "g.gca")
    feats = set(header["native"]["features"])
    assert feats == _baseline()
    if X86:
        assert header["native"]["cpu"] == "x86-64"
        assert feats <= set(cpus.X86_CPUS["x86-64"]) and "sse2" in feats
        assert not {f for f in feats if f.startswith("avx") or f.startswith("sse4")}
        used = _vector_registers(tmp_path, _objects(tmp_path / "g.gca"))
        if used is not None:
            assert "xmm" in used and not used & {"ymm", "zmm", "vscalef"}, used
            host_feats = set(read_container(tmp_path / "h.gca")[0]["native"]["features"])
            if "avx2" in host_feats:  # the check sees wider code when the CPU has it
                assert _vector_registers(tmp_path, _objects(tmp_path / "h.gca")) & {"ymm", "zmm"}
    # the math emitters follow the target, not the host: AVX-512's one-instruction vector
    # ldexp (exp's 2^n scaling) only in the host's code, and only where the host has it
    ir = {k: gc.load(tmp_path / f"{k}.gca").executable.dump_ir("llvm") for k in "gh"}
    assert "llvm.ldexp" not in ir["g"]
    assert ("llvm.ldexp" in ir["h"]) == ("+avx512f" in jit.host()["features"].split(","))
    # loaded on a CPU with only the baseline features: the stored code runs, nothing compiles
    monkeypatch.setattr(jit, "compile_modules", _refuse)
    real = jit.host()
    baseline = dict(real, cpu="baseline-only", features=jit.target("generic")["features"])
    monkeypatch.setattr(native, "host", lambda: baseline)
    m = gc.load(tmp_path / "g.gca")
    assert m.loaded_native and m.recompiled_reason is None
    assert m.executable.stats["loaded_native"]
    for f, w in zip(feeds, want):
        np.testing.assert_allclose(m(x=f)["y"], w, rtol=1e-5, atol=1e-7)


def _refuse(*a, **k):
    raise AssertionError("LLVM compiled something during gc.load")


def test_code_for_features_this_cpu_lacks_is_recompiled_never_run(tmp_path, monkeypatch):
    sess, x, y = _model()
    want = sess.run(y, {x: np.ones((2, 20), np.float32)})
    cpu = "x86-64-v3" if X86 else "host"
    gc.export(sess, tmp_path / "v3.gca", {"x": x}, {"y": y}, cpu=cpu)
    needed = read_container(tmp_path / "v3.gca")[0]["native"]["features"]
    # a CPU with the generic baseline only: the stored code (AVX2 on x86-64) must not run
    baseline = dict(jit.host(), cpu="old", features=jit.target("generic")["features"])
    lacking = sorted(set(needed) - _baseline())
    if not lacking:
        pytest.skip("the code needs nothing beyond the baseline here")
    monkeypatch.setattr(native, "host", lambda: baseline)
    with pytest.warns(UserWarning, match=f"recompiled.*lacks feature.*{lacking[0]}"):
        m = gc.load(tmp_path / "v3.gca")
    assert not m.loaded_native and lacking[0] in m.recompiled_reason
    np.testing.assert_allclose(m(x=np.ones((2, 20), np.float32))["y"], want, rtol=1e-5)


def test_compiling_for_a_cpu_this_one_cannot_run_exports_but_never_runs(tmp_path, monkeypatch):
    if not X86:
        pytest.skip("one architecture level only")
    monkeypatch.setattr(jit, "runnable", lambda cpu=None: cpu in (None, "host"))
    sess, x, y = _model()
    gc.export(sess, tmp_path / "v4.gca", {"x": x}, {"y": y}, cpu="x86-64-v4")
    header, _ = read_container(tmp_path / "v4.gca")
    assert {"avx512f", "avx512bw", "avx2"} <= set(header["native"]["features"])
    opts = gc.CompileOptions(cache_dir=None)
    opts.target_cpu = "x86-64-v4"
    with gc.Session(target="cpu", options=opts) as s2:  # its code is never executed
        with pytest.raises(FailedPreconditionError, match="x86-64-v4.*not run here"):
            s2.run(gc.exp(x), {x: np.ones((2, 20), np.float32)})


def test_unknown_cpu_is_refused_before_anything_is_written(tmp_path):
    sess, x, y = _model()
    for bad in ("pentium-9000", "", None, 3):
        with pytest.raises(ValueError, match="valid choices.*'generic'"):
            gc.export(sess, tmp_path / "bad.gca", {"x": x}, {"y": y}, cpu=bad)
        with pytest.raises(ValueError, match="valid choices.*'host'"):
            gc.export_c(sess, tmp_path / "lib", {"x": x}, {"y": y}, "bad", cpu=bad)
    assert not list(tmp_path.iterdir())


DRIVER = r"""
#include <stdio.h>
#include "gm.h"
int main(void) {
  float x[3 * 20], y[3 * 5];
  for (int i = 0; i < 3 * 20; i++) x[i] = (float)(i % 7) * 0.25f - 0.5f;
  int64_t dims[GM_NUM_DIMS] = {3};
  void *in[GM_NUM_INPUTS] = {x}, *out[GM_NUM_OUTPUTS] = {y};
  int rc = gm_run(in, dims, out);
  if (rc) { printf("error %d %s\n", rc, gm_error(rc)); return 1; }
  for (int i = 0; i < 3 * 5; i++) printf("%.9g\n", y[i]);
  return 0;
}
"""


@needs_cc
def test_export_c_generic_library_runs_from_c(tmp_path):
    sess, x, y = _model()
    xv = (np.arange(60) % 7).astype(np.float32).reshape(3, 20) * 0.25 - 0.5
    want = sess.run(y, {x: xv})
    paths = gc.export_c(sess, tmp_path / "out", {"x": x}, {"y": y}, "gm", cpu="generic")
    header = (tmp_path / "out" / "gm.h").read_text()
    if X86:
        assert "CPU x86-64:" in header
        used = _vector_registers(tmp_path, [open(paths["library"], "rb").read()])
        if used is not None:  # the model's code, the wrapper and the worker pool
            assert not used & {"ymm", "zmm", "vscalef"}, used
    (tmp_path / "driver.c").write_text(DRIVER)
    cc = shutil.which("gcc") or shutil.which("cc")
    exe = tmp_path / "driver"
    out = tmp_path / "out"
    subprocess.run([cc, "-O1", "-o", str(exe), str(tmp_path / "driver.c"), f"-I{out}",
                    f"-L{out}", "-lgm", f"-Wl,-rpath,{out}"], check=True)  # fmt: skip
    proc = subprocess.run([str(exe)], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = np.array([float(v) for v in proc.stdout.split()], np.float32).reshape(3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
