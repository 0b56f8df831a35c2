"""Native code in cpu artifacts: loaded without compiling, refused on another CPU, validated."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.artifact import read_container, write_container


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    x = gc.placeholder(gc.float32, (None, 20), name="x")
    w1 = gc.Variable(rng.normal(size=(20, 16)).astype(np.float32), name="w1")
    b1 = gc.Variable(rng.normal(size=16).astype(np.float32), name="b1")
    w2 = gc.Variable(rng.normal(size=(16, 4)).astype(np.float32), name="w2")
    h = gc.nn.relu(gc.matmul(x, w1) + b1)
    y = gc.nn.softmax(gc.matmul(h, w2))
    sess = gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None))
    sess.run(gc.global_variables_initializer())
    return sess, x, y


@pytest.fixture
def artifact(tmp_path):
    sess, x, y = _mlp()
    path = tmp_path / "mlp.gca"
    gc.export(sess, path, inputs={"x": x}, outputs={"y": y})
    feeds = [np.random.default_rng(n).normal(size=(n, 20)).astype(np.float32) for n in (3, 17)]
    want = [sess.run(y, {x: f}) for f in feeds]
    sess.close()
    return path, feeds, want


def _no_llvm_compile(monkeypatch):
    """Make any LLVM compilation (or lowering) fail loudly."""
    from graphc.backends import llvm
    from graphc.backends.llvm import jit

    def refuse(*a, **k):
        raise AssertionError("LLVM compiled something during gc.load")

    monkeypatch.setattr(jit, "compile_module", refuse)
    monkeypatch.setattr(jit, "compile_modules", refuse)
    monkeypatch.setattr(llvm, "compile_kernel_program", refuse)


def test_native_code_runs_without_compiling(artifact, monkeypatch):
    path, feeds, want = artifact
    header, sections = read_container(path)
    assert header["native"]["triple"] and header["native"]["features"]
    assert {"native/manifest.json", "native/code.bin"} <= set(sections)
    _no_llvm_compile(monkeypatch)
    m = gc.load(path)
    assert m.loaded_native and m.recompiled_reason is None
    assert m.executable.stats["loaded_native"]
    for f, w in zip(feeds, want):  # two batch sizes, one loaded program
        np.testing.assert_allclose(m(x=f)["y"], w, rtol=1e-6)
    assert "define" in m.executable.dump_ir("llvm")  # the stored IR text comes along


def _rewrite(path, edit):
    header, sections = read_container(path)
    edit(header, sections)
    write_container(path, header, sections)  # valid checksums again


def _absent_feature() -> str:
    from graphc.backends.llvm import jit

    off = [f[1:] for f in jit.host()["features"].split(",") if f.startswith("-")]
    return off[0] if off else "graphc-test-feature"


def test_missing_cpu_feature_recompiles_and_says_so(artifact):
    path, feeds, want = artifact
    feature = _absent_feature()
    _rewrite(path, lambda h, s: h["native"]["features"].append(feature))
    with pytest.warns(UserWarning, match=f"recompiled.*lacks feature.*{feature}"):
        m = gc.load(path)
    assert not m.loaded_native and feature in m.recompiled_reason
    for f, w in zip(feeds, want):
        np.testing.assert_allclose(m(x=f)["y"], w, rtol=1e-6)
    from graphc.exporter import describe

    assert "cannot run it" in describe(path) and feature in describe(path)


def test_other_triple_recompiles(artifact):
    path, feeds, want = artifact
    _rewrite(path, lambda h, s: h["native"].update(triple="aarch64-unknown-linux-gnu"))
    with pytest.warns(UserWarning, match="compiled for aarch64"):
        m = gc.load(path)
    assert not m.loaded_native
    np.testing.assert_allclose(m(x=feeds[0])["y"], want[0], rtol=1e-6)


def test_native_false_recompiles_silently(artifact, recwarn):
    path, feeds, want = artifact
    m = gc.load(path, native=False)
    assert not m.loaded_native and "native=False" in m.recompiled_reason
    assert not [w for w in recwarn if "recompiled" in str(w.message)]
    np.testing.assert_allclose(m(x=feeds[1])["y"], want[1], rtol=1e-6)


def test_reference_session_has_no_native_code(tmp_path):
    x = gc.placeholder(gc.float32, (2,), name="x")
    with gc.Session(target="reference") as sess:
        gc.export(sess, tmp_path / "r.gca", inputs={"x": x}, outputs={"y": x * 2})
    header, sections = read_container(tmp_path / "r.gca")
    assert header["native"] is None and not any(k.startswith("native/") for k in sections)
    from graphc.exporter import describe

    assert "native code   no" in describe(tmp_path / "r.gca")


def _edit_manifest(fn):
    def edit(header, sections):
        man = json.loads(sections["native/manifest.json"])
        fn(man)
        sections["native/manifest.json"] = json.dumps(man).encode()

    return edit


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _prog(fn):
    return lambda m: fn(m["program"])


MANIFEST_DAMAGE = {
    "not json": lambda h, s: s.__setitem__("native/manifest.json", b"{not json"),
    "truncated json": lambda h, s: s.__setitem__(
        "native/manifest.json", s["native/manifest.json"][:-7]
    ),
    "code missing": lambda h, s: s.pop("native/code.bin"),
    "code truncated": lambda h, s: s.__setitem__("native/code.bin", s["native/code.bin"][:-9]),
    "object sizes": _edit_manifest(_set("object_sizes", ["x"])),
    "kernels": _edit_manifest(_set("kernels", [[1, 2]])),
    "no program": _edit_manifest(lambda m: m.pop("program")),
    "bad expr": _edit_manifest(_prog(lambda p: p["buffers"][0][2].append(["?", 1]))),
    "bad math": _edit_manifest(_prog(lambda p: p["buffers"][0][2].append(["f", "NOPE", []]))),
    "alias": _edit_manifest(_prog(lambda p: p["buffers"][0].__setitem__(4, "ghost"))),
    "kind": _edit_manifest(_prog(lambda p: p["buffers"][0].__setitem__(3, "weird"))),
    "dtype": _edit_manifest(_prog(lambda p: p["buffers"][-1].__setitem__(1, "float64"))),
    "dim source": _edit_manifest(_prog(lambda p: p["dims"][0].__setitem__(1, [5, 0]))),
    "dim axis": _edit_manifest(_prog(lambda p: p["dims"][0].__setitem__(1, [0, 9]))),
    "outputs": _edit_manifest(_prog(lambda p: p.__setitem__("outputs", []))),
    "inputs": _edit_manifest(_prog(lambda p: p.__setitem__("inputs", ["nope"]))),
    "checks": _edit_manifest(_prog(lambda p: p.__setitem__("checks", [[99, "m", "nan"]]))),
    "var reads": _edit_manifest(_prog(lambda p: p["var_reads"].__setitem__("ghost", "w1"))),
    "header sizes": lambda h, s: h["native"].__setitem__("object_sizes", [1]),
    "native format": lambda h, s: h["native"].__setitem__("format", 99),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_malformed_native_section_is_invalid_artifact(artifact, damage):
    path, _, _ = artifact
    _rewrite(path, MANIFEST_DAMAGE[damage])
    with pytest.raises(gc.errors.InvalidArtifactError):
        gc.load(path)


def _elf_damage(header, sections, what):
    """Corrupt one structural field of the first object with its checksum made valid."""
    import struct

    man = json.loads(sections["native/manifest.json"])
    size = man["object_sizes"][0]
    code = bytearray(sections["native/code.bin"])
    obj = code[:size]
    shoff = struct.unpack_from("<Q", obj, 0x28)[0]
    if what == "magic":
        obj[1] = ord("X")
    elif what == "machine":
        struct.pack_into("<H", obj, 0x12, 183 if obj[0x12] == 62 else 62)
    elif what == "shoff":
        struct.pack_into("<Q", obj, 0x28, len(obj) - 10)
    elif what == "shnum":
        struct.pack_into("<H", obj, 0x3C, 0xFFFF)
    elif what == "section offset":  # every section: point into the ELF header
        for i in range(1, struct.unpack_from("<H", obj, 0x3C)[0]):
            struct.pack_into("<Q", obj, shoff + 64 * i + 0x18, 8)
    elif what == "section type":
        for i in range(1, struct.unpack_from("<H", obj, 0x3C)[0]):
            struct.pack_into("<I", obj, shoff + 64 * i + 4, 0x7777)
    elif what == "not executable":  # clear SHF_EXECINSTR on every section
        for i in range(1, struct.unpack_from("<H", obj, 0x3C)[0]):
            off = shoff + 64 * i + 8
            struct.pack_into("<Q", obj, off, struct.unpack_from("<Q", obj, off)[0] & ~4)
    elif what == "cut":
        obj = obj[: len(obj) // 2]
        man["object_sizes"][0] = len(obj)
        header["native"]["object_sizes"][0] = len(obj)
        sections["native/manifest.json"] = json.dumps(man).encode()
    code[:size] = obj
    sections["native/code.bin"] = bytes(code)


@pytest.mark.parametrize(
    "what",
    ["magic", "machine", "shoff", "shnum", "section offset", "section type", "not executable",
     "cut"],
)  # fmt: skip
def test_malformed_object_is_refused_before_llvm_sees_it(artifact, what, monkeypatch):
    path, _, _ = artifact
    _rewrite(path, lambda h, s: _elf_damage(h, s, what))
    import llvmlite.binding as llvm

    def refuse(*a, **k):
        raise AssertionError("a malformed object reached LLVM")

    monkeypatch.setattr(llvm.ObjectFileRef, "from_data", refuse)
    with pytest.raises(gc.errors.InvalidArtifactError, match="native code"):
        gc.load(path)


def test_unresolvable_symbol_is_refused(artifact):
    """LLVM aborts the process on an unresolved external: the loader checks first."""
    path, _, _ = artifact

    def rename(header, sections):
        code = sections["native/code.bin"]
        # same length, so every offset stays valid: only the name differs
        assert b"gc_parallel_for" in code
        sections["native/code.bin"] = code.replace(b"gc_parallel_for", b"gc_parallel_fXr", 1)

    _rewrite(path, rename)
    with pytest.raises(gc.errors.InvalidArtifactError, match="gc_parallel_fXr"):
        gc.load(path)


FUZZ = textwrap.dedent(
    """
    import json, struct, sys
    import numpy as np
    import graphc as gc
    from graphc.artifact import read_container, write_container

    path, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    header, sections = read_container(path)
    man = json.loads(sections["native/manifest.json"])
    size = man["object_sizes"][0]
    code = sections["native/code.bin"]
    obj = code[:size]
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shnum, = struct.unpack_from("<H", obj, 0x3C)
    # the structure the loader relies on: ELF header, section table, and each symbol's
    # name, type and binding (its section and value, like relocation offsets and addends,
    # only have a meaning for the machine code: not checkable, see elfcheck.py)
    regions = [(0, 64), (shoff, shoff + 64 * shnum)]
    for i in range(1, shnum):
        typ, = struct.unpack_from("<I", obj, shoff + 64 * i + 4)
        off, sz = struct.unpack_from("<QQ", obj, shoff + 64 * i + 0x18)
        if typ == 2:  # symtab: name, info, other, shndx of each symbol
            regions += [(off + 24 * j, off + 24 * j + 6) for j in range(sz // 24)]
    rng = np.random.default_rng(seed)
    x = np.random.default_rng(1).normal(size=(3, 20)).astype(np.float32)
    want = np.load(out + ".want.npy")
    fresh = gc.load(path)  # first load in a fresh process: the stored code, as is
    assert fresh.loaded_native and np.allclose(fresh(x=x)["y"], want, rtol=1e-6)
    counts = {"invalid": 0, "ran": 0}
    for case in range(int(sys.argv[4]) if len(sys.argv) > 4 else 60):
        a, b = regions[rng.integers(len(regions))]
        pos = int(rng.integers(a, b))
        bad = bytearray(code)
        bad[pos] ^= 1 << int(rng.integers(8))
        write_container(out, header, dict(sections, **{"native/code.bin": bytes(bad)}))
        print("case", case, "byte", pos, flush=True)
        try:
            m = gc.load(out)
        except gc.errors.InvalidArtifactError as exc:
            print("   ", exc, flush=True)
            counts["invalid"] += 1
            continue
        got = m(x=x)["y"]
        assert np.allclose(got, want, rtol=1e-6), f"byte {pos}: wrong result"
        counts["ran"] += 1
    print("RESULT", json.dumps(counts))
    """
)


def test_fuzzed_object_structure_never_crashes(artifact, tmp_path):
    """Bit flips in the ELF structure (re-checksummed): InvalidArtifactError, or a load
    that runs correctly (a harmless flip); the process never crashes. Runs in a child
    process so that a crash would fail this test instead of killing the suite."""
    path, feeds, want = artifact
    sess_x = np.random.default_rng(1).normal(size=(3, 20)).astype(np.float32)
    m = gc.load(path)
    out = tmp_path / "fuzz.gca"
    np.save(str(out) + ".want.npy", m(x=sess_x)["y"])
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    root = Path(gc.__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(out), "7"],
        capture_output=True, text=True, timeout=600, cwd=root,
        env={"PYTHONPATH": str(root), "GRAPHC_THREADS": "1", "PATH": "/usr/bin:/bin",
             # a native load may cache the worker pool: in the tests' own directories
             "GRAPHC_CACHE_DIR": os.environ["GRAPHC_CACHE_DIR"],
             "GRAPHC_CONFIG_DIR": os.environ["GRAPHC_CONFIG_DIR"]},
    )  # fmt: skip
    tail = (proc.stdout + proc.stderr)[-2000:]
    assert proc.returncode == 0, f"fuzz child died (rc {proc.returncode}):\n{tail}"
    # (a flip that corrupts a GEMM argument makes OpenBLAS print a complaint after it)
    counts = json.loads(proc.stdout.split("RESULT", 1)[1].splitlines()[0])
    assert counts["invalid"] >= 20 and counts["ran"] >= 1, counts  # most flips are caught


def test_cli_inspect_shows_native_code(artifact, capsys):
    from graphc.backends.llvm import jit
    from graphc.cli import main

    path, _, _ = artifact
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"native code   yes: llvm-cpu for {jit.host()['triple']}" in out
    assert f"CPU {jit.host()['cpu']}" in out and "needs CPU features" in out
    assert "this machine: can run it" in out


def test_training_step_runs_natively_and_updates_its_variables(tmp_path):
    """An artifact whose outputs depend on assignments: each call is one SGD step."""
    rng = np.random.default_rng(5)
    x = gc.placeholder(gc.float32, (None, 6), name="x")
    t = gc.placeholder(gc.float32, (None, 2), name="t")
    w = gc.Variable(rng.normal(size=(6, 2)).astype(np.float32), name="w")
    loss = gc.reduce_mean(gc.square(gc.matmul(x, w) - t))
    (grad,) = gc.gradients(loss, [w])
    with gc.control_dependencies([gc.assign_sub(w, 0.1 * grad)]):
        stepped = gc.identity(loss)
    sess = gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None))
    sess.run(gc.global_variables_initializer())
    gc.export(sess, tmp_path / "step.gca", inputs={"x": x, "t": t}, outputs={"loss": stepped})
    xs, ts = rng.normal(size=(9, 6)).astype(np.float32), rng.normal(size=(9, 2)).astype(np.float32)
    want = [sess.run(stepped, {x: xs, t: ts}) for _ in range(3)]
    m = gc.load(tmp_path / "step.gca")
    assert m.loaded_native
    got = [m(x=xs, t=ts)["loss"] for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[2] < got[0]


def test_unwritable_session_cache_still_exports_native_code(tmp_path):
    ro = tmp_path / "ro"
    ro.write_text("a file, not a directory: the cache cannot be written here")
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    sess = gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=ro))
    gc.export(sess, tmp_path / "m.gca", inputs={"x": x}, outputs={"y": gc.exp(x)})
    m = gc.load(tmp_path / "m.gca")
    assert m.loaded_native
    np.testing.assert_allclose(m(x=np.ones((2, 3)))["y"], np.exp(np.ones((2, 3))), rtol=1e-6)
