"""Property-based: the random graphs of tests/passes/test_pass_properties.py (broadcasting,
size-1 and unknown dims, rewrite patterns) through the cuda target's pipeline (optimise,
fuse, lower, plan, render) give the reference's values when the generated CUDA C runs in
host emulation (one thread per block: grid-stride loops, vector quads and their scalar
tails all run), fused and unfused."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.cuda import REDUCTION_LAYOUT
from graphc.backends.cuda.render import template_source
from graphc.passes.manager import optimize
from graphc.pipeline import lower_program
from graphc.runtime_state import RunContext
from tests.backends import cuda_emulation as emu
from tests.backends.cuda_programs import render_program
from tests.backends.test_cuda_render import CACHE, needs_host
from tests.passes.program_util import assert_same_values, evaluate
from tests.passes.test_pass_properties import _random_program

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_host
@pytest.mark.slow
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@SETTINGS
@given(data=st.data())
def test_random_graphs_match_the_reference_in_host_emulation(fusion, data):
    gc.reset_default_graph()
    program, values = _random_program(data)
    expected, _ = evaluate(program, values)
    options = gc.CompileOptions(fusion=fusion, cache_dir=None)
    kp = lower_program(optimize(program, options).program, options, REDUCTION_LAYOUT).kp
    module = render_program(kp)
    lib = emu.build(template_source() + "\n" + module.body, CACHE, opt="-O0")
    got = emu.run(module, kp, RunContext({}, {}, [np.asarray(v) for v in values]), lib)
    assert_same_values(expected, got, rtol=1e-7, atol=1e-9)
