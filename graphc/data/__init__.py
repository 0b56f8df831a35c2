"""gc.data: input pipelines (``tf.data`` of TF1): Dataset and its graph Iterators.

ds = gc.data.Dataset.from_tensor_slices((x, y)).shuffle(1000, seed=0).batch(32)
xb, yb = ds.prefetch(2).make_one_shot_iterator().get_next()
sess.run(train_op)   # each run reads the next batch; the end raises OutOfRangeError
"""

from .dataset import AUTOTUNE, Dataset
from .iterator import Iterator


def make_one_shot_iterator(dataset) -> Iterator:
    """``dataset.make_one_shot_iterator()`` (tf.compat.v1.data's function form)."""
    return dataset.make_one_shot_iterator()


def make_initializable_iterator(dataset) -> Iterator:
    """``dataset.make_initializable_iterator()`` (tf.compat.v1.data's function form)."""
    return dataset.make_initializable_iterator()


__all__ = [
    "AUTOTUNE",
    "Dataset",
    "Iterator",
    "make_initializable_iterator",
    "make_one_shot_iterator",
]
