"""Property-based: the random graphs of tests/passes/test_pass_properties.py (broadcasting,
size-1 and unknown dims, rewrite patterns) give the reference's values on target="cpu",
fused and unfused, and one executable serves a second set of runtime sizes."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.compiler import compile_program
from graphc.runtime_state import RunContext
from tests.passes.program_util import assert_same_values, evaluate
from tests.passes.test_pass_properties import _random_program

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@SETTINGS
@given(data=st.data())
def test_random_graphs_match_the_reference_on_cpu(fusion, data):
    gc.reset_default_graph()
    program, values = _random_program(data)
    expected, _ = evaluate(program, values)
    exe = compile_program(program, "cpu", gc.CompileOptions(fusion=fusion, cache_dir=None))
    got = exe.run(RunContext({}, {}, [np.asarray(v) for v in values]), None)
    # polynomial math is a few ulp off libm; cancellation in random graphs amplifies that
    assert_same_values(expected, got, rtol=1e-7, atol=1e-9)
    assert not exe.stats.get("host_fallback_ops"), exe.stats.get("host_fallback_ops")
