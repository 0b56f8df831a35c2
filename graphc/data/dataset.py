"""gc.data.Dataset: input pipelines of numpy elements, as ``tf.data`` builds them.

A Dataset is a description; each pass over it (``iter(ds)``, or an iterator's
initialisation) creates fresh Python iterators down the chain. Elements are numpy
structures (see structure.py); a graph reads them through ``ds.make_one_shot_iterator()``
or ``ds.make_initializable_iterator()`` (iterator.py), which the Session feeds.
"""

from __future__ import annotations

import itertools
import os
import threading

import numpy as np

from .. import dtypes as _dt
from ..errors import InvalidArgumentError
from ..graph.core import TensorSpec, get_default_graph
from . import structure as st
from .iterator import Iterator
from .structure import Failed
from .threads import ParallelMap, Prefetch, close_iterator

AUTOTUNE = -1  # num_parallel_calls / prefetch size chosen by graphc (tf.data.AUTOTUNE)


def _islice(source, *args):
    """itertools.islice that closes ``source`` when it ends or is closed."""
    try:
        yield from itertools.islice(source, *args)
    finally:
        close_iterator(source)


def _apply(fn, source):
    """fn over ``source`` in the consumer thread; closes ``source`` when closed."""
    try:
        for x in source:
            yield fn(x)
    finally:
        close_iterator(source)


def _count(value, what: str, allow_none=False, minimum=0) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


class Dataset:
    """A sequence of elements (numpy structures) with a fixed ``element_spec``."""

    # -- what every dataset provides -----------------------------------------------------
    def _iterate(self):
        """A fresh Python iterator over the elements (a generator or an object with close)."""
        raise NotImplementedError

    @property
    def element_spec(self):
        """The nesting of ``gc.TensorSpec(shape, dtype)`` every element fits."""
        raise NotImplementedError

    def _first_element(self):
        """The first element (StopIteration if none), for inferring a map's spec. Overridden
        where the first element is cheaper to find than by a pass (no shuffle pass used up,
        no prefetch thread started)."""
        source = iter(self._iterate())
        try:
            return next(source)
        finally:
            close_iterator(source)

    def __iter__(self):
        for x in self._iterate():
            if type(x) is Failed:
                raise x.exc
            yield x

    @property
    def output_types(self):
        return st.map_structure(lambda s: s.dtype, self.element_spec)

    @property
    def output_shapes(self):
        return st.map_structure(lambda s: s.shape, self.element_spec)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} element_spec={self.element_spec}>"

    # -- sources -------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors) -> Dataset:
        """The slices along the first axis of an array, or of a tuple/dict of arrays."""
        return _TensorSlices(tensors)

    @staticmethod
    def from_generator(generator, output_types, output_shapes=None, args=None) -> Dataset:
        """The elements a Python generator yields; ``generator`` is a callable returning an
        iterator (called anew for each pass), ``output_types`` the nesting of dtypes of its
        elements and ``output_shapes`` (optional) their shapes. An element that does not fit
        raises ``InvalidArgumentError`` when it is read."""
        return _FromGenerator(generator, output_types, output_shapes, args)

    @staticmethod
    def zip(datasets) -> Dataset:
        """Elements of several datasets side by side: ``datasets`` is a tuple (or dict) of
        datasets, each element the same nesting of their elements; ends with the shortest."""
        return _Zip(datasets)

    @staticmethod
    def range(*args) -> Dataset:
        """``range(stop)`` / ``range(start, stop[, step])`` as int64 scalars."""
        r = range(*args)
        return _FromGenerator(lambda: iter(r), _dt.int64, (), None, name="Dataset.range")

    # -- transformations -------------------------------------------------------------------
    def map(self, fn, num_parallel_calls=None, output_types=None, output_shapes=None) -> Dataset:
        """``fn`` applied to each element (a tuple element is passed as positional
        arguments). ``num_parallel_calls`` > 1 (or ``gc.data.AUTOTUNE``) runs it on that many
        threads, keeping the order. The result's spec is that of ``fn``'s first result unless
        ``output_types`` (and ``output_shapes``) declare it."""
        return _Map(self, fn, num_parallel_calls, output_types, output_shapes)

    def filter(self, predicate) -> Dataset:
        """The elements for which ``predicate`` (numpy code, called like a map fn) is true."""
        return _Filter(self, predicate)

    def concatenate(self, dataset) -> Dataset:
        """This dataset's elements, then those of ``dataset`` (of the same structure and
        dtypes; shapes that differ become None in the spec)."""
        return _Concatenate(self, dataset)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True) -> Dataset:
        """Elements in random order, drawn from a buffer of ``buffer_size`` (tf.data's
        algorithm). With a ``seed`` (or a graph-level seed, ``gc.set_random_seed``) the
        k-th pass over this dataset has the same order run after run; each pass (epoch)
        gets a new order unless ``reshuffle_each_iteration=False``."""
        return _Shuffle(self, buffer_size, seed, reshuffle_each_iteration)

    def batch(self, batch_size, drop_remainder=False) -> Dataset:
        """Consecutive elements stacked along a new first axis; the last batch may be
        smaller (its spec's first dim is None) unless ``drop_remainder``."""
        return _Batch(self, batch_size, drop_remainder)

    def repeat(self, count=None) -> Dataset:
        """The elements ``count`` times (None or -1: forever)."""
        return _Repeat(self, count)

    def prefetch(self, buffer_size) -> Dataset:
        """The same elements, produced ahead by a background thread into a buffer of
        ``buffer_size`` elements (``AUTOTUNE``: 2)."""
        return _Prefetch(self, buffer_size)

    def shard(self, num_shards, index) -> Dataset:
        """Every ``num_shards``-th element, starting at ``index``."""
        return _Shard(self, num_shards, index)

    def take(self, count) -> Dataset:
        """The first ``count`` elements (-1: all)."""
        return _Take(self, count)

    def skip(self, count) -> Dataset:
        """All but the first ``count`` elements (-1: none)."""
        return _Skip(self, count)

    # -- graph iterators ---------------------------------------------------------------------
    def make_one_shot_iterator(self):
        """An Iterator that starts by itself; ``get_next()`` gives its tensors."""
        return Iterator(self, initializable=False)

    def make_initializable_iterator(self):
        """An Iterator whose ``.initializer`` op (re)starts it from the beginning."""
        return Iterator(self, initializable=True)


# -- sources --------------------------------------------------------------------------------


class _TensorSlices(Dataset):
    def __init__(self, tensors):
        if isinstance(tensors, list):
            tensors = st.as_leaf_array(tensors)
        leaves = [st.as_leaf_array(x) for x in st.flatten(tensors)]
        if not leaves:
            raise ValueError("from_tensor_slices needs at least one array")
        for x in leaves:
            if x.ndim == 0:
                raise ValueError("from_tensor_slices: a component is a scalar; it has no slices")
        n = leaves[0].shape[0]
        for x in leaves:
            if x.shape[0] != n:
                sizes = [c.shape[0] for c in leaves]
                raise ValueError(
                    f"from_tensor_slices: the components have different first dims {sizes}"
                )
        self._n = n
        self._leaves = leaves
        self._template = tensors
        specs = [st.spec_of_value(x[:0]) for x in leaves]
        self._spec = st.pack(tensors, [TensorSpec(s.shape[1:], s.dtype) for s in specs])

    @property
    def element_spec(self):
        return self._spec

    def _iterate(self):
        leaves, template = self._leaves, self._template
        if len(leaves) == 1 and not isinstance(template, tuple | dict):
            x = leaves[0]
            for i in range(self._n):
                yield x[i].copy()  # a copy: a map fn writing to it must not change the source
            return
        for i in range(self._n):
            yield st.pack(template, [x[i].copy() for x in leaves])

    def _batches(self, size: int, drop_remainder: bool):
        """``batch(size)`` of these slices, cut as array slices (one copy per component
        and batch instead of a copy per element and a stack)."""
        leaves, template = self._leaves, self._template
        single = len(leaves) == 1 and not isinstance(template, tuple | dict)
        for i in range(0, self._n, size):
            if drop_remainder and i + size > self._n:
                return
            parts = [x[i : i + size].copy() for x in leaves]
            yield parts[0] if single else st.pack(template, parts)


class _FromGenerator(Dataset):
    def __init__(self, generator, output_types, output_shapes, args, name="from_generator"):
        if not callable(generator):
            raise TypeError(
                f"{name} needs a callable that returns an iterator (the generator function, "
                f"not a generator object), got {type(generator).__name__}"
            )
        self._generator = generator
        self._args = tuple(args) if args is not None else ()
        self._spec = st.specs_of(output_types, output_shapes)
        fn_name = getattr(generator, "__name__", type(generator).__name__)
        self._where = f"Dataset.{name}({fn_name})" if name == "from_generator" else name

    @property
    def element_spec(self):
        return self._spec

    def _iterate(self):
        spec, where = self._spec, self._where
        source = iter(self._generator(*self._args))
        try:
            for k, element in enumerate(source):
                try:
                    values = st.element_components(element, spec, f"{where}, element {k}")
                except InvalidArgumentError as exc:
                    yield Failed(exc)
                else:
                    yield st.pack(spec, values)
        finally:
            close_iterator(source)


# -- transformations ----------------------------------------------------------------------


class _Unary(Dataset):
    """A transformation of one input dataset that keeps its element spec."""

    def __init__(self, input_dataset: Dataset):
        if not isinstance(input_dataset, Dataset):
            raise TypeError(f"expected a gc.data.Dataset, got {type(input_dataset).__name__}")
        self._input = input_dataset

    @property
    def element_spec(self):
        return self._input.element_spec


class _Map(_Unary):
    def __init__(self, input_dataset, fn, num_parallel_calls, output_types, output_shapes):
        super().__init__(input_dataset)
        if not callable(fn):
            raise TypeError(f"map needs a callable, got {type(fn).__name__}")
        self._fn = fn
        if num_parallel_calls is not None:
            num_parallel_calls = int(num_parallel_calls)
            if num_parallel_calls == AUTOTUNE:
                num_parallel_calls = os.cpu_count() or 1
            elif num_parallel_calls < 1:
                raise ValueError(f"num_parallel_calls must be >= 1 or AUTOTUNE, got "
                                 f"{num_parallel_calls}")  # fmt: skip
        self._workers = num_parallel_calls
        self._declared = None
        if output_types is not None:
            self._declared = st.specs_of(output_types, output_shapes)
        self._spec = None
        self._spec_lock = threading.Lock()
        self._name = getattr(fn, "__name__", type(fn).__name__)

    def _call(self, element):
        # tf.data passes a tuple element as positional arguments and a list result as a tuple
        if type(element) is Failed:
            return element
        try:
            out = self._fn(*element) if type(element) is tuple else self._fn(element)
        except Exception as exc:  # noqa: BLE001 - raised where the element is read
            return Failed(exc)
        return tuple(out) if isinstance(out, list) else out

    @property
    def element_spec(self):
        if self._declared is not None:
            return self._declared
        with self._spec_lock:
            if self._spec is None:
                # fn is numpy code, so the spec is that of its first result (one call)
                try:
                    first = self._input._first_element()
                except StopIteration:
                    raise ValueError(
                        f"map({self._name}): the input is empty, so the result's element spec "
                        "cannot be inferred; give output_types (and output_shapes) to map"
                    ) from None
                out = self._call(first)
                if type(out) is Failed:
                    raise out.exc
                self._spec = st.map_structure(st.spec_of_value, out)
            return self._spec

    def _iterate(self):
        source = iter(self._input._iterate())
        if self._workers is None or self._workers == 1:
            return _apply(self._call, source)
        return ParallelMap(source, self._call, self._workers)


class _Shuffle(_Unary):
    def __init__(self, input_dataset, buffer_size, seed, reshuffle):
        super().__init__(input_dataset)
        self._buffer = _count(buffer_size, "shuffle buffer_size", minimum=1)
        self._seed = None if seed is None else _count(seed, "shuffle seed")
        graph = get_default_graph()
        if seed is None and graph.seed is not None:
            # TF1: with a graph-level seed (gc.set_random_seed) the order is reproducible
            n = len(graph.get_collection("_data_shuffles"))
            graph.add_to_collection("_data_shuffles", None)
            self._seed = (graph.seed * 1_000_003 + n) % 2**31
        self._reshuffle = bool(reshuffle)
        self._passes = itertools.count()

    def _first_element(self):
        return self._input._first_element()  # any element has the spec; no pass used up

    def _iterate(self):
        k = next(self._passes) if self._reshuffle else 0  # itertools.count is thread-safe
        rng = np.random.default_rng(None if self._seed is None else [self._seed, k])
        buf: list = []
        size = self._buffer
        for x in self._input._iterate():
            buf.append(x)
            if len(buf) == size:
                i = int(rng.integers(size))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        while buf:
            i = int(rng.integers(len(buf)))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()


class _Batch(_Unary):
    def __init__(self, input_dataset, batch_size, drop_remainder):
        super().__init__(input_dataset)
        self._n = _count(batch_size, "batch_size", minimum=1)
        self._drop = bool(drop_remainder)

    @property
    def element_spec(self):
        lead = self._n if self._drop else None
        return st.map_structure(
            lambda s: TensorSpec(None if s.shape is None else (lead, *s.shape), s.dtype),
            self._input.element_spec,
        )

    def _stack(self, elements):
        for e in elements:
            if type(e) is Failed:  # the batch fails with its first bad element
                return e
        first = elements[0]
        columns = list(zip(*[st.flatten(e) for e in elements]))
        out = []
        for i, col in enumerate(columns):
            arrays = [np.asarray(v) for v in col]
            shape = arrays[0].shape
            for a in arrays:
                if a.shape != shape:
                    return Failed(InvalidArgumentError(
                        f"batch: cannot batch elements of shapes {shape} and {a.shape} "
                        f"(component {i})"
                    ))  # fmt: skip
            out.append(np.stack(arrays))
        return st.pack(first, out)

    def _iterate(self):
        if type(self._input) is _TensorSlices:  # the same batches, cut in one slice each
            yield from self._input._batches(self._n, self._drop)
            return
        buf: list = []
        for x in self._input._iterate():
            buf.append(x)
            if len(buf) == self._n:
                yield self._stack(buf)
                buf = []
        if buf and not self._drop:
            yield self._stack(buf)


class _Repeat(_Unary):
    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        count = _count(count, "repeat count", allow_none=True, minimum=-1)
        self._count = None if count == -1 else count

    def _iterate(self):
        for _ in itertools.count() if self._count is None else range(self._count):
            empty = True
            for x in self._input._iterate():
                empty = False
                yield x
            if empty:  # repeating an empty dataset forever would hang
                return


class _Prefetch(_Unary):
    def __init__(self, input_dataset, buffer_size):
        super().__init__(input_dataset)
        n = _count(buffer_size, "prefetch buffer_size", minimum=-1)
        if n == 0:
            raise ValueError("prefetch buffer_size must be >= 1 or AUTOTUNE")
        self._size = 2 if n == AUTOTUNE else n

    def _first_element(self):
        return self._input._first_element()

    def _iterate(self):
        return Prefetch(self._input._iterate, self._size)


class _Shard(_Unary):
    def __init__(self, input_dataset, num_shards, index):
        super().__init__(input_dataset)
        self._shards = _count(num_shards, "num_shards", minimum=1)
        self._index = _count(index, "shard index")
        if self._index >= self._shards:
            raise ValueError(f"shard index {index} must be < num_shards {num_shards}")

    def _iterate(self):
        return _islice(self._input._iterate(), self._index, None, self._shards)


class _Take(_Unary):
    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        count = _count(count, "take count", minimum=-1)
        self._count = None if count == -1 else count

    def _iterate(self):
        return _islice(self._input._iterate(), self._count)


class _Skip(_Unary):
    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        count = _count(count, "skip count", minimum=-1)
        self._count = count

    def _iterate(self):
        if self._count == -1:
            return iter(())
        return _islice(self._input._iterate(), self._count, None)


class _Filter(_Unary):
    def __init__(self, input_dataset, predicate):
        super().__init__(input_dataset)
        if not callable(predicate):
            raise TypeError(f"filter needs a callable, got {type(predicate).__name__}")
        self._predicate = predicate
        self._name = getattr(predicate, "__name__", type(predicate).__name__)

    def _keep(self, element):
        """True, False, or a Failed element to pass on."""
        pred = self._predicate
        try:
            out = pred(*element) if type(element) is tuple else pred(element)
        except Exception as exc:  # noqa: BLE001 - raised where the element is read
            return Failed(exc)
        arr = np.asarray(out)
        if arr.shape != () or arr.dtype.kind not in "biu":
            return Failed(InvalidArgumentError(
                f"filter({self._name}) must return a scalar bool, got {arr.dtype} of shape "
                f"{arr.shape}"
            ))  # fmt: skip
        return bool(arr)

    def _iterate(self):
        source = self._input._iterate()
        try:
            for x in source:
                if type(x) is Failed:
                    yield x
                    continue
                keep = self._keep(x)
                if keep is True:
                    yield x
                elif keep is not False:
                    yield keep
        finally:
            close_iterator(source)


class _Zip(Dataset):
    def __init__(self, datasets):
        self._datasets = st.flatten(datasets)
        if not self._datasets:
            raise ValueError("Dataset.zip needs at least one dataset")
        for d in self._datasets:
            if not isinstance(d, Dataset):
                raise TypeError(f"Dataset.zip takes datasets, got {type(d).__name__}")
        self._template = datasets

    @property
    def element_spec(self):
        return st.pack(self._template, [d.element_spec for d in self._datasets])

    def _iterate(self):
        sources = [iter(d._iterate()) for d in self._datasets]
        try:
            while True:
                parts = []
                for src in sources:
                    try:
                        parts.append(next(src))
                    except StopIteration:
                        return
                bad = next((p for p in parts if type(p) is Failed), None)
                yield bad if bad is not None else st.pack(self._template, parts)
        finally:
            for src in sources:
                close_iterator(src)


class _Concatenate(Dataset):
    def __init__(self, first, second):
        if not isinstance(second, Dataset):
            raise TypeError(f"concatenate takes a dataset, got {type(second).__name__}")
        a, b = first.element_spec, second.element_spec
        if not st.same_nesting(a, b) or [s.dtype for s in st.flatten(a)] != [
            s.dtype for s in st.flatten(b)
        ]:
            raise TypeError(
                f"concatenate: the datasets' elements differ: {a} and {b} (the same structure "
                "and dtypes are needed)"
            )
        self._first, self._second = first, second
        self._spec = st.pack(a, [st.relax(x, y) for x, y in zip(st.flatten(a), st.flatten(b))])

    @property
    def element_spec(self):
        return self._spec

    def _iterate(self):
        yield from self._first._iterate()
        yield from self._second._iterate()
