"""Process-wide settings. The only module that reads ``os.environ``.

GRAPHC_CACHE_DIR   default on-disk compile cache (default: ~/.cache/graphc)
GRAPHC_CONFIG_DIR  graphc's per-user configuration, e.g. the compile cache's secret key
                   (default: $XDG_CONFIG_HOME/graphc, else ~/.config/graphc)
GRAPHC_NO_CACHE    set to 1 to disable the on-disk cache by default
GRAPHC_THREADS     default number of worker threads for the cpu target
GRAPHC_DEBUG       set to 1 to verify the Program after every pass
GRAPHC_MAX_BUFFER_BYTES  largest buffer one run may allocate (default: physical memory)
"""

import os
from pathlib import Path


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def default_cache_dir() -> Path | None:
    """Directory of the persistent compile cache, or None when disabled."""
    if _flag("GRAPHC_NO_CACHE"):
        return None
    explicit = os.environ.get("GRAPHC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "graphc"


def config_dir() -> Path:
    """graphc's per-user configuration directory (private: created 0700)."""
    explicit = os.environ.get("GRAPHC_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "graphc"


def cache_key_file() -> Path:
    """The file holding the secret key that authenticates compile-cache entries: per user,
    outside the cache directory, so that whoever can write entries cannot forge them."""
    return config_dir() / "cache.key"


def default_threads() -> int:
    """Worker threads used by the cpu target when CompileOptions.threads is None."""
    value = os.environ.get("GRAPHC_THREADS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def debug_verify() -> bool:
    """Whether the pass manager re-verifies the Program after every pass."""
    return _flag("GRAPHC_DEBUG")


def cuda_root() -> str | None:
    """CUDA toolkit root, if the environment names one."""
    return os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")


def enable_tf_xla_cpu_jit() -> None:
    """Ask TensorFlow (a benchmark peer, loaded later) to auto-cluster for XLA on the CPU."""
    os.environ.setdefault("TF_XLA_FLAGS", "--tf_xla_cpu_global_jit")


def max_buffer_bytes() -> int:
    """Largest number of bytes one run may allocate for one buffer (GRAPHC_MAX_BUFFER_BYTES;
    default: the machine's physical memory, since a larger buffer could only be paged in
    until the kernel's out-of-memory killer ends the process)."""
    value = os.environ.get("GRAPHC_MAX_BUFFER_BYTES", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 1 << 40
