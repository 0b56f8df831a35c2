"""Load-to-first-result of an exported W3 MLP vs a cold compile (docs/benchmarks.md, "Export").

Run: ``python tests/export/measure_load.py [--repeat 5]``. Every measurement runs in a fresh
Python process (nothing cached in memory, disk cache off), after ``import graphc``:

* cold compile: build the W3 network (784-512-512-10, batch 256), ``Session.run`` of the
  logits (optimisation passes, lowering, LLVM) -> first result;
* load native: ``gc.load(artifact)`` (stored object code) + first call;
* load recompiling: ``gc.load(artifact, native=False)`` (stored Program, compiled) + first call;
* C library: ``ctypes.CDLL(libw3.so)`` + first ``w3_run`` (from gc.export_c).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BUILD = """
import numpy as np, graphc as gc
from graphc.bench.workloads import MLPStep, mlp_inputs
sizes = MLPStep().sizes(False)
inp = mlp_inputs(sizes, np.random.default_rng(0), sizes["batch"])
x = gc.placeholder(gc.float32, (None, sizes["inputs"]), name="x")
h = x
for i in (1, 2, 3):
    w = gc.Variable(inp[f"w{i}"], name=f"w{i}")
    b = gc.Variable(inp[f"b{i}"], name=f"b{i}")
    h = gc.matmul(h, w) + b
    if i < 3:
        h = gc.nn.relu(h)
logits = h
sess = gc.Session(target="cpu", options=gc.CompileOptions(cache_dir=None))
sess.run(gc.global_variables_initializer())
"""

CHILD = {
    "cold_compile": BUILD.replace("sess.run(gc.global_variables_initializer())\n", "")
    + """
t0 = time.perf_counter()
sess.run(gc.global_variables_initializer())
out = sess.run(logits, {x: data})
t1 = time.perf_counter()
""",
    "load_native": """
t0 = time.perf_counter()
m = gc.load(ART)
out = m(x=data)["logits"]
t1 = time.perf_counter()
assert m.loaded_native
""",
    "load_recompile": """
t0 = time.perf_counter()
m = gc.load(ART, native=False)
out = m(x=data)["logits"]
t1 = time.perf_counter()
""",
    "c_library": """
import ctypes
t0 = time.perf_counter()
lib = ctypes.CDLL(LIB)
out = np.empty((256, 10), np.float32)
rc = lib.w3_run((ctypes.c_void_p * 1)(data.ctypes.data), (ctypes.c_int64 * 1)(256),
                (ctypes.c_void_p * 1)(out.ctypes.data))
t1 = time.perf_counter()
assert rc == 0
""",
}


def _child(kind: str, art: str, lib: str, want: str) -> float:
    code = (
        "import time, numpy as np\nt_import = time.perf_counter()\nimport graphc as gc\n"
        "t_import = time.perf_counter() - t_import\n"
        f"ART, LIB = {art!r}, {lib!r}\n"
        "data = np.random.default_rng(1).random((256, 784), dtype=np.float32)\n"
        + CHILD[kind]
        + f"assert np.allclose(out, np.load({want!r}), rtol=1e-4, atol=1e-4)\n"
        "print('RESULT', t1 - t0, t_import)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    secs, imp = proc.stdout.split("RESULT", 1)[1].split()
    return float(secs), float(imp)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    import numpy as np

    import graphc as gc

    with tempfile.TemporaryDirectory() as tmp:
        ns: dict = {}
        exec(BUILD, ns)  # noqa: S102 - the same network as the children build
        sess, x, logits = ns["sess"], ns["x"], ns["logits"]
        art = str(Path(tmp) / "w3.gca")
        gc.export(sess, art, inputs={"x": x}, outputs={"logits": logits})
        lib = gc.export_c(sess, tmp, {"x": x}, {"logits": logits}, "w3")["library"]
        data = np.random.default_rng(1).random((256, 784), dtype=np.float32)
        want = str(Path(tmp) / "want.npy")
        np.save(want, sess.run(logits, {x: data}))
        results = {}
        for kind in CHILD:
            runs = [_child(kind, art, lib, want) for _ in range(args.repeat)]
            secs = [r[0] for r in runs]
            results[kind] = {
                "median_ms": 1e3 * statistics.median(secs),
                "min_ms": 1e3 * min(secs),
                "import_ms": 1e3 * statistics.median(r[1] for r in runs),
            }
            print(f"{kind:16s} median {results[kind]['median_ms']:8.1f} ms  "
                  f"min {results[kind]['min_ms']:8.1f} ms", flush=True)  # fmt: skip
        print(f"artifact {Path(art).stat().st_size:,d} bytes, library "
              f"{Path(lib).stat().st_size:,d} bytes")  # fmt: skip
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
