"""The two places gc.data uses threads: an order-preserving parallel map and prefetch.

Both are iterators with ``close()``: closing them (or dropping the last reference to them)
stops their threads. An exception raised by the function or the producer surfaces in the
consumer, at the element where it happened, with its own type.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

_ITEM, _END, _ERROR = 0, 1, 2
_POLL_S = 0.05  # how often a blocked producer checks whether its consumer has gone


def close_iterator(it) -> None:
    """Close ``it`` if it has ``close()`` (generators and the iterators of this module)."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


class ParallelMap:
    """``fn`` applied to the elements of ``source`` on ``workers`` threads, in order.

    The consumer thread reads ``source``; at most ``2 * workers`` calls are in flight.
    """

    def __init__(self, source, fn, workers: int):
        self._source = source
        self._fn = fn
        self._depth = 2 * workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="graphc-data-map")
        self._pending: deque = deque()
        self._exhausted = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._pool is None:
            raise StopIteration
        while not self._exhausted and len(self._pending) < self._depth:
            try:
                x = next(self._source)
            except StopIteration:
                self._exhausted = True
                break
            self._pending.append(self._pool.submit(self._fn, x))
        if not self._pending:
            self.close()
            raise StopIteration
        return self._pending.popleft().result()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        pool.shutdown(wait=False, cancel_futures=True)
        close_iterator(self._source)

    def __del__(self):
        self.close()


def _producer(make_source, q: queue.Queue, stop: threading.Event) -> None:
    """Fills ``q`` with the elements of ``make_source()`` until the end or ``stop``."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    source = None
    try:
        source = make_source()
        for x in source:
            if not put((_ITEM, x)):
                return
        put((_END, None))
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        put((_ERROR, exc))
    finally:
        if source is not None:
            close_iterator(source)


class Prefetch:
    """The elements of ``make_source()``, produced ahead by a background thread into a
    queue of ``size`` elements. The thread starts at once (so the first elements are
    ready when asked for) and ends at the source's end, on an error, or on ``close()``."""

    def __init__(self, make_source, size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._done = False
        self.thread = threading.Thread(
            target=_producer,
            args=(make_source, self._queue, self._stop),
            name="graphc-data-prefetch",
            daemon=True,
        )
        self.thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, x = self._queue.get()
        if kind == _ITEM:
            return x
        self._done = True
        self._stop.set()
        if kind == _END:
            raise StopIteration
        raise x

    def close(self) -> None:
        self._done = True
        self._stop.set()

    def __del__(self):
        self._stop.set()
