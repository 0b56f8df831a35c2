"""The peers graphc is compared with: numpy eager always; JAX jit, TensorFlow 1 graph mode
(with and without XLA), PyTorch eager and torch.compile when they can be imported.

None of them is a dependency of graphc. A peer is a name, the module that must be importable,
and one builder per workload id: ``builder(workload, sizes, inputs, device)`` returns either a
zero-argument function doing one run and returning the workload's values (see workloads.py),
or an object with ``run()`` and ``values()`` (W5, where what is timed is not a run).

One module a family: ``jax_jit``, ``tf1_graph``, ``torch_eager``; ``models`` holds the W9
and W10 networks the JAX and TF1 peers share, ``base`` the ``Peer`` record. This module lists
them all (``PEERS``) with the numpy peer.
"""

from __future__ import annotations

from .base import Peer, to_numpy
from .jax_jit import JAX
from .tf1_graph import tf_peer
from .torch_eager import TORCH, TORCH_COMPILE

__all__ = ["JAX", "NUMPY", "PEERS", "TORCH", "TORCH_COMPILE", "Peer", "to_numpy"]


def _numpy(workload, sizes, inputs, device):
    return workload.numpy(sizes, inputs)


NUMPY = Peer(
    "numpy eager",
    "numpy",
    {w: _numpy for w in ("W1", "W2", "W3", "W4", "W6", "W7", "W8")},
)

PEERS = [
    NUMPY,
    JAX,
    tf_peer("tf1 session", xla=False),
    tf_peer("tf1 + xla", xla=True),
    TORCH,
    TORCH_COMPILE,
]
