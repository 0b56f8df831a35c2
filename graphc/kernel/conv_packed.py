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
#: panel widths, in vectors, that the kernel has: one vector, or four
NV_WIDE = 4
#: the wide panels are taken unless they add more than this share of zero columns
WIDE_WASTE_MAX = 0.12


def panel_vectors(o: int) -> int:
    """Vectors per panel for ``o`` output channels: NV_WIDE (6 x 64 tiles, 103-115 GFLOP/s
    on one Zen 4 core) unless its zero columns past O would cost more than the one-vector
    panels' lower speed (12 x 16 tiles, 88-104 GFLOP/s): 16-48 channels (SqueezeNet's
    squeeze layers), 80, 96, ... take one-vector panels, 64, 128, 1000 wide ones."""
    wide = NV_WIDE * LANES
    return NV_WIDE if -(-o // wide) * wide <= (1 + WIDE_WASTE_MAX) * o else 1


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
