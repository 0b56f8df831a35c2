"""gc.summary.FileWriter: TensorBoard event files, written by the tensorboard package's own
event-file writer (the CRC-framed record format is exactly TensorBoard's)."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UnavailableError
from .encode import INSTALL_HINT, protos


def _event_file_writer():
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise UnavailableError(
            f"gc.summary.FileWriter needs the tensorboard package: {INSTALL_HINT} ({exc})"
        ) from None
    return EventFileWriter


def graph_def(graph):
    """A GraphDef protocol buffer of a graphc Graph (names, op types, inputs, shapes)
    for TensorBoard's graph dashboard."""
    _, _, graph_pb2 = protos()
    from tensorboard.compat.proto import attr_value_pb2, tensor_shape_pb2  # optional dependency

    gd = graph_pb2.GraphDef()
    for op in graph.get_operations():
        node = gd.node.add(name=op.name, op=op.type)
        for t in op.inputs:
            node.input.append(t.op.name if t.value_index == 0 else f"{t.op.name}:{t.value_index}")
        for c in op.control_inputs:
            node.input.append(f"^{c.name}")
        shapes = []
        for t in op.outputs:
            shape = tensor_shape_pb2.TensorShapeProto(unknown_rank=t.shape is None)
            for d in t.shape or ():
                shape.dim.add(size=-1 if d is None else d)
            shapes.append(shape)
        if shapes:
            node.attr["_output_shapes"].CopyFrom(
                attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(shape=shapes))
            )
    return gd


class FileWriter:
    """Writes summaries (and optionally the graph) to an event file in ``logdir`` that
    TensorBoard reads: ``writer.add_summary(sess.run(merged), global_step)``."""

    def __init__(self, logdir, graph=None, max_queue=10, flush_secs=120, filename_suffix=""):
        protos()  # says what to install before anything is created
        Path(logdir).mkdir(parents=True, exist_ok=True)
        self._writer = _event_file_writer()(str(logdir), max_queue, flush_secs, filename_suffix)
        self._closed = False
        if graph is not None:
            self.add_graph(graph)

    def get_logdir(self) -> str:
        return self._writer.get_logdir()

    def _add_event(self, **fields) -> None:
        if self._closed:
            raise RuntimeError("FileWriter is closed")
        _, event_pb2, _ = protos()
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), **fields))

    def add_summary(self, summary, global_step=None) -> None:
        """Write a summary: the bytes ``sess.run`` returned for a gc.summary, or a
        ``Summary`` protocol buffer."""
        summary_pb2, _, _ = protos()
        if isinstance(summary, bytes | bytearray):
            proto = summary_pb2.Summary()
            proto.ParseFromString(bytes(summary))
            summary = proto
        if not isinstance(summary, summary_pb2.Summary):
            raise TypeError(
                "add_summary takes the bytes sess.run returns for a gc.summary (or a Summary "
                f"protocol buffer), got {type(summary).__name__}"
            )
        step = {} if global_step is None else {"step": int(global_step)}
        self._add_event(summary=summary, **step)

    def add_graph(self, graph, global_step=None) -> None:
        """Write ``graph`` (a gc.Graph) for TensorBoard's graph dashboard."""
        step = {} if global_step is None else {"step": int(global_step)}
        self._add_event(graph_def=graph_def(graph).SerializeToString(), **step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._closed:
            self._writer.close()
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
