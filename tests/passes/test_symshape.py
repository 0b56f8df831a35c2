"""passes.symshape: broadcast symbols stay flat, and deep graphs need no deep recursion."""

import graphc as gc
from graphc.passes.symshape import SymbolicShapes, broadcast
from tests.passes.program_util import program_of


def test_a_broadcast_symbol_broadcast_again_against_its_members_is_itself():
    a, b, c = ("dim", 0, 0, 0), ("dim", 1, 0, 0), ("dim", 2, 0, 0)
    (ab,) = broadcast([(a,), (b,)])
    assert broadcast([(ab,), (a,)]) == (ab,) == broadcast([(b,), (ab,)])
    (abc,) = broadcast([(ab,), (c,)])
    assert abc == broadcast([(a,), (ab,), (c,)])[0] == broadcast([(c,), (b,), (a,)])[0]
    assert abc == ("bcast", *sorted((a, b, c), key=repr))  # flat, whatever the order


def test_dims_of_a_chain_deeper_than_the_recursion_limit():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 4), name="x")
        y = gc.placeholder(gc.float32, (None, 4), name="y")
        z = x
        for _ in range(2000):  # 4,000 elementwise ops
            z = z * 1.0001 + y
    program = program_of([z], [x, y])
    shapes = SymbolicShapes(program.node)
    (batch, four) = shapes.dims(program.fetches[0])
    assert four == 4
    assert batch == broadcast([shapes.dims((program.nodes[0].id, 0)), shapes.dims(
        (program.nodes[1].id, 0))])[0]  # fmt: skip


def test_a_flattened_batch_reshaped_back_is_the_batch_again():
    """[B, 128, 16] flattened to (-1, 16) is 128 B rows; reshaped to (-1, 128, 16) it is B
    again, so a SumToShape from [B, 128, 16] to it is a no-op and goes. A ratio that is not
    whole (8 B rows of 2 x 16 to (-1, 3, 16)) keeps no symbol."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, (None, 128, 16), name="x")
        flat = gc.reshape(x, (-1, 16))
        back = gc.reshape(flat * 2.0, (-1, 128, 16))
        odd = gc.reshape(gc.reshape(x, (-1, 2, 16)), (-1, 3, 16))
    program = program_of([back, odd, flat], [x])
    shapes = SymbolicShapes(program.node)
    batch = shapes.dims((program.nodes[0].id, 0))[0]
    back_dims, odd_dims, flat_dims = (shapes.dims(r) for r in program.fetches)
    assert flat_dims == (("scaled", batch, 128), 16)
    assert back_dims == (batch, 128, 16)
    assert odd_dims[0] not in (batch, ("scaled", batch, 64))
