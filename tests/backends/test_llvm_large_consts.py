"""Large constants (issue 14): constant buffers above render.EMBED_CONST_MAX_BYTES are not
embedded in the LLVM module; they take a buffer-table slot the runner fills once. Every
consumer of the cpu code must get their values: the in-process runner, the disk cache (the
bytes stored in the authenticated entry, sizes checked), gc.export artifacts with native code
and gc.export_c libraries."""

import ctypes
import json
import shutil
import struct

import numpy as np
import pytest

import graphc as gc
from graphc.artifact import read_container, write_container
from graphc.backends.llvm import cache
from graphc.backends.llvm.render import EMBED_CONST_MAX_BYTES

RNG = np.random.default_rng(14)
W = RNG.normal(size=(512, 16)).astype(np.float32)  # 32 KiB: a slot (a GEMM operand)
V = RNG.normal(size=512).astype(np.float32)  # 2 KiB: embedded
U = RNG.normal(size=(3, 512)).astype(np.float32)  # 6 KiB: a slot (elementwise operand)
B = RNG.normal(size=16).astype(np.float32)  # small: embedded
FEEDS = [RNG.normal(size=(n, 512)).astype(np.float32) for n in (3, 5)]


def _graph():
    gc.reset_default_graph()
    x = gc.placeholder(gc.float32, (None, 512), name="x")
    y = gc.nn.relu(gc.matmul(x, gc.constant(W)) + gc.constant(B))
    z = gc.reduce_sum(gc.tanh(x[:3]) * gc.constant(U) + gc.constant(V), axis=1)
    return x, y, z


def _want():
    x, y, z = _graph()
    with gc.Session(target="reference") as sess:
        return [sess.run([y, z], {x: f}) for f in FEEDS]


def _check(got, want):
    """``got`` and ``want``: arrays, or lists of them (one list per feed)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, list):
            _check(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


def _llvm_bytes(data: bytes) -> str:
    """How LLVM's IR printer spells ``data`` inside a c"..." string."""
    return "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else f"\\{c:02X}" for c in data)


def _run(cache_dir):
    x, y, z = _graph()
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=cache_dir)) as sess:
        got = [sess.run([y, z], {x: f}) for f in FEEDS]
        exe = sess.compile([y, z], [x])
    return got, exe


def _entry(d):
    return [p for p in d.glob("cpu-*.gcx") if b'"kind":"worker pool"' not in p.read_bytes()]


def test_sizes_are_on_both_sides_of_the_threshold():
    assert V.nbytes <= EMBED_CONST_MAX_BYTES < U.nbytes < W.nbytes


def test_large_constants_are_slots_not_ir_and_survive_the_cache(tmp_path):
    want = _want()
    got, exe = _run(tmp_path)
    _check(got, want)
    assert not exe.stats["loaded_from_disk"]
    ir = exe.dump_ir("llvm")
    assert f"[{W.nbytes} x i8]" not in ir and f"[{U.nbytes} x i8]" not in ir
    assert f"[{V.nbytes} x i8]" in ir  # small constants stay in the module
    # LLVM prints i8 arrays as c"..."; the small constant's bytes are there, the large ones' not
    assert _llvm_bytes(V.tobytes()[:64]) in ir
    assert _llvm_bytes(W.tobytes()[:64]) not in ir and _llvm_bytes(U.tobytes()[:64]) not in ir
    (path,) = _entry(tmp_path)
    # the constants are in the entry, after the object code
    assert W.tobytes() in path.read_bytes() and U.tobytes() in path.read_bytes()
    got, exe = _run(tmp_path)
    assert exe.stats["loaded_from_disk"]
    _check(got, want)


def test_static_program_fast_path_reads_the_slotted_constant():
    """A static program without variables runs through the runner's lean path, which binds
    only the feeds and fetches per run: the constant's slot stays bound."""
    gc.reset_default_graph()
    x = gc.placeholder(gc.float32, (3, 512), name="x")
    y = gc.matmul(x * gc.constant(U), gc.constant(W))
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        for f in FEEDS[:1] * 2 + [FEEDS[1][:3]]:
            np.testing.assert_allclose(sess.run(y, {x: f}), (f * U) @ W, rtol=1e-4, atol=1e-4)


def test_cache_entry_with_wrong_constant_sizes_is_a_miss(tmp_path, monkeypatch):
    """An entry (validly authenticated) whose constant bytes do not match the manifest's
    buffers is never used: recompiled."""
    want = _want()
    _run(tmp_path)
    (path,) = _entry(tmp_path)
    data = path.read_bytes()
    pos = len(cache.MAGIC)
    (mlen,) = struct.unpack_from("<Q", data, pos)
    man = json.loads(data[pos + 8 : pos + 8 + mlen])
    pos += 8 + mlen
    (olen,) = struct.unpack_from("<Q", data, pos)
    obj = data[pos + 8 : pos + 8 + olen]
    assert man["const_size"] == W.nbytes + U.nbytes
    man["const_size"] -= 4
    m = json.dumps(man, separators=(",", ":")).encode()
    body = cache.MAGIC + struct.pack("<Q", len(m)) + m + struct.pack("<Q", len(obj) - 4)
    body += obj[:-4]
    path.write_bytes(body + cache._mac(body))
    got, exe = _run(tmp_path)
    assert not exe.stats["loaded_from_disk"]
    _check(got, want)


def test_export_artifact_with_large_constants_loads_natively(tmp_path):
    want = _want()
    x, y, z = _graph()
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        gc.export(sess, tmp_path / "m.gca", inputs={"x": x}, outputs={"y": y, "z": z})
    m = gc.load(tmp_path / "m.gca")
    assert m.loaded_native and m.recompiled_reason is None
    for f, w in zip(FEEDS, want):
        out = m(x=f)
        _check([out["y"], out["z"]], w)


def test_artifact_with_altered_constant_bytes_is_invalid(tmp_path):
    """The large constants stored with the native code (re-checksummed after the change) must
    be the stored program's own values: an altered one is InvalidArtifactError."""
    x, y, z = _graph()
    path = tmp_path / "m.gca"
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        gc.export(sess, path, inputs={"x": x}, outputs={"y": y, "z": z})
    header, sections = read_container(path)
    code = sections["native/code.bin"]
    at = code.index(W.tobytes())
    bad = W.copy()
    bad[0, 0] += 1.0
    sections["native/code.bin"] = code[:at] + bad.tobytes() + code[at + W.nbytes :]
    write_container(path, header, sections)
    with pytest.raises(gc.errors.InvalidArtifactError, match="constant"):
        gc.load(path)


def test_artifact_of_the_embedded_format_is_recompiled(tmp_path):
    """Native code of format 2 held its large constants and had fewer slots: never run."""
    want = _want()
    x, y, z = _graph()
    path = tmp_path / "m.gca"
    with gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None)) as sess:
        gc.export(sess, path, inputs={"x": x}, outputs={"y": y, "z": z})
    header, sections = read_container(path)
    header["native"]["format"] = 2
    write_container(path, header, sections)
    with pytest.warns(UserWarning, match="recompiled.*format 2"):
        m = gc.load(path)
    assert not m.loaded_native
    out = m(x=FEEDS[0])
    _check([out["y"], out["z"]], want[0])


@pytest.mark.skipif(not (shutil.which("gcc") or shutil.which("cc")), reason="no C compiler")
def test_export_c_library_holds_the_large_constants(tmp_path):
    want = _want()
    x, y, z = _graph()
    with gc.Session(target="cpu") as sess:
        paths = gc.export_c(sess, tmp_path, {"x": x}, {"y": y, "z": z}, "big")
    lib = ctypes.CDLL(paths["library"])
    for f, (wy, wz) in zip(FEEDS, want):
        oy = np.empty(wy.shape, np.float32)
        oz = np.empty(wz.shape, np.float32)
        rc = lib.big_run((ctypes.c_void_p * 1)(f.ctypes.data),
                         (ctypes.c_int64 * 1)(f.shape[0]),
                         (ctypes.c_void_p * 2)(oy.ctypes.data, oz.ctypes.data))  # fmt: skip
        assert rc == 0
        _check([oy, oz], [wy, wz])
