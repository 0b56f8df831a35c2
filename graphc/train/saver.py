"""``gc.train.Saver``: save and restore session variables as checkpoint files.

A checkpoint is one file of named arrays (graphc/train/checkpoint.py: no pickle, a SHA-256
trailer), written atomically. Next to it, the directory's ``checkpoint`` file (JSON) names
the latest checkpoint and the ones kept, for ``latest_checkpoint(dir)``.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from ..errors import FailedPreconditionError, NotFoundError
from ..ops.state import Variable, global_variables
from . import checkpoint as _ckpt

__all__ = ["Saver", "latest_checkpoint", "checkpoint_exists", "list_variables"]

STATE_FILE = "checkpoint"


def _var_dict(var_list) -> dict:
    """checkpoint name -> Variable."""
    if var_list is None:
        var_list = global_variables()
    if isinstance(var_list, dict):
        items = list(var_list.items())
    else:
        if isinstance(var_list, Variable):
            var_list = [var_list]
        items = [(getattr(v, "op", None) and v.op.name, v) for v in var_list]
    out: dict = {}
    for name, v in items:
        if not isinstance(v, Variable):
            raise TypeError(f"Saver can only save gc.Variable objects, got {v!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad checkpoint name {name!r} for variable {v.op.name}")
        if name in out and out[name] is not v:
            raise ValueError(f"two variables share the checkpoint name {name!r}")
        out[name] = v
    if not out:
        raise ValueError("No variables to save")
    return out


class Saver:
    """Saves and restores variables: ``save(sess, path)`` / ``restore(sess, path)``.

    ``var_list``: None (every global variable at construction time), a list of Variables
    (saved under their op names), or a dict name -> Variable. ``max_to_keep`` recent
    checkpoints written by this saver are kept; older ones are deleted (None or 0: keep all).
    """

    def __init__(self, var_list=None, max_to_keep: int | None = 5, name: str | None = None,
                 allow_empty: bool = False):  # fmt: skip
        try:
            self._vars = _var_dict(var_list)
        except ValueError:
            if not allow_empty:
                raise
            self._vars = {}
        self._max_to_keep = max_to_keep
        self._last: list[str] = []

    @property
    def last_checkpoints(self) -> list[str]:
        """Paths of the checkpoints this saver wrote and still keeps, oldest first."""
        return list(self._last)

    def save(self, sess, save_path: str, global_step=None, latest_filename: str | None = None,
             write_state: bool = True) -> str:  # fmt: skip
        """Write the variables' values in ``sess`` to ``save_path`` (``-<step>`` appended when
        ``global_step`` is given: an int, or a tensor/Variable evaluated in ``sess``).
        Returns the path written."""
        if not isinstance(save_path, str | os.PathLike) or not str(save_path):
            raise ValueError(f"save_path must be a non-empty path, got {save_path!r}")
        save_path = os.fspath(save_path)
        state_name = latest_filename or STATE_FILE
        if os.path.basename(save_path) == state_name:
            raise ValueError(f"save_path {save_path!r} collides with the '{state_name}' file")
        if global_step is not None:
            step = global_step
            if not isinstance(step, int | np.integer):
                step = sess.run(step)
            save_path = f"{save_path}-{int(step)}"
        values = sess.variable_values()
        arrays = {}
        for name, v in self._vars.items():
            key = v.op.attrs["var"]
            if key not in values:
                raise FailedPreconditionError(
                    f"cannot save variable {v.op.name}: it is not initialised in this session"
                )
            arrays[name] = values[key]
        _ckpt.write_file(save_path, _ckpt.encode(arrays, {"variables": len(arrays)}))
        if save_path in self._last:
            self._last.remove(save_path)
        self._last.append(save_path)
        if self._max_to_keep:
            while len(self._last) > self._max_to_keep:
                old = self._last.pop(0)
                try:
                    os.remove(old)
                except FileNotFoundError:
                    pass
        if write_state:
            _write_state(os.path.dirname(os.path.abspath(save_path)), save_path, self._last,
                         state_name)  # fmt: skip
        return save_path

    def restore(self, sess, save_path: str) -> None:
        """Load the variables from the checkpoint at ``save_path`` into ``sess``.

        Every variable is checked first (present, same shape, same dtype); on any problem
        nothing is changed. Raises InvalidArtifactError for a corrupt or truncated file,
        NotFoundError for a missing file or variable, ValueError for a mismatch.
        """
        if save_path is None:
            raise ValueError("Can't load save_path when it is None")
        save_path = os.fspath(save_path)
        arrays, _ = _ckpt.read_file(save_path)
        loads = []
        for name, v in self._vars.items():
            if name not in arrays:
                raise NotFoundError(
                    f"variable {v.op.name} (key {name!r}) not found in checkpoint {save_path}"
                )
            value = arrays[name]
            if tuple(value.shape) != tuple(v.shape):
                raise ValueError(
                    f"variable {v.op.name}: checkpoint {save_path} holds shape "
                    f"{tuple(value.shape)}, the variable has shape {tuple(v.shape)}"
                )
            if value.dtype != v.dtype.np:
                raise ValueError(
                    f"variable {v.op.name}: checkpoint {save_path} holds dtype {value.dtype}, "
                    f"the variable has dtype {v.dtype.name}"
                )
            loads.append((v, value))
        # Hold the session's lock so that no run sees half of the restored values.
        with getattr(sess, "_lock", None) or contextlib.nullcontext():
            for v, value in loads:
                sess.load_variable(v, value)

    def recover_last_checkpoints(self, checkpoint_paths) -> None:
        """Take over ``checkpoint_paths`` (e.g. from a previous run) as kept checkpoints."""
        self._last = [p for p in checkpoint_paths if os.path.exists(p)]


def _write_state(directory: str, latest: str, kept: list, name: str) -> None:
    def rel(p):
        p = os.path.abspath(p)
        return os.path.relpath(p, directory) if os.path.dirname(p) == directory else p

    state = {
        "model_checkpoint_path": rel(latest),
        "all_model_checkpoint_paths": [rel(p) for p in kept],
    }
    _ckpt.write_file(os.path.join(directory, name), json.dumps(state, indent=1).encode())


def get_checkpoint_state(checkpoint_dir: str, latest_filename: str | None = None):
    """The directory's checkpoint state (dict), or None if it has none or it is unreadable."""
    path = os.path.join(os.fspath(checkpoint_dir), latest_filename or STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("model_checkpoint_path"), str):
        return None
    return state


def latest_checkpoint(checkpoint_dir: str, latest_filename: str | None = None) -> str | None:
    """Path of the most recent checkpoint saved in ``checkpoint_dir``, or None."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None:
        return None
    path = state["model_checkpoint_path"]
    if not os.path.isabs(path):
        path = os.path.join(os.fspath(checkpoint_dir), path)
    return path if os.path.isfile(path) else None


def checkpoint_exists(path: str) -> bool:
    return os.path.isfile(os.fspath(path))


def list_variables(path: str) -> list[tuple[str, tuple]]:
    """``[(name, shape)]`` of the arrays in the checkpoint at ``path``."""
    arrays, _ = _ckpt.read_file(os.fspath(path))
    return [(k, tuple(a.shape)) for k, a in sorted(arrays.items())]


def load_checkpoint(path: str) -> dict:
    """name -> numpy array of every array in the checkpoint at ``path``."""
    arrays, _ = _ckpt.read_file(os.fspath(path))
    return arrays
