"""Nested structures of tensors (tuples, lists, namedtuples such as ``LSTMStateTuple``):
flatten to a list and rebuild, as TF1's ``nest`` does for RNN states."""

from __future__ import annotations


def is_sequence(x) -> bool:
    return isinstance(x, tuple | list)


def flatten(structure) -> list:
    """The leaves of ``structure`` in depth-first order."""
    if not is_sequence(structure):
        return [structure]
    out = []
    for item in structure:
        out.extend(flatten(item))
    return out


def pack_sequence_as(structure, flat):
    """``structure`` with its leaves replaced, in order, by the items of ``flat``."""
    flat = list(flat)
    packed, used = _pack(structure, flat, 0)
    if used != len(flat):
        raise ValueError(f"structure has {used} leaves, got {len(flat)} values")
    return packed


def _pack(structure, flat, i):
    if not is_sequence(structure):
        if i >= len(flat):
            raise ValueError("too few values for the structure")
        return flat[i], i + 1
    items = []
    for s in structure:
        v, i = _pack(s, flat, i)
        items.append(v)
    if isinstance(structure, list):
        return items, i
    if hasattr(structure, "_fields"):  # namedtuple
        return type(structure)(*items), i
    return tuple(items), i


def map_structure(fn, *structures):
    """``fn`` applied leaf-wise to structures of one shape."""
    flats = [flatten(s) for s in structures]
    if len({len(f) for f in flats}) > 1:
        raise ValueError("structures have different numbers of leaves")
    return pack_sequence_as(structures[0], [fn(*xs) for xs in zip(*flats)])


def assert_same_structure(a, b, what: str) -> None:
    """ValueError naming ``what`` unless ``a`` and ``b`` nest alike."""
    if is_sequence(a) != is_sequence(b) or (is_sequence(a) and len(a) != len(b)):
        raise ValueError(f"{what}: structures differ: {_describe(a)} vs {_describe(b)}")
    if is_sequence(a):
        for x, y in zip(a, b):
            assert_same_structure(x, y, what)


def _describe(s) -> str:
    if not is_sequence(s):
        return "tensor" if hasattr(s, "dtype") else type(s).__name__
    return f"{type(s).__name__}({', '.join(_describe(x) for x in s)})"
