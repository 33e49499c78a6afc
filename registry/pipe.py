"""A bounded byte pipe from a producer (the request body) to a blocking consumer (a store).

The upload route feeds request-body pieces in; the blob store reads them as a file object in a
worker thread, so a chunk streams to S3 while it is still arriving, with a fixed amount of memory
in between. Either side can fail the other: a producer error surfaces in the consumer's
``read()``, and a dead consumer makes the producer's ``put()`` raise instead of blocking forever.
"""

from __future__ import annotations

import queue

_EOF = object()
_POLL = 0.2


class PipeClosedError(Exception):
    """The consumer stopped reading; the producer must stop too."""


class BytePipe:
    """Producer side: :meth:`put`, :meth:`close`, :meth:`fail`. Consumer side: :meth:`read`."""

    def __init__(self, *, max_pieces: int = 4) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_pieces)
        self._current = memoryview(b"")
        self._done = False
        self._consumer_gone = False
        self.consumed = 0

    # -- producer ---------------------------------------------------------------------------

    def put(self, data: bytes) -> None:
        """Hand a piece to the consumer; blocks while the pipe is full."""
        self._put(data)

    def close(self) -> None:
        """No more data: the consumer's next read past the end returns ``b""``."""
        self._put(_EOF)

    def fail(self, error: BaseException) -> None:
        """Make the consumer's next read raise ``error``."""
        try:
            self._put(error)
        except PipeClosedError:
            pass

    def _put(self, item: object) -> None:
        while True:
            if self._consumer_gone:
                raise PipeClosedError("the consumer stopped reading")
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    # -- consumer ---------------------------------------------------------------------------

    def abandon(self) -> None:
        """The consumer gives up (it failed): release a blocked producer."""
        self._consumer_gone = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._current:
            if self._done:
                return b""
            item = self._queue.get()
            if item is _EOF:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                self._done = True
                raise item
            assert isinstance(item, bytes)
            self._current = memoryview(item)
        take = len(self._current) if size is None or size < 0 else min(size, len(self._current))
        piece = bytes(self._current[:take])
        self._current = self._current[take:]
        self.consumed += take
        return piece

    def tell(self) -> int:
        return self.consumed
