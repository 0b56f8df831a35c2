"""graphc.expr.sub_exprs: the shared walk over an expression's parts."""

from graphc import dtypes as dt
from graphc.expr import Cast, Const, Dim, Load, Math, Var, sub_exprs


def test_sub_exprs_visits_every_part_parents_first():
    i = Var("i", dt.int64)
    idx = Math.ADD(i, Dim("n"))
    load = Load("buf", idx, dt.float32)
    e = Math.MUL(Cast(load, dt.float64), Const(2.0, dt.float64))
    got = list(sub_exprs(e))
    assert got[0] is e
    assert got == [e, e.args[0], load, idx, i, Dim("n"), Const(2.0, dt.float64)]
    assert list(sub_exprs(i)) == [i]
