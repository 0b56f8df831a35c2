"""The body Programs a control-flow node compiles, prepared alike for the cpu and cuda
targets (each backend's ``control.py`` compiles and runs them):

* a loop body without its history outputs when nothing reads them
  (``While.body_without_history``);
* the body computing only what is read (``While.body_for_needed``): unread stacked outputs
  and dead loop variables pass an input through, DCE drops their work;
* work that is the same at every iteration moved into a prologue run once per run
  (``loop_invariant.py``);
* the bodies with the sizes the loop's inputs share (``body_dims.py``), and the plain
  bodies for a run whose sizes do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...executable import KernelInfo
from ...passes.dce import dce
from ...passes.narrow import narrow_products
from ...program import Program
from .body_dims import share_dims
from .loop_invariant import hoist


@dataclass
class Bodies:
    """What ``prepare`` made of a control-flow node's bodies."""

    programs: dict  # attr -> the body to compile (with shared dims where they apply)
    plain: dict  # attr -> the body without shared dims (compiled if a run needs it)
    shared: object  # body_dims' shared dims (checked per run: ``holds``), or None
    history: bool  # False: the loop body was made without its history outputs
    dead: frozenset  # loop variables the body passes through (nothing reads them)
    prologue: Program | None  # the loop-invariant work, run once per run (or None)


def prepare(node, op_def, needed, in_dims=None) -> Bodies:
    """The bodies of control-flow ``node`` (its OpDef ``op_def``) whose outputs ``needed``
    are read, ``in_dims`` the symbolic dims of its inputs (for the shared sizes)."""
    programs = op_def.programs(node.attrs)
    lean = getattr(op_def, "body_without_history", None)
    lean = lean(node.attrs, needed) if lean is not None else None
    if lean is not None:
        programs["body"] = lean
    prune = getattr(op_def, "body_for_needed", None)
    dead = frozenset()
    if prune is not None:
        programs["body"], dead = prune(node.attrs, programs["body"], needed)
        programs["body"] = dce(narrow_products(programs["body"]))
    prologue, shared = None, None
    if op_def.repeats_body:
        a = node.attrs
        first_cap = a["n_vars"] + a["n_sliced"]
        hoisted = hoist(programs["body"], first_cap, first_cap + a["n_caps"])
        if hoisted is not None:
            prologue, programs["body"] = hoisted
        shared = share_dims(node.attrs, programs, in_dims)
    compiled = programs if shared is None else shared.programs
    return Bodies(compiled, programs, shared, lean is None, dead, prologue)


def body_kernels(node, attr: str, exe) -> list:
    """The kernels of body ``attr``'s executable ``exe``, named under the node."""
    return [KernelInfo(f"{node.name}/{attr}/{k.name}", k.ops, k.op_types) for k in exe.kernels]
