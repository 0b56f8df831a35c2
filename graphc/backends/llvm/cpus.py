"""The CPUs the cpu backend can generate code for (``gc.export(..., cpu=...)``,
``gc.export_c(..., cpu=...)``): what each name means as an LLVM CPU name and feature string.

- ``"host"``: this machine's CPU with every feature it has (what sessions always compile for).
- ``"generic"``: the architecture's baseline, runs on every CPU of it: ``"x86-64"`` (SSE2) on
  x86-64, ``"generic"`` on aarch64.
- on x86-64, the micro-architecture levels (``"x86-64"``, ``"x86-64-v2"``, ``"-v3"`` with AVX2
  and FMA, ``"-v4"`` with AVX-512) and a few named CPUs (tuned for that CPU, using the
  features of ``CPUS`` below).

LLVM cannot list its CPU names or say which features a CPU name implies (an unknown name only
prints a warning and compiles for a baseline), so the features are the table's, and they are
written out in full: every feature this LLVM knows (the host's feature string names them all)
is switched off except the table's. The code then uses exactly the features recorded in an
artifact's header and checked by the loader, whatever LLVM's own idea of that CPU is; the name
only selects the scheduling model.
"""

from __future__ import annotations

HOST = "host"
GENERIC = "generic"

_V1 = ("64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2")
_V2 = _V1 + ("crc32", "cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
_ICX = _V4 + ("avx512vnni", "avx512vbmi", "avx512vbmi2", "avx512ifma", "avx512bitalg",
              "avx512vpopcntdq")  # fmt: skip

#: x86-64 CPU name -> the features its code may use (LLVM spelling)
X86_CPUS = {
    "x86-64": _V1,
    "x86-64-v2": _V2,
    "x86-64-v3": _V3,
    "x86-64-v4": _V4,
    "haswell": _V3,
    "skylake": _V3,
    "skylake-avx512": _V4,
    "cascadelake": _V4 + ("avx512vnni",),
    "icelake-server": _ICX,
    "sapphirerapids": _ICX + ("avx512bf16", "avx512fp16"),
    "znver2": _V3,
    "znver3": _V3,
    "znver4": _ICX + ("avx512bf16",),
}

#: the baseline CPU name of each architecture (the triple's first part)
BASELINE = {"x86_64": "x86-64", "aarch64": "generic"}


def choices(triple: str) -> list:
    """The ``cpu=`` values valid on ``triple``."""
    arch = triple.split("-")[0]
    return [HOST, GENERIC] + (list(X86_CPUS) if arch == "x86_64" else [])


def resolve(cpu, triple: str, host_features: str) -> tuple[str, str]:
    """(LLVM CPU name, full feature string) of ``cpu`` (not "host") on ``triple``;
    ValueError naming the valid choices for an unknown name or another architecture."""
    arch = triple.split("-")[0]
    valid = choices(triple)
    if not isinstance(cpu, str) or cpu not in valid or arch not in BASELINE:
        raise ValueError(f"cpu={cpu!r}: not a CPU graphc generates code for on {arch}; valid "
                         f"choices: {', '.join(repr(c) for c in valid)}")  # fmt: skip
    name = BASELINE[arch] if cpu == GENERIC else cpu
    if arch != "x86_64":
        return name, ""
    wanted = X86_CPUS[name]
    known = [f[1:] for f in host_features.split(",") if f[:1] in "+-" and len(f) > 1]
    # every "-" first: disabling a feature also disables the ones that imply it, so a "+"
    # before a "-" could be undone
    off = [f"-{f}" for f in known if f not in wanted]
    on = [f"+{f}" for f in wanted if f in known]  # one this LLVM lacks is not used either
    return name, ",".join(off + on)
