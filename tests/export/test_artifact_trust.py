"""Artifacts must not be a way to crash the process or run code the caller did not ask for
(issue 13): a native manifest that lies about the program is refused before any stored code
runs, every malformed header is InvalidArtifactError, signatures, and native=False never
runs stored code."""

import copy
import hashlib
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import artifact
from graphc.artifact import read_container, write_container
from graphc.backends.llvm import jit

ROOT = Path(__file__).resolve().parents[2]


def _build():
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, (None, 20), name="x")
    w1 = gc.Variable(rng.normal(size=(20, 16)).astype(np.float32), name="w1")
    b1 = gc.Variable(rng.normal(size=16).astype(np.float32), name="b1")
    w2 = gc.Variable(rng.normal(size=(16, 4)).astype(np.float32), name="w2")
    h = gc.nn.relu(gc.matmul(x, w1) + b1)
    logits = gc.matmul(h, w2)
    y = gc.nn.softmax(logits)
    ok = gc.debugging.check_numerics(y, "y") if hasattr(gc, "debugging") else y
    return x, y, ok


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(path, feed, expected output) of a small MLP artifact with native code."""
    gc.reset_default_graph()
    x, y, _ = _build()
    path = tmp_path_factory.mktemp("art") / "mlp.gca"
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(gc.global_variables_initializer())
        gc.export(sess, path, inputs={"x": x}, outputs={"y": y})
        feed = np.random.default_rng(3).normal(size=(5, 20)).astype(np.float32)
        want = sess.run(y, {x: feed})
    gc.reset_default_graph()
    return path, feed, want


@pytest.fixture
def art(exported, tmp_path):
    """A private copy of the artifact to alter."""
    path, feed, want = exported
    mine = tmp_path / "mlp.gca"
    mine.write_bytes(path.read_bytes())
    return mine, feed, want


def _rewrite(path, edit, signing_key=None):
    """Alter header and sections; the checksums are recomputed, as an attacker would."""
    header, sections = read_container(path)
    edit(header, sections)
    write_container(path, header, sections, signing_key=signing_key)


def _edit_manifest(fn):
    def edit(header, sections):
        man = json.loads(sections["native/manifest.json"])
        fn(man, header)
        sections["native/manifest.json"] = json.dumps(man).encode()

    return edit


def _buffer(man, kind):
    return next(b for b in man["program"]["buffers"] if b[3] == kind)


def _output_buffer(man):
    name = man["program"]["outputs"][0]
    return next(b for b in man["program"]["buffers"] if b[0] == name)


def _shrink(b):
    b[2] = [["c", 1, "int64"] for _ in b[2]]


LIES = {
    "smaller output": lambda m, h: _shrink(_output_buffer(m)),
    "smaller temp": lambda m, h: _shrink(_buffer(m, "temp")),
    "smaller var": lambda m, h: _shrink(_buffer(m, "var")),
    "output dtype": lambda m, h: _output_buffer(m).__setitem__(1, "float64"),
    "input dtype": lambda m, h: _buffer(m, "input").__setitem__(1, "int32"),
    "buffer kind": lambda m, h: _buffer(m, "temp").__setitem__(3, "var"),
    "alias": lambda m, h: _buffer(m, "temp").__setitem__(4, _output_buffer(m)[0]),
    "buffer dropped": lambda m, h: m["program"]["buffers"].pop(),
    "dim source": lambda m, h: m["program"]["dims"][0].__setitem__(1, [0, 1]),
    "outputs": lambda m, h: m["program"].__setitem__("outputs", [_buffer(m, "var")[0]]),
    "var reads": lambda m, h: m["program"].__setitem__("var_reads", {}),
    "status slot": lambda m, h: m["program"].__setitem__("checks", [[7, "boom", "nan"]]),
    "shape check": lambda m, h: m["program"]["dim_checks"].append([["c", True, "bool"], "m"]),
    "kernel dropped": lambda m, h: m["kernels"].pop(),
    "kernel renamed": lambda m, h: m["kernels"][0].__setitem__(0, "gc_entry"),
    "written roots": lambda m, h: m.__setitem__("written_roots", []),
    "fusion flag": lambda m, h: h["native"].__setitem__("fusion", False),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_native_manifest_that_lies_is_refused(art, lie):
    path, _, _ = art
    _rewrite(path, _edit_manifest(LIES[lie]))
    with pytest.raises(gc.errors.InvalidArtifactError, match="native code"):
        gc.load(path)


def test_refused_manifest_never_reaches_llvm(art, monkeypatch):
    path, _, _ = art
    _rewrite(path, _edit_manifest(LIES["smaller output"]))

    def refuse(*a, **k):
        raise AssertionError("stored code was loaded")

    monkeypatch.setattr(jit.LoadedObject, "__init__", refuse)
    with pytest.raises(gc.errors.InvalidArtifactError, match="does not match the stored program"):
        gc.load(path)


SHRUNK_CHILD = """
import sys, numpy as np, graphc as gc
try:
    m = gc.load(sys.argv[1])
    m(x=np.ones((64, 20), np.float32))
    print("RAN")
except gc.errors.InvalidArtifactError as exc:
    print("REFUSED", exc)
"""


def test_shrunk_output_buffers_do_not_crash_a_process(art):
    """The reported case: smaller output shapes, checksums recomputed; loading and calling it
    crashed the process. In a child process, so a crash fails this test only."""
    path, _, _ = art
    _rewrite(path, _edit_manifest(LIES["smaller output"]))
    proc = subprocess.run([sys.executable, "-c", SHRUNK_CHILD, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("REFUSED"), proc.stdout


def test_untouched_artifact_still_loads_natively(art):
    path, feed, want = art
    m = gc.load(path)
    assert m.loaded_native
    np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)


def test_export_from_a_warm_cache_stores_the_optimised_program(tmp_path):
    """An executable loaded from the disk cache holds the un-optimised program; the artifact
    must store the optimised one the code was lowered from, or loading would refuse it."""
    x, y, _ = _build()
    outs = []
    for i in range(2):
        with gc.Session(options=gc.CompileOptions(cache_dir=tmp_path / "cache")) as sess:
            sess.run(gc.global_variables_initializer())
            feed = np.ones((3, 20), np.float32)
            outs.append(sess.run(y, {x: feed}))
            assert sess.compile(y, [x]).stats["loaded_from_disk"] == (i == 1)
            gc.export(sess, tmp_path / f"m{i}.gca", inputs={"x": x}, outputs={"y": y})
    progs = [read_container(tmp_path / f"m{i}.gca")[1]["program.json"] for i in range(2)]
    assert progs[0] == progs[1]
    for i in range(2):
        m = gc.load(tmp_path / f"m{i}.gca")
        assert m.loaded_native, m.recompiled_reason
        np.testing.assert_allclose(m(x=feed)["y"], outs[0], rtol=1e-6)


def test_format_1_native_code_is_recompiled(art):
    """Native code of an older graphc (format 1) has no fusion flag to derive its manifest
    from: it is not run; the stored program is compiled instead, with a warning."""
    path, feed, want = art
    _rewrite(path, lambda h, s: h["native"].update(format=1))
    with pytest.warns(UserWarning, match="older graphc"):
        m = gc.load(path)
    assert not m.loaded_native
    np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)


# -- signature and variables against the program -----------------------------------------------


def _set_input_shape(shape):
    return lambda h, s: h["signature"]["inputs"]["x"].update(shape=shape)


def _shrink_variable(h, s):
    meta = json.loads(s["variables.json"])
    for m in meta:
        if m["name"] == "w1":
            m["shape"] = [2, 16]
            m["nbytes"] = 2 * 16 * 4
    blob = b"".join(s["variables.bin"][m["offset"] : m["offset"] + 64 * 4 * 16] for m in meta)
    offset = 0
    for m in meta:
        m["offset"] = offset
        offset += m["nbytes"]
    s["variables.json"] = json.dumps(meta).encode()
    s["variables.bin"] = b"\0" * offset if len(blob) < offset else blob[:offset]


MISMATCHES = {
    "input shape": _set_input_shape([None, 5]),
    "input rank": _set_input_shape([None]),
    "input dtype": lambda h, s: h["signature"]["inputs"]["x"].update(dtype="float64"),
    "output dtype": lambda h, s: h["signature"]["outputs"]["y"].update(dtype="int32"),
    "variable shape": _shrink_variable,
}


@pytest.mark.parametrize("what", sorted(MISMATCHES))
@pytest.mark.parametrize("native", [True, False])
def test_signature_and_variables_must_match_the_program(art, what, native):
    path, _, _ = art
    _rewrite(path, MISMATCHES[what])
    with pytest.raises(gc.errors.InvalidArtifactError):
        gc.load(path, native=native)


# -- malformed headers --------------------------------------------------------------------------


def _raw(path):
    data = path.read_bytes()
    (hlen,) = struct.unpack_from("<Q", data, len(artifact.MAGIC))
    start = len(artifact.MAGIC) + 8
    return json.loads(data[start : start + hlen]), data[start + hlen + 32 :]


def _write_raw(path, head_bytes: bytes, body: bytes):
    """A container with this exact header text (its checksum right) and body."""
    path.write_bytes(artifact.MAGIC + struct.pack("<Q", len(head_bytes)) + head_bytes
                     + hashlib.sha256(head_bytes).digest() + body)  # fmt: skip


def _write_header(path, header, body):
    _write_raw(path, json.dumps(header, sort_keys=True).encode(), body)


def _load_or_invalid(path, feed=None, want=None):
    """gc.load: InvalidArtifactError, or a model that runs correctly (the harmless edits)."""
    try:
        m = gc.load(path)
    except gc.errors.InvalidArtifactError as exc:
        return f"invalid: {exc}"
    if feed is not None:
        np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)
    return "loaded"


def _sections_edit(fn):
    def edit(h):
        fn(h["sections"])

    return edit


HEADERS = {
    "list": lambda h: [h],
    "string": lambda h: "header",
    "number": lambda h: 5,
    "null": lambda h: None,
    "sections 5": lambda h: h.update(sections=5),
    "sections dict": lambda h: h.update(sections={"a": 1}),
    "sections missing": lambda h: h.pop("sections"),
    "section not an object": lambda h: h["sections"].__setitem__(0, "program.json"),
    "no offset": _sections_edit(lambda s: s[0].pop("offset")),
    "offset zz": _sections_edit(lambda s: s[0].update(offset="zz")),
    "offset float": _sections_edit(lambda s: s[0].update(offset=0.0)),
    "offset true": _sections_edit(lambda s: s[1].update(offset=True)),
    "offset negative": _sections_edit(lambda s: s[1].update(offset=-8)),
    "offset huge": _sections_edit(lambda s: s[1].update(offset=1 << 70)),
    "overlap": _sections_edit(lambda s: s[-1].update(offset=s[0]["offset"])),
    "gap": _sections_edit(lambda s: s[1].update(offset=s[1]["offset"] + 1)),
    "out of file": _sections_edit(lambda s: s[-1].update(size=s[-1]["size"] + 100)),
    "size negative": _sections_edit(lambda s: s[0].update(size=-1)),
    "size string": _sections_edit(lambda s: s[0].update(size="12")),
    "name int": _sections_edit(lambda s: s[0].update(name=7)),
    "name duplicate": _sections_edit(lambda s: s[1].update(name=s[0]["name"])),
    "sha list": _sections_edit(lambda s: s[0].update(sha256=[1])),
    "sha short": _sections_edit(lambda s: s[0].update(sha256="abc")),
    "extra key": _sections_edit(lambda s: s[0].update(extra=1)),
    "format string": lambda h: h.update(format_version="1"),
    "format bool": lambda h: h.update(format_version=True),
    "signed other": lambda h: h.update(signed="rsa"),
    "signed without trailer": lambda h: h.update(signed="hmac-sha256"),
    "signature list": lambda h: h.update(signature=[]),
    "signature inputs list": lambda h: h["signature"].update(inputs=[1]),
    "input spec string": lambda h: h["signature"]["inputs"].update(x="float32"),
    "input dtype bogus": lambda h: h["signature"]["inputs"]["x"].update(dtype="complex512"),
    "input dtype int": lambda h: h["signature"]["inputs"]["x"].update(dtype=1),
    "input shape str": lambda h: h["signature"]["inputs"]["x"].update(shape="(None, 20)"),
    "input dim negative": lambda h: h["signature"]["inputs"]["x"].update(shape=[None, -20]),
    "input_order int": lambda h: h.update(input_order=3),
    "input_order unknown": lambda h: h.update(input_order=["z"]),
    "input_order missing": lambda h: h.pop("input_order"),
    "output_order twice": lambda h: h.update(output_order=["y", "y"]),
    "target list": lambda h: h.update(target=["cpu"]),
    "target unknown": lambda h: h.update(target="tpu"),
    "native list": lambda h: h.update(native=[1]),
    "native format str": lambda h: h["native"].update(format="2"),
    "native features str": lambda h: h["native"].update(features="+avx"),
    "native sizes neg": lambda h: h["native"].update(object_sizes=[-1]),
    "native fusion str": lambda h: h["native"].update(fusion="yes"),
    "native cpu missing": lambda h: h["native"].pop("cpu"),
    "kernels dict": lambda h: h.update(kernels={}),
    "kernel ops int": lambda h: h["kernels"][0].update(ops=1),
    "stats list": lambda h: h.update(stats=[]),
    "machine str": lambda h: h.update(machine="x86"),
    "version int": lambda h: h.update(graphc_version=1),
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_malformed_header_is_invalid_artifact(art, case):
    path, _, _ = art
    header, body = _raw(path)
    new = HEADERS[case](header)
    _write_header(path, header if new is None and case != "null" else new, body)
    with pytest.raises(gc.errors.InvalidArtifactError):
        gc.load(path)
    from graphc.exporter import describe, to_dot

    for fn in (describe, to_dot):  # graphc inspect / graphc dot
        with pytest.raises(gc.errors.InvalidArtifactError):
            fn(path)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def test_fuzzed_header_fields_are_invalid_or_harmless(art):
    """Every field of the header (sampled), replaced by values of every JSON type: gc.load
    raises InvalidArtifactError or loads a model that computes the right result."""
    path, feed, want = art
    header, body = _raw(path)
    rng = np.random.default_rng(13)
    paths = [p for p, _ in _paths(header) if not (p and p[0] == "stats")]
    values = [None, True, -1, 3, 1.5, "zz", [], {}, [None], {"a": None}]
    picked = rng.choice(len(paths), size=min(len(paths), 70), replace=False)
    counts = {"invalid": 0, "loaded": 0}
    for i in picked:
        value = values[rng.integers(len(values))]
        _write_header(path, _replace(header, paths[i], value), body)
        outcome = _load_or_invalid(path, feed, want)
        counts[outcome.split(":")[0]] += 1
    assert counts["invalid"] >= 40, counts


def test_fuzzed_header_bytes_are_invalid_or_harmless(art):
    """Random byte edits of the header's JSON text (checksum recomputed)."""
    path, feed, want = art
    data = path.read_bytes()
    (hlen,) = struct.unpack_from("<Q", data, len(artifact.MAGIC))
    start = len(artifact.MAGIC) + 8
    text, body = data[start : start + hlen], data[start + hlen + 32 :]
    rng = np.random.default_rng(7)
    alphabet = b'{}[]",:0123456789-.eE truefalsn\\'
    for _ in range(60):
        bad = bytearray(text)
        for _ in range(int(rng.integers(1, 4))):
            bad[int(rng.integers(len(bad)))] = alphabet[int(rng.integers(len(alphabet)))]
        _write_raw(path, bytes(bad), body)
        _load_or_invalid(path, feed, want)


def test_deeply_nested_header_is_invalid(art):
    path, _, _ = art
    _, body = _raw(path)
    _write_raw(path, b"[" * 100000 + b"]" * 100000, body)
    with pytest.raises(gc.errors.InvalidArtifactError):
        gc.load(path)


def test_malformed_program_and_variables_sections(art):
    path, _, _ = art
    cases = {
        "program list": ("program.json", b"[1, 2]"),
        "program nodes dict": ("program.json", b'{"nodes": {"a": 1}, "feeds": [], '
                                               b'"fetches": [], "targets": []}'),
        "program nested": ("program.json", b"[" * 100000),
        "variables object": ("variables.json", b'{"name": 1}'),
        "variables shape str": ("variables.json", b'[{"name": "w1", "dtype": "float32", '
                                                  b'"shape": "ab", "offset": 0, "nbytes": 4}]'),
        "variables offset neg": ("variables.json", b'[{"name": "w1", "dtype": "float32", '
                                                   b'"shape": [1], "offset": -4, "nbytes": 4}]'),
        "variables shape huge": ("variables.json", b'[{"name": "w1", "dtype": "float32", "shape":'
                                                   b' [4611686018427387904, 8], "offset": 0, '
                                                   b'"nbytes": 0}]'),
    }  # fmt: skip
    original = path.read_bytes()
    for name, (section, data) in cases.items():
        path.write_bytes(original)
        _rewrite(path, lambda h, s, section=section, data=data: s.__setitem__(section, data))
        with pytest.raises(gc.errors.InvalidArtifactError):
            gc.load(path)
        assert name


def test_program_nodes_with_wrong_types(art):
    """Every field of the first few stored nodes replaced by values of other JSON types."""
    path, feed, want = art
    header, sections = read_container(path)
    doc = json.loads(sections["program.json"])
    original = path.read_bytes()
    values = [None, "zz", -1, [], {}, [["x"]], 2.5]
    for node in range(3):
        for key in doc["nodes"][node]:
            for value in values[:: 1 + node]:
                bad = copy.deepcopy(doc)
                bad["nodes"][node][key] = value
                path.write_bytes(original)
                _rewrite(path, lambda h, s, b=bad: s.__setitem__(
                    "program.json", json.dumps(b).encode()))  # fmt: skip
                _load_or_invalid(path, feed, want)


# -- signatures ---------------------------------------------------------------------------------

KEY = b"a shared secret between author and users"


def _signed(art):
    path, feed, want = art
    _rewrite(path, lambda h, s: None, signing_key=KEY)
    return path, feed, want


def test_signed_artifact_verifies_and_runs(art):
    path, feed, want = _signed(art)
    assert read_container(path)[0]["signed"] == "hmac-sha256"
    m = gc.load(path, verify_key=KEY)
    assert m.loaded_native
    np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)
    m = gc.load(path)  # signature not asked for: not checked, loads as before
    np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)


def test_export_signs(tmp_path):
    x, y, _ = _build()
    with gc.Session(options=gc.CompileOptions(cache_dir=None)) as sess:
        sess.run(gc.global_variables_initializer())
        gc.export(sess, tmp_path / "s.gca", inputs={"x": x}, outputs={"y": y}, signing_key=KEY)
        with pytest.raises(TypeError, match="signing_key"):
            gc.export(sess, tmp_path / "t.gca", inputs={"x": x}, outputs={"y": y},
                      signing_key="text")  # fmt: skip
        with pytest.raises(ValueError, match="signing_key"):
            gc.export(sess, tmp_path / "t.gca", inputs={"x": x}, outputs={"y": y},
                      signing_key=b"")  # fmt: skip
    assert gc.load(tmp_path / "s.gca", verify_key=KEY).loaded_native
    with pytest.raises(gc.errors.InvalidArtifactError, match="does not verify"):
        gc.load(tmp_path / "s.gca", verify_key=b"another key")
    with pytest.raises(TypeError, match="verify_key"):
        gc.load(tmp_path / "s.gca", verify_key="text")


def test_wrong_key_is_refused(art):
    path, _, _ = _signed(art)
    with pytest.raises(gc.errors.InvalidArtifactError, match="signature does not verify"):
        gc.load(path, verify_key=KEY + b"!")


def test_unsigned_artifact_is_refused_when_a_key_is_given(art):
    path, _, _ = art
    with pytest.raises(gc.errors.InvalidArtifactError, match="not signed"):
        gc.load(path, verify_key=KEY)


def test_signature_stripped_or_data_altered_is_refused(art):
    path, _, _ = _signed(art)
    signed = path.read_bytes()
    # stripped: rewritten without the key (the header no longer says signed)
    _rewrite(path, lambda h, s: None)
    with pytest.raises(gc.errors.InvalidArtifactError, match="not signed"):
        gc.load(path, verify_key=KEY)
    # a section altered and its checksum recomputed, the old signature kept
    path.write_bytes(signed)
    header, body = _raw(path)
    first = header["sections"][0]
    chunk = bytearray(body[: first["size"]])
    chunk[-2] ^= 1
    first["sha256"] = hashlib.sha256(chunk).hexdigest()
    _write_header(path, header, bytes(chunk) + body[first["size"] :])
    with pytest.raises(gc.errors.InvalidArtifactError, match="signature does not verify"):
        gc.load(path, verify_key=KEY)


# -- native=False -------------------------------------------------------------------------------


def test_native_false_never_runs_stored_code(art, monkeypatch):
    """The stored code replaced by traps (everything re-checksummed): native=False never
    looks at it and loads only code it compiled itself."""
    path, feed, want = art

    def poison(header, sections):
        sections["native/code.bin"] = b"\xcc" * len(sections["native/code.bin"])

    _rewrite(path, poison)
    seen = []
    real = jit.LoadedObject.__init__

    def spy(self, objs, *a, **k):
        seen.extend([objs] if isinstance(objs, bytes) else list(objs))
        return real(self, objs, *a, **k)

    monkeypatch.setattr(jit.LoadedObject, "__init__", spy)
    from graphc.backends.cpu import native as native_mod

    def refuse(*a, **k):
        raise AssertionError("native=False looked at the stored code")

    monkeypatch.setattr(native_mod, "load_native", refuse)
    m = gc.load(path, native=False)
    np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)
    assert not m.loaded_native and seen  # it compiled its own code ...
    assert not any(b"\xcc" * 64 in o for o in seen)  # ... and loaded nothing stored


def test_native_false_ignores_poisoned_code_in_a_fresh_process(art):
    """Stored code replaced by traps, everything re-checksummed: native=False still runs (in
    a new process, where nothing is compiled yet)."""
    path, feed, want = art

    def poison(header, sections):
        sections["native/code.bin"] = b"\xcc" * len(sections["native/code.bin"])

    _rewrite(path, poison)
    m = gc.load(path, native=False)
    np.testing.assert_allclose(m(x=feed)["y"], want, rtol=1e-6)
    child = textwrap.dedent(
        """
        import sys, numpy as np, graphc as gc
        m = gc.load(sys.argv[1], native=False)
        print(m(x=np.ones((2, 20), np.float32))["y"].shape)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "(2, 4)", proc.stderr[-2000:]
