"""Nested structures of tensors (tuples, lists, dicts, namedtuples), as TF's ``nest``.

Control flow takes and returns any nesting of these (``while_loop``'s ``loop_vars``,
``scan``'s ``elems`` and carries, ``cond``'s branch results): they are flattened to a list
of leaves for the op, and packed back into the user's structure afterwards. Dicts flatten in
sorted key order, as TF does, so the order does not depend on insertion.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["flatten", "pack_sequence_as", "assert_same_structure", "map_structure", "is_nested"]


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def is_nested(x) -> bool:
    """Whether ``x`` is a tuple, list, dict or namedtuple (not a leaf)."""
    return isinstance(x, list | tuple | Mapping)


def _children(x) -> list:
    if isinstance(x, Mapping):
        return [x[k] for k in _sorted_keys(x)]
    return list(x)


def _sorted_keys(d) -> list:
    try:
        return sorted(d)
    except TypeError:
        raise TypeError(
            f"dict keys of a nested structure must be sortable, got {list(d)!r}"
        ) from None


def flatten(structure) -> list:
    """The leaves of ``structure`` in order (a leaf alone gives a one-element list)."""
    out: list = []
    stack = [structure]
    while stack:
        x = stack.pop()
        if is_nested(x):
            stack.extend(reversed(_children(x)))
        else:
            out.append(x)
    return out


def _rebuild(template, children):
    if isinstance(template, Mapping):
        keys = _sorted_keys(template)
        values = dict(zip(keys, children))
        try:
            return type(template)((k, values[k]) for k in template)
        except TypeError:
            return {k: values[k] for k in template}
    if _is_namedtuple(template):
        return type(template)(*children)
    if isinstance(template, tuple):
        return tuple(children)
    return list(children)


def pack_sequence_as(structure, flat):
    """``flat`` (a list of leaves) packed into the nesting of ``structure``."""
    flat = list(flat)
    n = len(flatten(structure))
    if n != len(flat):
        raise ValueError(f"structure has {n} leaves but {len(flat)} values were given")
    pos = [0]

    def pack(s):
        if is_nested(s):
            return _rebuild(s, [pack(c) for c in _children(s)])
        v = flat[pos[0]]
        pos[0] += 1
        return v

    return pack(structure)


def describe(structure) -> str:
    """A short text of a structure's nesting, leaves as ``*`` (for error messages)."""
    if isinstance(structure, Mapping):
        return (
            "{"
            + ", ".join(f"{k!r}: {describe(structure[k])}" for k in _sorted_keys(structure))
            + "}"
        )
    if isinstance(structure, list):
        return "[" + ", ".join(describe(c) for c in structure) + "]"
    if isinstance(structure, tuple):
        name = type(structure).__name__ if _is_namedtuple(structure) else ""
        return (
            name
            + "("
            + ", ".join(describe(c) for c in structure)
            + ("," if len(structure) == 1 and not name else "")
            + ")"
        )
    return "*"


def same_structure(a, b, check_types: bool = False) -> bool:
    """Whether ``a`` and ``b`` nest alike (lists and tuples interchangeable unless
    ``check_types``)."""
    if is_nested(a) != is_nested(b):
        return False
    if not is_nested(a):
        return True
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        return False
    if isinstance(a, Mapping) and _sorted_keys(a) != _sorted_keys(b):
        return False
    if check_types and type(a) is not type(b):
        return False
    ca, cb = _children(a), _children(b)
    return len(ca) == len(cb) and all(same_structure(x, y, check_types) for x, y in zip(ca, cb))


def assert_same_structure(a, b, check_types: bool = False, what: str = "structures") -> None:
    """ValueError naming both nestings when ``a`` and ``b`` do not nest alike."""
    if not same_structure(a, b, check_types):
        raise ValueError(f"{what} differ: {describe(a)} vs {describe(b)}")


def map_structure(fn, *structures):
    """``fn`` applied leaf-wise to ``structures`` (which must nest alike), packed like the
    first."""
    for s in structures[1:]:
        assert_same_structure(structures[0], s)
    flats = [flatten(s) for s in structures]
    return pack_sequence_as(structures[0], [fn(*xs) for xs in zip(*flats)])


def flatten_up_to(structure, value) -> list:
    """``value`` flattened as deep as ``structure`` nests: where ``structure`` has a leaf,
    the whole corresponding part of ``value`` is one item (shapes given per loop variable
    stay whole tuples)."""
    if not is_nested(structure):
        return [value]
    if not is_nested(value) or isinstance(value, Mapping) != isinstance(structure, Mapping):
        raise ValueError(f"expected a structure like {describe(structure)}, got {value!r}")
    sc, vc = _children(structure), _children(value)
    if len(sc) != len(vc) or (
        isinstance(value, Mapping) and _sorted_keys(value) != _sorted_keys(structure)
    ):
        raise ValueError(f"expected a structure like {describe(structure)}, got {value!r}")
    out: list = []
    for s, v in zip(sc, vc):
        out.extend(flatten_up_to(s, v))
    return out
