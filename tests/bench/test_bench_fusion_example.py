"""examples/bench_fusion.py runs as is and prints its fused-vs-unfused table."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_fusion_example_prints_its_table():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "bench_fusion.py"), "--small", "--repeat", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["workload", "unfused", "fused", "speedup", "kernels"]
    assert lines[1].startswith("W1 chain, 1024 floats") and lines[2].startswith("W2 softmax")
    for line in lines[1:]:
        assert line.rstrip().split()[-2].endswith("x")  # the speedup column
