"""Random programs for the differential fuzzer: a spec (a list of nodes with symbolic shapes),
its generator and the Python source that builds it.

Sizes are *symbolic*: a dim is a polynomial over size symbols ``s0, s1, ...`` with integer
coefficients (``Dim``), so the generator knows which dims must be equal (matmul's inner
dims, the non-concat dims of a concat...). A program runs with two assignments of the
symbols (``Program.sizes``): the second reuses the executables compiled for the first, with
other runtime sizes (1 included), so a dim mixed up with another of equal size in one run
shows in the other. A dim that an op needs as a Python int (``broadcast_to``'s shape, a
``reshape`` target) *pins* its symbols: they take the first assignment's value in both.

A placeholder declares a symbolic dim ``None`` and a fixed one ``None`` or static at random;
every feed has the sizes of the assignment, so every program is valid for both runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

# -- symbolic dims: polynomials over the size symbols -------------------------------------------


def dim(c: int) -> tuple:
    """The fixed dim ``c``."""
    return (((), c),) if c else ()


def sym(name: str) -> tuple:
    return (((name,), 1),)


def _canon(terms: dict) -> tuple:
    return tuple(sorted((m, c) for m, c in terms.items() if c))


def dim_add(a: tuple, b: tuple) -> tuple:
    out = dict(a)
    for m, c in b:
        out[m] = out.get(m, 0) + c
    return _canon(out)


def dim_scale(a: tuple, k: int) -> tuple:
    return _canon({m: c * k for m, c in a})


def dim_mul(a: tuple, b: tuple) -> tuple:
    out: dict = {}
    for ma, ca in a:
        for mb, cb in b:
            m = tuple(sorted(ma + mb))
            out[m] = out.get(m, 0) + ca * cb
    return _canon(out)


def fixed(d: tuple):
    """The int value of a dim without symbols, else None."""
    if not d:
        return 0
    if len(d) == 1 and d[0][0] == ():
        return d[0][1]
    return None


def value(d: tuple, assign: dict) -> int:
    total = 0
    for m, c in d:
        v = c
        for s in m:
            v *= assign[s]
        total += v
    return total


def substitute(d: tuple, pins: dict) -> tuple:
    out = ()
    for m, c in d:
        term = dim(c)
        for s in m:
            term = dim_mul(term, dim(pins[s]) if s in pins else sym(s))
        out = dim_add(out, term)
    return out


def dim_text(d: tuple) -> str:
    if fixed(d) is not None:
        return str(fixed(d))
    parts = []
    for m, c in d:
        parts.append("*".join(([str(c)] if c != 1 or not m else []) + list(m)))
    return "+".join(parts)


# -- the spec ------------------------------------------------------------------------------------


@dataclass
class Node:
    """One value of the program: ``kind`` with ``args`` (indices of earlier nodes)."""

    kind: str  # placeholder | const | unary | binary | div | matmul | transpose | tile |
    #            concat | stack | squeeze | expand_dims | broadcast_to | reduce | softmax |
    #            reshape
    args: tuple
    attrs: dict
    shape: tuple  # of Dim

    def replace(self, **kw) -> Node:
        return dataclasses.replace(self, **kw)


@dataclass
class Program:
    dtype: str  # "float32" | "float64"
    nodes: list
    outputs: list  # node indices fetched (and differentiated)
    sizes: list  # one {symbol: int} per run
    fetch_forward: bool = True  # fetch the outputs too, not only the gradients
    grad: bool = True
    seed: int = 0
    pins: dict = field(default_factory=dict)

    def copy(self) -> Program:
        return Program(self.dtype, list(self.nodes), list(self.outputs),
                       [dict(s) for s in self.sizes], self.fetch_forward, self.grad,
                       self.seed, dict(self.pins))  # fmt: skip

    def concrete(self, shape, run: int) -> tuple:
        return tuple(value(d, self.sizes[run]) for d in shape)

    def placeholders(self) -> list:
        return [i for i, n in enumerate(self.nodes) if n.kind == "placeholder"]

    def pin(self, d):
        """Give the symbols of ``d`` the first run's value in every run."""
        syms = {s for m, _ in d for s in m}
        if not syms:
            return
        for s in syms:
            self.pins[s] = self.sizes[0][s]
            for run in self.sizes:
                run[s] = self.sizes[0][s]
        self.nodes = [
            n.replace(shape=tuple(substitute(x, self.pins) for x in n.shape)) for n in self.nodes
        ]

    def source(self) -> str:
        """Python statements building the program into the default graph: placeholders
        ``phs`` (with the feed shapes of each run in ``SIZES``), forward ``outs``, the
        ``fetch`` list (outputs and/or gradients)."""
        dt = f"gc.{self.dtype}"
        lines = []
        phs = []
        for i, n in enumerate(self.nodes):
            lines.append(f"v{i} = {_expr(n, i, dt)}")
            if n.kind == "placeholder":
                phs.append(i)
        outs = ", ".join(f"v{i}" for i in self.outputs)
        lines.append(f"outs = [{outs}]")
        sizes = []
        for run in range(len(self.sizes)):
            sizes.append([self.concrete(self.nodes[i].shape, run) for i in phs])
        if self.grad:
            for k, i in enumerate(self.outputs):
                decl = _decl(self.nodes[i].shape, None)
                lines.append(f"c{k} = gc.placeholder({dt}, {decl})  # cotangent of v{i}")
            terms = " + ".join(f"gc.reduce_sum(v{i} * c{k})" for k, i in enumerate(self.outputs))
            lines.append(f"loss = {terms}")
            wrt = ", ".join(f"v{i}" for i in phs)
            lines.append(f"grads = [g for g in gc.gradients(loss, [{wrt}]) if g is not None]")
            for run, i_sizes in enumerate(sizes):
                i_sizes += [self.concrete(self.nodes[i].shape, run) for i in self.outputs]
            cots = "".join(f", c{k}" for k in range(len(self.outputs)))
        else:
            cots = ""
        lines.append(f"phs = [{', '.join(f'v{i}' for i in phs)}{cots}]")
        fetch = []
        if self.fetch_forward or not self.grad:
            fetch.append("outs")
        if self.grad:
            fetch.append("grads")
        lines.append(f"fetch = {' + '.join(fetch)}")
        lines.append(f"SIZES = {sizes!r}")
        return "\n".join(lines) + "\n"


def _decl(shape, declared) -> str:
    """A placeholder's declared shape: a symbolic dim is None; a fixed one static unless
    ``declared`` says None."""
    dims = []
    for k, d in enumerate(shape):
        f = fixed(d)
        dims.append("None" if f is None or (declared and declared[k] is None) else str(f))
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


_UNARY = {
    "neg": "gc.negative({})", "tanh": "gc.tanh({})", "sigmoid": "gc.sigmoid({})",
    "relu": "gc.nn.relu({})", "square": "gc.square({})", "abs": "gc.abs({})",
    "exp": "gc.exp(gc.tanh({}))", "sin": "gc.sin({})",
}  # fmt: skip
_BINARY = {
    "add": "{} + {}", "sub": "{} - {}", "mul": "{} * {}", "maximum": "gc.maximum({}, {})",
    "minimum": "gc.minimum({}, {})",
}  # fmt: skip
_LAYOUT = ("transpose", "tile", "squeeze", "expand_dims", "reshape", "broadcast_to")
_VIEWS = ("squeeze", "expand_dims", "reshape")
_REDUCE = {"sum": "gc.reduce_sum", "mean": "gc.reduce_mean", "max": "gc.reduce_max"}


def _expr(n: Node, i: int, dt: str) -> str:
    a = [f"v{j}" for j in n.args]
    at = n.attrs
    k = n.kind
    if k == "placeholder":
        return f"gc.placeholder({dt}, {_decl(n.shape, at.get('declared'))})"
    if k == "const":
        shape = tuple(fixed(d) for d in n.shape)
        return f"gc.constant(np.linspace(-1.5, 1.25, {int(np.prod(shape))}).reshape({shape}), {dt})"
    if k == "unary":
        return _UNARY[at["fn"]].format(a[0])
    if k == "binary":
        return _BINARY[at["fn"]].format(a[0], a[1])
    if k == "div":
        return f"{a[0]} / (gc.square({a[1]}) + 1.0)"
    if k == "matmul":
        flags = "".join(
            f", {f}=True" for f in ("transpose_a", "transpose_b") if at.get(f)
        )  # fmt: skip
        return f"gc.matmul({a[0]}, {a[1]}{flags})"
    if k == "transpose":
        return f"gc.transpose({a[0]}, {list(at['perm'])})"
    if k == "tile":
        return f"gc.tile({a[0]}, {list(at['multiples'])})"
    if k == "concat":
        return f"gc.concat([{', '.join(a)}], {at['axis']})"
    if k == "stack":
        return f"gc.stack([{', '.join(a)}], {at['axis']})"
    if k == "squeeze":
        return f"gc.squeeze({a[0]}, {list(at['axes'])})"
    if k == "expand_dims":
        return f"gc.expand_dims({a[0]}, {at['axis']})"
    if k == "broadcast_to":
        return f"gc.broadcast_to({a[0]}, {list(at['shape'])})"
    if k == "reduce":
        axes = at["axes"]
        axis = "None" if axes is None else repr(list(axes))
        return f"{_REDUCE[at['fn']]}({a[0]}, {axis}, keepdims={at['keepdims']})"
    if k == "softmax":
        return f"gc.nn.softmax({a[0]}, axis={at['axis']})"
    if k == "reshape":
        return f"gc.reshape({a[0]}, {list(at['shape'])})"
    raise ValueError(k)


# -- the generator -------------------------------------------------------------------------------

SYMBOLS = ("s0", "s1", "s2")
MAX_ELEMENTS = 720  # per value, in every run (keeps a program's runs and compiles cheap)
MAX_RANK = 4

_WEIGHTS = {
    "unary": 3, "binary": 4, "div": 1, "matmul": 4, "batch_matmul": 3, "transpose": 3,
    "tile": 2, "concat": 2, "stack": 2, "squeeze": 2, "expand_dims": 2, "broadcast_to": 2,
    "reduce": 3, "softmax": 2, "reshape": 1,
}  # fmt: skip


class Generator:
    """Grows a random Program op by op; every node's sizes stay consistent in every run."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        first = rng.permutation(np.arange(2, 8))[: len(SYMBOLS)]
        second = rng.integers(1, 8, len(SYMBOLS))
        self.p = Program(
            dtype="float64" if rng.random() < 0.25 else "float32",
            nodes=[],
            outputs=[],
            sizes=[dict(zip(SYMBOLS, map(int, first))), dict(zip(SYMBOLS, map(int, second)))],
            seed=seed,
        )
        self.kinds = list(_WEIGHTS)
        w = np.array([_WEIGHTS[k] for k in self.kinds], float)
        self.weights = w / w.sum()

    # -- helpers -----------------------------------------------------------------------------
    def coin(self, p=0.5) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def some(self, seq) -> list:
        """A non-empty random subset of ``seq``, sorted."""
        k = int(self.rng.integers(1, len(seq) + 1))
        return sorted(int(a) for a in self.rng.choice(seq, size=k, replace=False))

    def fits(self, shape) -> bool:
        if len(shape) > MAX_RANK:
            return False
        for run in range(len(self.p.sizes)):
            if int(np.prod(self.p.concrete(shape, run), dtype=np.int64)) > MAX_ELEMENTS:
                return False
        return True

    def add(self, kind, args, attrs, shape) -> int:
        self.p.nodes.append(Node(kind, tuple(args), dict(attrs), tuple(shape)))
        return len(self.p.nodes) - 1

    def random_dim(self) -> tuple:
        r = self.rng.random()
        if r < 0.45:
            return sym(self.choice(SYMBOLS))
        if r < 0.6:
            return dim(1)
        return dim(int(self.rng.integers(2, 6)))

    def placeholder(self, shape) -> int:
        declared = tuple(None if fixed(d) is None or self.coin(0.4) else fixed(d) for d in shape)
        return self.add("placeholder", (), {"declared": declared}, shape)

    def operand(self, shape, fresh=0.5) -> int:
        """A node of ``shape``: an existing one, or a new placeholder (or constant)."""
        shape = tuple(shape)
        same = [i for i, n in enumerate(self.p.nodes) if n.shape == shape]
        if same and not self.coin(fresh):
            return self.choice(same)
        if all(fixed(d) is not None for d in shape) and self.coin(0.25):
            return self.add("const", (), {}, shape)
        return self.placeholder(shape)

    def pick(self) -> int:
        """An existing node: mostly the last op's result (chains of ops), else recent ones
        more likely."""
        n = len(self.p.nodes)
        ops = [i for i, nd in enumerate(self.p.nodes) if nd.kind not in ("placeholder", "const")]
        if ops and self.coin(0.6):
            return ops[-1]
        w = np.arange(1, n + 1, dtype=float) ** 2
        return int(self.rng.choice(n, p=w / w.sum()))

    def shape(self, i) -> tuple:
        return self.p.nodes[i].shape

    # -- the program ---------------------------------------------------------------------------
    def program(self) -> Program:
        rng = self.rng
        for _ in range(int(rng.integers(1, 3))):
            rank = int(rng.choice([1, 2, 2, 3, 3, 4]))
            self.placeholder(tuple(self.random_dim() for _ in range(rank)))
        n_ops = int(rng.integers(1, 11))
        done = tries = 0
        while done < n_ops and tries < 60:
            tries += 1
            kind = self.kinds[int(rng.choice(len(self.kinds), p=self.weights))]
            # layout changes after GEMMs (their epilogues), views after layout changes
            last = self.p.nodes[-1].kind
            if last == "matmul" and self.coin(0.6):
                kind = self.choice(_LAYOUT)
            elif last in _LAYOUT and self.coin(0.5):
                kind = self.choice(_VIEWS if self.coin(0.7) else _LAYOUT)
            before = (list(self.p.nodes), dict(self.p.pins), [dict(s) for s in self.p.sizes])
            x = self.pick()
            out = getattr(self, "op_" + kind)(x)
            if out is None or not self.fits(self.shape(out)):
                self.p.nodes, self.p.pins, self.p.sizes = before
                continue
            done += 1
        computed = [i for i, n in enumerate(self.p.nodes) if n.kind not in ("placeholder", "const")]
        used = {a for n in self.p.nodes for a in n.args}
        sinks = [i for i in computed if i not in used]
        rng.shuffle(sinks)
        outs = set(sinks[:4]) | {len(self.p.nodes) - 1}
        if computed and self.coin(0.3):
            outs.add(self.choice(computed))  # an intermediate value fetched (stored) too
        self.p.outputs = sorted(outs)
        self.p.grad = self.coin(0.8)
        self.p.fetch_forward = self.coin(0.6)
        return self.p

    # -- ops (each returns the new node, or None when it does not apply) ----------------------
    def op_unary(self, x):
        return self.add("unary", (x,), {"fn": self.choice(sorted(_UNARY))}, self.shape(x))

    def broadcast_partner(self, sx) -> tuple:
        """A shape that broadcasts against ``sx`` to ``sx`` (a suffix, some dims 1) or, now
        and then, widens it along its size-1 dims."""
        k = int(self.rng.integers(0, len(sx) + 1))
        tail = sx[len(sx) - k :]
        return tuple(d if self.coin(0.7) else dim(1) for d in tail)

    def op_binary(self, x, kind="binary"):
        sx = self.shape(x)
        sy = self.broadcast_partner(sx)
        if self.coin(0.3):
            # widen x: its size-1 dims take a size from the partner
            sy = tuple(self.random_dim() if fixed(d) == 1 and self.coin() else d for d in sx)
        y = self.operand(sy)
        out = _broadcast(sx, self.shape(y))
        a, b = (x, y) if self.coin() else (y, x)
        if kind == "div":
            return self.add("div", (a, b), {}, out)
        return self.add("binary", (a, b), {"fn": self.choice(sorted(_BINARY))}, out)

    def op_div(self, x):
        return self.op_binary(x, "div")

    def op_matmul(self, x):
        sx = self.shape(x)
        if len(sx) != 2:
            return None
        ta, tb = self.coin(0.3), self.coin(0.3)
        m, k = (sx[1], sx[0]) if ta else sx
        n = m if self.coin(0.3) else self.random_dim()  # square products now and then
        y = self.operand((n, k) if tb else (k, n))
        return self.add("matmul", (x, y), {"transpose_a": ta, "transpose_b": tb}, (m, n))

    def op_batch_matmul(self, x):
        sx = self.shape(x)
        if len(sx) < 3:
            return None
        ta, tb = self.coin(0.3), self.coin(0.3)
        batch, (m, k) = sx[:-2], ((sx[-1], sx[-2]) if ta else sx[-2:])
        n = m if self.coin(0.3) else self.random_dim()
        yb = tuple(d if self.coin(0.8) else dim(1) for d in batch)
        if self.coin(0.2):
            yb = yb[1:]
        y = self.operand(yb + ((n, k) if tb else (k, n)))
        out_batch = _broadcast(batch, yb)
        a, b = x, y
        return self.add("matmul", (a, b), {"transpose_a": ta, "transpose_b": tb},
                        out_batch + (m, n))  # fmt: skip

    def op_transpose(self, x):
        sx = self.shape(x)
        if len(sx) < 2:
            return None
        perm = tuple(int(p) for p in self.rng.permutation(len(sx)))
        if self.coin(0.4):  # the transpose of the last two axes (of a matrix, of a batch)
            perm = tuple(range(len(sx) - 2)) + (len(sx) - 1, len(sx) - 2)
        if perm == tuple(range(len(sx))):
            perm = perm[1:] + perm[:1]
        return self.add("transpose", (x,), {"perm": perm}, tuple(sx[p] for p in perm))

    def op_tile(self, x):
        sx = self.shape(x)
        if not sx:
            return None
        mult = tuple(int(self.rng.choice([1, 1, 2, 3])) for _ in sx)
        return self.add("tile", (x,), {"multiples": mult},
                        tuple(dim_scale(d, m) for d, m in zip(sx, mult)))  # fmt: skip

    def op_concat(self, x):
        sx = self.shape(x)
        if not sx:
            return None
        axis = int(self.rng.integers(len(sx)))
        args, total = [x], sx[axis]
        for _ in range(int(self.rng.integers(1, 3))):
            s = list(sx)
            s[axis] = self.random_dim() if self.coin(0.6) else sx[axis]
            args.append(self.operand(tuple(s)))
            total = dim_add(total, s[axis])
        order = [int(j) for j in self.rng.permutation(len(args))]
        args = [args[j] for j in order]
        out = list(sx)
        out[axis] = total
        if self.coin(0.3):
            axis -= len(sx)  # a negative axis
        return self.add("concat", args, {"axis": axis}, tuple(out))

    def op_stack(self, x):
        sx = self.shape(x)
        axis = int(self.rng.integers(len(sx) + 1))
        args = [x] + [self.operand(sx) for _ in range(int(self.rng.integers(1, 3)))]
        out = sx[:axis] + (dim(len(args)),) + sx[axis:]
        return self.add("stack", args, {"axis": axis}, out)

    def op_squeeze(self, x):
        sx = self.shape(x)
        ones = [k for k, d in enumerate(sx) if fixed(d) == 1]
        if not ones:
            return None
        axes = self.some(ones)
        return self.add("squeeze", (x,), {"axes": tuple(axes)},
                        tuple(d for k, d in enumerate(sx) if k not in axes))  # fmt: skip

    def op_expand_dims(self, x):
        sx = self.shape(x)
        axis = int(self.rng.integers(len(sx) + 1))
        return self.add("expand_dims", (x,), {"axis": axis}, sx[:axis] + (dim(1),) + sx[axis:])

    def op_broadcast_to(self, x):
        sx = self.shape(x)
        for d in sx:
            self.p.pin(d)
        sx = self.shape(x)
        target = [d if fixed(d) != 1 or self.coin() else dim(int(self.rng.integers(2, 5)))
                  for d in sx]  # fmt: skip
        lead = [dim(int(self.rng.integers(1, 4))) for _ in range(int(self.rng.integers(0, 2)))]
        target = tuple(lead + target)
        if target == sx:
            return None
        return self.add("broadcast_to", (x,), {"shape": tuple(fixed(d) for d in target)}, target)

    def op_reduce(self, x):
        sx = self.shape(x)
        fn = self.choice(sorted(_REDUCE))
        keep = self.coin()
        if not sx or self.coin(0.2):
            axes = None
            out = tuple(dim(1) for _ in sx) if keep else ()
        else:
            axes = self.some(list(range(len(sx))))
            out = tuple(
                dim(1) if k in axes else d for k, d in enumerate(sx) if keep or k not in axes
            )
            if self.coin(0.2):
                axes = [a - len(sx) for a in axes]
        return self.add("reduce", (x,), {"fn": fn, "axes": axes, "keepdims": keep}, out)

    def op_softmax(self, x):
        sx = self.shape(x)
        if not sx:
            return None
        axis = -1 if self.coin(0.6) else int(self.rng.integers(len(sx)))
        return self.add("softmax", (x,), {"axis": axis}, sx)

    def op_reshape(self, x):
        sx = self.shape(x)
        if len(sx) < 3 or self.coin(0.3):
            return self.add("reshape", (x,), {"shape": (-1,)}, (_product(sx),))
        # merge the last two dims: every dim but the first is pinned (the target needs ints)
        for d in sx[1:]:
            self.p.pin(d)
        sx = self.shape(x)
        out = sx[:-2] + (dim_mul(sx[-2], sx[-1]),)
        target = (-1,) + tuple(fixed(d) for d in out[1:])
        return self.add("reshape", (x,), {"shape": target}, out)


def _product(shape) -> tuple:
    out = dim(1)
    for d in shape:
        out = dim_mul(out, d)
    return out


def _broadcast(a, b) -> tuple:
    n = max(len(a), len(b))
    a = (dim(1),) * (n - len(a)) + tuple(a)
    b = (dim(1),) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if fixed(x) == 1:
            out.append(y)
        elif fixed(y) == 1 or x == y:
            out.append(x)
        else:
            raise AssertionError(f"not broadcastable: {a} {b}")
    return tuple(out)


def generate(seed: int) -> Program:
    return Generator(seed).program()
