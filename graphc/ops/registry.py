"""The op registry: one ``OpDef`` subclass per op type, holding everything about it.

An OpDef declares, in one place:
  * ``infer(specs, attrs)``  -> output TensorSpecs (build-time shape/dtype rule; raise
    ``ShapeError``/``DTypeError`` with a plain message, the builder adds op name and line)
  * ``ref(arrays, attrs)``   -> output arrays: the numpy meaning, the oracle of every backend
  * ``vjp(op, grads)``       -> input gradients as graph tensors (reverse-mode rule), or
    ``differentiable = False``
  * ``examples()``           -> small cases the registry-driven tests run (infer vs ref,
    gradients vs central differences, each backend vs ref)
  * ``scalar(xs, attrs)``    -> (elementwise ops) the scalar Kernel-IR expression for fusion

Adding an op is one class decorated with ``@register`` and a public builder function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes as _dt
from ..graph.core import Operation, Tensor, TensorSpec, get_default_graph, user_location

REGISTRY: dict[str, OpDef] = {}


class ShapeError(ValueError):
    """Raised by ``OpDef.infer`` for incompatible shapes; re-raised with op name and location."""


class DTypeError(TypeError):
    """Raised by ``OpDef.infer`` for unsupported dtypes; re-raised with op name and location."""


@dataclass
class Example:
    """A test case: ``build(*tensors)`` on placeholders fed with ``inputs``.

    ``grad``: check gradients w.r.t. the float inputs by central differences.
    ``dynamic``: also build with every placeholder dim unknown (None).
    """

    build: Callable
    inputs: Sequence[np.ndarray]
    grad: bool = True
    dynamic: bool = True
    rtol: float = 1e-5
    atol: float = 1e-6
    grad_tol: float = 1e-4
    #: promote float inputs to float64 for the gradient check (False: keep their dtypes)
    float64: bool = True
    note: str = ""
    extra: dict = field(default_factory=dict)


class OpDef:
    """Base class of op definitions. Subclasses set ``type`` and override what applies."""

    type: str = ""
    #: False: gradients do not flow through this op (comparisons, integer ops, argmax...)
    differentiable: bool = True
    #: Reads or writes session state or randomness: never folded, merged or duplicated.
    stateful: bool = False
    #: Output i is computed elementwise from inputs broadcast to the output shape.
    elementwise: bool = False
    #: Every output has the same spec and is computed by one rule from its index (unstack):
    #: which output a kernel reads changes its addresses, not its structure, so fusion
    #: decides a group reading output 7 as it decided one reading output 3.
    interchangeable_outputs: bool = False
    #: A control-flow op that runs its body again and again (while_loop): its body's
    #: variables carry from one iteration to the next (the cpu runner treats them so).
    repeats_body: bool = False
    #: Why ``examples()`` is empty (state, randomness, internal): the registry test requires
    #: either examples or a reason.
    no_examples_reason: str = ""

    # -- facts the compiler reads (graphc/kernel, graphc/passes, graphc/backends): declared
    # here, on the op, so that no pass tests op names. tests/test_op_facts.py checks that
    # every registered op declares them and that the kernel side has what they promise.

    #: How the kernel lowering computes the op (``graphc/kernel/lowerings.py``):
    #: ``"source"`` (no kernel: feeds, constants, variable reads), ``"elementwise"`` (one
    #: output element from input elements at the same broadcast index), ``"index"`` (input
    #: elements at remapped indices: transpose, slice, gather...), ``"reduction"`` (a row
    #: reduction), ``"gemm"`` (a library GEMM plus fused epilogue), ``"opaque"`` (a whole
    #: kernel of its own, never fused) or ``"host"`` (no lowering: the cpu target runs its
    #: ``ref`` on the host between native segments; ``host_reason`` says why). None:
    #: undeclared; ``@register`` makes an ``elementwise`` op's kind ``"elementwise"``.
    kind: str | None = None
    #: Why a ``"host"`` op has no lowering (the registry test requires a reason).
    host_reason: str = ""
    #: Why the lowering needs some of the op's dims known at build time: with them unknown,
    #: lowering raises UnimplementedError naming the op and the cpu target runs it on the
    #: host. "": the op lowers with any dim unknown.
    dynamic_host_reason: str = ""
    #: For ``"source"`` ops: where the value comes from: ``"feed"`` (the run's feed number
    #: ``attrs["index"]``), ``"const"`` (``attrs["value"]``), ``"variable"`` (the session
    #: variable ``attrs["var"]``), ``"placeholder"`` (a graph input that must be fed: a
    #: Program holds Feeds instead) or ``"none"`` (no value).
    source: str = ""
    #: How the op touches the session variable ``attrs["var"]``: ``"read"``, ``"write"``
    #: (replaces its value), ``"update"`` (reads it, then writes a new value) or
    #: ``"initialized"`` (asks whether it has a value); "" none.
    variable: str = ""
    #: Its outputs are stored by the kernel that computes them even when no other kernel or
    #: fetch reads them: a variable's new value, a tensor whose values the run checks.
    must_store: bool = False
    #: Each element costs much (random generators): fusion never recomputes or copies it
    #: (elementwise ops with a ``scalar`` body are judged from the body instead).
    expensive: bool = False
    #: The name its whole-kernel lowering is registered under (``OPAQUE``) when the op is
    #: lowered as one in place of its kind (``lowered_kind`` says when); "" for none.
    opaque_lowering: str = ""
    #: For ``"gemm"`` ops: the fusion group kind, ``"gemm"`` or ``"conv"`` (im2col, then GEMM).
    gemm_group: str = "gemm"
    #: How the symbolic dims of its outputs follow those of its inputs, for the graph passes'
    #: proofs that two unknown dims are equal (``graphc/passes/symshape.py``): ``"input0"`` /
    #: ``"input1"`` (that input's shape), ``"reduce"`` (input 0 less ``attrs["axes"]``),
    #: ``"split"`` / ``"concat"`` (input 0's, but along ``attrs["axis"]``), ``"transpose"``,
    #: ``"expand_dims"``, ``"squeeze"``, ``"matmul"``, ``"reshape"``; "": fresh symbols
    #: (elementwise ops broadcast their inputs').
    symbolic_dims: str = ""
    #: Swapping its two operands changes no bit of the result (CSE merges ``a+b``, ``b+a``).
    commutative: bool = False
    #: Its value is a function of its input's static shape alone (folded when it is known).
    from_static_shape: bool = False
    #: Stateful, but only reads state: dropped when nothing uses its value.
    reads_state_only: bool = False
    #: Stateful, but a gradient may run it again when it re-runs a loop body forward (it
    #: reads state, or checks or prints the same values again).
    replayable: bool = False
    #: Re-views input 0: the same elements in the same row-major order (reshapes).
    view: bool = False
    #: An ``"index"`` op that reads each input element at most once and never reads one it
    #: discards: an expensive producer fused into it is not recomputed (concat, pad and
    #: gathers evaluate clamped reads that a select discards; tile and broadcasts read
    #: elements repeatedly).
    reads_each_once: bool = False
    #: Why the op has no symbolic shape rule (``graphc/kernel/shapes.py``) though it is not
    #: elementwise (those broadcast): its output shape is always static, depends on input
    #: values, or the op never reaches the lowering. "": it has a rule.
    static_shape_reason: str = ""
    #: The op a ``Variable``'s tensor comes from (one per variable): a gradient with respect
    #: to that tensor also flows through the variable's fresh reads (the other ops with
    #: ``variable == "read"``, ``read_value()``), as in TF (``graphc/autodiff.py``).
    variable_handle: bool = False
    #: A matrix product ``op(a) @ op(b)`` over the last two axes of its two inputs, ``op``
    #: the transpose that ``attrs["transpose_a"]`` / ``attrs["transpose_b"]`` ask for: the
    #: product's gradient with respect to ``b`` is ``a^T @ g`` (loop gradients stack the
    #: factors, ``graphc/control_grad.py``) and a slice of ``b``'s columns computes those
    #: columns of the product (``graphc/passes/narrow.py``).
    matrix_product: bool = False
    #: Its output is input 0 broadcast to the output shape (``broadcast_to``,
    #: ``broadcast_like``, ``fill``): an elementwise consumer that broadcasts its operands
    #: itself can read input 0 instead (``graphc/passes/cleanup.py``).
    broadcasts: bool = False
    #: Every output element is a copy of an element of input 0, moved or repeated but not
    #: changed (reshapes, broadcasts, identity): a tensor whose elements all hold one value
    #: gives an output that holds it too (``Rewriter.splat``).
    copies_input0: bool = False
    #: The attribute holding the one value every output element takes (``"value"`` for
    #: ``zeros_like`` / ``ones_like``), known without running the op; "" for none.
    splat_attr: str = ""

    def infer(self, specs: list[TensorSpec], attrs: dict) -> list[TensorSpec]:
        raise NotImplementedError(f"{self.type}.infer")

    def ref(self, xs: list[np.ndarray], attrs: dict):
        """numpy reference: returns an array (single output) or a list of arrays."""
        raise NotImplementedError(f"{self.type}.ref")

    def ref_stateful(self, xs: list[np.ndarray], attrs: dict, ctx):
        """Reference for stateful ops; ``ctx`` is the run's state (variables, rng)."""
        return self.ref(xs, attrs)

    def vjp(self, op: Operation, grads: list[Tensor | None]) -> list[Tensor | None]:
        raise NotImplementedError(f"no gradient rule for op type {self.type}")

    def examples(self) -> list[Example]:
        return []

    def lowered_kind(self, outs) -> str | None:
        """The kernel kind of a node of this op whose outputs have the TensorSpecs ``outs``:
        ``kind``, unless the op lowers differently for some dtypes (an integer MatMul is a
        loop nest)."""
        return self.kind

    def __repr__(self) -> str:
        return f"<OpDef {self.type}>"


def register(cls):
    """Class decorator: instantiate the OpDef and add it to the registry under ``cls.type``."""
    if not cls.type:
        cls.type = cls.__name__
    if cls.kind is None and cls.elementwise:
        cls.kind = "elementwise"
    if cls.type in REGISTRY:
        raise ValueError(f"op type {cls.type} registered twice")
    REGISTRY[cls.type] = cls()
    return cls


def get_op_def(type_name: str) -> OpDef:
    try:
        return REGISTRY[type_name]
    except KeyError:
        raise KeyError(f"unknown op type {type_name!r}") from None


# -- conversion of Python values to tensors ---------------------------------------------------


def _graph_of(values) -> object:
    for v in values:
        g = getattr(v, "graph", None)
        if g is not None and isinstance(v, Tensor):
            return g
    return get_default_graph()


#: ``constant(value, dtype, name, graph)``, installed by ``ops/constant.py`` when it loads: the
#: registry sits below every op module, so it cannot import the one that builds constants
_CONSTANT_BUILDER = None


def set_constant_builder(fn) -> None:
    """Called once by ``ops/constant.py``: the builder ``convert_to_tensor`` uses for values
    that are not tensors yet."""
    global _CONSTANT_BUILDER
    _CONSTANT_BUILDER = fn


def convert_to_tensor(value, dtype=None, name=None, graph=None) -> Tensor:
    """A Tensor for ``value``: tensors pass through; Python/numpy values become constants."""
    if isinstance(value, Tensor):
        if dtype is not None and _dt.as_dtype(dtype) != value.dtype:
            raise TypeError(
                f"tensor {value.name} has dtype {value.dtype.name}, expected "
                f"{_dt.as_dtype(dtype).name}"
            )
        return value
    conv = getattr(value, "_as_graph_tensor", None)
    if conv is not None:
        return convert_to_tensor(conv(), dtype, name, graph)
    if isinstance(value, Operation):
        raise TypeError(f"cannot use operation {value.name} as a tensor (it has no value)")
    if _CONSTANT_BUILDER is None:
        raise RuntimeError("graphc.ops.constant is not loaded (import graphc)")
    return _CONSTANT_BUILDER(value, dtype=dtype, name=name, graph=graph)


def _is_weak_scalar(value) -> bool:
    return isinstance(value, bool | int | float) and not isinstance(value, np.generic)


def _is_weak_numpy_scalar(value, target) -> bool:
    """A numpy float scalar (``np.float64(0.1)``, ``np.sqrt(2 / n)``), or a numpy integer
    scalar beside a floating tensor, takes the tensors' dtype like a Python number: TF1
    converts such operands to the dtype of the op's tensor input, so numpy scalars never widen
    a float32 graph (numpy arrays keep their own dtype and promote)."""
    if target is None or not isinstance(value, np.generic):
        return False
    if isinstance(value, np.floating):
        return True
    return isinstance(value, np.integer) and target.is_floating


def convert_args(values, graph=None, dtype_hint=None) -> list[Tensor]:
    """Convert operands of one op: Python scalars take the tensors' dtype ("weak" types), and
    so do numpy float scalars (and numpy integer scalars beside a floating tensor)."""
    tensors = [v._as_graph_tensor() if hasattr(v, "_as_graph_tensor") else v for v in values]
    tensor_dtypes = [v.dtype for v in tensors if isinstance(v, Tensor)]
    tensor_target = _dt.result_type(*tensor_dtypes) if tensor_dtypes else None
    weak = [_is_weak_scalar(v) or _is_weak_numpy_scalar(v, tensor_target) for v in tensors]
    strong = list(tensor_dtypes)
    strong += [
        _dt.default_dtype_for_value(v)
        for v, w in zip(tensors, weak)
        if not isinstance(v, Tensor) and not w
    ]
    graph = graph or _graph_of(tensors)
    target = _dt.result_type(*strong) if strong else None
    out = []
    for v, w in zip(tensors, weak):
        if isinstance(v, Tensor):
            out.append(v)
            continue
        if w:
            is_float = isinstance(v, float | np.floating)
            is_int = isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)
            if target is None:
                dt = dtype_hint or _dt.default_dtype_for_value(v)
            elif is_float and not target.is_floating:
                dt = _dt.float32
            elif is_int and target.is_bool:
                dt = _dt.int32
            else:
                dt = target
            out.append(convert_to_tensor(v, dtype=dt, graph=graph))
        else:
            out.append(convert_to_tensor(v, graph=graph))
    return out


# -- building ops -----------------------------------------------------------------------------


def _fmt_specs(specs) -> str:
    return ", ".join(f"{'?' if s.shape is None else tuple(s.shape)} {s.dtype.name}" for s in specs)


def apply_op(type_name: str, inputs: Sequence, attrs: dict | None = None, name=None, graph=None):
    """Build an op of ``type_name``; returns the Operation.

    Runs shape/dtype inference now, so a bad shape fails here, naming the op and the user's
    file and line.
    """
    op_def = get_op_def(type_name)
    attrs = dict(attrs or {})
    inputs = [convert_to_tensor(x) for x in inputs]
    graph = graph or (inputs[0].graph if inputs else get_default_graph())
    default = get_default_graph()
    capture = getattr(default, "capture", None)
    if capture is not None and default.encloses(graph):
        # Built inside a control-flow body (ops/func_graph.py): the op goes into the body,
        # and tensors of enclosing graphs become the body's captured inputs.
        graph = default
        inputs = [capture(t) for t in inputs]
    for t in inputs:
        if t.graph is not graph:
            raise ValueError(
                f"{type_name}: input {t.name} belongs to another graph than the op being built"
            )
    specs = [TensorSpec(t.shape, t.dtype) for t in inputs]
    location = user_location()
    try:
        out_specs = op_def.infer(specs, attrs)
    except (ShapeError, DTypeError) as exc:
        label = f"{type_name}" + (f" '{name}'" if name else "")
        kind = ValueError if isinstance(exc, ShapeError) else TypeError
        raise kind(
            f"{label}: {exc} (inputs: {_fmt_specs(specs)}) at {location[0]}:{location[1]}"
        ) from None
    out_specs = [
        TensorSpec(None if sh is None else tuple(sh), _dt.as_dtype(dt)) for sh, dt in out_specs
    ]
    return graph._create_op(op_def, inputs, attrs, out_specs, name, location)


def apply1(type_name: str, inputs: Sequence, attrs: dict | None = None, name=None) -> Tensor:
    """``apply_op`` for single-output ops: returns the output tensor."""
    return apply_op(type_name, inputs, attrs, name).outputs[0]


# -- shape helpers shared by op files ---------------------------------------------------------


def broadcast_shapes(*shapes) -> tuple | None:
    """numpy broadcasting of static shapes with None dims; ShapeError when incompatible."""
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError(
                "shapes " + " and ".join(str(tuple(s)) for s in shapes) + " are not broadcastable"
            )
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def num_elements(shape) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64))
