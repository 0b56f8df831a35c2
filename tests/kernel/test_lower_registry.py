"""Every op's examples, lowered to Kernel IR (fused and unfused, static and unknown dims) and
run by the Kernel IR interpreter, agree with the reference interpreter.

Ops without a lowering yet are listed in KNOWN_GAPS: they must raise UnimplementedError
naming the op (so the gap is visible), and the test fails once one of them lowers, so the
list is kept honest.
"""

import pytest

from graphc.errors import UnimplementedError
from graphc.ops.registry import REGISTRY
from tests.kernel.helpers import assert_close, compile_kernels, run_both
from tests.oracle import build_example

#: op types that lower() rejects with UnimplementedError (to do)
KNOWN_GAPS: set = set()
#: ops whose index depth (last dim of the indices) sets the output rank: with every dim
#: unknown they raise UnimplementedError naming the op
STATIC_INDEX_DEPTH = {"GatherNd"}

OPS = sorted(REGISTRY)
CASES = [(name, i) for name in OPS for i in range(len(REGISTRY[name].examples()))]


@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_example_lowers_and_matches_reference(name, index, dynamic, fusion):
    example = REGISTRY[name].examples()[index]
    if dynamic and not example.dynamic:
        pytest.skip("example needs static shapes")
    g, phs, outs, arrays = build_example(example, dynamic=dynamic)
    if name in KNOWN_GAPS or (dynamic and name in STATIC_INDEX_DEPTH):
        with pytest.raises(UnimplementedError, match=name):
            compile_kernels(outs, phs, fusion)
        return
    prog, plan, kp = compile_kernels(outs, phs, fusion)
    ref, got, _, _ = run_both(prog, kp, arrays)
    assert_close(got, ref, example.rtol, example.atol)


def test_known_gaps_are_registered_ops():
    assert KNOWN_GAPS | STATIC_INDEX_DEPTH <= set(REGISTRY)
