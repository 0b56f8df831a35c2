"""What the generated C of one exported program is built from: the error codes the library
returns (the header documents them, the wrapper returns them) and ``LibrarySpec``, the
program's buffers, slots and runtime dims indexed the way both generators need them."""

from __future__ import annotations

from ..errors import UnimplementedError

#: error codes (the header repeats them); a failing shape check i returns CHECK_BASE - i,
#: a raised status slot s (CheckNumerics, index out of range) returns STATUS_BASE - s
ERRORS = {
    "NULL": (-1, "a required pointer (inputs, dims, outputs or one of their entries) is NULL"),
    "NEGATIVE_DIM": (-2, "a runtime dim is negative"),
    "SHAPE": (-3, "the inputs' sizes are inconsistent with each other"),
    "TOO_LARGE": (-4, "a buffer size overflows 64 bits"),
    "NOMEM": (-5, "out of memory"),
    "BAD_INDEX": (-6, "output index out of range"),
    "BAD_ARGUMENT": (-7, "invalid argument"),
    "CPU": (-8, "this CPU lacks an instruction set extension the library's code uses"),
}

CHECK_BASE = -100
STATUS_BASE = -1000


class LibrarySpec:
    """One program as the C generators see it: inputs, outputs, buffers and their indices, the
    slots (storage roots) and their members, the user dims and the outputs written in place."""

    def __init__(self, name, ins, outs, kp, layout, var_offsets, written_roots):
        self.name, self.ins, self.outs, self.kp, self.layout = name, ins, outs, kp, layout
        self.var_offsets = var_offsets
        self.written = written_roots
        self.cpu_features: list = []  # checked before the code runs (required_cpu_features)
        self.dim_index = {d: i for i, d in enumerate(layout.dims)}
        self.bufs = list(kp.buffers)
        self.buf_index = {b: i for i, b in enumerate(self.bufs)}
        self.members: dict = {}
        for b, r in layout.root.items():
            self.members.setdefault(r, []).append(b)
        # user dims: the None axes of the inputs, in order
        self.user_dims = [(k, ax) for k, (_, t) in enumerate(ins)
                          for ax, d in enumerate(t.shape) if d is None]  # fmt: skip
        for root in layout.slots:
            b = kp.buffers[root]
            if b.kind == "input" and self.members[root] != [root]:
                raise UnimplementedError(f"export_c: input buffer {root} shares its storage")
        counts = {}
        for o in kp.outputs:
            counts[o] = counts.get(o, 0) + 1
        self.direct = {
            o for o in kp.outputs
            if kp.buffers[o].kind == "output" and layout.root[o] == o
            and self.members[o] == [o] and counts[o] == 1
        }  # fmt: skip
