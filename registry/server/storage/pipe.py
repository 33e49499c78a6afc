"""A bounded byte pipe from an async producer (the request body) to a blocking consumer (a store).

The upload route awaits :meth:`BytePipe.put` for each piece of the request body as the server
receives it; the blob store reads the pipe as a file object in a worker thread, so a chunk streams
to S3 while it is still arriving, with a fixed amount of memory in between (``max_bytes`` plus one
piece). Pieces are handed over as they are: no joining, no copying, no thread hop per piece; the
event loop only waits when the consumer is ``max_bytes`` behind.

``tap`` sees every byte exactly as the consumer takes it, in order (the route hashes there), so
the digest covers precisely the bytes that went to the store.

Either side can fail the other: a producer error surfaces in the consumer's ``read()``, and a
consumer that gives up (:meth:`abandon`) makes the producer's pending and later ``put()`` raise
:class:`PipeClosedError` instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable

_EOF = object()


class PipeClosedError(Exception):
    """The consumer stopped reading; the producer must stop too."""


class BytePipe:
    """Producer side (event loop): :meth:`put`, :meth:`close`, :meth:`fail`.
    Consumer side (one thread): :meth:`read`, :meth:`read1`, :meth:`abandon`."""

    def __init__(
        self,
        *,
        max_bytes: int = 8 * 1024 * 1024,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self._max = max_bytes
        self._tap = tap
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._items: collections.deque[object] = collections.deque()
        self._buffered = 0
        self._space: asyncio.Future[None] | None = None  # the producer waits on it when full
        self._loop: asyncio.AbstractEventLoop | None = None
        self._current = b""
        self._offset = 0
        self._done = False
        self._consumer_gone = False
        self.consumed = 0

    # -- producer (event loop) --------------------------------------------------------------

    async def put(self, data: bytes) -> None:
        """Hand a piece to the consumer; waits while ``max_bytes`` or more are unread.

        Raises:
            PipeClosedError: the consumer gave up.
        """
        while True:
            with self._lock:
                if self._consumer_gone:
                    raise PipeClosedError("the consumer stopped reading")
                if self._buffered < self._max:
                    if data:
                        self._items.append(data)
                        self._buffered += len(data)
                        self._readable.notify()
                    return
                self._loop = asyncio.get_running_loop()
                space = self._space = self._loop.create_future()
            await space

    def close(self) -> None:
        """No more data: the consumer's next read past the end returns ``b""``."""
        self._push(_EOF)

    def fail(self, error: BaseException) -> None:
        """Make the consumer's next read raise ``error`` (after the pieces already queued)."""
        self._push(error)

    def _push(self, item: object) -> None:
        with self._lock:
            self._items.append(item)
            self._readable.notify()

    # -- consumer (worker thread) -----------------------------------------------------------

    def abandon(self) -> None:
        """The consumer gives up (it failed or finished): release a waiting producer."""
        with self._lock:
            self._consumer_gone = True
            self._items.clear()
            self._buffered = 0
            self._wake_producer()

    def _wake_producer(self) -> None:
        """Resolve the producer's wait, from the consumer's thread. Call with the lock held."""
        space, self._space = self._space, None
        if space is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, space)

    def _next_piece(self) -> bool:
        """Make a fresh piece current; ``False`` at the end of the stream."""
        with self._readable:
            while not self._items:
                self._readable.wait()
            item = self._items.popleft()
            if isinstance(item, bytes):
                self._buffered -= len(item)
                if self._buffered < self._max:
                    self._wake_producer()
        if item is _EOF:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise item
        assert isinstance(item, bytes)
        self._current, self._offset = item, 0
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        """At most ``size`` bytes (the rest of the current piece when ``size`` < 0), ``b""`` at
        the end. A whole piece is returned as is, without a copy."""
        if self._offset >= len(self._current):
            if self._done or not self._next_piece():
                return b""
        piece = self._current
        if self._offset == 0 and (size < 0 or size >= len(piece)):
            self._offset = len(piece)
        else:
            end = len(piece) if size < 0 else min(len(piece), self._offset + size)
            piece = piece[self._offset : end]
            self._offset = end
        if self._tap is not None:
            self._tap(piece)
        self.consumed += len(piece)
        return piece

    def read1(self, size: int = -1, /) -> bytes:
        """Like :meth:`read`; a store that can take any piece size calls ``read1()``."""
        return self.read(size)

    def tell(self) -> int:
        return self.consumed


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
