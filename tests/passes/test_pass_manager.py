"""The pass manager (PIPELINE, optimize) and the Program IR's hash/text/verify contract."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.graph.core import TensorSpec
from graphc.options import CompileOptions
from graphc.passes import manager
from graphc.passes.manager import PIPELINE, PassError, PipelineResult, optimize
from graphc.program import Node, Program
from tests.passes.program_util import count, placeholder, program_of

REPO = Path(__file__).resolve().parents[2]

BUILD = """
import numpy as np
import graphc as gc
from graphc.program import extract

def build():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 4), name="x")
        w = gc.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="w")
        big = gc.constant(np.arange(100, dtype=np.float32).reshape(4, 25))
        h = gc.tanh(gc.matmul(x, w) * 0.5 + 1.0)
        loss = gc.reduce_mean(h * h) + gc.reduce_sum(big)
        (gw,) = gc.gradients(loss, [w])
    return extract([loss, gw], [], [x])
"""


def _build():
    scope: dict = {}
    exec(BUILD, scope)  # noqa: S102 - the same source also runs in a subprocess below
    return scope["build"]()


def test_pipeline_is_a_visible_list_of_named_passes():
    names = [name for name, _fn, _level in PIPELINE]
    assert names == ["cleanup", "fold", "layout", "simplify", "cse", "narrow", "dce"]
    assert all(callable(fn) and level >= 1 for _n, fn, level in PIPELINE)


def test_passes_do_not_mutate_their_input():
    p = _build()
    text = p.text()
    nodes = p.nodes
    for _name, fn, _level in PIPELINE:
        fn(p)
    assert p.text() == text and p.nodes is nodes


def test_identical_graphs_hash_equal_here_and_in_another_process():
    a, b = _build(), _build()
    assert a is not b and a.text() == b.text() and a.hash() == b.hash()
    script = BUILD + "\nprint(build().hash())\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"},
        check=True,
    )  # fmt: skip
    assert out.stdout.strip() == a.hash()
    # the optimised program is deterministic too
    opts = CompileOptions(cache_dir=None)
    assert optimize(a, opts).program.hash() == optimize(b, opts).program.hash()


def test_hash_changes_with_attributes_and_constants():
    x = placeholder((3,), name="x")
    p1 = program_of(gc.reduce_sum(x, axis=0), [x])
    p2 = program_of(gc.reduce_sum(x, axis=0, keepdims=True), [x])
    p3 = program_of(x + np.arange(3.0), [x])
    p4 = program_of(x + np.arange(3.0) * 2, [x])
    assert len({p1.hash(), p2.hash(), p3.hash(), p4.hash()}) == 4


def test_optimize_records_seconds_stages_and_verifies():
    p = _build()
    result = optimize(p, CompileOptions(verify=True, cache_dir=None))
    assert isinstance(result, PipelineResult)
    assert set(result.seconds) == {"cleanup", "layout", "simplify", "fold", "cse", "narrow", "dce"}
    assert all(s >= 0 for s in result.seconds.values())
    assert list(result.stages)[0] == "input" and "dce" in result.stages
    assert result.stages["dce"] == result.program.text()
    assert len(result.program.nodes) < len(p.nodes)
    assert 1 <= result.rounds <= manager.MAX_ROUNDS


def test_opt_level_zero_runs_nothing_and_one_runs_a_single_round():
    p = _build()
    r0 = optimize(p, CompileOptions(opt_level=0, cache_dir=None))
    assert r0.program is p and r0.seconds == {} and r0.rounds == 0
    r1 = optimize(p, CompileOptions(opt_level=1, cache_dir=None))
    assert r1.rounds == 1


def test_rounds_reach_a_fixpoint():
    x = placeholder((3,), name="x")
    # folding (2 - 1) exposes x * 1 only in the second round
    y = x * (gc.constant(2.0, dtype=gc.float64) - 1.0)
    r = optimize(program_of(y, [x]), CompileOptions(cache_dir=None))
    assert [n.op for n in r.program.nodes] == ["Feed"]
    assert r.rounds >= 2


def test_dump_dir_gets_the_program_after_every_pass(tmp_path):
    p = _build()
    optimize(p, CompileOptions(dump_dir=tmp_path / "dump", cache_dir=None))
    files = sorted(f.name for f in (tmp_path / "dump").iterdir())
    assert files[0] == "00_input.txt" and files[1] == "01_cleanup.txt"
    assert {f.split("_", 1)[1] for f in files} == {
        "input.txt",
        "cleanup.txt",
        "layout.txt",
        "simplify.txt",
        "fold.txt",
        "cse.txt",
        "narrow.txt",
        "dce.txt",
    }
    assert (tmp_path / "dump" / "00_input.txt").read_text().strip() == p.text()


def test_verifier_names_the_pass_that_broke_the_program():
    x = placeholder((3,), name="x")
    p = program_of(gc.exp(x), [x])

    def broken(program):
        n = program.nodes[1]
        bad = Node(n.id, n.op, ((99, 0),), n.outs, n.attrs, n.control, n.name, n.location)
        return program.with_nodes([program.nodes[0], bad])

    with pytest.raises(PassError, match="after pass 'broken'"):
        optimize(p, CompileOptions(verify=True, cache_dir=None), pipeline=[("broken", broken, 1)])


def test_session_cpu_target_runs_the_pipeline_and_reports_compile_seconds(tmp_path):
    x = gc.placeholder(gc.float32, (None, 3), name="x")
    y = gc.reduce_sum(gc.exp(gc.log(x)) * 1.0 + 0.0, axis=1)
    opts = CompileOptions(cache_dir=None, dump_dir=tmp_path)
    with gc.Session(target="cpu", options=opts) as sess:
        exe = sess.compile(y, [x])
        got = sess.run(y, {x: np.full((2, 3), 2.0, np.float32)})
    np.testing.assert_allclose(got, [6.0, 6.0])
    assert {"cleanup", "simplify", "fold", "cse", "dce"} <= set(exe.stats["compile_seconds"])
    assert count(exe.program, "Exp") == 0 and count(exe.program, "Mul") == 0
    assert "simplify" in exe.dump_ir() and exe.dump_ir("input") == exe.source.text()
    assert any(f.name.endswith("_dce.txt") for f in tmp_path.iterdir())


def test_reference_target_does_not_optimise():
    x = gc.placeholder(gc.float32, (3,), name="x")
    y = x * 1.0
    with gc.Session(target="reference") as sess:
        exe = sess.compile(y, [x])
    assert exe.program is exe.source and count(exe.program, "Mul") == 1


def test_stateful_training_step_gives_the_same_variables_optimised():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(8, 3)).astype(np.float32)
    ys = rng.normal(size=(8, 1)).astype(np.float32)
    results = []
    for target in ("reference", "cpu"):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (None, 3), name="x")
            y = gc.placeholder(gc.float32, (None, 1), name="y")
            w = gc.Variable(np.ones((3, 1), np.float32), name="w")
            b = gc.Variable(np.zeros((1,), np.float32), name="b")
            loss = gc.reduce_mean(gc.square(gc.matmul(x, w) + b - y))
            gw, gb = gc.gradients(loss, [w, b])
            step = gc.group(gc.assign_sub(w, 0.1 * gw), gc.assign_sub(b, 0.1 * gb))
            with gc.Session(graph=g, target=target, options=CompileOptions(cache_dir=None)) as s:
                s.run(gc.global_variables_initializer())
                for _ in range(5):
                    s.run(step, {x: xs, y: ys})
                results.append(s.run([w, b, loss], {x: xs, y: ys}))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_program_text_names_random_streams():
    # The stream (run-counter key) of a random op changes what a run draws, so it is part of
    # the program text and hash; other op names are not.
    r = gc.random_uniform((2,), seed=1, name="r1")
    p = program_of(gc.multiply(r, 2.0, name="m1"))
    assert "stream='r1'" in p.text() and "m1" not in p.text()
    gc.reset_default_graph()
    r = gc.random_uniform((2,), seed=1, name="r1")
    same = program_of(gc.multiply(r, 2.0, name="other_name"))
    gc.reset_default_graph()
    r = gc.random_uniform((2,), seed=1, name="r2")
    other_stream = program_of(gc.multiply(r, 2.0, name="m1"))
    assert same.hash() == p.hash() != other_stream.hash()
    assert isinstance(p, Program)


def test_verify_reports_broken_programs():
    x = placeholder((3,), name="x")
    p = program_of(gc.exp(x), [x])
    p.verify()
    feed, exp = p.nodes
    with pytest.raises(AssertionError, match="before its definition"):
        p.with_nodes([exp, feed]).verify()
    wrong = dataclasses.replace(exp, outs=(TensorSpec((4,), gc.float64),))
    with pytest.raises(AssertionError, match="infers"):
        p.with_nodes([feed, wrong]).verify()
    with pytest.raises(AssertionError, match="target %7"):
        p.with_nodes(p.nodes, targets=(7,)).verify()
    with pytest.raises(AssertionError, match="fetch %9.0"):
        p.with_nodes(p.nodes, fetches=((9, 0),)).verify()
