"""Geometry of the 2-D window ops (convolution and pooling) on NHWC data: strides, dilations
and TF's SAME/VALID or explicit padding, output sizes, the padded strided views the reference
implementations compute with (``_Window``), shape checks, and the transposes that let NCHW
data through the NHWC ops."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ..registry import DTypeError, ShapeError
from ..shape import transpose as _transpose


def _pair(value, what, allow4=True, data_format="NHWC"):
    """(h, w) from an int, a pair, or a 4-list in ``data_format`` order: [1, h, w, 1] (NHWC)
    or [1, 1, h, w] (NCHW)."""
    if isinstance(value, int | np.integer):
        v = (int(value), int(value))
    else:
        v = tuple(int(d) for d in value)
        if len(v) == 4 and allow4:
            spatial = (2, 3) if data_format == "NCHW" else (1, 2)
            others = [d for i, d in enumerate(v) if i not in spatial]
            if any(d != 1 for d in others):
                raise ValueError(f"{what} {list(value)} must be 1 in the batch and channel dims "
                                 f"({data_format})")  # fmt: skip
            v = (v[spatial[0]], v[spatial[1]])
        elif len(v) == 1:
            v = (v[0], v[0])
        elif len(v) != 2:
            raise ValueError(f"{what} must be an int or a list of 1, 2 or 4 ints, got {value!r}")
    if any(d < 1 for d in v):
        raise ValueError(f"{what} must be positive, got {value!r}")
    return v


def _padding(padding, data_format="NHWC"):
    """ "SAME", "VALID", or TF's explicit list, [[0, 0], [top, bottom], [left, right], [0, 0]]
    in NHWC ([[0, 0], [0, 0], [top, bottom], [left, right]] in NCHW), as
    ((top, bottom), (left, right)) (all zero: "VALID")."""
    if data_format == "NCHW" and not isinstance(padding, str):
        try:
            pads = np.asarray(padding)
        except (TypeError, ValueError):
            pads = None
        if pads is not None and pads.shape == (4, 2):
            padding = pads[[0, 2, 3, 1]]  # to NHWC order
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or an explicit list, got "
                             f"{padding!r}")  # fmt: skip
        return padding.upper()
    try:
        pads = np.asarray(padding)
        ok = pads.shape == (4, 2) and pads.dtype.kind in "iu"
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"explicit padding must be 4 [before, after] pairs of ints (NHWC), got "
                         f"{padding!r}")  # fmt: skip
    if pads[0].any() or pads[3].any():
        raise ValueError(f"explicit padding {pads.tolist()} must be [0, 0] for the batch and "
                         "channel dimensions")  # fmt: skip
    if (pads < 0).any():
        raise ValueError(f"explicit padding {pads.tolist()} must not be negative")
    if not pads.any():
        return "VALID"
    return tuple((int(a), int(b)) for a, b in pads[1:3])


def _axis_padding(padding, axis):
    """The padding along spatial ``axis`` (0: height, 1: width): "SAME", "VALID" or a pair."""
    return padding if isinstance(padding, str) else tuple(padding[axis])


def _out_size(n, k, s, d, padding):
    """Output length of a window op along one dim (None if unknown); TF's rule.
    ``padding`` is this dim's: "SAME", "VALID" or (before, after)."""
    if n is None or k is None:
        return None
    eff = (k - 1) * d + 1
    if padding == "SAME":
        return -(-n // s)
    if padding == "VALID":
        if n < eff:
            raise ShapeError(f"VALID window of size {eff} does not fit an input of size {n}")
        return (n - eff) // s + 1
    padded = n + padding[0] + padding[1]
    if padded < eff:
        raise ShapeError(f"window of size {eff} does not fit an input of size {n} padded by "
                         f"{padding} to {padded}")  # fmt: skip
    return (padded - eff) // s + 1


def _pads(n, k, s, d, padding):
    """(before, after) padding along one dim: TF's SAME puts the odd element after."""
    if padding == "VALID":
        return 0, 0
    if padding != "SAME":
        return padding
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


class _Window:
    """Geometry of a 2-D window op on NHWC data: padding, output size, strided views."""

    def __init__(self, h, w, kh, kw, attrs):
        sh, sw = attrs["strides"]
        dh, dw = attrs.get("dilations", (1, 1))
        pad = attrs["padding"]
        ph, pw = _axis_padding(pad, 0), _axis_padding(pad, 1)
        try:
            self.oh = _out_size(h, kh, sh, dh, ph)
            self.ow = _out_size(w, kw, sw, dw, pw)
        except ShapeError as exc:
            raise InvalidArgumentError(f"input {h}x{w}, window {kh}x{kw}: {exc}") from None
        self.pt, self.pb = _pads(h, kh, sh, dh, ph)
        self.pl, self.pr = _pads(w, kw, sw, dw, pw)
        self.h, self.w, self.kh, self.kw = h, w, kh, kw
        self.s, self.d = (sh, sw), (dh, dw)

    def pad(self, x, value=0.0):
        widths = ((0, 0), (self.pt, self.pb), (self.pl, self.pr), (0, 0))
        return np.pad(x, widths, constant_values=value)

    def views(self):
        """(i, j, index) for every kernel tap: index selects its inputs in the padded array."""
        (sh, sw), (dh, dw) = self.s, self.d
        for i in range(self.kh):
            for j in range(self.kw):
                rows = slice(i * dh, i * dh + max((self.oh - 1) * sh + 1, 0), sh)
                cols = slice(j * dw, j * dw + max((self.ow - 1) * sw + 1, 0), sw)
                yield i, j, (slice(None), rows, cols, slice(None))

    def patches(self, xp):
        """[N, OH, OW, KH*KW, C]: the inputs each output position sees (im2col)."""
        return np.stack([xp[idx] for _, _, idx in self.views()], axis=3)

    def scatter(self, cols, n, c, dtype):
        """Adjoint of ``patches``: sum [N, OH, OW, KH*KW, C] back into an unpadded input."""
        xp = np.zeros((n, self.h + self.pt + self.pb, self.w + self.pl + self.pr, c), dtype)
        for k, (_, _, idx) in enumerate(self.views()):
            xp[idx] += cols[:, :, :, k, :]
        return xp[:, self.pt : self.pt + self.h, self.pl : self.pl + self.w, :]


def _rank4(spec, what):
    if spec.shape is not None and len(spec.shape) != 4:
        raise ShapeError(f"{what} must be rank 4, got shape {spec.shape}")
    return spec.shape if spec.shape is not None else (None,) * 4


def _float_same(specs):
    dtypes = {s.dtype for s in specs}
    if len(dtypes) != 1:
        raise DTypeError("operands must have one dtype, got "
                         + " and ".join(s.dtype.name for s in specs))  # fmt: skip
    if not specs[0].dtype.is_floating:
        raise DTypeError(f"{specs[0].dtype.name} is not supported (floating types only)")
    return specs[0].dtype


def _merge(a, b, what):
    if a is not None and b is not None and a != b:
        raise ShapeError(f"{what}: {a} vs {b}")
    return a if a is not None else b


def _window_out(n_h, n_w, kh, kw, attrs):
    for k in (kh, kw):
        if k is not None and k < 1:  # TF: "filter must not have zero elements"
            raise ShapeError(f"window sizes must be at least 1, got {(kh, kw)}")
    sh, sw = attrs["strides"]
    dh, dw = attrs.get("dilations", (1, 1))
    p = attrs["padding"]
    return (_out_size(n_h, kh, sh, dh, _axis_padding(p, 0)),
            _out_size(n_w, kw, sw, dw, _axis_padding(p, 1)))  # fmt: skip


def _data_format(data_format, what):
    """``"NHWC"`` or ``"NCHW"`` (None: NHWC). The window ops work on NHWC; NCHW data is transposed
    to NHWC around them (transposes that the compiler folds into the neighbouring kernels)."""
    if data_format is None:
        return "NHWC"
    if data_format not in ("NHWC", "NCHW"):
        raise ValueError(f"{what}: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    return data_format


def _to_nhwc(x, data_format, what):
    if data_format == "NHWC":
        return x
    if x.shape is not None and len(x.shape) != 4:
        raise ValueError(f"{what}: NCHW input {x.name} must be rank 4, got shape {x.shape}")
    return _transpose(x, (0, 2, 3, 1))


def _from_nhwc(y, data_format, name):
    if data_format == "NHWC":
        return y
    return _transpose(y, (0, 3, 1, 2), name=name)
