"""kernel.sym: the smart constructors keep sizes small and mean what they would unsimplified."""

import itertools

from graphc.expr import Dim, Math, i64, sub_exprs
from graphc.kernel import sym
from graphc.kernel.runtime import eval_int


def _naive_bcast(a, b):
    return Math.SELECT(Math.EQ(a, i64(1)), b, a)


def _size(e):
    return sum(1 for _ in sub_exprs(e))


def test_broadcast_against_a_member_is_the_same_size():
    p, q, r = Dim("p"), Dim("q"), Dim("r")
    pq = sym.broadcast_dim(p, q)
    assert sym.broadcast_dim(pq, q) is pq and sym.broadcast_dim(q, pq) is pq
    assert sym.broadcast_dim(pq, p) is pq
    pqr = sym.broadcast_dim(pq, r)
    assert sym.broadcast_dim(pqr, sym.broadcast_dim(r, p)) is pqr
    # the simplified forms mean what the nested ones mean for sizes that broadcast (the
    # run-time checks that come with every broadcast refuse the others before any size is
    # used); against a member the result is the same for any sizes
    forms = {
        "pq.q": (sym.broadcast_dim(pq, q), _naive_bcast(_naive_bcast(p, q), q)),
        "q.pq": (sym.broadcast_dim(q, pq), _naive_bcast(q, _naive_bcast(p, q))),
        "pqr.rp": (sym.broadcast_dim(pqr, sym.broadcast_dim(r, p)),
                   _naive_bcast(_naive_bcast(_naive_bcast(p, q), r), _naive_bcast(r, p))),
    }  # fmt: skip
    for vals in itertools.product([0, 1, 2, 3], repeat=3):
        dims = dict(zip("pqr", vals))
        valid = len({v for v in vals if v != 1}) <= 1
        for name, (got, naive) in forms.items():
            if valid or name != "q.pq":
                assert eval_int(got, dims) == eval_int(naive, dims), (name, dims)


def test_a_deep_chain_of_broadcasts_stays_small():
    d, e = Dim("d0_0"), Dim("d1_0")
    x = sym.broadcast_dim(d, e)
    for _ in range(5000):
        x = sym.broadcast_dim(sym.broadcast_dim(x, d), e)
    assert _size(x) == _size(sym.broadcast_dim(d, e)) <= 7


def test_max_of_a_size_and_zero_is_the_size():
    d = Dim("d")
    assert sym.maximum(d, 0) is d and sym.maximum(0, sym.mul(d, 4)) == sym.mul(d, 4)
    n = sym.sub(d, 3)  # may be negative: kept
    assert sym.maximum(n, 0) == Math.MAX(n, i64(0))
    assert sym.nonnegative(sym.floordiv(sym.add(d, 2), 3))
    assert not sym.nonnegative(sym.sub(d, 1)) and not sym.nonnegative(i64(-1))


def test_printing_an_expression_deeper_than_the_recursion_limit():
    from graphc.kernel.printer import expr_text

    x = Dim("d")
    for _ in range(5000):
        x = sym.add(sym.mul(x, 3), Dim("e"))
    text = expr_text(x)
    assert text == "(" * 10000 + "d" + " * 3) + e)" * 5000
    assert expr_text(sym.add(sym.mul(Dim("d"), 4), 7)) == "((d * 4) + 7)"


def test_floordiv_of_a_multiple_and_of_a_quotient_fold_exactly():
    """(x * c1) // c2 -> x * (c1 / c2) when c2 divides c1, (x // c1) // c2 -> x // (c1 c2):
    a reshape's size arithmetic folds back to the size it started from, and the folded forms
    equal the unfolded ones for every x, negative included."""
    d = Dim("d")
    assert sym.floordiv(sym.mul(sym.floordiv(sym.mul(d, 32768), 256), 256), 32768) is d
    assert sym.floordiv(sym.mul(d, 6), 4) == Math.FLOORDIV(Math.MUL(d, i64(6)), i64(4))
    for x in range(-40, 41):
        env = {"d": x}
        for c1, c2 in itertools.product((1, 2, 3, 4, 6, 12, 256), (1, 2, 3, 4, 256)):
            folded = sym.floordiv(sym.mul(d, c1), c2)
            assert eval_int(folded, env) == (x * c1) // c2, (x, c1, c2)
            nested = sym.floordiv(sym.floordiv(d, c1), c2)
            assert eval_int(nested, env) == (x // c1) // c2, (x, c1, c2)
