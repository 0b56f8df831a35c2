"""gc.while_loop forward: TF1 semantics on the reference and cpu targets, run-time trip
counts, nesting of loop variables, captures, state, shape invariants and build errors."""

import collections
import os
import time

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError
from graphc.program import extract

from .helpers import TARGETS, line_of, run, run_both


def test_counter_and_doubling_on_both_targets():
    x = gc.placeholder(gc.float32, (None,), name="x")
    i, y = gc.while_loop(lambda i, x: i < 5, lambda i, x: (i + 1, x * 2.0), (gc.constant(0), x))
    ref, cpu = run_both([i, y], {x: [1.0, 2.0]})
    assert ref[0] == 5
    np.testing.assert_allclose(cpu[1], [32.0, 64.0])


def test_trip_count_decided_at_run_time_compiles_once():
    n = gc.placeholder(gc.int32, (), name="n")
    x = gc.placeholder(gc.float64, (None, 3), name="x")

    def body(i, acc):
        return i + 1, acc + gc.cast(i, gc.float64) * x

    _, acc = gc.while_loop(lambda i, acc: i < n, body, [gc.constant(0), gc.zeros_like(x)])
    data = np.arange(6.0).reshape(2, 3)
    with gc.Session(target="cpu") as sess:
        for trips in (0, 1, 7, 30):
            got = sess.run(acc, {n: trips, x: data})
            np.testing.assert_allclose(got, data * sum(range(trips)))
        got = sess.run(acc, {n: 4, x: np.ones((5, 3))})  # another batch size
        np.testing.assert_allclose(got, np.full((5, 3), 6.0))
        assert sess.cache_info()["compiles"] == 1


def test_single_var_list_returns_tensor_and_same_structure_option():
    r = gc.while_loop(lambda v: v < 10, lambda v: v + 3, [gc.constant(1)])
    assert isinstance(r, gc.Tensor)
    r2 = gc.while_loop(lambda v: v < 10, lambda v: [v + 3], [gc.constant(1)],
                       return_same_structure=True)  # fmt: skip
    assert isinstance(r2, list) and len(r2) == 1
    for target in TARGETS:
        assert run(r, target=target) == 10
        assert run(r2, target=target) == [10]


Pair = collections.namedtuple("Pair", ["a", "b"])


def test_nested_loop_vars_dict_namedtuple_list():
    x = gc.placeholder(gc.float32, (2,), name="x")
    loop_vars = (gc.constant(0), {"p": Pair(x, gc.constant(1.0)), "q": [x * 0.0]})

    def body(i, d):
        p = d["p"]
        return i + 1, {"p": Pair(p.a + 1.0, p.b * 2.0), "q": [d["q"][0] + p.a]}

    out = gc.while_loop(lambda i, d: i < 3, body, loop_vars)
    assert isinstance(out[1]["p"], Pair) and isinstance(out[1]["q"], list)
    ref, cpu = run_both(out, {x: [1.0, 10.0]})
    np.testing.assert_allclose(cpu[1]["p"].a, [4.0, 13.0])
    assert cpu[1]["p"].b == 8.0
    np.testing.assert_allclose(cpu[1]["q"][0], [1 + 2 + 3, 10 + 11 + 12])


def test_captured_outer_tensors_and_nested_loops():
    w = gc.placeholder(gc.float32, (None,), name="w")
    scale = gc.constant(0.5)

    def outer_body(i, acc):
        def inner_body(j, a):
            return j + 1, a + w * scale  # captures from two levels up

        _, a = gc.while_loop(lambda j, a: j < i, inner_body, (gc.constant(0), acc))
        return i + 1, a

    _, acc = gc.while_loop(lambda i, a: i < 4, outer_body, (gc.constant(0), gc.zeros_like(w)))
    ref, cpu = run_both(acc, {w: [2.0, 4.0, 6.0]})
    np.testing.assert_allclose(cpu, np.array([2.0, 4.0, 6.0]) * 0.5 * (0 + 1 + 2 + 3))


def test_zero_iterations_returns_initial_values():
    x = gc.placeholder(gc.float32, (3,), name="x")
    y = gc.while_loop(lambda v: gc.reduce_sum(v) < 0.0, lambda v: v * 2.0, [x])
    for target in TARGETS:
        np.testing.assert_allclose(run(y, {x: [1.0, 2.0, 3.0]}, target), [1.0, 2.0, 3.0])


def test_maximum_iterations_stops_the_loop():
    m = gc.placeholder(gc.int32, (), name="m")
    i = gc.while_loop(lambda i: i < 100, lambda i: i + 1, [gc.constant(0)], maximum_iterations=m)
    j = gc.while_loop(lambda i: i < 3, lambda i: i + 1, [gc.constant(0)], maximum_iterations=10)
    for target in TARGETS:
        assert run(i, {m: 7}, target) == 7
        assert run(j, target=target) == 3


def test_shape_invariants_let_a_shape_grow():
    x = gc.constant(np.ones((1, 2), np.float32))

    def body(i, v):
        return i + 1, gc.concat([v, v], axis=0)

    _, v = gc.while_loop(lambda i, v: i < 3, body, (gc.constant(0), x),
                         shape_invariants=((), (None, 2)))  # fmt: skip
    assert v.shape == (None, 2)
    for target in TARGETS:
        assert run(v, target=target).shape == (8, 2)


def test_shape_change_without_invariant_names_the_user_line():
    x = gc.constant(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="shape_invariants") as exc:
        gc.while_loop(lambda v: gc.reduce_sum(v) < 9.0, lambda v: gc.concat([v, v], 0), [x])  # L1
    assert f"test_while.py:{line_of('# L1')}" in str(exc.value)


def test_build_errors_name_the_user_line():
    x = gc.constant(1.0)
    with pytest.raises(TypeError, match="scalar bool") as exc:
        gc.while_loop(lambda v: v * 2.0, lambda v: v, [x])  # L2
    assert f"test_while.py:{line_of('# L2')}" in str(exc.value)
    with pytest.raises(TypeError, match="float32 before the loop but the body returns int32"):
        gc.while_loop(lambda v: v < 3.0, lambda v: gc.constant(1), [x])
    with pytest.raises(ValueError, match="structure of loop_vars"):
        gc.while_loop(lambda a, b: a < 3.0, lambda a, b: (a, b, a), (x, x))
    with pytest.raises(TypeError, match="callable"):
        gc.while_loop(None, lambda v: v, [x])
    with pytest.raises(TypeError, match="maximum_iterations"):
        gc.while_loop(lambda v: v < 3.0, lambda v: v, [x], maximum_iterations=2.5)


def test_run_time_shape_check_of_a_loop_var_is_an_error_not_a_crash():
    x = gc.placeholder(gc.float32, (None,), name="x")
    k = gc.placeholder(gc.int32, (None,), name="k")
    # the body's result has an unknown length (a gather by a fed index list); the loop
    # variable promised (None,) with the fed length, checked every iteration at run time
    v0 = gc.constant(np.zeros(3, np.float32))
    out = gc.while_loop(lambda v: gc.reduce_sum(v) < 5.0, lambda v: gc.gather(v + 1.0, k), [v0])
    for target in TARGETS:
        np.testing.assert_allclose(run(out, {k: [0, 1, 2]}, target), [2.0, 2.0, 2.0])
        with pytest.raises(InvalidArgumentError, match="loop variable 0 has shape"):
            run(out, {k: [0, 1]}, target)
    _ = x


def test_assignments_inside_the_body_run_every_iteration():
    v = gc.Variable(0.0, name="counter")

    def body(i):
        with gc.control_dependencies([v.assign_add(2.0)]):
            return i + 1

    i = gc.while_loop(lambda i: i < 4, body, [gc.constant(0)])
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            sess.run(gc.global_variables_initializer())
            assert sess.run(i) == 4
            assert sess.run(v) == 8.0
            sess.run(i)
            assert sess.run(v) == 16.0


def test_variable_created_in_a_body_lives_in_the_outer_graph():
    def body(x):
        w = gc.Variable(np.float32(3.0), name="w_in_body")
        return x * w

    y = gc.while_loop(lambda x: x < 100.0, body, [gc.constant(1.0)])
    (w,) = [v for v in gc.global_variables() if "w_in_body" in v.name]
    assert w.graph is gc.get_default_graph()
    for target in TARGETS:
        assert run(y, target=target) == 243.0


def test_bodies_are_part_of_the_program_hash_and_disk_cache(tmp_path):
    """Two loops that differ only inside their bodies: different programs, and a shared
    disk cache never hands one the other's code."""
    results = []
    for k in (2.0, 3.0):
        gc.reset_default_graph()
        x = gc.placeholder(gc.float32, (2,), name="x")
        y = gc.while_loop(lambda v: gc.reduce_sum(v) < 50.0, lambda v, k=k: v * k, [x])
        opts = gc.CompileOptions(cache_dir=str(tmp_path))
        with gc.Session(target="cpu", options=opts) as sess:
            results.append(sess.run(y, {x: [1.0, 1.0]}))
            exe = sess.compile(y, [x])
            results.append(exe.program.hash())
    np.testing.assert_allclose(results[0], [32.0, 32.0])
    np.testing.assert_allclose(results[2], [27.0, 27.0])
    assert results[1] != results[3]


def test_cpu_labels_the_host_loop_and_compiles_bodies():
    x = gc.placeholder(gc.float32, (None,), name="x")
    y = gc.while_loop(lambda v: gc.reduce_sum(v) < 100.0, lambda v: gc.exp(v) + 1.0, [x])
    with gc.Session(target="cpu") as sess:
        exe = sess.compile(y, [x])
    assert "While" in exe.stats["host_fallback_ops"]
    names = [k.name for k in exe.kernels]
    assert any("/body/" in n for n in names) and any("/cond/" in n for n in names)


@pytest.mark.skipif(os.environ.get("GRAPHC_SLOW") != "1", reason="timing; GRAPHC_SLOW=1")
def test_per_iteration_overhead_is_small():
    n = gc.placeholder(gc.int32, (), name="n")
    i = gc.while_loop(lambda i: i < n, lambda i: i + 1, [gc.constant(0)], back_prop=False)
    with gc.Session(target="cpu") as sess:
        sess.run(i, {n: 10})
        t0 = time.perf_counter()
        sess.run(i, {n: 10000})
        per = (time.perf_counter() - t0) / 10000
    print(f"while_loop on cpu: {per * 1e6:.1f} us per iteration")
    assert per < 200e-6


def test_random_ops_in_a_body_draw_per_iteration_and_per_run():
    gc.set_random_seed(7)

    def body(i, acc):
        row = gc.expand_dims(gc.random_uniform((3,), dtype=gc.float64), 0)
        return i + 1, gc.concat([acc, row], axis=0)

    _, rows = gc.while_loop(lambda i, a: i < 4, body, (0, gc.zeros((0, 3), gc.float64)),
                            shape_invariants=((), (None, 3)), back_prop=False)  # fmt: skip
    runs = {}
    for target in TARGETS:
        with gc.Session(target=target) as sess:
            runs[target] = [sess.run(rows), sess.run(rows)]
    first, second = runs["reference"]
    assert first.shape == (4, 3) and len({tuple(r) for r in first}) == 4  # fresh per iteration
    assert not np.allclose(first, second)  # fresh per run
    np.testing.assert_array_equal(runs["cpu"][0], first)  # the same streams on cpu
    np.testing.assert_array_equal(runs["cpu"][1], second)


def test_a_body_tensor_used_outside_the_body_is_an_error():
    kept = {}

    def body(v):
        kept["t"] = v * 2.0
        return kept["t"]

    gc.while_loop(lambda v: v < 10.0, body, [gc.constant(1.0)])
    with pytest.raises(ValueError, match="return it from the body instead") as exc:
        kept["t"] + 1.0  # L3
    assert f"test_while.py:{line_of('# L3')}" in str(exc.value)


def test_collections_inside_a_body_are_the_graphs():
    v = gc.Variable(1.0, name="outer_v")
    seen = {}

    def body(x):
        seen["vars"] = list(gc.global_variables())
        gc.add_to_collection("from_body", "marker")
        return x + v

    gc.while_loop(lambda x: x < 3.0, body, [gc.constant(0.0)])
    assert seen["vars"] == [v]
    assert gc.get_collection("from_body") == ["marker"]


def test_programs_that_differ_only_in_a_body_are_not_equal():
    programs = []
    for k in (2.0, 3.0):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, (2,), name="x")
            y = gc.while_loop(lambda v: gc.reduce_sum(v) < 50.0, lambda v, k=k: v * k, [x])
            programs.append(extract([y], [], [x]))
    a, b = programs
    assert a != b and a.hash() != b.hash() and len({a, b}) == 2
    assert "program(sha:" in a.text()


def test_a_loop_sees_its_own_writes_to_a_variable_it_reads():
    v = gc.Variable(1.0, name="v")

    def body(i):
        with gc.control_dependencies([v.assign(v * 2.0)]):  # reads v, then writes it
            return i + 1

    def outer(j):
        gc.while_loop(lambda k: k < 2, lambda k: k + gc.cast(v.assign_add(v) > 0.0, gc.int32),
                      [gc.constant(0)])  # fmt: skip
        return j + 1

    i = gc.while_loop(lambda i: i < 3, body, [gc.constant(0)])
    j = gc.while_loop(lambda j: j < 2, outer, [gc.constant(0)])
    for target in TARGETS:
        with gc.Session(target=target, options=gc.CompileOptions(verify=True)) as sess:
            sess.run(gc.global_variables_initializer())
            sess.run(i)
            assert sess.run(v) == 8.0  # 1 * 2 * 2 * 2, as TF1 (not 2: the value at entry)
            sess.run(j)
            assert sess.run(v) == 128.0  # doubled 2 x 2 times by the nested loop


def test_stacked_outputs_held_by_the_caller_are_not_reused():
    """The cpu target writes a large stacked output into an array of an earlier run only
    when nothing holds that array any more: results the caller keeps stay as they were."""
    x = gc.placeholder(gc.float32, (None, 128, 256), name="x")
    ys = gc.scan(lambda acc, row: acc + row, x, initializer=gc.zeros((128, 256)))
    total = gc.reduce_sum(ys)
    with gc.Session(target="cpu") as sess:
        kept = [sess.run(ys, {x: np.full((4, 128, 256), v, np.float32)}) for v in (1.0, 2.0)]
        for _ in range(3):  # history read internally only: arrays may be reused
            sess.run(total, {x: np.ones((4, 128, 256), np.float32)})
        again = sess.run(ys, {x: np.full((4, 128, 256), 3.0, np.float32)})
    steps = np.arange(1, 5, dtype=np.float32)[:, None, None]
    for v, got in zip((1.0, 2.0, 3.0), kept + [again]):
        np.testing.assert_array_equal(got, np.broadcast_to(v * steps, (4, 128, 256)))
