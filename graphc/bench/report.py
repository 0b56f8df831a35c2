"""What a bench run reports: machine information, the text table, the JSON document."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from ..version import __version__
from .peers import PEERS

SCHEMA = "graphc-bench/1"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags() -> list:
    """The vector ISA extensions that matter for generated code (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl")
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def _commit() -> str | None:
    """The git commit graphc runs from, when it runs from a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    """CPU model and cores, library versions and the peers importable here."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": cores,
        "cpu_flags": _cpu_flags(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "graphc": __version__,
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "peers": {p.name: p.version() for p in PEERS},
    }


def to_dict(result) -> dict:
    """The JSON document of a BenchResult."""
    return {
        "schema": SCHEMA,
        "machine": result.machine,
        "options": result.options,
        "ok": result.ok,
        "workloads": [dataclasses.asdict(w) for w in result.workloads],
    }


def write_json(result, path) -> None:
    Path(path).write_text(json.dumps(to_dict(result), indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


# -- the table --------------------------------------------------------------------------------


def fmt_time(seconds: float | None, unit: str = "ms") -> str:
    if seconds is None:
        return "n/a"
    if unit == "us":
        return f"{seconds * 1e6:.2f} us"
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{seconds:.3f} s"
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.1f} ms"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _err(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


COLUMNS = ("implementation", "median", "min", "runs", "vs base", "kernels", "bytes moved",
           "peak temp", "compile", "max err")  # fmt: skip


def format_table(result) -> str:
    """The human-readable report: a header, then one block per workload."""
    m = result.machine
    o = result.options
    have = [f"{k} {v}" for k, v in m["peers"].items() if v]
    missing = [k for k, v in m["peers"].items() if not v]
    lines = [
        f"graphc bench  target={o['target']}  quick={o['quick']}  repeat={o['repeat']}",
        f"machine: {m['cpu']}, {m['cores']} cores ({' '.join(m['cpu_flags']) or '-'}); "
        f"numpy {m['numpy']}; graphc {m['graphc']}"
        + (f" ({m['commit']})" if m.get("commit") else ""),
        "peers: "
        + ("; ".join(have) or "none")
        + (f"; not importable: {', '.join(missing)}" if missing else ""),
        "vs base = median / median of the workload's base row (graphc fused): >1 means the base "
        "is faster",
    ]
    for w in result.workloads:
        lines.append("")
        lines.append(f"{w.id} {w.title}: {w.description}")
        if w.status in ("skipped", "error"):
            lines.append(f"  {w.status}: {w.reason}")
            continue
        if not w.baseline:  # a scaling workload: one row per size, compile seconds by stage
            lines.extend(_scaling_rows(w))
            continue
        rows = [COLUMNS]
        for i in w.impls:
            if i.status != "ok":
                label = "WRONG" if i.status == "wrong" else i.status
                rows.append((i.name, f"{label}: {i.reason}"))
                continue
            rows.append((
                i.name + (" (base)" if i.name == w.baseline else ""),
                fmt_time(i.median_s, w.unit), fmt_time(i.min_s, w.unit), str(i.runs),
                _ratio(i.vs_baseline), "n/a" if i.kernels is None else str(i.kernels),
                fmt_bytes(i.bytes_moved), fmt_bytes(i.peak_temp_bytes),
                "-" if i.compile_s is None else fmt_time(i.compile_s), _err(i.max_abs_err),
            ))  # fmt: skip
        lines.extend(_align(rows))
        for key, value in w.speedups.items():
            lines.append(f"  {key.replace('_', ' ')}: {value:.2f}x")
        for i in w.impls:
            if "batch_sizes" in i.extra and i.status == "ok":
                lines.append(
                    f"  {i.name}: {i.extra['compiles']} compilation(s) of the step over batch "
                    f"sizes {', '.join(map(str, i.extra['batch_sizes']))}"
                )
            if "disk_loads" in i.extra and i.status == "ok":
                lines.append(
                    f"  {i.name}: {i.extra['disk_loads']} executable(s) loaded from the disk "
                    f"cache, {i.extra['compiles']} compiled"
                )
        if w.status == "refused":
            lines.append(f"  REFUSED: {w.reason}")
        lines.extend(f"  note: {n}" for n in w.notes)
    lines.append("")
    lines.append(f"total {o['seconds']:.1f} s" + ("" if result.ok else "; FAILED (see above)"))
    return "\n".join(lines)


def _scaling_rows(w) -> list:
    """A scaling workload's block: per point its op count, kernels, cold compile seconds in
    total (with peers: and CPU seconds), each peer's cold compile of the same step (wall,
    CPU) and graphc's wall seconds over it, graphc's seconds per op and per stage; then each
    series' per-op ratio of largest to smallest, graphc against each peer at the largest
    size, and the peers' failures and checks."""
    graphc = [i for i in w.impls if i.family == "graphc"]
    others = [i for i in w.impls if i.family == "peer"]
    peers = list(dict.fromkeys(i.extra["peer"] for i in others))
    peer_row = {(i.extra["point"], i.extra["peer"]): i for i in others}
    stages = next((list(i.extra["stages"]) for i in graphc if "stages" in i.extra), [])
    # with peers, CPU seconds beside wall seconds: steadier when other jobs load the machine
    cpu_head = ["cpu"] if peers else []
    peer_head = [c for p in peers for c in (f"{p} compile", f"{p} cpu", f"graphc/{p}")]
    head = ("point", "ops", "kernels", "compile", *cpu_head, *peer_head, "ms/op", *stages,
            "max err")  # fmt: skip
    rows, failures = [head], []
    for i in graphc:
        cells = []
        for p in peers:
            j = peer_row.get((i.name, p))
            ok = j is not None and j.status == "ok"
            cells += [_peer_compile(j), _secs(j.extra.get("cpu_s") if ok else None),
                      _ratio(j.extra.get("graphc_over_peer") if ok else None)]  # fmt: skip
        if i.status != "ok":
            label = "WRONG" if i.status == "wrong" else i.status
            if not peers:
                rows.append((i.name, f"{label}: {i.reason}"))
                continue
            rows.append((i.name, "-", "-", label, "-", *cells, "-", *("-" for _ in stages), "-"))
            failures.append(f"  {i.name}: {label}: {i.reason}")
            continue
        st = i.extra["stages"]
        cpu = [_secs(i.extra.get("cpu_s"))] if peers else []
        rows.append((
            i.name, str(i.extra["ops"]), str(i.kernels), f"{i.compile_s:.2f} s", *cpu, *cells,
            f"{i.extra['s_per_op'] * 1e3:.2f}", *(f"{st[k]:.2f}" for k in stages),
            _err(i.max_abs_err),
        ))  # fmt: skip
    out = _align(rows, len(head)) + failures
    out.extend(
        f"  {j.name}: {'WRONG' if j.status == 'wrong' else j.status}: {j.reason}"
        for j in others
        if j.status != "ok"
    )
    for key, value in w.speedups.items():
        if key.endswith("_per_op_largest_over_smallest"):
            series = key.split("_", 1)[0]
            out.append(f"  {series}: seconds per op at the largest size / at the smallest: "
                       f"{value:.2f}x (target <= 1.3x)")  # fmt: skip
    out.extend(_peer_summary(graphc, peers, peer_row, others))
    if w.status == "refused":
        out.append(f"  REFUSED: {w.reason}")
    out.extend(f"  note: {n}" for n in w.notes)
    return out


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _peer_compile(j) -> str:
    """A peer's cell of a scaling table: its compile seconds, or why it has none."""
    if j is None:
        return "-"
    if j.status != "ok":
        return "WRONG" if j.status == "wrong" else j.status
    return f"{j.compile_s:.2f} s"


def _peer_summary(graphc, peers, peer_row, others) -> list:
    """Per series, graphc against each peer at its largest size ("mlp L=64: graphc 2.89 s vs
    jax jit 2.61 s (graphc/jax jit 1.11x; CPU 3.10 s vs 2.55 s, 1.22x)"); per peer, how many
    of its first steps matched the reference."""
    out = []
    for series in dict.fromkeys(i.extra["series"] for i in graphc):
        last = [i for i in graphc if i.extra["series"] == series][-1]
        for p in peers:
            j = peer_row.get((last.name, p))
            if last.status == "ok" and j is not None and j.status == "ok":
                ratio = last.compile_s / j.compile_s
                line = (f"  {last.name}: graphc {last.compile_s:.2f} s vs {p} "
                        f"{j.compile_s:.2f} s (graphc/{p} {ratio:.2f}x")  # fmt: skip
                a, b = last.extra.get("cpu_s"), j.extra.get("cpu_s")
                if a is not None and b:
                    line += f"; CPU {a:.2f} s vs {b:.2f} s, {a / b:.2f}x"
                out.append(line + ")")
    for p in peers:
        ok = [j for j in others if j.extra["peer"] == p and j.status == "ok"]
        if ok:
            err = max(j.max_abs_err or 0.0 for j in ok)
            out.append(f"  {p}: the first step of {len(ok)} point(s) matches the reference "
                       f"(loss and parameters; max err {err:.1e})")  # fmt: skip
    return out


def _align(rows, ncols=None) -> list:
    ncols = len(COLUMNS) if ncols is None else ncols
    full = [r for r in rows if len(r) == ncols]
    widths = [max(len(r[c]) for r in full) for c in range(ncols)]
    out = []
    for r in rows:
        if len(r) != ncols:
            out.append(f"  {r[0].ljust(widths[0])}  {r[1]}")
            continue
        cells = [r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in range(1, len(r))]
        out.append("  " + "  ".join(cells))
    return out
