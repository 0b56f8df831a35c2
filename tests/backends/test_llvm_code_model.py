"""Objects loaded into the process use absolute 64-bit references only (large code model, no
PIC): RuntimeDyld maps .text and .rodata separately, and a 32-bit PC-relative offset between
them aborted the process once PyTorch and JAX had fragmented the address space. Objects for a
shared library (gc.export_c) are PIC instead, so the library has no text relocations."""

import platform
import re
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
from graphc.backends.cpu.native import cache_entry, object_code
from graphc.program import extract

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("readelf") is None,
    reason="x86-64 relocation types, read with readelf",
)


def _model():
    x = gc.placeholder(gc.float32, (None, 64), name="x")
    w = gc.constant(np.random.default_rng(0).normal(size=(64, 300)).astype(np.float32))
    y = gc.tanh(gc.nn.relu(gc.matmul(x, w)) * 1.702 + 0.1) + gc.exp(-gc.reduce_sum(x))
    return x, y


def _relocations(obj: bytes, tmp_path) -> set:
    path = tmp_path / "code.o"
    path.write_bytes(obj)
    out = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True).stdout
    return set(re.findall(r"R_X86_64_\w+", out))


def test_in_process_objects_use_absolute_64_bit_references(tmp_path):
    x, y = _model()
    options = gc.CompileOptions(cache_dir=tmp_path / "cache")
    sess = gc.Session(options=options)
    xv = np.random.default_rng(1).normal(size=(4096, 64)).astype(np.float32)  # parallel loops
    got = sess.run(y, {x: xv})
    want = gc.Session(target="reference").run(y, {x: xv})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    manifest, payload = cache_entry(extract([y], [], [x]), options)
    kinds = set()
    for obj in object_code(manifest, payload):
        kinds |= _relocations(obj, tmp_path)
    assert kinds, "the program has constants and calls: it must have relocations"
    # 64-bit absolute or PC-relative (.eh_frame): no 32-bit offset that a far mapping overflows
    assert kinds <= {"R_X86_64_64", "R_X86_64_PC64"}, kinds


def test_export_c_library_is_position_independent(tmp_path):
    x, y = _model()
    paths = gc.export_c(gc.Session(), tmp_path, {"x": x}, {"y": y}, "pic")
    dynamic = subprocess.run(
        ["readelf", "-dW", paths["library"]], capture_output=True, text=True
    ).stdout
    assert "TEXTREL" not in dynamic
