"""Process-wide settings. The only module that reads ``os.environ``.

GRAPHC_CACHE_DIR   default on-disk compile cache (default: ~/.cache/graphc)
GRAPHC_CONFIG_DIR  graphc's per-user configuration, e.g. the compile cache's secret key
                   (default: $XDG_CONFIG_HOME/graphc, else ~/.config/graphc)
GRAPHC_NO_CACHE    set to 1 to disable the on-disk cache by default
GRAPHC_THREADS     default number of worker threads for the cpu target
GRAPHC_DEBUG       set to 1 to verify the Program after every pass
GRAPHC_MAX_BUFFER_BYTES  largest buffer one run may allocate (default: physical memory)
GRAPHC_DIST_TIMEOUT  seconds a gc.distribute collective waits for the other processes before
                   it raises (default 300; 0 waits forever)
GRAPHC_DIST_BUCKET_BYTES  bytes of gradients packed into one allreduce (default 4 MiB)
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


_threads_override: list = []  # set_default_threads(n): [n]


def cpu_count() -> int:
    """CPUs this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def default_threads() -> int:
    """Worker threads used by the cpu target when CompileOptions.threads is None:
    GRAPHC_THREADS, else what ``set_default_threads`` chose (gc.distribute.init: the cores
    shared by the processes of one machine), else every core."""
    value = os.environ.get("GRAPHC_THREADS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    if _threads_override:
        return _threads_override[0]
    return cpu_count()


def threads_from_environment() -> bool:
    """Whether GRAPHC_THREADS fixes the thread count (it wins over set_default_threads)."""
    value = os.environ.get("GRAPHC_THREADS")
    return bool(value and value.isdigit() and int(value) > 0)


def set_default_threads(n: int | None) -> None:
    """The process-wide default of CompileOptions.threads (None: back to every core)."""
    _threads_override.clear()
    if n is not None:
        _threads_override.append(max(1, int(n)))


def dist_timeout() -> float:
    """Seconds a gc.distribute collective waits for the other processes (0: forever)."""
    value = os.environ.get("GRAPHC_DIST_TIMEOUT", "").strip()
    try:
        return max(0.0, float(value)) if value else 300.0
    except ValueError:
        return 300.0


def dist_bucket_bytes() -> int:
    """Bytes of gradients gc.distribute packs into one allreduce (tensor fusion)."""
    value = os.environ.get("GRAPHC_DIST_BUCKET_BYTES", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return 4 << 20


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
