"""``gc.train``: optimizers, global step, learning-rate schedules, clipping, checkpoints.

loss = ...
step = gc.train.get_or_create_global_step()
train_op = gc.train.AdamOptimizer(1e-3).minimize(loss, global_step=step)
saver = gc.train.Saver()
with gc.Session() as sess:
    sess.run(gc.global_variables_initializer())
    sess.run(train_op, feeds)
    saver.save(sess, "ckpt/model", global_step=step)
"""

from .clip import clip_by_global_norm, clip_by_norm, global_norm
from .optimizer import TRAIN_OP, Optimizer
from .optimizers import (
    AdagradOptimizer,
    AdamOptimizer,
    GradientDescentOptimizer,
    MomentumOptimizer,
    RMSPropOptimizer,
)
from .saver import (
    Saver,
    checkpoint_exists,
    get_checkpoint_state,
    latest_checkpoint,
    list_variables,
    load_checkpoint,
)
from .schedules import (
    create_global_step,
    exponential_decay,
    get_global_step,
    get_or_create_global_step,
    inverse_time_decay,
    piecewise_constant,
    polynomial_decay,
)

__all__ = [
    "Optimizer", "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer",
    "RMSPropOptimizer", "AdagradOptimizer", "TRAIN_OP",
    "get_global_step", "get_or_create_global_step", "create_global_step",
    "exponential_decay", "inverse_time_decay", "polynomial_decay", "piecewise_constant",
    "clip_by_global_norm", "clip_by_norm", "global_norm",
    "Saver", "latest_checkpoint", "checkpoint_exists", "get_checkpoint_state",
    "list_variables", "load_checkpoint",
]  # fmt: skip
