"""Session: compile once per (fetches, feed signature), bind feeds, run, unpack fetches."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping

import numpy as np

from .compiler import check_target, compile_program
from .errors import ResourceExhaustedError
from .feed_sources import plan_for
from .graph.core import (
    Operation,
    Tensor,
    get_default_graph,
    session_stack,
)
from .options import CompileOptions, KernelStat, RunMetadata, RunOptions
from .program import extract
from .runtime_state import RunContext

# -- fetch structures --------------------------------------------------------------------------


def _flatten(fetches, leaves: list):
    """Returns a rebuild function; appends the leaves to ``leaves``."""
    if hasattr(fetches, "_graphc_fetch_parts"):
        # a composite fetch (gc.summary): its tensors are fetched, then turned into one value
        rebuild_parts = _flatten(list(fetches._graphc_fetch_parts()), leaves)
        return lambda vals: fetches._graphc_fetch_value(rebuild_parts(vals))
    if isinstance(fetches, Tensor | Operation | str) or hasattr(fetches, "_as_graph_tensor"):
        i = len(leaves)
        leaves.append(fetches)
        leaf = lambda vals: vals[i]  # noqa: E731
        leaf.leaf_index = i  # (read by a list of leaves: see below)
        return leaf
    if isinstance(fetches, tuple) and hasattr(fetches, "_fields"):  # namedtuple
        parts = [_flatten(f, leaves) for f in fetches]
        cls = type(fetches)
        return lambda vals: cls(*[p(vals) for p in parts])
    if isinstance(fetches, list | tuple):
        parts = [_flatten(f, leaves) for f in fetches]
        cls = type(fetches)
        if cls is list and all(hasattr(p, "leaf_index") for p in parts):
            # the common sess.run([a, b]): one comprehension, no call per element
            idx = [p.leaf_index for p in parts]
            pick = lambda vals: [vals[i] for i in idx]  # noqa: E731
            pick.picks = idx  # (read by Session._direct)
            return pick
        return lambda vals: cls(p(vals) for p in parts)
    if isinstance(fetches, Mapping):
        parts = {k: _flatten(v, leaves) for k, v in fetches.items()}
        cls = type(fetches)

        def rebuild(vals):
            try:
                return cls((k, p(vals)) for k, p in parts.items())
            except TypeError:
                return {k: p(vals) for k, p in parts.items()}

        return rebuild
    if fetches is None:
        raise TypeError("fetch argument None is not a tensor, operation or name")
    raise TypeError(
        f"fetch argument {fetches!r} of type {type(fetches).__name__} is not a tensor, "
        "operation, name, or a list/tuple/dict of those"
    )


def _fmt_shape(shape) -> str:
    return "<unknown>" if shape is None else str(tuple(shape))


def validate_feed(tensor: Tensor, value) -> np.ndarray:
    """Convert a fed value to the tensor's dtype; ValueError naming it if it does not fit."""
    try:
        arr = np.asarray(value)
    except MemoryError:
        raise ResourceExhaustedError(f"out of memory converting the value fed for "
                                     f"'{tensor.name}' to an array") from None  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the user's value
        raise ValueError(f"cannot convert the value fed for '{tensor.name}': {exc}") from None
    target = tensor.dtype.np
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"cannot feed a value of type {arr.dtype} for tensor '{tensor.name}', which has "
            f"dtype {tensor.dtype.name}"
        )
    ok = (
        arr.dtype == target
        or np.can_cast(arr.dtype, target, "same_kind")
        or (arr.dtype.kind in "biu" and target.kind == "f")
        or (arr.dtype.kind == "b" and target.kind in "iu")
    )
    if not ok:
        raise ValueError(
            f"cannot feed a value of dtype {arr.dtype} for tensor '{tensor.name}', which has "
            f"dtype {tensor.dtype.name}"
        )
    shape = tensor.shape
    if shape is not None and (
        arr.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, arr.shape))
    ):
        raise ValueError(
            f"cannot feed value of shape {arr.shape} for tensor '{tensor.name}', which has "
            f"shape {_fmt_shape(shape)}"
        )
    if arr.dtype != target:
        if target.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
            _check_int_range(tensor, arr, target)
        try:
            arr = arr.astype(target)
        except MemoryError:
            raise ResourceExhaustedError(
                f"out of memory converting the value fed for '{tensor.name}' "
                f"({arr.nbytes:,} bytes) to {tensor.dtype.name}"
            ) from None
    return (
        np.array(arr, order="C", copy=False) if arr.flags.c_contiguous else np.array(arr, order="C")
    )


def _check_int_range(tensor: Tensor, arr: np.ndarray, target: np.dtype) -> None:
    """ValueError when an integer feed holds a value the tensor's dtype cannot represent
    (casting would wrap it: 2**40 fed to an int32 placeholder would read as 0)."""
    if np.can_cast(arr.dtype, target, "safe"):
        return
    info = np.iinfo(target)
    lo, hi = arr.min(), arr.max()
    if int(lo) < info.min or int(hi) > info.max:
        bad = int(hi) if int(hi) > info.max else int(lo)
        raise ValueError(
            f"cannot feed value {bad} for tensor '{tensor.name}', which has dtype "
            f"{tensor.dtype.name} (range [{info.min}, {info.max}]): it would wrap"
        )


_LEAVES = (Tensor, Operation)


def _fast_key(fetches, feed_dict):
    """Identity key of a (fetches, feed keys) pair for the run fast path, or None: fetches
    a tensor or operation, or a list, tuple or plain dict of them (a dict's keys are part of
    the key). (Every ``sess.run`` asks it first: plain loops, no generator, ~0.3 us for a
    short list.)"""
    kind = type(fetches)
    if kind is list or kind is tuple:
        ids = []
        for f in fetches:
            if not isinstance(f, _LEAVES):
                return None
            ids.append(id(f))
        fk = (kind, tuple(ids))
    elif kind is dict:  # sess.run({"loss": loss, "train": step}): its keys are part of it
        ids = []
        for f in fetches.values():
            if not isinstance(f, _LEAVES):
                return None
            ids.append(id(f))
        fk = (kind, tuple(fetches), tuple(ids))
    elif isinstance(fetches, _LEAVES):
        fk = id(fetches)
    else:
        return None
    if feed_dict is None:
        return (fk, ())
    if type(feed_dict) is not dict:
        return None
    return (fk, tuple(map(id, feed_dict)))


def _unpack(exe, outputs, slots) -> list:
    """Fetched values per slot; copies unless the backend hands out fresh arrays."""
    fresh = getattr(exe.runner, "fresh_outputs", False)
    if fresh and len(outputs) > 1 and len({id(o) for o in outputs}) != len(outputs):
        fresh = False
    values = []
    for slot in slots:
        if slot is None:
            values.append(None)
            continue
        arr = outputs[slot] if fresh else np.array(outputs[slot], copy=True)
        values.append(arr[()] if arr.ndim == 0 else arr)
    return values


def _step_stats(trace) -> list:
    return [KernelStat(n, (t,) if isinstance(t, str) else tuple(t), s, e) for n, t, s, e in trace]


class Session:
    """Runs parts of a graph: ``sess.run(fetches, feed_dict)``.

    ``target``: "cpu" (default), "cuda", or "reference" (the numpy oracle).
    Variable values live in the session across runs. Usable from several threads at once.
    """

    def __init__(self, graph=None, target: str = "cpu", options: CompileOptions | None = None,
                 config=None):  # fmt: skip
        if isinstance(graph, str) and target == "cpu":  # Session("reference") reads naturally
            graph, target = None, graph
        self.graph = graph if graph is not None else get_default_graph()
        self.target = check_target(target)
        self.options = options if options is not None else CompileOptions()
        self._variables: dict = {}
        self._rng_counters: dict = {}
        self._cache: dict = {}
        self._compiles = 0
        self._hits = 0
        self._direct_hits = [0]  # runs of Session._direct's closures (no reference back)
        self._disk_loads = 0
        self._lock = threading.RLock()
        self._closed = False
        self._context_entered = []
        self._fast: dict = {}  # see _fast_key
        self._source_plans: dict = {}  # gc.data iterators a run signature reads (_sources)

    # -- context management --------------------------------------------------------------
    def __enter__(self):
        self._context_entered.append(self.graph.as_default())
        self._context_entered[-1].__enter__()
        session_stack().append(self)
        return self

    def __exit__(self, *exc):
        stack = session_stack()
        if stack and stack[-1] is self:
            stack.pop()
        self._context_entered.pop().__exit__(*exc)
        self.close()
        return False

    def as_default(self):
        """Context manager making this the default session (does not close it on exit)."""

        @contextlib.contextmanager
        def cm():
            session_stack().append(self)
            try:
                yield self
            finally:
                session_stack().pop()

        return cm()

    def close(self) -> None:
        """Free the session's variables and compiled code."""
        with self._lock:
            self._closed = True
            self._variables.clear()
            for exe in self._cache.values():
                close = getattr(exe.runner, "close", None)
                if close is not None:
                    close()
            self._cache.clear()
            self._fast.clear()
            for plan, _ in self._source_plans.values():  # gc.data iterators stop their threads
                if plan is not None:
                    plan.release(self)
            self._source_plans.clear()

    # -- running -------------------------------------------------------------------------
    def _resolve_fetch(self, leaf):
        element = self.graph.as_graph_element(leaf)
        return element

    def _resolve_feeds(self, feed_dict) -> list:
        if feed_dict is None:
            return []
        if not isinstance(feed_dict, Mapping):
            raise TypeError(f"feed_dict must be a dict, got {type(feed_dict).__name__}")
        out = []
        seen = set()
        for key, value in feed_dict.items():
            try:
                t = self.graph.as_graph_element(key)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"cannot interpret feed_dict key {key!r}: {exc}") from None
            if isinstance(t, Operation):
                raise TypeError(f"feed_dict key {key!r} is an operation; feed one of its tensors")
            if t in seen:
                raise ValueError(f"tensor '{t.name}' is fed twice")
            seen.add(t)
            out.append((t, validate_feed(t, value)))
        out.sort(key=lambda tv: (tv[0].op._id, tv[0].value_index))
        return out

    def _executable(self, fetch_tensors, target_ops, feed_tensors):
        key = (
            tuple(id(t) for t in fetch_tensors),
            tuple(id(o) for o in target_ops),
            tuple(id(t) for t in feed_tensors),
        )
        exe = self._cache.get(key)
        if exe is not None:
            self._hits += 1
            return exe
        program = extract(fetch_tensors, target_ops, feed_tensors)
        exe = compile_program(program, self.target, self.options)
        if exe.stats.get("loaded_from_disk"):
            self._disk_loads += 1
        else:
            self._compiles += 1
        # keep the graph objects alive so their ids stay unique while cached
        exe._keys = (fetch_tensors, target_ops, feed_tensors)
        self._cache[key] = exe
        return exe

    def _prepare(self, fetches, feed_dict):
        if self._closed:
            raise RuntimeError("Attempted to use a closed Session")
        leaves: list = []
        rebuild = _flatten(fetches, leaves)
        elements = [self._resolve_fetch(x) for x in leaves]
        feeds = self._resolve_feeds(feed_dict)
        fetch_tensors: list = []
        target_ops: list = []
        slots = []
        for e in elements:
            if isinstance(e, Operation):
                if e not in target_ops:
                    target_ops.append(e)
                slots.append(None)
            else:
                if e not in fetch_tensors:
                    fetch_tensors.append(e)
                slots.append(fetch_tensors.index(e))
        return rebuild, slots, fetch_tensors, target_ops, feeds

    def run(self, fetches, feed_dict=None, options: RunOptions | None = None,
            run_metadata: RunMetadata | None = None):  # fmt: skip
        """Compute ``fetches`` (any nesting of tensors, ops, names) given ``feed_dict``."""
        key = _fast_key(fetches, feed_dict)
        fast = self._fast.get(key) if key is not None else None
        if fast is not None and not self._closed:
            direct = fast[6]
            if direct is not None and options is None:
                values = direct(feed_dict)
                if values is not None:
                    return values
            return self._run_fast(fast, feed_dict, options, run_metadata)
        rebuild, slots, fetch_tensors, target_ops, feeds = self._prepare(fetches, feed_dict)
        plan = self._sources(fetch_tensors, target_ops, feeds)
        taken = None
        if plan is not None:  # gc.data iterators: their next element is fed after feed_dict's
            values, taken = plan.take(self)
            feeds = feeds + list(zip(plan.tensors, values))
        try:
            with self._lock:
                exe = self._executable(fetch_tensors, target_ops, [t for t, _ in feeds])
                ctx = RunContext(self._variables, self._rng_counters, [v for _, v in feeds])
                trace = [] if (options is not None and options.trace) else None
                outputs = exe.run(ctx, trace)
                ctx.commit()
                values = _unpack(exe, outputs, slots)
        except BaseException:
            if taken:  # a failed run hands its elements back: the next run reads them again
                plan.give_back(self, taken)
            raise
        if key is not None:
            self._install_fast(key, fetches, feed_dict, exe, rebuild, slots, feeds, plan)
        if trace is not None and run_metadata is not None:
            run_metadata.step_stats = _step_stats(trace)
        return rebuild(values)

    # -- the hot path: a repeated (fetches, feed keys) signature skips resolution -----------
    def _install_fast(self, key, fetches, feed_dict, exe, rebuild, slots, feeds, plan):
        order = {id(t): j for j, (t, _) in enumerate(feeds)}
        perm = []
        for i, k in enumerate(feed_dict or ()):
            t = self.graph.as_graph_element(k)
            shape = t.shape
            known = None if shape is None else tuple(shape)
            perm.append((order[id(t)], i, t, t.dtype.np, known))
        perm.sort(key=lambda p: p[0])
        if len(self._fast) > 256:
            self._fast.clear()
        # the entry holds the key objects, so their ids cannot be reused while it lives
        keep = (fetches, tuple(feed_dict or ()))
        direct = None if plan is not None else self._direct(exe, rebuild, slots, perm)
        self._fast[key] = (exe, rebuild, slots, tuple(perm), keep, plan, direct)

    def _direct(self, exe, rebuild, slots, perm):
        """The leanest run of a signature, or None: for a backend whose ``direct_call`` runs
        a program without variables or randomness straight on the feed values (no context
        object, no second check of the feeds, no copy of its fresh outputs; its
        ``output_ranks`` say which fetches are scalars). It returns None
        whenever that call does (a feed to convert or refuse: run() then takes the usual
        path, which validates it), so it changes nothing but the time a run takes."""
        make = getattr(exe.runner, "direct_call", None)
        call = make() if make is not None and getattr(exe.runner, "fresh_outputs", False) else None
        if call is None or any(s is None for s in slots):
            return None
        order = [i for _, i, _, _, _ in perm]
        in_order = order == list(range(len(order)))
        picks = getattr(rebuild, "picks", None)  # a list of leaves: pick the outputs at once
        sel = slots if picks is None else [slots[i] for i in picks]
        ranks = exe.runner.output_ranks
        scalars = [j for j, s in enumerate(sel) if not ranks[s]]
        lock, hits = self._lock, self._direct_hits  # (not self: the closure lives in self)

        def direct(feed_dict):
            vals = list(feed_dict.values()) if feed_dict else []
            feeds = vals if in_order else [vals[i] for i in order]
            with lock:
                try:
                    outs = call(feeds)
                except MemoryError:
                    raise ResourceExhaustedError(
                        "out of memory allocating this run's outputs or temporaries"
                    ) from None
                if outs is None:
                    return None
                hits[0] += 1
            values = [outs[s] for s in sel]
            for j in scalars:
                values[j] = values[j][()]
            return values if picks is not None else rebuild(values)

        return direct

    def _run_fast(self, fast, feed_dict, options, run_metadata):
        exe, rebuild, slots, perm, _, plan, _ = fast
        if perm:
            vals = list(feed_dict.values())
            feeds = []
            for _, i, t, npdt, known in perm:
                v = vals[i]
                if not (type(v) is np.ndarray and v.dtype == npdt and v.shape == known
                        and v.flags.c_contiguous):  # fmt: skip
                    v = validate_feed(t, v)
                feeds.append(v)
        else:
            feeds = []
        taken = None
        if plan is not None:  # gc.data iterators (as in run)
            values, taken = plan.take(self)
            feeds.extend(values)
        trace = [] if (options is not None and options.trace) else None
        try:
            with self._lock:
                self._hits += 1
                ctx = RunContext(self._variables, self._rng_counters, feeds)
                outputs = exe.run(ctx, trace)
                if ctx.pending or ctx.pending_rng:
                    ctx.commit()
                values = _unpack(exe, outputs, slots)
        except BaseException:
            if taken:  # a failed run hands its elements back
                plan.give_back(self, taken)
            raise
        if trace is not None and run_metadata is not None:
            run_metadata.step_stats = _step_stats(trace)
        return rebuild(values)

    def compile(self, fetches, feed_list=()):
        """The Executable for ``fetches`` given feeds of ``feed_list``, without running it."""
        # the same resolution and de-duplication as run(), so a later run is a cache hit
        _, _, fetch_tensors, target_ops, _ = self._prepare(fetches, None)
        feeds = {}
        for f in feed_list:
            t = self.graph.as_graph_element(f)
            if isinstance(t, Operation):
                raise TypeError(f"feed_list entry {f!r} is an operation; give one of its tensors")
            feeds[id(t)] = t
        feeds = sorted(feeds.values(), key=lambda t: (t.op._id, t.value_index))
        plan = self._sources(fetch_tensors, target_ops, [(t, None) for t in feeds])
        if plan is not None:  # gc.data iterators' tensors come after the fed ones, as in run
            feeds = feeds + plan.tensors
        with self._lock:
            return self._executable(fetch_tensors, target_ops, feeds)

    def _sources(self, fetch_tensors, target_ops, feeds):
        """The gc.data iterators (feed_sources.SourcePlan) a run of this signature reads, or
        None; one graph walk per signature."""
        ids = tuple(id(t) for t, _ in feeds)
        key = (tuple(map(id, fetch_tensors)), tuple(map(id, target_ops)), ids)
        hit = self._source_plans.get(key)
        if hit is None:
            fed = [t for t, _ in feeds]
            if len(self._source_plans) > 1024:
                self._source_plans.clear()
            # the entry holds the key objects, so their ids cannot be reused while it lives
            hit = (plan_for(fetch_tensors, target_ops, fed), (fetch_tensors, target_ops, fed))
            self._source_plans[key] = hit
        return hit[0]

    def cache_info(self) -> dict:
        """``compiles``: executables compiled by this session; ``hits``: runs that reused one."""
        return {
            "compiles": self._compiles,
            "hits": self._hits + self._direct_hits[0],
            "disk_loads": self._disk_loads,
            "entries": len(self._cache),
        }

    # -- variables -----------------------------------------------------------------------
    def load_variable(self, var, value) -> None:
        arr = validate_feed(var, value)
        with self._lock:
            arr = np.array(arr, copy=True)
            arr.setflags(write=False)
            self._variables[var.op.attrs["var"]] = arr

    def variable_values(self) -> dict:
        """name -> current value of every initialised variable (copies)."""
        with self._lock:
            return {k: np.array(v) for k, v in self._variables.items()}

    def __repr__(self) -> str:
        return f"<gc.Session target={self.target!r}>"


InteractiveSession = Session
