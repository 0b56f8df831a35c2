"""Split one rendered llvmlite module into several IR texts that LLVM compiles in parallel.

LLVM optimisation and code generation are most of a cold compile and each module compiles on
one core. The functions with loops (kernels and their outlined loops; everything else is
``optnone`` glue, see irutil.mark_cold) do not depend on each other, so they are dealt over
``parts`` modules, balanced by instruction count; the first module also holds the glue and
the constants. Every function that another module may call becomes external (the modules
are linked into one engine, see jit.LoadedObject) and is declared in the other modules;
helpers that are inlined where used (the ``alwaysinline`` math polynomials) or tiny
(``gc.ipow``) are copied into every module instead and stay internal.

Before that, kernels whose functions are identical but for their names (e.g. the bias
updates of two layers of one width) are compiled once: the entry point calls the first one
for both (``dedup_kernels``).
"""

from __future__ import annotations

from llvmlite import ir

#: compile cost of one instruction of an ``optnone`` function relative to one of a function
#: that goes through O3 (measured on the W3 step: ~0.02 vs ~0.17 ms per instruction)
GLUE_COST = 1 / 8

#: fixed compile cost of a kernel besides its instructions (per-function analyses and
#: passes; fitted on the W3 and W6 kernels compiled one by one: ~3 ms of a ~12 ms average)
KERNEL_COST = 25

#: a module is only split when its estimated cost (instructions of the functions with loops,
#: helpers inlined, plus GLUE_COST per glue instruction) reaches this (the W3 step: ~1600,
#: ~0.27 s of LLVM time): below, a thread start and the per-module fixed work cost more
#: than they save
MIN_SPLIT_COST = 500


def _size(fn: ir.Function) -> int:
    return sum(len(b.instructions) for b in fn.blocks)


def _is_helper(fn: ir.Function) -> bool:
    """Internal support functions copied into each module: the inlined math polynomials and
    integer power (called from loops)."""
    return "alwaysinline" in fn.attributes or fn.name.startswith("gc.ipow.")


def _cost(fn: ir.Function, helper_sizes: dict) -> float:
    """Estimated compile cost: instructions after inlining the helpers, a fraction of that
    for optnone glue."""
    if "optnone" in fn.attributes:
        return _size(fn) * GLUE_COST
    n = 0
    for b in fn.blocks:
        for ins in b.instructions:
            n += 1
            callee = getattr(ins, "callee", None)
            n += helper_sizes.get(getattr(callee, "name", None), 0)
    return n


def _group(name: str) -> str:
    """Kernel ``kN``'s functions (kN, kN.parJ, kN.parJ.body) stay together; the entry point
    and shared glue (``gc.*``) form group ''."""
    head = name.split(".", 1)[0]
    return head if head[:1] == "k" and head[1:].isdigit() else ""


def _declaration(fn: ir.Function) -> str:
    args = ", ".join(str(a.type) for a in fn.args)
    return f"declare {fn.ftype.return_type} {fn.get_reference()}({args})"


def _kernels(module: ir.Module) -> dict:
    """Kernel group (``kN``) -> its functions, in the order they were created."""
    groups: dict = {}
    for g in module.globals.values():
        if isinstance(g, ir.Function) and g.blocks and _group(g.name):
            groups.setdefault(_group(g.name), []).append(g)
    return groups


def dedup_kernels(module: ir.Module) -> dict:
    """Drop every kernel whose functions are those of an earlier kernel but for their names
    (the kernel function ``kN.<name>`` prefixes all of them) and let the entry point call
    the earlier one instead: a kernel function computes the same thing on whatever buffers
    it is given. Returns the IR text of the kernel functions kept (printed on the way)."""
    texts: dict = {}
    first: dict = {}  # normalised text of a kernel's functions -> its kernel function
    same: dict = {}  # dropped kernel function -> the one the entry point calls instead
    for fns in _kernels(module).values():
        main = min(fns, key=lambda f: len(f.name))  # kN.<name>; the others extend it
        own = {f.name: str(f) for f in fns}
        key = "\n".join(own.values()).replace(f'"{main.name}', '"K')
        if key in first:
            same[main.name] = first[key]
            for f in fns:
                del module.globals[f.name]
        else:
            first[key] = main
            texts.update(own)
    entry = module.globals.get("gc_entry")
    if same and entry is not None:
        for block in entry.blocks:
            for ins in block.instructions:
                callee = getattr(ins, "callee", None)
                if isinstance(ins, ir.CallInstr) and callee.name in same:
                    ins.replace_callee(same[callee.name])
    return texts


def split_module(module: ir.Module, parts: int) -> list[str]:
    """IR texts of up to ``parts`` modules that together define what ``module`` defines
    (one when splitting would not pay), identical kernels compiled once (dedup_kernels).
    ``module`` is changed (linkages, duplicate kernels dropped)."""
    defined = [g for g in module.globals.values() if isinstance(g, ir.Function) and g.blocks]
    helpers = {f.name: _size(f) for f in defined if _is_helper(f)}
    costs: dict = {}
    for f in defined:
        if f.name not in helpers:
            costs[_group(f.name)] = costs.get(_group(f.name), 0.0) + _cost(f, helpers)
    for g in costs:
        costs[g] += KERNEL_COST if g else 0.0
    split = parts >= 2 and len(costs) >= 2 and sum(costs.values()) >= MIN_SPLIT_COST
    if split:
        for f in defined:
            if f.name not in helpers:
                f.linkage = ""  # callable from the other modules
    printed = dedup_kernels(module)
    home = {"": 0}
    if split:  # the costliest kernel first onto the cheapest module; shared glue in 0
        load = [0.0] * parts
        load[0] = costs.pop("", 0.0)
        kept = set(_kernels(module))
        for g in sorted(kept, key=lambda g: -costs[g]):
            i = load.index(min(load))
            home[g] = i
            load[i] += costs[g]
    used = sorted(set(home.values()))
    index = {i: k for k, i in enumerate(used)}
    header = [
        f'; ModuleID = "{module.name}"',
        f'target triple = "{module.triple}"',
        f'target datalayout = "{module.data_layout}"',
        "",
    ] + [t.get_declaration() for t in module.get_identified_types().values()]
    bodies = [list(header) for _ in used]
    for g in module.globals.values():
        text = printed.get(g.name) or str(g)
        if isinstance(g, ir.Function) and g.blocks and g.name not in helpers:
            mine = index[home.get(_group(g.name), 0)]
            if len(bodies) == 1:
                bodies[0].append(text)
                continue
            decl = _declaration(g)
            for k, body in enumerate(bodies):
                body.append(text if k == mine else decl)
        elif isinstance(g, ir.GlobalVariable):
            bodies[0].append(text)  # constants: only the entry point (module 0) uses them
        else:  # external declarations and the helpers: everywhere
            for body in bodies:
                body.append(text)
    meta = module._get_metadata_lines()
    return ["\n".join(body + meta) for body in bodies]
