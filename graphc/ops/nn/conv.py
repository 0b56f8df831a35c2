"""2-D convolution (``conv2d``, ``conv2d_transpose``): NHWC data, HWIO filters, with dedicated
backprop ops. The backprop ops are linear in their gradient input, so each one's gradient is
another op of the family: second-order gradients work."""

from __future__ import annotations

import numpy as np

from ...errors import InvalidArgumentError
from ..registry import Example, OpDef, ShapeError, apply1, convert_to_tensor, register
from ..shape_util import located
from .common import _like_input, _sample
from .window import (
    _data_format,
    _float_same,
    _from_nhwc,
    _merge,
    _padding,
    _pair,
    _rank4,
    _to_nhwc,
    _Window,
    _window_out,
)


def _conv_attrs_doc(attrs):
    return f"strides={attrs['strides']}, padding={attrs['padding']}"


@register
class Conv2D(OpDef):
    """2-D convolution (cross-correlation, as TF): NHWC input, HWIO filters."""

    kind = "gemm"
    gemm_group = "conv"

    def infer(self, specs, attrs):
        dtype = _float_same(specs)
        n, h, w, c = _rank4(specs[0], "input")
        kh, kw, ci, co = _rank4(specs[1], "filters")
        _merge(c, ci, "input channels do not match the filters' input channels")
        oh, ow = _window_out(h, w, kh, kw, attrs)
        return [((n, oh, ow, co), dtype)]

    def ref(self, xs, attrs):
        x, f = xs
        n, h, w, c = x.shape
        kh, kw, ci, co = f.shape
        if c != ci:
            raise InvalidArgumentError(
                f"Conv2D: input {x.shape} has {c} channels, filters {f.shape}"
            )
        win = _Window(h, w, kh, kw, attrs)
        cols = win.patches(win.pad(x))
        out = np.tensordot(cols, f.reshape(kh * kw, ci, co), axes=([3, 4], [0, 1]))
        return np.ascontiguousarray(out, dtype=x.dtype)

    def vjp(self, op, grads):
        g = grads[0]
        if g is None:
            return [None, None]
        x, f = op.inputs
        a = _window_attrs(op.attrs)
        return [_backprop_input(g, f, a, like=x), apply1("Conv2DBackpropFilter", [x, g, f], a)]

    def examples(self):
        def conv(strides=1, padding="SAME", dilations=1):
            return lambda x, f: conv2d(x, f, strides, padding, dilations)

        x = _sample(2, 5, 6, 3)
        f = _sample(3, 3, 3, 4)
        return [
            Example(conv(), [x, f]),
            Example(conv(padding="VALID"), [x, f]),
            Example(conv(strides=2), [x, f]),
            Example(conv(strides=(2, 1), padding="VALID"), [x, _sample(2, 3, 3, 2)]),
            Example(conv(dilations=2), [_sample(1, 6, 6, 2), _sample(2, 2, 2, 3)]),
            Example(conv(strides=2, padding="SAME"), [_sample(1, 4, 4, 1), _sample(2, 2, 1, 2)]),
            # KH*KW*C = 45: im2col + GEMM (the ones above are short enough to run directly)
            Example(conv(), [_sample(1, 4, 5, 5), _sample(3, 3, 5, 2)]),
            # explicit (asymmetric) padding: direct, im2col + GEMM, strided, dilated, 1x1
            Example(conv(padding=[[0, 0], [1, 0], [2, 1], [0, 0]]), [x, f]),
            Example(conv(padding=[[0, 0], [0, 2], [1, 1], [0, 0]]),
                    [_sample(1, 4, 5, 5), _sample(3, 3, 5, 2)]),
            Example(conv(strides=2, padding=[[0, 0], [2, 1], [0, 3], [0, 0]]), [x, f]),
            Example(conv(dilations=2, padding=[[0, 0], [1, 2], [2, 0], [0, 0]]),
                    [_sample(1, 5, 5, 2), _sample(2, 2, 2, 3)]),
            Example(conv(padding=[[0, 0], [0, 1], [1, 0], [0, 0]]),
                    [_sample(2, 3, 4, 3), _sample(1, 1, 3, 2)]),
        ]  # fmt: skip


def _window_attrs(attrs):
    return {k: attrs[k] for k in ("strides", "padding", "dilations")}


def _backprop_input(g, f, attrs, like):
    """Conv2DBackpropInput to the shape of ``like``: a static attr when its H, W are known."""
    if like.shape is not None and None not in tuple(like.shape)[1:3]:
        return apply1("Conv2DBackpropInput", [g, f], dict(attrs, input_hw=tuple(like.shape[1:3])))
    return apply1("Conv2DBackpropInput", [g, f, like], dict(attrs, input_hw=None))


@register
class Conv2DBackpropInput(OpDef):
    """Gradient of Conv2D w.r.t. its input: inputs (out_backprop, filters[, like]).

    The input's spatial size comes from ``attrs['input_hw']`` or, when that is None, from the
    runtime shape of a third input (the forward input; only its shape is read).
    """

    kind = "opaque"

    def infer(self, specs, attrs):
        dtype = _float_same(specs[:2])
        n, oh, ow, o = _rank4(specs[0], "out_backprop")
        kh, kw, c, fo = _rank4(specs[1], "filters")
        _merge(o, fo, "out_backprop channels do not match the filters' output channels")
        if attrs["input_hw"] is not None:
            h, w = attrs["input_hw"]
        elif len(specs) == 3:
            ln, h, w, lc = _rank4(specs[2], "like")
            n = _merge(n, ln, "batch sizes differ")
            c = _merge(c, lc, "input channels differ")
        else:
            raise ShapeError("needs input_hw or a third input giving the input shape")
        eh, ew = _window_out(h, w, kh, kw, attrs)
        _merge(oh, eh, f"out_backprop height does not fit the input ({_conv_attrs_doc(attrs)})")
        _merge(ow, ew, f"out_backprop width does not fit the input ({_conv_attrs_doc(attrs)})")
        return [((n, h, w, c), dtype)]

    def ref(self, xs, attrs):
        g, f = xs[:2]
        h, w = attrs["input_hw"] if attrs["input_hw"] is not None else xs[2].shape[1:3]
        kh, kw, c, o = f.shape
        win = _Window(h, w, kh, kw, attrs)
        if (win.oh, win.ow) != g.shape[1:3]:
            raise InvalidArgumentError(
                f"Conv2DBackpropInput: out_backprop {g.shape} does not fit an input of "
                f"{h}x{w} ({_conv_attrs_doc(attrs)})"
            )
        cols = np.tensordot(g, f.reshape(kh * kw, c, o), axes=([3], [2]))
        return np.ascontiguousarray(win.scatter(cols, g.shape[0], c, g.dtype), dtype=g.dtype)

    def vjp(self, op, grads):
        dy = grads[0]
        if dy is None:
            return [None] * len(op.inputs)
        g, f = op.inputs[:2]
        a = _window_attrs(op.attrs)
        # y = BI(g, f) is bilinear: <dy, BI(g, f)> = <conv2d(dy, f), g>
        dg = apply1("Conv2D", [dy, f], a)
        df = apply1("Conv2DBackpropFilter", [dy, g, f], a)
        return [dg, df] + [None] * (len(op.inputs) - 2)

    def examples(self):
        def bi(strides, padding, hw, dil=1):
            a = {"strides": _pair(strides, "strides"), "padding": padding,
                 "dilations": _pair(dil, "dilations"), "input_hw": hw}  # fmt: skip
            return lambda g, f: apply1("Conv2DBackpropInput", [g, f], a)

        def bi_like(strides, padding):
            a = {"strides": (strides, strides), "padding": padding, "dilations": (1, 1),
                 "input_hw": None}  # fmt: skip
            return lambda g, f, x: apply1("Conv2DBackpropInput", [g, f, x], a)

        return [
            Example(bi(1, "SAME", (4, 5)), [_sample(2, 4, 5, 3), _sample(3, 3, 2, 3)]),
            Example(bi(2, "VALID", (5, 6)), [_sample(1, 2, 2, 3), _sample(3, 3, 2, 3)]),
            Example(bi(2, "SAME", (5, 5), 1), [_sample(1, 3, 3, 2), _sample(2, 2, 1, 2)]),
            Example(bi(1, "SAME", (5, 5), 2), [_sample(1, 5, 5, 2), _sample(2, 2, 1, 2)]),
            Example(
                bi_like(2, "SAME"), [_sample(2, 3, 2, 2), _sample(3, 3, 1, 2), _sample(2, 5, 4, 1)]
            ),  # fmt: skip
            Example(bi(1, ((1, 0), (2, 1)), (5, 6)), [_sample(2, 4, 7, 4), _sample(3, 3, 3, 4)]),
            Example(bi(2, ((2, 1), (0, 3)), (5, 6)), [_sample(1, 3, 4, 2), _sample(3, 3, 3, 2)]),
            Example(
                bi_like(2, ((0, 1), (1, 1))),
                [_sample(1, 3, 3, 2), _sample(2, 2, 1, 2), _sample(1, 5, 4, 1)],
            ),
        ]


@register
class Conv2DBackpropFilter(OpDef):
    """Gradient of Conv2D w.r.t. its filters: inputs (input, out_backprop, like_filters).

    Only the shape of the third input (the forward filters) is read.
    """

    kind = "opaque"

    def infer(self, specs, attrs):
        dtype = _float_same(specs[:2])
        n, h, w, c = _rank4(specs[0], "input")
        gn, oh, ow, o = _rank4(specs[1], "out_backprop")
        kh, kw, fc, fo = _rank4(specs[2], "like")
        _merge(n, gn, "batch sizes of input and out_backprop differ")
        c = _merge(c, fc, "input channels differ from the filters'")
        o = _merge(o, fo, "out_backprop channels differ from the filters'")
        eh, ew = _window_out(h, w, kh, kw, attrs)
        _merge(oh, eh, f"out_backprop height does not fit the input ({_conv_attrs_doc(attrs)})")
        _merge(ow, ew, f"out_backprop width does not fit the input ({_conv_attrs_doc(attrs)})")
        return [((kh, kw, c, o), dtype)]

    def ref(self, xs, attrs):
        x, g, like = xs
        kh, kw = like.shape[:2]
        n, h, w, c = x.shape
        win = _Window(h, w, kh, kw, attrs)
        if (win.oh, win.ow) != g.shape[1:3] or n != g.shape[0]:
            raise InvalidArgumentError(
                f"Conv2DBackpropFilter: out_backprop {g.shape} does not fit input {x.shape} "
                f"({_conv_attrs_doc(attrs)})"
            )
        cols = win.patches(win.pad(x))  # [N, OH, OW, KH*KW, C]
        out = np.tensordot(cols, g, axes=([0, 1, 2], [0, 1, 2]))
        return np.ascontiguousarray(out.reshape(kh, kw, c, g.shape[3]), dtype=x.dtype)

    def vjp(self, op, grads):
        dy = grads[0]
        if dy is None:
            return [None, None, None]
        x, g, like = op.inputs
        a = _window_attrs(op.attrs)
        # y = BF(x, g) is bilinear: <dy, BF(x, g)> = <conv2d(x, dy), g>
        return [_backprop_input(g, dy, a, like=x), apply1("Conv2D", [x, dy], a), None]

    def examples(self):
        def bf(strides, padding, dil=1):
            a = {"strides": _pair(strides, "strides"), "padding": padding,
                 "dilations": _pair(dil, "dilations")}  # fmt: skip
            return lambda x, g, f: apply1("Conv2DBackpropFilter", [x, g, f], a)

        return [
            Example(bf(1, "SAME"), [_sample(2, 4, 5, 2), _sample(2, 4, 5, 3), _sample(3, 3, 2, 3)]),
            Example(
                bf(2, "VALID"), [_sample(1, 5, 6, 2), _sample(1, 2, 2, 3), _sample(3, 3, 2, 3)]
            ),
            Example(
                bf(1, "SAME", 2), [_sample(1, 5, 5, 1), _sample(1, 5, 5, 2), _sample(2, 2, 1, 2)]
            ),
            Example(
                bf(1, ((1, 0), (2, 1))),
                [_sample(2, 5, 6, 3), _sample(2, 4, 7, 4), _sample(3, 3, 3, 4)],
            ),
            Example(
                bf(2, ((0, 2), (1, 0))),
                [_sample(1, 5, 6, 4), _sample(1, 3, 3, 3), _sample(3, 3, 4, 3)],
            ),
        ]


def _conv_window_attrs(strides, padding, dilations, data_format="NHWC"):
    return {
        "strides": _pair(strides, "strides", data_format=data_format),
        "padding": _padding(padding, data_format),
        "dilations": _pair(dilations, "dilations", data_format=data_format),
    }


@located("conv2d")
def conv2d(input, filters, strides, padding, dilations=1, data_format="NHWC", name=None):  # noqa: A002
    """2-D convolution of ``input`` (NHWC, or NCHW with ``data_format="NCHW"``) with HWIO
    ``filters`` ([height, width, in_channels, out_channels] in both formats).

    ``strides``/``dilations``: int, [h, w] or a 4-list in the data format's order
    ([1, h, w, 1] / [1, 1, h, w]); ``padding``: "SAME" (TF's split: the odd padding element
    goes after), "VALID", or TF's explicit list ``[[0, 0], [top, bottom], [left, right],
    [0, 0]]`` (NCHW: ``[[0, 0], [0, 0], [top, bottom], [left, right]]``).
    """
    data_format = _data_format(data_format, "conv2d")
    x = convert_to_tensor(input)
    f = _like_input(x, filters)
    attrs = _conv_window_attrs(strides, padding, dilations, data_format)
    if data_format == "NHWC":
        return apply1("Conv2D", [x, f], attrs, name)
    y = apply1("Conv2D", [_to_nhwc(x, data_format, "conv2d"), f], attrs)
    return _from_nhwc(y, data_format, name)


@located("conv2d_transpose")
def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", dilations=1,  # noqa: A002
                     data_format="NHWC", name=None):  # fmt: skip
    """Transpose (gradient) of conv2d: ``filters`` are [KH, KW, out_channels, in_channels] and
    ``output_shape`` is the NHWC shape of the result (its batch entry may be None)."""
    if data_format != "NHWC":
        raise ValueError(f"conv2d_transpose: data_format {data_format!r} is not supported")
    x = convert_to_tensor(input)
    f = _like_input(x, filters)
    if hasattr(output_shape, "op"):
        raise TypeError("conv2d_transpose: output_shape must be static (a list of 4 ints)")
    shape = tuple(None if d is None or int(d) < 0 else int(d) for d in output_shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(f"conv2d_transpose: output_shape must be [N, H, W, C] with known H, W, "
                         f"C, got {output_shape!r}")  # fmt: skip
    if f.shape is not None and f.shape[2] is not None and f.shape[2] != shape[3]:
        raise ValueError(f"conv2d_transpose: output_shape channels {shape[3]} do not match "
                         f"filters {f.name} of shape {f.shape}")  # fmt: skip
    if x.shape is not None and None not in (shape[0], x.shape[0]) and shape[0] != x.shape[0]:
        raise ValueError(f"conv2d_transpose: output_shape batch {shape[0]} does not match "
                         f"input {x.name} of shape {x.shape}")  # fmt: skip
    a = _conv_window_attrs(strides, padding, dilations)
    return apply1("Conv2DBackpropInput", [x, f], dict(a, input_hw=shape[1:3]), name)
