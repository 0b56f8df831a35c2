"""Summary "tensors": what gc.summary.scalar/histogram/image/merge return.

graphc has no string dtype, so a summary is a composite fetch rather than a graph op: it
holds ordinary tensors (the values to summarise), which the compiled program computes like
any fetch, and ``sess.run`` turns their values into one serialized ``Summary`` protocol
buffer (``bytes``) on the host after the run (the Session's ``_graphc_fetch_parts`` /
``_graphc_fetch_value`` hook). ``FileWriter.add_summary`` takes those bytes, as in TF1.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from ..graph.core import Tensor, get_default_graph
from ..ops.registry import convert_to_tensor
from . import encode

SUMMARIES = "summaries"  # tf.compat.v1.GraphKeys.SUMMARIES


class SummaryTensor:
    """A serialized ``Summary`` once fetched: ``sess.run(s)`` returns ``bytes``.

    ``items``: (kind, tag, tensor, max_outputs) for each value it writes.
    """

    def __init__(self, items: list, name: str, graph):
        self.items = list(items)
        self.name = name
        self.graph = graph

    @property
    def dtype(self):
        return "string"  # what TF calls the type of a serialized summary; no graphc dtype

    def _graphc_fetch_parts(self) -> list:
        return [t for _, _, t, _ in self.items]

    def _graphc_fetch_value(self, values) -> bytes:
        summary_pb2, _, _ = encode.protos()
        out = summary_pb2.Summary()
        for (kind, tag, _, max_outputs), value in zip(self.items, values):
            arr = np.asarray(value)
            if kind == "scalar":
                if arr.size != 1:
                    raise InvalidArgumentError(
                        f"scalar summary '{tag}' needs one value, got shape {arr.shape}"
                    )
                out.value.add(tag=tag, simple_value=float(arr.reshape(())))
            elif kind == "histogram":
                out.value.add(tag=tag, histo=encode.histogram_proto(arr, tag))
            else:
                if arr.ndim != 4 or arr.shape[3] not in (1, 3, 4):
                    raise InvalidArgumentError(
                        f"image summary '{tag}' needs NHWC images with 1, 3 or 4 channels, "
                        f"got shape {arr.shape}"
                    )
                images = encode.to_uint8(arr)
                n = min(max_outputs, images.shape[0])
                for i in range(n):
                    img = images[i]
                    out.value.add(
                        tag=f"{tag}/image" if max_outputs == 1 else f"{tag}/image/{i}",
                        image=summary_pb2.Summary.Image(
                            height=img.shape[0],
                            width=img.shape[1],
                            colorspace=img.shape[2],
                            encoded_image_string=encode.png(img),
                        ),
                    )
        return out.SerializeToString()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k} {t!r}" for k, t, _, _ in self.items)
        return f"<gc.summary {self.name}: {kinds}>"


def _tag(name: str, graph) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a summary name must be a non-empty string, got {name!r}")
    scope = graph._state().scope
    return f"{scope}/{name}" if scope else name


def _make(kind: str, name: str, tensor, collections, max_outputs=1) -> SummaryTensor:
    t = convert_to_tensor(tensor)
    if not isinstance(t, Tensor):
        raise TypeError(f"summary '{name}' needs a tensor, got {type(tensor).__name__}")
    graph = t.graph
    tag = _tag(name, graph)
    s = SummaryTensor([(kind, tag, t, max_outputs)], tag, graph)
    for key in [SUMMARIES] if collections is None else collections:
        graph.add_to_collection(key, s)
    return s


def scalar(name, tensor, collections=None, family=None) -> SummaryTensor:
    """A scalar summary of a one-element tensor, under tag ``name`` (in the name scope)."""
    t = convert_to_tensor(tensor)
    if t.shape is not None and int(np.prod([d or 1 for d in t.shape])) != 1:
        raise ValueError(f"scalar summary '{name}' needs a scalar tensor, got shape {t.shape}")
    return _make("scalar", name if family is None else f"{family}/{name}", t, collections)


def histogram(name, values, collections=None, family=None) -> SummaryTensor:
    """A histogram summary of every element of ``values`` (TensorFlow's default buckets)."""
    return _make("histogram", name if family is None else f"{family}/{name}", values, collections)


def image(name, tensor, max_outputs=3, collections=None, family=None) -> SummaryTensor:
    """Image summaries of the first ``max_outputs`` images of an NHWC tensor with 1 (grey),
    3 (RGB) or 4 (RGBA) channels: floats in [0, 1] (scaled to 0..255) or integers 0..255."""
    t = convert_to_tensor(tensor)
    if t.shape is not None and (len(t.shape) != 4 or t.shape[3] not in (1, 3, 4)):
        raise ValueError(
            f"image summary '{name}' needs an NHWC tensor with 1, 3 or 4 channels, "
            f"got shape {t.shape}"
        )
    if t.dtype.name == "bool":
        raise TypeError(f"image summary '{name}': bool images are not supported")
    if not isinstance(max_outputs, int) or max_outputs < 1:
        raise ValueError(f"max_outputs must be a positive int, got {max_outputs!r}")
    tag = name if family is None else f"{family}/{name}"
    return _make("image", tag, t, collections, max_outputs)


def merge(inputs, collections=None, name=None) -> SummaryTensor:
    """One summary holding every value of ``inputs`` (summaries from gc.summary)."""
    inputs = list(inputs)
    items = []
    for s in inputs:
        if not isinstance(s, SummaryTensor):
            raise TypeError(f"merge takes gc.summary summaries, got {type(s).__name__}")
        items.extend(s.items)
    graph = inputs[0].graph if inputs else get_default_graph()
    merged = SummaryTensor(items, name or "Merge/MergeSummary", graph)
    for key in collections or ():
        graph.add_to_collection(key, merged)
    return merged


def merge_all(key=SUMMARIES, scope=None, name=None):
    """Every summary of collection ``key`` merged (None when there is none, as in TF1)."""
    graph = get_default_graph()
    found = [s for s in graph.get_collection(key) if isinstance(s, SummaryTensor)]
    if scope is not None:
        found = [s for s in found if s.name.startswith(scope)]
    if not found:
        return None
    return merge(found, name=name)
