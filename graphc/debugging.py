"""``gc.debugging``: run-time checks (TF1's ``tf.debugging``), each an op that fails the run
with ``InvalidArgumentError`` naming the op and the user's line when its condition fails."""

from .ops.control import check_numerics
from .ops.debug import (
    assert_equal,
    assert_greater,
    assert_greater_equal,
    assert_less,
    assert_less_equal,
    assert_negative,
    assert_non_negative,
    assert_non_positive,
    assert_none_equal,
    assert_positive,
)

__all__ = [
    "assert_equal", "assert_none_equal", "assert_less", "assert_less_equal", "assert_greater",
    "assert_greater_equal", "assert_non_negative", "assert_positive", "assert_negative",
    "assert_non_positive", "check_numerics",
]  # fmt: skip
