"""Recurrent networks: TF1's cells (``gc.nn.rnn_cell``) and ``gc.nn.dynamic_rnn``."""

from . import cell
from .dynamic import dynamic_rnn
