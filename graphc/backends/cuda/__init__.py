"""The cuda target (pycuda). ``availability()`` says why it cannot run here, if it cannot."""

from __future__ import annotations


def availability() -> str | None:
    """None when a GPU and pycuda are usable, else a sentence saying what is missing."""
    try:
        import pycuda.driver as drv  # noqa: F401
    except ImportError:
        return "pycuda is not installed (pip install 'graphc[cuda]')"
    try:
        drv.init()
        if drv.Device.count() == 0:
            return "no CUDA GPU was found"
    except Exception as exc:  # noqa: BLE001 - any driver failure means no usable GPU
        return f"the CUDA driver could not be initialised ({exc})"
    return None


def build_executable(source, result, options):
    from ...errors import UnimplementedError

    raise UnimplementedError("the cuda code generator is not built yet")
