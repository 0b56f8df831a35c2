"""Every benchmark workload by id (W1...): the micro workloads of workloads.py and those that
live in their own modules (W9 transformer.py, W10 resnet.py, W11 rnn.py, W12 scaling.py, W14
distributed.py).
The runner and the command line look workloads up here; this module imports them all, none
imports it."""

from __future__ import annotations

from .distributed import DataParallel
from .onnx_bench import OnnxInference
from .resnet import ResNetStep
from .rnn import RNNStep
from .scaling import CompileScaling
from .transformer import TransformerStep
from .workloads import (
    CNNStep,
    ElementwiseChain,
    LayerNorm,
    MLPBatches,
    MLPCompile,
    MLPStep,
    RowSoftmax,
    TinyRun,
)

WORKLOADS = {
    w.id: w
    for w in (
        ElementwiseChain(),
        RowSoftmax(),
        MLPStep(),
        TinyRun(),
        MLPCompile(),
        LayerNorm(),
        CNNStep(),
        MLPBatches(),
        TransformerStep(),
        ResNetStep(),
        RNNStep(),
        CompileScaling(),
        OnnxInference(),
        DataParallel(),
    )
}
