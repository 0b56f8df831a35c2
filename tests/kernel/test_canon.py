"""kernel_key: kernels equal up to buffer and local names share a key, nothing else does;
rebase_stores takes check-flag slot numbers out of a body."""

from __future__ import annotations

import graphc.dtypes as dt
from graphc.expr import Const, Load, Math, Var, i64
from graphc.kernel.canon import constant_store_bases, kernel_key, rebase_stores
from graphc.kernel.ir import Buffer, If, Let, LibCall, Loop, Store


def _bufs(*specs):
    return {n: Buffer(n, d, (i64(8),), "temp") for n, d in specs}


def _axpy(x, y, out, i="i", t="t", scale=2.0):
    iv = Var(i, dt.int64)
    body = (
        Let(t, dt.float32, Math.MUL(Load(x, iv, dt.float32), Const(scale, dt.float32))),
        Store(out, iv, Math.ADD(Var(t, dt.float32), Load(y, iv, dt.float32))),
    )
    return (Loop(i, i64(0), i64(8), body),)


F = dt.float32
BUFS = _bufs(("a", F), ("b", F), ("c", F), ("p", F), ("q", F), ("r", F), ("h", dt.float16))
ROOT = {n: n for n in BUFS}


def test_same_computation_on_other_buffers_and_locals_shares_a_key():
    k1, roots1 = kernel_key(_axpy("a", "b", "c"), BUFS, ROOT)
    k2, roots2 = kernel_key(_axpy("p", "q", "r", i="j", t="u"), BUFS, ROOT)
    assert k1 == k2 and hash(k1) == hash(k2)
    assert roots1 == ["a", "b", "c"] and roots2 == ["p", "q", "r"]  # first-appearance order


def test_different_constants_operands_or_dtypes_give_different_keys():
    base, _ = kernel_key(_axpy("a", "b", "c"), BUFS, ROOT)
    assert kernel_key(_axpy("a", "b", "c", scale=3.0), BUFS, ROOT)[0] != base
    # 0.0 == -0.0 in Python: the key must still tell them apart
    pos = kernel_key(_axpy("a", "b", "c", scale=0.0), BUFS, ROOT)[0]
    neg = kernel_key(_axpy("a", "b", "c", scale=-0.0), BUFS, ROOT)[0]
    assert pos != neg
    # the same buffer read twice is not two buffers read once
    assert kernel_key(_axpy("a", "a", "c"), BUFS, ROOT)[0] != base
    # a float16 operand is a different kernel
    assert kernel_key(_axpy("h", "b", "c"), BUFS, ROOT)[0] != base


def test_aliasing_between_a_kernels_buffers_is_part_of_the_key():
    root = dict(ROOT, c="a")  # planning made c share a's storage (in place)
    k_alias, roots = kernel_key(_axpy("a", "b", "c"), BUFS, root)
    assert roots == ["a", "b"]
    assert k_alias != kernel_key(_axpy("a", "b", "c"), BUFS, ROOT)[0]


def test_branches_and_library_calls_are_keyed():
    c = Math.LT(Var("i", dt.int64), i64(4))
    then = (Store("c", Var("i", dt.int64), Const(1.0, F)),)
    orelse = (Store("c", Var("i", dt.int64), Const(2.0, F)),)
    k1 = kernel_key((Loop("i", i64(0), i64(8), (If(c, then, orelse),)),), BUFS, ROOT)[0]
    k2 = kernel_key((Loop("i", i64(0), i64(8), (If(c, orelse, then),)),), BUFS, ROOT)[0]
    assert k1 != k2
    call1 = kernel_key((LibCall("copy", ("a", "c", i64(8))),), BUFS, ROOT)
    call2 = kernel_key((LibCall("copy", ("p", "r", i64(8))),), BUFS, ROOT)
    assert call1[0] == call2[0] and call2[1] == ["p", "r"]


def test_deep_expressions_do_not_recurse():
    e = Load("a", i64(0), F)
    for _ in range(50_000):
        e = Math.ADD(e, Const(1.0, F))
    key, roots = kernel_key((Store("c", i64(0), e),), BUFS, ROOT)
    assert roots == ["a", "c"] and len(key[0]) > 50_000


def _flag_body(slots, extra=()):
    status = {"s": Buffer("s", dt.int32, (i64(16),), "status")}
    body = tuple(Store("s", i64(k), Const(1, dt.int32)) for k in slots) + tuple(extra)
    return (If(Math.LT(Load("a", i64(0), F), Const(0.0, F)), body),), {**BUFS, **status}


def test_check_flag_slots_are_rebased_so_steps_share_a_kernel():
    keys = []
    for slots in ((3, 5), (9, 11)):
        body, bufs = _flag_body(slots)
        root = {n: n for n in bufs}
        bases = constant_store_bases(body, bufs, root)
        assert bases == {"s": (slots[0], 4)}
        rebased = rebase_stores(body, root, bases)
        stored = [s.index.value for s in rebased[0].then]
        assert stored == [0, 2]
        keys.append(kernel_key(rebased, bufs, root)[0])
    assert keys[0] == keys[1]


def test_a_root_that_is_also_read_or_indexed_by_a_variable_is_not_rebased():
    body, bufs = _flag_body((3,), extra=(Store("s", Var("k", dt.int64), Const(1, dt.int32)),))
    root = {n: n for n in bufs}
    assert constant_store_bases(body, bufs, root) == {}
    read = (Store("s", i64(4), Load("s", i64(0), dt.int32)),)
    assert constant_store_bases(read, bufs, root) == {}
