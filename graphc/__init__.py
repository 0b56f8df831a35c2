"""graphc: a static-graph deep-learning compiler in the spirit of TensorFlow 1 + XLA.

    import graphc as gc
    x = gc.placeholder(gc.float32, (None, 4))
    y = gc.reduce_sum(gc.tanh(x) * 2, axis=1)
    with gc.Session() as sess:
        print(sess.run(y, {x: np.ones((3, 4))}))

The public names are described in docs/api.md (the user guide).
"""

import importlib as _importlib

from . import (  # gc.math, gc.nn...: tf.math / tf.nn namespaces
    debugging,
    errors,
    math,
    nn,
    onnx,  # gc.onnx: imports the onnx package only when used
)
from .dtypes import DType, as_dtype, bool_, float16, float32, float64, int32, int64
from .graph import (
    Graph,
    Operation,
    Tensor,
    TensorSpec,
    control_dependencies,
    get_default_graph,
    name_scope,
    reset_default_graph,
)
from .graph.core import get_default_session
from .ops.bitwise import *  # noqa: F403
from .ops.branches import *  # noqa: F403  (cond, case)
from .ops.constant import *  # noqa: F403
from .ops.control import *  # noqa: F403
from .ops.cumulative import *  # noqa: F403
from .ops.debug import print_
from .ops.elementwise import *  # noqa: F403
from .ops.gather_scatter import *  # noqa: F403
from .ops.indexing import *  # noqa: F403
from .ops.linalg import *  # noqa: F403
from .ops.loops import *  # noqa: F403  (while_loop, scan, map_fn, foldl)
from .ops.nn import *  # noqa: F403  (every op is importable from gc)
from .ops.random import *  # noqa: F403
from .ops.reduce import *  # noqa: F403
from .ops.registry import convert_to_tensor
from .ops.shape import *  # noqa: F403
from .ops.sorting import *  # noqa: F403
from .ops.state import *  # noqa: F403
from .ops.trig import *  # noqa: F403
from .options import CompileOptions, RunMetadata, RunOptions
from .session import InteractiveSession, Session
from .version import __version__

bool = bool_  # noqa: A001 - gc.bool, as in the API
print = print_  # noqa: A001 - gc.print, as in the API (tf.print)
newaxis = None

from . import (  # noqa: E402  (gc.data: input pipelines; gc.summary: TensorBoard)  # noqa: E402
    control_grad,  # noqa: E402, F401  (installs the gradients of while_loop and cond)
    data,
    layers,
    losses,
    metrics,
    summary,
    train,
)
from .autodiff import gradients, hessians, jacobian  # noqa: E402
from .exporter import export, export_c, load  # noqa: E402

# Building models (API.md "Building models"): collections, variable scopes, initializers,
# layers, losses and metrics, above the ops (graphc/model, graphc/layers, losses.py,
# metrics.py).
from .graph.collections import (  # noqa: E402
    GraphKeys,
    add_to_collection,
    add_to_collections,
    get_collection,
    get_collection_ref,
)
from .model import (  # noqa: E402
    AUTO_REUSE,
    VariableScope,
    get_local_variable,
    get_variable,
    get_variable_scope,
    initializers,
    variable_scope,
)

# tf.compat.v1's top-level initializer names
from .model.initializers import Constant as constant_initializer  # noqa: E402
from .model.initializers import GlorotNormal as glorot_normal_initializer  # noqa: E402
from .model.initializers import GlorotUniform as glorot_uniform_initializer  # noqa: E402
from .model.initializers import Ones as ones_initializer  # noqa: E402
from .model.initializers import RandomNormal as random_normal_initializer  # noqa: E402
from .model.initializers import RandomUniform as random_uniform_initializer  # noqa: E402
from .model.initializers import TruncatedNormal as truncated_normal_initializer  # noqa: E402
from .model.initializers import VarianceScaling as variance_scaling_initializer  # noqa: E402
from .model.initializers import Zeros as zeros_initializer  # noqa: E402
from .train import clip_by_global_norm  # noqa: E402


def __getattr__(name):
    # gc.distribute (the MPI extra) loads on first use: its collective ops join the registry
    # only then, and mpi4py only when a collective runs.
    if name == "distribute":
        return _importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")
