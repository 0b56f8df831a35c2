"""gc.variable_scope / gc.get_variable / gc.initializers / collections: TF1's rules."""

import numpy as np
import pytest

import graphc as gc


def run(fetches, target="reference"):
    with gc.Session(target=target) as sess:
        sess.run(gc.global_variables_initializer())
        return sess.run(fetches)


def test_scopes_name_variables_and_ops():
    with gc.variable_scope("foo") as scope:
        v = gc.get_variable("v", (2,))
        c = gc.constant(1.0, name="c")
        with gc.variable_scope("bar"):
            w = gc.get_variable("w", (1,))
    assert v.name == "foo/v:0" and v.op.name == "foo/v" and w.op.name == "foo/bar/w"
    assert c.name == "foo/c:0" and scope.name == "foo" and scope.original_name_scope == "foo/"
    assert gc.get_variable_scope().name == ""
    with gc.name_scope("ns"), gc.variable_scope("vs"):
        # the name scope prefixes ops, never get_variable's variables (TF1)
        u = gc.get_variable("u", (1,))
        assert gc.constant(0.0, name="k").name == "ns/vs/k:0"
        assert gc.get_variable_scope().original_name_scope == "ns/vs/"
    assert u.op.name == "vs/u"
    assert isinstance(v, gc.Variable) and v.trainable
    assert gc.trainable_variables() == [v, w, u] == gc.global_variables()


def test_reuse_true_auto_reuse_and_errors():
    with gc.variable_scope("s"):
        v = gc.get_variable("v", (2, 3))
    with pytest.raises(ValueError, match=r"Variable s/v already exists, disallowed.*reuse=True"):
        with gc.variable_scope("s"):
            gc.get_variable("v", (2, 3))
    with gc.variable_scope("s", reuse=True):
        assert gc.get_variable("v") is v
        assert gc.get_variable("v", (2, 3)) is v
        with pytest.raises(ValueError, match=r"Variable s/missing does not exist"):
            gc.get_variable("missing", (1,))
        with pytest.raises(ValueError, match=r"share variable s/v.*shape \(3, 2\).*\(2, 3\)"):
            gc.get_variable("v", (3, 2))
        with pytest.raises(ValueError, match=r"share variable s/v.*dtype float64.*float32"):
            gc.get_variable("v", (2, 3), dtype=gc.float64)
        with gc.variable_scope("inner", reuse=False):  # reuse is inherited, never switched off
            assert gc.get_variable_scope().reuse is True
    with gc.variable_scope("auto", reuse=gc.AUTO_REUSE):
        a = gc.get_variable("a", (1,))
        assert gc.get_variable("a", (1,)) is a
    with gc.variable_scope("auto", reuse=gc.AUTO_REUSE):
        assert gc.get_variable("a", (1,)) is a
    assert [x.op.name for x in gc.global_variables()] == ["s/v", "auto/a"]


def test_reenter_a_scope_object_and_reuse_variables():
    with gc.variable_scope("model") as scope:
        w = gc.get_variable("w", (1,))
    with gc.variable_scope(scope):
        # the same variable names, a fresh name scope for ops (TF1: model_1/)
        assert gc.constant(0.0, name="c").op.name == "model_1/c"
        with pytest.raises(ValueError, match="already exists"):
            gc.get_variable("w", (1,))
    with gc.variable_scope(scope, reuse=True):
        assert gc.get_variable("w") is w
    with gc.variable_scope("other"):
        with gc.variable_scope(scope, reuse=True):  # absolute: not other/model
            assert gc.get_variable("w") is w
    with gc.variable_scope("shared") as s2:
        a = gc.get_variable("a", (1,))
        s2.reuse_variables()
        assert gc.get_variable("a") is a


def test_default_names_are_made_unique_and_reset_on_reentry():
    names = []
    for _ in range(2):
        with gc.variable_scope(None, default_name="blk"):
            names.append(gc.get_variable("w", (1,)).op.name)
    with gc.variable_scope("outer"):
        for _ in range(2):
            with gc.variable_scope(None, default_name="blk"):
                names.append(gc.get_variable("w", (1,)).op.name)
    with gc.variable_scope("outer", reuse=True):
        with gc.variable_scope(None, default_name="blk"):
            names.append(gc.get_variable("w", (1,)).op.name)
    assert names == ["blk/w", "blk_1/w", "outer/blk/w", "outer/blk_1/w", "outer/blk/w"]
    with pytest.raises(ValueError, match="reuse=True cannot be used without a name_or_scope"):
        with gc.variable_scope(None, default_name="x", reuse=True):
            pass
    with pytest.raises(TypeError, match="default_name is None"):
        with gc.variable_scope(None):
            pass


def test_get_variable_initializers_and_dtypes():
    with gc.variable_scope("init", initializer=gc.initializers.constant(3.0)):
        with gc.variable_scope("sub"):
            a = gc.get_variable("a", (2,))  # scope initializer, inherited
        b = gc.get_variable("b", (2,), initializer=gc.zeros_initializer())
        c = gc.get_variable("c", (2,), initializer=gc.ones_initializer)  # the class works too
    d = gc.get_variable("d", initializer=gc.constant([1.0, 2.0]))
    e = gc.get_variable("e", initializer=np.zeros(3))  # a numpy value keeps its dtype (TF1)
    f = gc.get_variable("f", initializer=[[1.0, 2.0]])  # Python floats: float32
    i = gc.get_variable("i", (2,), dtype=gc.int32)  # integer default: zeros
    g = gc.get_variable("g", (3, 4))  # float default: glorot_uniform
    h = gc.get_variable("h", initializer=np.ones(2), dtype=gc.float32)
    k = gc.get_variable("k", (2, 2), initializer=lambda shape, dtype: np.eye(2) * 5)
    assert (d.shape, e.dtype, f.dtype, f.shape) == ((2,), gc.float64, gc.float32, (1, 2))
    assert i.dtype == gc.int32 and h.dtype == gc.float32 and k.dtype == gc.float32
    with pytest.raises(ValueError, match="If initializer is a constant, do not specify shape"):
        gc.get_variable("bad", (2,), initializer=gc.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="must be specified"):
        gc.get_variable("noshape")
    with pytest.raises(ValueError, match="must be fully defined"):
        gc.get_variable("partial", (None, 2))
    out = run([a, b, c, d, i, g, k])
    np.testing.assert_array_equal(out[0], [3, 3])
    np.testing.assert_array_equal(out[1], [0, 0])
    np.testing.assert_array_equal(out[2], [1, 1])
    np.testing.assert_array_equal(out[3], [1, 2])
    np.testing.assert_array_equal(out[4], [0, 0])
    limit = np.sqrt(6 / 7)
    assert out[5].dtype == np.float32 and np.all(np.abs(out[5]) <= limit) and out[5].std() > 0
    np.testing.assert_array_equal(out[6], np.eye(2) * 5)


def test_get_variable_in_control_dependencies_initializes_alone():
    """The initial value is built outside control_dependencies (TF1's init_scope), so the
    initializer does not run the ops of the training step around it."""
    counter = gc.Variable(0, name="counter")
    with gc.control_dependencies([gc.assign_add(counter, 1)]):
        v = gc.get_variable("v", (2,), initializer=gc.ones_initializer())
    assert v.initializer.control_inputs == ()
    with gc.Session(target="reference") as sess:
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(v), [1, 1])


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_initializer_objects_and_their_distributions(target):
    hwio = (3, 3, 32, 64)
    fan_in, fan_out = 3 * 3 * 32, 3 * 3 * 64
    inits = {
        "glorot_uniform": (gc.initializers.glorot_uniform(seed=1), np.sqrt(6 / (fan_in + fan_out))
                           / np.sqrt(3)),
        "glorot_normal": (gc.initializers.glorot_normal(seed=2), np.sqrt(2 / (fan_in + fan_out))),
        "he_normal": (gc.initializers.he_normal(seed=3), np.sqrt(2 / fan_in)),
        "lecun_uniform": (gc.initializers.lecun_uniform(seed=4), np.sqrt(1 / fan_in)),
        "variance_scaling": (gc.initializers.variance_scaling(2.0, "fan_out", "untruncated_normal",
                                                              seed=5), np.sqrt(2 / fan_out)),
        "random_normal": (gc.initializers.random_normal(0.5, 0.02, seed=6), 0.02),
        "truncated_normal": (gc.initializers.truncated_normal(stddev=0.1, seed=7), 0.088),
        "random_uniform": (gc.initializers.random_uniform(-1, 1, seed=8), np.sqrt(1 / 3)),
    }  # fmt: skip
    tensors = {k: init(hwio) for k, (init, _) in inits.items()}
    assert all(t.dtype == gc.float32 and t.shape == hwio for t in tensors.values())
    with gc.Session(target=target) as sess:
        got = sess.run(tensors)
    with gc.Session(target=target) as sess:
        again = sess.run(tensors)
    for k, (_, std) in inits.items():
        assert got[k].std() == pytest.approx(std, rel=0.08), k
        np.testing.assert_array_equal(got[k], again[k])  # seeded: the same stream
    assert got["random_normal"].mean() == pytest.approx(0.5, abs=0.005)
    assert np.abs(got["truncated_normal"]).max() <= 0.2 + 1e-6
    assert np.abs(got["glorot_uniform"]).max() <= np.sqrt(6 / (fan_in + fan_out)) + 1e-6


def test_initializer_dtypes_and_constant_values():
    z = gc.initializers.zeros()((2, 3), dtype=gc.int64)
    o = gc.initializers.ones(dtype=gc.float64)((2,))
    c = gc.initializers.constant([1, 2])((2, 2))  # a shorter list: padded with its last value
    c2 = gc.initializers.constant(np.arange(4.0))((2, 2))
    ident = gc.initializers.identity(gain=2.0)((2, 3))
    h = gc.initializers.he_normal()((4, 4), dtype=gc.float64)
    assert (z.dtype, o.dtype, c.dtype, h.dtype) == (gc.int64, gc.float64, gc.float32, gc.float64)
    out = run([z, o, c, c2, ident])
    np.testing.assert_array_equal(out[2], [[1, 2], [2, 2]])
    np.testing.assert_array_equal(out[3], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(out[4], [[2, 0, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match="values for shape"):
        gc.initializers.constant([1, 2, 3])((2,))
    with pytest.raises(TypeError, match="floating"):
        gc.initializers.glorot_uniform()((2, 2), dtype=gc.int32)
    with pytest.raises(ValueError, match="mode"):
        gc.initializers.variance_scaling(mode="fan_sideways")
    assert "seed=3" in repr(gc.initializers.glorot_uniform(seed=3))


def test_numpy_float_scalars_never_widen_a_float32_graph():
    """The bug of issue 16: truncated_normal(stddev=np.sqrt(2 / n)) was float64 and conv2d
    refused it. numpy scalars now take the tensor's dtype, as Python numbers do (TF1)."""
    n = 27
    w = gc.truncated_normal((3, 3, 3, 8), stddev=np.sqrt(2 / n), seed=1)
    assert w.dtype == gc.float32
    x = gc.placeholder(gc.float32, (None, 5, 5, 3))
    y = gc.nn.conv2d(x, gc.Variable(w), 1, "SAME")
    assert y.dtype == gc.float32
    f = gc.placeholder(gc.float32, (2,))
    assert (f * np.float64(0.5)).dtype == gc.float32
    assert (np.float64(0.5) + f).dtype == gc.float32
    assert (f * np.int64(3)).dtype == gc.float32
    assert gc.maximum(f, np.float64(0)).dtype == gc.float32
    assert gc.where(f > 0, f, np.float64(0)).dtype == gc.float32
    assert gc.random_uniform((2,), np.float64(-1), np.float64(1)).dtype == gc.float32
    assert gc.random_normal((2,), np.float32(1), np.float64(2)).dtype == gc.float32
    h = gc.placeholder(gc.float16, (2,))
    assert (h * np.float64(2)).dtype == gc.float16
    i = gc.placeholder(gc.int32, (2,))
    assert (i + np.float64(0.5)).dtype == gc.float32  # as a Python float would
    # numpy arrays keep their dtype and promote; a numpy scalar alone is its own dtype
    assert (f + np.array([1.0, 2.0])).dtype == gc.float64
    assert gc.constant(np.float64(1.0)).dtype == gc.float64
    assert gc.add(np.float64(1.0), np.float64(2.0)).dtype == gc.float64
    with gc.Session(target="reference") as sess:
        np.testing.assert_allclose(sess.run(f * np.float64(0.1), {f: [1, 2]}),
                                   np.float32([0.1, 0.2]))  # fmt: skip


def test_graph_keys_and_collection_functions():
    assert gc.GraphKeys.GLOBAL_VARIABLES == "variables"
    assert gc.GraphKeys.TRAINABLE_VARIABLES == "trainable_variables"
    assert gc.GraphKeys.UPDATE_OPS == "update_ops" and gc.GraphKeys.LOSSES == "losses"
    assert gc.GraphKeys.SUMMARIES == "summaries" and gc.GraphKeys.TRAIN_OP == "train_op"
    assert gc.GraphKeys.LOCAL_VARIABLES == "local_variables"
    assert gc.GraphKeys.REGULARIZATION_LOSSES == "regularization_losses"
    with gc.variable_scope("net"):
        a = gc.get_variable("a", (1,))
        b = gc.get_variable("b", (1,), trainable=False)
    c = gc.get_variable("network_c", (1,))
    loc = gc.get_local_variable("loc", (1,))
    assert gc.get_collection(gc.GraphKeys.GLOBAL_VARIABLES) == [a, b, c]
    assert gc.get_collection(gc.GraphKeys.TRAINABLE_VARIABLES) == [a, c]
    assert gc.get_collection(gc.GraphKeys.GLOBAL_VARIABLES, scope="net/") == [a, b]
    assert gc.get_collection(gc.GraphKeys.GLOBAL_VARIABLES, scope="net") == [a, b, c]  # re.match
    assert gc.get_collection(gc.GraphKeys.LOCAL_VARIABLES) == [loc] == gc.local_variables()
    gc.add_to_collection("mine", 1)
    gc.add_to_collection("mine", a)
    assert gc.get_collection("mine") == [1, a]
    assert gc.get_collection("mine", scope="net") == [a]  # items without a name left out
    ref = gc.get_collection_ref("mine")
    ref.append(2)
    assert gc.get_collection("mine") == [1, a, 2] and gc.get_collection("none") == []
    gc.add_to_collections(["x", "y"], 3)
    assert gc.get_collection("x") == gc.get_collection("y") == [3]
    g = gc.Graph()
    with g.as_default():
        assert gc.get_collection(gc.GraphKeys.GLOBAL_VARIABLES) == []


def test_minimize_trains_the_trainable_collection_only():
    with gc.variable_scope("m"):
        w = gc.get_variable("w", initializer=np.float32([1.0]))
        frozen = gc.get_variable("frozen", initializer=np.float32([1.0]), trainable=False)
    loss = gc.reduce_sum(w * w * frozen)
    train = gc.train.GradientDescentOptimizer(0.25).minimize(loss)
    assert gc.get_collection(gc.GraphKeys.TRAIN_OP) == [train]
    with gc.Session(target="reference") as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(train)
        assert sess.run(w)[0] == pytest.approx(0.5) and sess.run(frozen)[0] == 1.0


def test_variable_scopes_are_per_graph_and_thread():
    import threading

    g1, g2 = gc.Graph(), gc.Graph()
    with g1.as_default(), gc.variable_scope("a"):
        with g2.as_default():
            assert gc.get_variable_scope().name == ""
            assert gc.get_variable("v", (1,)).op.name == "v"
        seen = []
        t = threading.Thread(target=lambda: seen.append(gc.get_variable_scope().name))
        t.start()
        t.join()
        assert seen == [""] and gc.get_variable_scope().name == "a"
