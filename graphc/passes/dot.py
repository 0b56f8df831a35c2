"""DOT (Graphviz) drawing of a Program, fusion groups as clusters."""

from __future__ import annotations


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def program_to_dot(program, kernels=()) -> str:
    """DOT text: one node per Program node, one cluster per multi-op kernel."""
    by_name = {}
    for n in program.nodes:
        by_name.setdefault(n.name, n.id)
    lines = ["digraph graphc {", "  rankdir=TB;", "  node [shape=box, fontsize=10];"]
    clustered = set()
    for i, k in enumerate(kernels):
        ids = [by_name[o] for o in k.ops if o in by_name]
        if len(ids) < 2:
            continue
        lines.append(f"  subgraph cluster_{i} {{ label={_quote(k.name)}; style=filled; "
                     "color=lightgrey;")  # fmt: skip
        for nid in ids:
            clustered.add(nid)
            lines.append(f"    n{nid};")
        lines.append("  }")
    for n in program.nodes:
        label = f"{n.op}\\n{n.name}" if n.name else n.op
        lines.append(f"  n{n.id} [label={_quote(label)}];")
    for n in program.nodes:
        for src, _k in n.inputs:
            lines.append(f"  n{src} -> n{n.id};")
        for c in n.control:
            lines.append(f"  n{c} -> n{n.id} [style=dashed];")
    lines.append("}")
    return "\n".join(lines)
