"""Fetched values to TensorBoard's Summary protocol buffers (histogram buckets, PNG images).

The protobuf classes come from the ``tensorboard`` package, an optional dependency (extra
``graphc[tensorboard]``): ``protos()`` imports them on first use and says what to install.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import InvalidArgumentError, UnavailableError

INSTALL_HINT = "pip install 'graphc[tensorboard]' (or pip install tensorboard)"


def protos():
    """(summary_pb2, event_pb2, graph_pb2) of the tensorboard package."""
    try:
        from tensorboard.compat.proto import event_pb2, graph_pb2, summary_pb2
    except ImportError as exc:
        raise UnavailableError(
            f"gc.summary writes TensorBoard protocol buffers and needs the tensorboard "
            f"package: {INSTALL_HINT} ({exc})"
        ) from None
    return summary_pb2, event_pb2, graph_pb2


def _default_bucket_limits() -> np.ndarray:
    """TensorFlow's default histogram buckets: +-1e-12 growing by 10% to 1e20, 0, +-DBL_MAX."""
    pos = []
    v = 1.0e-12
    while v < 1.0e20:
        pos.append(v)
        v *= 1.1
    dbl_max = np.finfo(np.float64).max
    neg = [-x for x in reversed(pos)]
    return np.array([-dbl_max, *neg, 0.0, *pos, dbl_max])


BUCKET_LIMITS = _default_bucket_limits()


def histogram_proto(values: np.ndarray, tag: str):
    """A HistogramProto of ``values`` as TensorFlow's HistogramSummary op builds it: the
    default buckets, runs of empty buckets collapsed into one."""
    summary_pb2, _, _ = protos()
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise InvalidArgumentError(f"histogram summary '{tag}': NaN or Inf in the values")
    counts = np.bincount(
        np.searchsorted(BUCKET_LIMITS, x, side="right").clip(0, len(BUCKET_LIMITS) - 1),
        minlength=len(BUCKET_LIMITS),
    )
    limits, buckets = [], []
    i, n = 0, len(counts)
    while i < n:
        end, count = BUCKET_LIMITS[i], counts[i]
        i += 1
        if count <= 0:
            while i < n and counts[i] <= 0:
                end, count = BUCKET_LIMITS[i], counts[i]
                i += 1
        limits.append(float(end))
        buckets.append(float(count))
    return summary_pb2.HistogramProto(
        min=float(x.min()) if x.size else 0.0,
        max=float(x.max()) if x.size else 0.0,
        num=float(x.size),
        sum=float(x.sum()),
        sum_squares=float(np.dot(x, x)),
        bucket_limit=limits,
        bucket=buckets,
    )


def png(image: np.ndarray) -> bytes:
    """A PNG file of an HxWxC uint8 image (C = 1 grey, 3 RGB, 4 RGBA); zlib compressed."""
    h, w, c = image.shape
    color_type = {1: 0, 3: 2, 4: 6}[c]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * c)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] scaled to 0..255; integer ones clipped to 0..255."""
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise InvalidArgumentError("image summary: NaN or Inf in the image values")
        return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    return np.clip(images, 0, 255).astype(np.uint8)
