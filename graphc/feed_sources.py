"""Values a run takes from Python sources instead of ``feed_dict``: gc.data iterators.

An iterator's ``get_next()`` tensors are Placeholder ops carrying two private attrs
(names starting with ``_`` stay out of the program text and hash):

- ``SOURCE``: the object the values come from; it has ``take(session)`` (the next
  element's flattened components, validated numpy arrays of the placeholders' dtypes, or
  ``gc.errors.OutOfRangeError``), ``give_back(session, values)`` (put an element back at
  the front, for a run that failed after taking it) and ``release(session)`` (the session
  closes: stop its threads). A source keeps one position per session, as TF does;
- ``COMPONENT``: which of those components this placeholder is.

An op carrying ``RESTART`` (an iterator's initializer, a NoOp) restarts that source
(``restart(session)``) when a run needs it. The Session asks ``plan_for`` once per
(fetches, targets, feeds) signature which sources a run needs; every run of that signature
then takes one element per source (all get_next tensors of one iterator see the same
element) and feeds it. Sources are duck-typed, so this module and the Session import
nothing of gc.data.
"""

from __future__ import annotations

SOURCE = "_graphc_source"
COMPONENT = "_graphc_component"
RESTART = "_graphc_restart"


class SourcePlan:
    """The sources one run signature needs: ``tensors`` are fed, after the user's feeds,
    with the values ``take()`` returns, in that order."""

    __slots__ = ("tensors", "_pulls", "_restarts")

    def __init__(self, pulls: list, restarts: list):
        self._pulls = pulls  # [(source, [component, ...]), ...]
        self._restarts = restarts
        self.tensors = [t for _, comps in pulls for _, t in comps]

    def take(self, owner) -> tuple[list, list]:
        """(values for ``tensors``, what was taken: hand it to ``give_back`` if the run
        fails). Restarts come first, so a run of an initializer and get_next together
        reads the first element."""
        for source in self._restarts:
            source.restart(owner)
        values: list = []
        taken: list = []
        try:
            for source, comps in self._pulls:
                element = source.take(owner)
                taken.append((source, element))
                values.extend(element[c] for c, _ in comps)
        except BaseException:
            self.give_back(owner, taken)
            raise
        return values, taken

    @staticmethod
    def give_back(owner, taken: list) -> None:
        """Return taken elements to their sources (the run that took them failed)."""
        for source, element in reversed(taken):
            source.give_back(owner, element)

    def release(self, owner) -> None:
        """The session ``owner`` closes: its sources stop their threads."""
        for source, _ in self._pulls:
            source.release(owner)
        for source in self._restarts:
            source.release(owner)


def plan_for(fetch_tensors, target_ops, fed) -> SourcePlan | None:
    """The sources a run of these fetches and targets needs, given the fed tensors
    (a walk over the ops they need, stopping at fed tensors); None if there are none."""
    fed = {(t.op, t.value_index) for t in fed}
    seen: set = set()
    stack = [t.op for t in fetch_tensors if (t.op, t.value_index) not in fed] + list(target_ops)
    pulls: dict = {}
    restarts: list = []
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        attrs = op.attrs
        if SOURCE in attrs:
            pulls.setdefault(id(attrs[SOURCE]), (attrs[SOURCE], []))[1].append(
                (attrs[COMPONENT], op.outputs[0])
            )
        if RESTART in attrs and attrs[RESTART] not in restarts:
            restarts.append(attrs[RESTART])
        for t in op.inputs:
            if (t.op, t.value_index) not in fed and t.op not in seen:
                stack.append(t.op)
        stack.extend(c for c in op.control_inputs if c not in seen)
    if not pulls and not restarts:
        return None
    ordered = []
    for source, comps in pulls.values():
        comps.sort(key=lambda ct: ct[0])
        ordered.append((source, comps))
    # a stable order of sources: that of their first placeholder in the graph
    ordered.sort(key=lambda sc: sc[1][0][1].op._id)
    return SourcePlan(ordered, restarts)
