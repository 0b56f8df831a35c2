"""Every op's examples, lowered to Kernel IR (fused and unfused, static and unknown dims) and
run by the Kernel IR interpreter, agree with the reference interpreter.

An op without a lowering declares ``kind = "host"`` on its OpDef (with its ``host_reason``;
tests/test_op_facts.py checks every op declares its kind and the lowering it promises): its
examples must raise UnimplementedError naming the op, so the gap stays visible; so must those
of an op that declares a ``dynamic_host_reason`` when its dims are unknown.
"""

import pytest

from graphc.errors import UnimplementedError
from graphc.ops.registry import REGISTRY
from tests.kernel.helpers import assert_close, compile_kernels, run_both
from tests.oracle import build_example

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
    op_def = REGISTRY[name]
    if op_def.kind == "host" or (dynamic and op_def.dynamic_host_reason):
        with pytest.raises(UnimplementedError, match=name):
            compile_kernels(outs, phs, fusion)
        return
    prog, plan, kp = compile_kernels(outs, phs, fusion)
    ref, got, _, _ = run_both(prog, kp, arrays)
    assert_close(got, ref, example.rtol, example.atol)
