"""BytePipe: an async producer, a consumer thread, bounded memory, failures both ways."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import pytest

from registry.server.storage.pipe import BytePipe, PipeClosedError


def _consume(pipe: BytePipe, out: list[bytes], *, size: int = -1, delay: float = 0.0) -> None:
    while True:
        piece = pipe.read(size)
        if not piece:
            return
        out.append(piece)
        if delay:
            time.sleep(delay)


def test_pieces_arrive_whole_in_order_and_the_tap_sees_exactly_them() -> None:
    seen = hashlib.sha256()
    pipe = BytePipe(tap=seen.update)
    pieces = [bytes([i]) * (1000 + i) for i in range(50)]
    out: list[bytes] = []
    reader = threading.Thread(target=_consume, args=(pipe, out))
    reader.start()

    async def produce() -> None:
        for piece in pieces:
            await pipe.put(piece)
        pipe.close()

    asyncio.run(produce())
    reader.join(5)
    assert out == pieces
    assert all(a is b for a, b in zip(out, pieces, strict=True))  # handed over without a copy
    assert seen.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert pipe.tell() == sum(map(len, pieces))


def test_read_never_returns_more_than_asked() -> None:
    pipe = BytePipe()
    out: list[bytes] = []

    async def produce() -> None:
        await pipe.put(b"abcdefghij")
        pipe.close()

    asyncio.run(produce())
    _consume(pipe, out, size=3)
    assert out == [b"abc", b"def", b"ghi", b"j"]


def test_the_producer_waits_while_the_consumer_is_max_bytes_behind() -> None:
    pipe = BytePipe(max_bytes=10)
    unread: list[int] = []

    async def produce() -> None:
        for _ in range(20):
            await pipe.put(b"x" * 4)
            unread.append(pipe._buffered)
        pipe.close()

    out: list[bytes] = []
    reader = threading.Thread(target=_consume, args=(pipe, out), kwargs={"delay": 0.005})
    reader.start()
    asyncio.run(asyncio.wait_for(produce(), 10))
    reader.join(5)
    assert b"".join(out) == b"x" * 80
    assert max(unread) <= 10 + 4  # max_bytes plus one piece, whatever the consumer's pace


def test_a_full_pipe_without_a_reader_holds_the_producer() -> None:
    pipe = BytePipe(max_bytes=4)

    async def produce() -> None:
        await pipe.put(b"1234")
        await pipe.put(b"5")

    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(produce(), 0.2))


def test_a_producer_error_reaches_the_consumer_after_the_queued_pieces() -> None:
    pipe = BytePipe()

    async def produce() -> None:
        await pipe.put(b"abc")
        pipe.fail(RuntimeError("client went away"))

    asyncio.run(produce())
    assert pipe.read() == b"abc"
    with pytest.raises(RuntimeError, match="client went away"):
        pipe.read()
    assert pipe.read() == b""


def test_a_consumer_that_gives_up_releases_a_waiting_producer() -> None:
    pipe = BytePipe(max_bytes=4)

    async def produce() -> None:
        await pipe.put(b"1234")  # fills the pipe
        threading.Timer(0.05, pipe.abandon).start()
        with pytest.raises(PipeClosedError):
            await pipe.put(b"5678")  # waits for space, then learns the consumer is gone
        with pytest.raises(PipeClosedError):
            await pipe.put(b"9")

    asyncio.run(asyncio.wait_for(produce(), 5))


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        BytePipe(max_bytes=0)
