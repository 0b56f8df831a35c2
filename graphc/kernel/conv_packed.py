"""The packed filter layout of the ``conv_packed`` LibCall (``ir.LIBCALLS``): constant float32
HWIO filters ``[KH, KW, C, O]`` laid out once, at compile time, as panels of ``nv * LANES``
output channels, ``[ceil(O / NB)][KH * KW * C][NB]`` (NB = nv * LANES, zero columns past O),
then C zeros (the row a tap in the padding reads). The cpu target's convolution kernel
(``backends/llvm/packedgemm.py``) streams a panel's rows as contiguous vectors; the Kernel
IR interpreter unpacks it again.
"""

from __future__ import annotations

import numpy as np

#: float32 lanes of one vector of a panel (a 512-bit register)
LANES = 16
#: widest panel, in vectors
NV_MAX = 4


def panel_vectors(o: int) -> int:
    """Vectors per panel for ``o`` output channels: the narrowest panel that holds them, at
    most NV_MAX (SqueezeNet's 16-48-channel layers would otherwise be mostly padding)."""
    return max(1, min(NV_MAX, -(-o // LANES)))


def packed_size(kh: int, kw: int, c: int, o: int, nv: int) -> int:
    """Floats of ``pack_filters``'s result: the panels, then ``c`` zeros."""
    nb = nv * LANES
    return -(-o // nb) * kh * kw * c * nb + c


def pack_filters(f: np.ndarray, nv: int) -> np.ndarray:
    """HWIO float32 filters ``[KH, KW, C, O]`` as the flat packed operand: panel ``q``
    (output channels ``[q * NB, q * NB + NB)``, zeros past O) is ``[KH * KW * C][NB]``
    row-major, the panels one after another, then C zeros."""
    kh, kw, c, o = f.shape
    k = kh * kw * c
    nb = nv * LANES
    nblk = -(-o // nb)
    wide = np.zeros((k, nblk * nb), np.float32)
    wide[:, :o] = f.reshape(k, o)
    panels = wide.reshape(k, nblk, nb).transpose(1, 0, 2).reshape(-1)
    return np.concatenate([panels, np.zeros(c, np.float32)])


def unpack_filters(wp: np.ndarray, kh: int, kw: int, c: int, o: int, nv: int) -> np.ndarray:
    """The HWIO filters that ``pack_filters`` laid out as ``wp``."""
    k = kh * kw * c
    nb = nv * LANES
    nblk = -(-o // nb)
    panels = np.asarray(wp)[: nblk * k * nb].reshape(nblk, k, nb).transpose(1, 0, 2)
    return panels.reshape(k, nblk * nb)[:, :o].reshape(kh, kw, c, o)
