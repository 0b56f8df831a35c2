"""Split one rendered llvmlite module into several IR texts that LLVM compiles in parallel.

LLVM optimisation and code generation are most of a cold compile and each module compiles on
one core. The functions with loops (kernels and their outlined loops; everything else is
``optnone`` glue, see render.mark_cold) do not depend on each other, so they are dealt over
``parts`` modules, balanced by instruction count; the first module also holds the glue and
the constants. Every function that another module may call becomes external (the modules
are linked into one engine, see jit.LoadedObject) and is declared in the other modules;
helpers that are inlined where used (the ``alwaysinline`` math polynomials) or tiny
(``gc.ipow``) are copied into every module instead and stay internal.
"""

from __future__ import annotations

from llvmlite import ir

#: compile cost of one instruction of an ``optnone`` function relative to one of a function
#: that goes through O3 (measured on the W3 step: ~0.02 vs ~0.17 ms per instruction)
GLUE_COST = 1 / 8

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


def split_module(module: ir.Module, parts: int) -> list[str]:
    """IR texts of up to ``parts`` modules that together define what ``module`` defines
    (``[str(module)]`` when splitting would not pay). ``module`` is changed (linkages)."""
    defined = [g for g in module.globals.values() if isinstance(g, ir.Function) and g.blocks]
    helpers = {f.name: _size(f) for f in defined if _is_helper(f)}
    groups: dict = {}
    for f in defined:
        if f.name not in helpers:
            groups[_group(f.name)] = groups.get(_group(f.name), 0.0) + _cost(f, helpers)
    if parts < 2 or len(groups) < 2 or sum(groups.values()) < MIN_SPLIT_COST:
        return [str(module)]
    # the costliest group first onto the cheapest module; the shared glue in module 0
    load = [0.0] * parts
    home = {"": 0}
    load[0] = groups.pop("", 0.0)
    for g in sorted(groups, key=lambda g: -groups[g]):
        i = load.index(min(load))
        home[g] = i
        load[i] += groups[g]
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
        if isinstance(g, ir.Function) and g.blocks and g.name not in helpers:
            g.linkage = ""  # callable from the other modules
            mine = index[home[_group(g.name)]]
            decl = _declaration(g)
            for k, body in enumerate(bodies):
                body.append(str(g) if k == mine else decl)
        elif isinstance(g, ir.GlobalVariable):
            bodies[0].append(str(g))  # constants: only the entry point (module 0) uses them
        else:  # external declarations and the helpers: everywhere
            text = str(g)
            for body in bodies:
                body.append(text)
    meta = module._get_metadata_lines()
    return ["\n".join(body + meta) for body in bodies]
