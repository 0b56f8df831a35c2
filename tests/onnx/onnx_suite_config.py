"""Which cases of ONNX's node conformance suite graphc runs, and why the rest are excluded.

``onnx.backend.test.BackendTest`` builds the node suite (1,884 cases over ~200 op types in
onnx 1.23) in memory. A case is excluded when it uses an op type of ``EXCLUDED_OPS`` or an
element type of ``EXCLUDED_TYPES`` (each with its reason; docs/onnx.md lists them);
every other case runs and is expected to pass. ``slice_names`` picks the bounded,
deterministic slice ``make test`` runs.
"""

from __future__ import annotations

import unittest
import zlib

import onnx
import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

_SEQ = "sequences, maps and optionals are not graphc values"
_STR = "strings are not a graphc dtype"
_QUANT = "quantized ops (QuantizeLinear and friends) are not in graphc's op library"
_TRAIN = "training-mode ops (random masks, optimizer updates) are inference-only here"
_DYN = "the output's shape depends on the input's values (graphc shapes are static)"
_ML = "the ai.onnx.ml / preview domains are not supported"
_NYI = "not implemented yet in graphc's op library"

#: op type -> why its cases are excluded
EXCLUDED_OPS = {
    **{op: _SEQ for op in (
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
        "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence",
        "Optional", "OptionalGetElement", "OptionalHasElement")},
    **{op: _STR for op in (
        "StringConcat", "StringNormalizer", "StringSplit", "RegexFullMatch", "LabelEncoder",
        "TfIdfVectorizer", "ImageDecoder")},
    **{op: _QUANT for op in (
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
        "QLinearMatMul", "ConvInteger", "MatMulInteger")},
    **{op: _TRAIN for op in (
        "Bernoulli", "RandomUniformLike", "RandomNormalLike", "RandomUniform", "RandomNormal",
        "Multinomial", "Adam", "Adagrad", "Momentum", "Gradient")},
    **{op: _DYN for op in ("NonMaxSuppression",)},
    **{op: _ML for op in (
        "TreeEnsemble", "ArrayFeatureExtractor", "Binarizer", "FlexAttention")},
    **{op: _NYI for op in (
        "GridSample", "AffineGrid", "RoiAlign", "DeformConv", "Col2Im",
        "DFT", "STFT", "MelWeightMatrix", "MaxUnpool", "Det", "BitCast",
        "TensorScatter", "LinearAttention")},
}  # fmt: skip

_NARROW_FLOAT = "8-, 4- and 2-bit floats and integers and bfloat16 are not graphc dtypes"
#: ONNX element type -> why cases using it are excluded
EXCLUDED_TYPES = {
    **{getattr(onnx.TensorProto, t): _NARROW_FLOAT for t in (
        "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
        "FLOAT8E8M0", "FLOAT4E2M1", "INT4", "UINT4", "INT2", "UINT2")},
    onnx.TensorProto.STRING: _STR,
    onnx.TensorProto.COMPLEX64: "complex numbers are not a graphc dtype",
    onnx.TensorProto.COMPLEX128: "complex numbers are not a graphc dtype",
}  # fmt: skip

#: single cases excluded for a reason of their own (case name -> reason)
EXCLUDED_CASES = {
    "test_averagepool_2d_dilations": "pools with dilations are not supported",
    "test_maxpool_2d_dilations": "pools with dilations are not supported",
    "test_lppool_2d_dilations": "pools with dilations are not supported",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output",
    "test_loop11": "Slice with starts computed from the Loop's iteration number (graphc "
    "shapes are static)",
}

#: included cases the cpu target is known to miss, with why (expected failures on cpu only)
_FP16 = (
    "float16 rounding: the cpu target rounds fused float16 chains once, ONNX's reference "
    "after every op; results differ by one float16 ulp, just over rtol 1e-3"
)
CPU_KNOWN_FAILURES = {
    "test_attention_4d_fp16": _FP16,
    "test_attention_4d_fp16_expanded": _FP16,
    "test_attention_4d_gqa_causal_nonpad_decode_fp16": _FP16,
    "test_attention_4d_gqa_causal_nonpad_decode_fp16_expanded": _FP16,
    "test_attention_4d_gqa_with_past_and_present_fp16": _FP16,
    "test_attention_4d_gqa_with_past_and_present_fp16_expanded": _FP16,
    "test_causal_conv_with_state_silu_fp16": _FP16,
    "test_causal_conv_with_state_silu_fp16_expanded": _FP16,
}

_WINDOW_3D = "3-D convolutions and pools are not in graphc's op library"


def _types_of(model) -> set:
    out = set()
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        t = vi.type
        if t.HasField("tensor_type"):
            out.add(t.tensor_type.elem_type)
        else:
            out.add(onnx.TensorProto.UNDEFINED)
    for init in g.initializer:
        out.add(init.data_type)
    for node in g.node:
        for a in node.attribute:
            if a.name == "to":
                out.add(a.i)
            if a.type == onnx.AttributeProto.TENSOR:
                out.add(a.t.data_type)
    return out


def exclusion_reason(case) -> str | None:
    """Why the node-suite ``case`` (a loader TestCase) is excluded, or None."""
    if case.name in EXCLUDED_CASES:
        return EXCLUDED_CASES[case.name]
    if case.name.startswith("test_training_dropout") and "zero_ratio" not in case.name:
        return f"training mode: {_TRAIN}"
    for node in case.model.graph.node:
        if node.op_type in EXCLUDED_OPS:
            return f"{node.op_type}: {EXCLUDED_OPS[node.op_type]}"
    types = _types_of(case.model)
    if onnx.TensorProto.UNDEFINED in types:
        return _SEQ
    for t in types:
        if t in EXCLUDED_TYPES:
            return f"{onnx.TensorProto.DataType.Name(t)}: {EXCLUDED_TYPES[t]}"
    for vi in case.model.graph.input:
        if (
            vi.type.HasField("tensor_type")
            and len(vi.type.tensor_type.shape.dim) == 5
            and any(
                n.op_type in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool")
                for n in case.model.graph.node
            )
        ):
            return _WINDOW_3D
    return None


def node_cases():
    """(included case names, {excluded case name: reason}) of the node suite."""
    included, excluded = [], {}
    for case in load_model_tests(kind="node"):
        why = exclusion_reason(case)
        if why is None:
            included.append(case.name)
        else:
            excluded[case.name] = why
    return included, excluded


def slice_names(names, every: int) -> list:
    """A deterministic slice: about one name in ``every`` (by a CRC of the name)."""
    return [n for n in names if zlib.crc32(n.encode()) % every == 0]


def include_pattern(names) -> str:
    """A regex matching exactly the CPU tests of ``names``."""
    return "^(" + "|".join(sorted(names)) + ")_cpu$"


def backend_tests(backend, module_name, names, known_failures=None):
    """The unittest class of ``BackendTest(backend, module_name)`` node cases ``names`` (on
    CPU), without the skipped entries of every other case; ``known_failures`` (name ->
    reason) are marked as expected failures."""
    bt = onnx.backend.test.BackendTest(backend, module_name)
    bt.include(include_pattern(names))
    cls = bt.test_cases["OnnxBackendNodeModelTest"]
    wanted = {f"{n}_cpu" for n in names}
    for attr in [a for a in vars(cls) if a.startswith("test_")]:
        if attr not in wanted:
            delattr(cls, attr)
        elif attr[: -len("_cpu")] in (known_failures or {}):
            setattr(cls, attr, unittest.expectedFailure(getattr(cls, attr)))
    return cls
