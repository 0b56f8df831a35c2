"""The on-disk compile cache holds machine code that a hit runs: it must not be a way to run
someone else's code (issue 13). Entries are authenticated with a per-user secret key, the
cache directory must be the user's own (nvcc's cubin cache too), the worker pool reads only
the cache its caller names, a missing BLAS is an error instead of a crash, and dumps are
written on warm starts too."""

import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import config
from graphc.backends.llvm import blas, cache, jit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    """A fresh key location for this test (the key is read once per path and process)."""
    path = tmp_path / "config" / "graphc" / "cache.key"
    monkeypatch.setattr(config, "cache_key_file", lambda: path)
    monkeypatch.setattr(cache, "_keys", {})
    monkeypatch.setattr(cache, "_warned", set())
    return path


def _program():
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    return x, gc.reduce_sum(gc.exp(x) * 2.0, axis=1)


def _run(cache_dir, loaded=None):
    """Run the program in a new Session on ``cache_dir``; (result, loaded_from_disk)."""
    gc.reset_default_graph()
    x, y = _program()
    v = np.ones((2, 3), np.float32)
    with gc.Session(options=gc.CompileOptions(cache_dir=cache_dir)) as sess:
        out = sess.run(y, {x: v})
        exe = sess.compile(y, [x])
    np.testing.assert_allclose(out, np.exp(v).sum(1) * 2, rtol=1e-6)
    return out, exe.stats["loaded_from_disk"]


def _entries(d):
    return sorted(p for p in Path(d).glob("cpu-*.gcx") if b'"kind":"worker pool"' not in
                  p.read_bytes())  # fmt: skip


def _split(data: bytes):
    """(manifest dict, object code) of an entry file, whatever its trailer."""
    pos = len(cache.MAGIC)
    (mlen,) = struct.unpack_from("<Q", data, pos)
    man = json.loads(data[pos + 8 : pos + 8 + mlen])
    pos += 8 + mlen
    (olen,) = struct.unpack_from("<Q", data, pos)
    return man, data[pos + 8 : pos + 8 + olen]


def _rebuild(manifest, obj, trailer) -> bytes:
    man = json.dumps(manifest, separators=(",", ":")).encode()
    body = cache.MAGIC + struct.pack("<Q", len(man)) + man + struct.pack("<Q", len(obj)) + obj
    return body + trailer(body)


@pytest.fixture
def loaded_objects(monkeypatch):
    """Every object file handed to LLVM's loader from now on."""
    seen = []
    real = jit.LoadedObject.__init__

    def spy(self, objs, *a, **k):
        seen.extend([objs] if isinstance(objs, bytes) else list(objs))
        return real(self, objs, *a, **k)

    monkeypatch.setattr(jit.LoadedObject, "__init__", spy)
    return seen


@pytest.mark.parametrize("trailer", ["sha256", "hmac with another key", "none"])
def test_forged_entry_is_a_miss_and_never_runs(tmp_path, key_file, loaded_objects, trailer):
    """An entry rebuilt by someone without the key (its checksum recomputed, or MAC'd with a
    key of their own) holding injected code: recompiled and overwritten, never loaded."""
    import hashlib
    import hmac

    d = tmp_path / "cache"
    _run(d)
    (entry,) = _entries(d)
    manifest, obj = _split(entry.read_bytes())
    injected = b"\xcc" * len(obj)  # int3 everywhere: the stand-in for injected machine code
    make = {
        "sha256": lambda body: hashlib.sha256(body).digest(),
        "hmac with another key": lambda body: hmac.new(b"k" * 32, body, "sha256").digest(),
        "none": lambda body: b"",
    }[trailer]
    entry.write_bytes(_rebuild(manifest, injected, make))
    loaded_objects.clear()
    _, from_disk = _run(d)
    assert not from_disk  # a miss: compiled again
    assert all(b"\xcc" * 64 not in o for o in loaded_objects)
    rewritten = entry.read_bytes()
    assert _split(rewritten)[1] != injected  # atomically overwritten by the recompile
    assert _run(d)[1]  # ... with an entry that verifies


def test_entry_mac_covers_every_byte(tmp_path, key_file):
    d = tmp_path / "cache"
    _run(d)
    (entry,) = _entries(d)
    good = entry.read_bytes()
    for pos in (3, len(cache.MAGIC) + 9, len(good) // 2, len(good) - 40, len(good) - 1):
        bad = bytearray(good)
        bad[pos] ^= 0x10
        entry.write_bytes(bytes(bad))
        assert not _run(d)[1], pos
        assert entry.read_bytes() != bytes(bad)


def test_key_is_created_private_and_reused(tmp_path, key_file):
    d = tmp_path / "cache"
    assert not key_file.exists()
    _run(d)
    st = key_file.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == cache.KEY_BYTES
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert not [p for p in key_file.parent.iterdir() if p.name != "cache.key"]  # no temp left
    key = key_file.read_bytes()
    cache._keys.clear()  # as a new process would: the key is read again from the file
    assert _run(d)[1] and key_file.read_bytes() == key


def test_concurrent_key_creation_keeps_the_first_key(tmp_path, key_file):
    key_file.parent.mkdir(parents=True, mode=0o700)
    cache._create_key(key_file)
    first = key_file.read_bytes()
    cache._create_key(key_file)  # a second process racing to create it: no replacement
    assert key_file.read_bytes() == first and len(first) == cache.KEY_BYTES


@pytest.mark.parametrize("problem", ["mode 644", "mode 660", "other owner", "symlink", "short"])
def test_untrustworthy_key_file_is_ignored_with_a_warning(tmp_path, key_file, monkeypatch,
                                                          problem):  # fmt: skip
    """Entries written with the real key are then misses (their MAC does not verify with the
    process's random stand-in key); compiling still works."""
    d = tmp_path / "cache"
    _run(d)  # an entry authenticated with the key in key_file
    cache._keys.clear()
    if problem.startswith("mode"):
        key_file.chmod(int(problem.split()[1], 8))
    elif problem == "other owner":
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)
        if hasattr(os, "getuid"):
            monkeypatch.setattr(os, "getuid", lambda: real + 1)
    elif problem == "symlink":
        target = tmp_path / "elsewhere.key"
        key_file.rename(target)
        key_file.symlink_to(target)
    else:
        key_file.write_bytes(b"short")
    if problem == "other owner":
        d.chmod(0o700)  # the directory check would refuse first; here only the key matters
        monkeypatch.setattr(cache, "dir_problem", lambda st: None)
    with pytest.warns(UserWarning, match=r"ignoring the compile cache key .*cache\.key"):
        assert not _run(d)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(d)  # warned once; the process's own new entry works
    assert key_file.exists() or key_file.is_symlink()  # never deleted or replaced by graphc


def test_key_that_cannot_be_created_leaves_a_working_cache_for_the_process(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the config directory would be")
    monkeypatch.setattr(config, "cache_key_file", lambda: blocker / "graphc" / "cache.key")
    monkeypatch.setattr(cache, "_keys", {})
    monkeypatch.setattr(cache, "_warned", set())
    d = tmp_path / "cache"
    with pytest.warns(UserWarning, match="cache key .*cannot be read or created"):
        assert not _run(d)[1]
    assert _run(d)[1]  # this process's random key: its own entries verify


def test_created_cache_dir_is_private(tmp_path, key_file):
    d = tmp_path / "a" / "cache"
    _run(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777, 0o1777])
def test_cache_dir_writable_by_others_is_not_used(tmp_path, key_file, mode):
    d = tmp_path / "shared"
    _run(d)  # a valid entry, readable had the directory been private
    d.chmod(mode)
    with pytest.warns(UserWarning, match=rf"not using the compile cache {d}: group or others"):
        assert not _run(d)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per directory
        assert not _run(d)[1]
    d.chmod(0o700)
    assert _run(d)[1]


def test_cache_dir_of_another_user_is_not_used(tmp_path, key_file, monkeypatch):
    d = tmp_path / "theirs"
    _run(d)
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    monkeypatch.setattr(cache, "secret_key", lambda: b"\0" * 32)  # the key is not the point
    with pytest.warns(UserWarning, match=rf"{d}: it is owned by uid {real}, not by this user"):
        assert not _run(d)[1]
    assert len(_entries(d)) == 1  # nothing written there either


def test_cuda_entries_share_the_authenticated_container(tmp_path, key_file):
    """cuda/cache.py stores its entries through llvm/cache.py: same MAC, same directory rule."""
    d = tmp_path / "cache"
    assert cache.save(d, "k1", {"key": "k1"}, b"cubin", target="cuda")
    assert cache.load(d, "k1", target="cuda") == ({"key": "k1"}, b"cubin")
    entry = cache.entry_path(d, "k1", "cuda")
    data = entry.read_bytes()
    entry.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert cache.load(d, "k1", target="cuda") is None
    from graphc.backends.cuda import cache as cuda_cache

    assert cuda_cache._container is cache


# -- nvcc's cubin cache (graphc/backends/cuda/nvcc.py) ---------------------------------------

FAKE_NVCC = """#!/bin/sh
# A stand-in nvcc for graphc's tests: its output is the .cu file, and it logs each compile.
if [ "$1" = "--version" ]; then echo "fake nvcc for graphc's tests"; exit 0; fi
out=; src=
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out=$2; shift ;;
        *.cu) src=$1 ;;
    esac
    shift
done
echo "$src" >> "$(dirname "$0")/compiles.log"
cat "$src" > "$out"
"""


def write_fake_nvcc(bin_dir: Path) -> Path:
    """An executable stand-in for nvcc in ``bin_dir`` (see FAKE_NVCC); ``compiles`` counts
    its compiles."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvcc"
    script.write_text(FAKE_NVCC)
    script.chmod(0o755)
    return script


def compiles(script: Path) -> int:
    log = script.parent / "compiles.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def fake_nvcc(tmp_path, monkeypatch):
    """nvcc.compile_source, unmodified, runs a fake nvcc (the output is the source); the
    fixture's value counts the compiles so far."""
    from graphc.backends.cuda import nvcc

    script = write_fake_nvcc(tmp_path / "toolkit" / "bin")
    monkeypatch.setattr(nvcc, "find_nvcc", lambda: str(script))
    return lambda: compiles(script)


KERNEL = 'extern "C" __global__ void k(float* x) { x[threadIdx.x] = 1.0f; }'
NVCC_FLAGS = ("-O3", "-std=c++17")
PLANTED = b"\x7fELF planted GPU code"


def _nvcc(d, source=KERNEL, kind="cubin"):
    from graphc.backends.cuda import nvcc

    return nvcc.compile_source(source, "sm_90", kind, d, NVCC_FLAGS)


def _nvcc_entry(d, source=KERNEL, kind="cubin"):
    """(key, entry path) that compile_source looks up for ``source``."""
    from graphc.backends.cuda import nvcc

    key = nvcc.cache_key(source, "sm_90", kind, nvcc.find_nvcc(), NVCC_FLAGS)
    return key, cache.entry_path(d, key, nvcc.entry_target(kind))


def test_nvcc_output_is_an_authenticated_entry_and_a_hit(tmp_path, key_file, fake_nvcc):
    d = tmp_path / "cache"
    assert _nvcc(d) == (KERNEL.encode(), False) and fake_nvcc() == 1
    key, entry = _nvcc_entry(d)
    assert [p.name for p in d.iterdir()] == [entry.name] == [f"nvcc-cubin-{key}.gcx"]
    assert entry.read_bytes().startswith(cache.MAGIC)  # the container, not raw bytes
    assert _split(entry.read_bytes())[1] == KERNEL.encode()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert _nvcc(d) == (KERNEL.encode(), True) and fake_nvcc() == 1
    cache._keys.clear()  # as a new process: the key is read from the key file again
    assert _nvcc(d) == (KERNEL.encode(), True) and fake_nvcc() == 1
    assert _nvcc(d, kind="ptx") == (KERNEL.encode(), False)  # another entry
    assert _nvcc(d, kind="ptx") == (KERNEL.encode(), True) and fake_nvcc() == 2


@pytest.mark.parametrize(
    "plant",
    ["old raw layout", "raw bytes", "sha256", "hmac with another key", "altered",
     "entry of another source"],
)  # fmt: skip
def test_planted_or_forged_cubin_is_a_miss_and_never_returned(tmp_path, key_file, fake_nvcc,
                                                              plant):  # fmt: skip
    """A file where compile_source looks for the cubin that graphc would load: in the old
    raw layout (cuda/<key>.cubin), raw bytes under the entry's name, rebuilt by someone
    without the key (checksum recomputed, or MAC'd with a key of their own), a genuine entry
    altered afterwards, or a genuine entry of another source renamed: nvcc runs again, its
    output is returned and atomically replaces the entry, which is then a hit."""
    import hashlib
    import hmac

    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    key, entry = _nvcc_entry(d)
    manifest = {"key": key, "kind": "cubin", "arch": "sm_90"}
    if plant == "old raw layout":
        (d / "cuda").mkdir(mode=0o700)
        (d / "cuda" / f"{key}.cubin").write_bytes(PLANTED)
    elif plant == "raw bytes":
        entry.write_bytes(PLANTED)
    elif plant == "sha256":
        entry.write_bytes(_rebuild(manifest, PLANTED, lambda body: hashlib.sha256(body).digest()))
    elif plant == "hmac with another key":
        mac = lambda body: hmac.new(b"k" * 32, body, "sha256").digest()  # noqa: E731
        entry.write_bytes(_rebuild(manifest, PLANTED, mac))
    elif plant == "altered":
        _nvcc(d)  # a genuine entry, whose code is then changed in place
        entry.write_bytes(entry.read_bytes().replace(b"1.0f", b"6.6f"))
    else:
        other = KERNEL.replace("1.0f", "6.6f")
        _nvcc(d, other)
        _nvcc_entry(d, other)[1].replace(entry)  # authentic, for another key
    assert entry.exists() or plant == "old raw layout"
    before = fake_nvcc()
    assert _nvcc(d) == (KERNEL.encode(), False) and fake_nvcc() == before + 1
    manifest, code = _split(entry.read_bytes())
    assert code == KERNEL.encode() and manifest["key"] == key  # rewritten from nvcc's output
    assert _nvcc(d) == (KERNEL.encode(), True) and fake_nvcc() == before + 1


@pytest.mark.parametrize("problem", ["mode 777", "mode 770", "mode 1777", "another user"])
def test_nvcc_cache_in_an_unsafe_dir_is_not_used(tmp_path, key_file, fake_nvcc, monkeypatch,
                                                 problem):  # fmt: skip
    """Neither read (a valid entry is there) nor written; one warning per directory."""
    import re

    d = tmp_path / "shared"
    _nvcc(d)  # a genuine entry: a hit, had the directory stayed private
    _, entry = _nvcc_entry(d)
    good = entry.read_bytes()
    if problem.startswith("mode"):
        d.chmod(int(problem.split()[1], 8))
        why = "group or others may write it"
    else:
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)
        monkeypatch.setattr(cache, "secret_key", lambda: b"\0" * 32)  # the key is not the point
        why = f"it is owned by uid {real}, not by this user"
    with pytest.warns(UserWarning, match=rf"not using the compile cache {re.escape(str(d))}: "
                      + re.escape(why)):  # fmt: skip
        assert _nvcc(d) == (KERNEL.encode(), False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per directory
        assert _nvcc(d) == (KERNEL.encode(), False)
        assert _nvcc(d, kind="ptx") == (KERNEL.encode(), False)
    assert fake_nvcc() == 4
    assert [p.name for p in d.iterdir()] == [entry.name] and entry.read_bytes() == good


def test_nvcc_without_cache_dir_reads_and_writes_nothing(tmp_path, key_file, fake_nvcc,
                                                         monkeypatch):  # fmt: skip
    def refuse(*args, **kwargs):
        raise AssertionError("cache_dir=None must not touch a cache")

    for name in ("load", "save", "usable_dir", "secret_key"):
        monkeypatch.setattr(cache, name, refuse)
    default = config.default_cache_dir()
    listing = sorted(default.iterdir()) if default and default.is_dir() else None
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for _ in range(2):
        assert _nvcc(None) == (KERNEL.encode(), False)
    assert fake_nvcc() == 2
    assert not list(cwd.iterdir()) and not key_file.exists()
    assert (sorted(default.iterdir()) if default and default.is_dir() else None) == listing


# -- the worker pool reads only the cache its caller names ---------------------------------------

SPY = """
import json, os, sys
import numpy as np
import graphc as gc
from graphc.backends.llvm import cache
seen = []
for name in ("load", "save"):
    real = getattr(cache, name)
    def spy(d, *a, _real=real, _name=name, **k):
        seen.append([_name, str(d)])
        return _real(d, *a, **k)
    setattr(cache, name, spy)
"""


def _child(script, cache_dir, tmp_path):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache_dir),
           "GRAPHC_CONFIG_DIR": str(tmp_path / "config")}  # fmt: skip
    env.pop("GRAPHC_NO_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", SPY + textwrap.dedent(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_session_without_cache_never_reads_the_default_dir(tmp_path):
    default = tmp_path / "default-cache"
    seen = _child(
        """
        x = gc.placeholder(gc.float32, (None,))
        with gc.Session(options=gc.CompileOptions(cache_dir=None)) as s:
            assert s.run(gc.exp(x) * 2, {x: np.zeros(3, np.float32)}).tolist() == [2.0] * 3
        print(json.dumps(seen))
        """,
        default, tmp_path,
    )  # fmt: skip
    assert seen == [] and not default.exists()


def test_session_cache_dir_holds_the_pool_not_the_default_dir(tmp_path):
    default, mine = tmp_path / "default-cache", tmp_path / "mine"
    seen = _child(
        f"""
        x = gc.placeholder(gc.float32, (None,))
        with gc.Session(options=gc.CompileOptions(cache_dir={str(mine)!r})) as s:
            s.run(gc.exp(x), {{x: np.zeros(3, np.float32)}})
        print(json.dumps(seen))
        """,
        default, tmp_path,
    )  # fmt: skip
    assert seen and {d for _, d in seen} == {str(mine)} and not default.exists()
    assert any(b'"kind":"worker pool"' in p.read_bytes() for p in mine.glob("cpu-*.gcx"))


def _load_in_child(tmp_path, native):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        gc.export(sess, tmp_path / "m.gca", inputs={"x": x}, outputs={"y": gc.exp(x)})
    return _child(
        f"""
        m = gc.load({str(tmp_path / "m.gca")!r}, native={native})
        assert m.loaded_native == {native}
        assert np.allclose(m(x=np.zeros((2, 3), np.float32))["y"], 1.0)
        print(json.dumps(seen))
        """,
        tmp_path / "default-cache", tmp_path,
    )  # fmt: skip


def test_load_native_false_touches_no_cache(tmp_path):
    assert _load_in_child(tmp_path, False) == []
    assert not (tmp_path / "default-cache").exists()


def test_native_load_reads_only_the_pool_from_the_default_cache(tmp_path):
    default = tmp_path / "default-cache"
    seen = _load_in_child(tmp_path, True)
    assert {d for _, d in seen} == {str(default)}
    entries = list(default.glob("*.gcx"))
    assert len(entries) == 1 and b'"kind":"worker pool"' in entries[0].read_bytes()


def test_default_session_caches_the_pool_in_the_default_dir(tmp_path):
    """CompileOptions() names the default directory: the pool may come from there."""
    default = tmp_path / "default-cache"
    seen = _child(
        """
        x = gc.placeholder(gc.float32, (None,))
        with gc.Session() as s:
            s.run(gc.exp(x), {x: np.zeros(3, np.float32)})
        print(json.dumps(seen))
        """,
        default, tmp_path,
    )  # fmt: skip
    assert {d for _, d in seen} == {str(default)}
    assert stat.S_IMODE(default.stat().st_mode) == 0o700


# -- BLAS -------------------------------------------------------------------------------------


@pytest.fixture
def no_openblas(monkeypatch):
    """As if scipy-openblas32 were not installed (import fails) and never loaded."""
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)
    monkeypatch.setattr(blas, "_state", {})


def _matmul():
    x = gc.placeholder(gc.float32, (None, 4), name="x")
    w = gc.constant(np.arange(8, dtype=np.float32).reshape(4, 2))
    return x, gc.matmul(x, w)


def test_matmul_without_openblas_is_unavailable_not_a_crash(no_openblas):
    x, y = _matmul()
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        with pytest.raises(gc.errors.UnavailableError, match="scipy-openblas32"):
            sess.run(y, {x: np.ones((3, 4), np.float32)})
        # programs without a float GEMM do not need it
        np.testing.assert_allclose(sess.run(gc.exp(x), {x: np.zeros((1, 4))}), np.ones((1, 4)))


def test_cached_matmul_without_openblas_is_unavailable(tmp_path, key_file, monkeypatch):
    """An entry written where the BLAS was installed, read where it is not."""
    x, y = _matmul()
    with gc.Session(options=gc.CompileOptions(cache_dir=tmp_path)) as sess:
        sess.run(y, {x: np.ones((3, 4), np.float32)})
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)
    monkeypatch.setattr(blas, "_state", {})
    with gc.Session(options=gc.CompileOptions(cache_dir=tmp_path)) as sess:
        with pytest.raises(gc.errors.UnavailableError, match="scipy-openblas32"):
            sess.run(y, {x: np.ones((3, 4), np.float32)})


def test_exported_matmul_without_openblas_is_unavailable(tmp_path, monkeypatch):
    x, y = _matmul()
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        gc.export(sess, tmp_path / "mm.gca", inputs={"x": x}, outputs={"y": y})
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)
    monkeypatch.setattr(blas, "_state", {})
    with pytest.raises(gc.errors.UnavailableError, match="scipy-openblas32"):
        gc.load(tmp_path / "mm.gca")


# -- dumps ------------------------------------------------------------------------------------


def test_dump_dir_is_written_on_a_warm_cache(tmp_path, key_file):
    x, y = _program()
    v = np.ones((2, 3), np.float32)
    dumps = []
    for i in range(2):
        opts = gc.CompileOptions(cache_dir=tmp_path / "cache", dump_dir=tmp_path / f"dump{i}")
        with gc.Session(options=opts) as sess:
            sess.run(y, {x: v})
        dumps.append({p.name: p.read_text() for p in (tmp_path / f"dump{i}").iterdir()})
    assert _entries(tmp_path / "cache")  # the first session wrote an entry
    assert dumps[0] and dumps[0].keys() == dumps[1].keys()
    assert any(n.startswith("cpu.") for n in dumps[1]) and "cpu.graph.dot" in dumps[1]
    assert dumps[0] == dumps[1]


# -- the cuda target's entries, on the fake GPU -----------------------------------------------


def _cuda_fixture():
    from tests.backends import cuda_emulation as emu

    if emu.available() is not None:
        return None
    from tests.backends.test_cuda_runtime_emulated import fake_gpu

    return fake_gpu


fake_gpu = _cuda_fixture()


@pytest.mark.skipif(fake_gpu is None, reason="no host emulation of the cuda runtime")
def test_cuda_entry_forged_is_a_miss(request, tmp_path, key_file, monkeypatch):
    """A whole cuda executable from the disk cache: used when its MAC verifies, a miss (and
    rewritten) when it was rebuilt without the key."""
    import hashlib

    request.getfixturevalue("fake_gpu")
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reduce_sum(gc.exp(x) * 2.0, axis=1)
    v = np.ones((2, 3), np.float32)
    d = tmp_path / "cache"

    def run():
        with gc.Session(target="cuda", options=gc.CompileOptions(cache_dir=d)) as sess:
            np.testing.assert_allclose(sess.run(y, {x: v}), np.exp(v).sum(1) * 2, rtol=1e-5)
            return sess.compile(y, [x]).stats["loaded_from_disk"]

    assert not run() and run()
    (entry,) = d.glob("cuda-*.gcx")
    manifest, payload = _split(entry.read_bytes())
    entry.write_bytes(_rebuild(manifest, payload, lambda body: hashlib.sha256(body).digest()))
    assert not run()  # a miss, recompiled ...
    assert run()  # ... and rewritten with a MAC that verifies
