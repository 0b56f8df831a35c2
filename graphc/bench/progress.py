"""A progress bar on stderr: redrawn in place on a terminal, one line a step otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """``note(label)`` says what runs now; ``advance(n)`` counts finished steps."""

    def __init__(self, total: int, enabled: bool = True, stream=None, width: int = 24):
        self.total = max(1, total)
        self.done = 0
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._label = ""

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        line = (
            f"[{bar}] {self.done}/{self.total} {time.perf_counter() - self.t0:6.1f}s {self._label}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + line[:160])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, label: str) -> None:
        self._label = label
        self._draw()

    def advance(self, n: int = 1, label: str | None = None) -> None:
        self.done = min(self.total, self.done + n)
        if label is not None:
            self._label = label
            self._draw()

    def finish(self) -> None:
        if not self.enabled:
            return
        self.done = self.total
        self._label = "done"
        self._draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
