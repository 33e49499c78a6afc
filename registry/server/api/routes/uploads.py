"""Chunked, resumable blob uploads (OCI-distribution style)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from attest.digests import Digest
from registry.errors import InvalidRequestError
from registry.names import validate_name
from registry.server.api.deps import KnownQuery, PrincipalDep, Services, ServicesDep
from registry.server.api.routes.versions import NamespacePath
from registry.server.services import Action, Principal
from registry.server.services.uploads import ChunkTicket, UploadService, UploadStatus
from registry.server.storage.hashstate import ResumableSha256
from registry.server.storage.pipe import BytePipe, PipeClosedError
from registry.wire import (
    BATCH_BLOB_MAX_BYTES,
    BATCH_MAX_BLOBS,
    BATCH_MAX_BYTES,
    BATCH_MEDIA_TYPE,
    BlobBatchPublic,
    BlobPublic,
    UploadIn,
    UploadPublic,
)

T = TypeVar("T")
router = APIRouter(tags=["uploads"], dependencies=[KnownQuery])

_RANGE_PATTERN = r"^(?:bytes )?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$"
_RANGE = re.compile(_RANGE_PATTERN)

#: Framing, not an API parameter: the HTTP client sets it from the body (a value a client picked
#: would not frame the request it sends), so the spec does not offer it as one.
ContentLength = Annotated[int | None, Header(include_in_schema=False)]
#: Where a chunk goes; PATCH requires it, a finishing PUT may leave it out.
_RANGE_DOC = "bytes START-END[/TOTAL] of this chunk."
ContentRange = Annotated[str | None, Header(pattern=_RANGE_PATTERN, description=_RANGE_DOC)]
ChunkRange = Annotated[str, Header(pattern=_RANGE_PATTERN, description=_RANGE_DOC)]


def _public(upload: UploadStatus, services: Services) -> UploadPublic:
    settings = services.settings
    return UploadPublic(
        **dataclasses.asdict(upload),
        min_chunk_bytes=settings.min_chunk_bytes,
        max_chunk_bytes=settings.max_chunk_bytes,
    )


@router.post(
    "/v1/namespaces/{namespace}/uploads",
    operation_id="start_upload",
    response_model=UploadPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": UploadPublic, "description": "The namespace holds this blob."}},
)
def start_upload(
    namespace: NamespacePath,
    body: UploadIn,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
) -> UploadPublic:
    """Open an upload session for one blob of declared digest and size."""
    validate_name(namespace, what="namespace")
    upload = services.uploads.start(principal, namespace, Digest.parse(body.digest), body.size)
    if upload.exists:
        response.status_code = status.HTTP_200_OK
    return _public(upload, services)


@router.get("/v1/uploads/{upload_id}", operation_id="get_upload", response_model=UploadPublic)
def get_upload(upload_id: str, principal: PrincipalDep, services: ServicesDep) -> UploadPublic:
    """Where an upload stands: resume by sending the chunk that starts at ``offset``."""
    return _public(services.uploads.status(principal, upload_id), services)


async def _receive_chunk(
    request: Request,
    services: Services,
    principal: Principal,
    upload_id: str,
    start: int,
    length: int,
    store_with: Callable[[ChunkTicket, BytePipe, ResumableSha256], T],
) -> T:
    """Stream a chunk body into the store while hashing it; return what ``store_with`` (run in
    a worker thread with the chunk's ticket, the body and the hasher that sees every byte it
    reads) returns.

    The body flows through a bounded pipe to the store in a worker thread, so the store (S3)
    receives the chunk while it is still arriving; memory is fixed whatever the chunk size.
    """
    async with _upload_slot(request, principal):
        ticket = await run_in_threadpool(
            services.uploads.begin_chunk, principal, upload_id, start, length
        )
        hasher = ResumableSha256.from_state(ticket.hash_state)
        pipe = BytePipe(tap=hasher.update)
        store = asyncio.ensure_future(_streaming(request, _store, store_with, ticket, pipe,
                                                 hasher))  # fmt: skip
        return await _pipe_body(request, pipe, store, length, "chunk")


async def _pipe_body(
    request: Request, pipe: BytePipe, store: asyncio.Future[T], length: int, what: str
) -> T:
    """Feed the request body into ``pipe`` for ``store`` (reading it in a worker thread) and
    return what ``store`` returns; the body must be exactly ``length`` bytes. A failure on
    either side stops the other: the store's error wins over the body's."""
    received = 0
    pieces = request.stream().__aiter__()
    try:
        while True:
            try:
                piece = await asyncio.wait_for(pieces.__anext__(), BODY_IDLE_SECONDS)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise InvalidRequestError(
                    f"no byte of the {what} body arrived for {BODY_IDLE_SECONDS:g} s after "
                    f"{received} of {length}; the {what} was dropped",
                    expected=length,
                    got=received,
                ) from None
            if store.done():
                break  # the store failed; its error is raised below
            received += len(piece)
            if received > length:
                raise InvalidRequestError(f"{what} body is longer than its declared {length} bytes")
            await pipe.put(piece)
        if not store.done():
            if received != length:
                raise InvalidRequestError(
                    f"{what} body ended after {received} of its declared {length} bytes",
                    expected=length,
                    got=received,
                )
            pipe.close()
    except ClientDisconnect:
        # The client went away mid-body (killed, network cut): what it sent is dropped and an
        # upload session stays where it was, for the client to resume. Nobody reads this answer.
        pipe.fail(InvalidRequestError("the client disconnected mid-body"))
        with contextlib.suppress(BaseException):
            await store
        raise InvalidRequestError(
            f"the client disconnected after {received} of {length} bytes; the {what} was dropped"
        ) from None
    except BaseException as exc:
        pipe.fail(exc if isinstance(exc, Exception) else InvalidRequestError("upload aborted"))
        with contextlib.suppress(BaseException):
            await store
        if isinstance(exc, PipeClosedError):
            return await store
        raise
    return await store


#: Request bodies that arrive as they are read (chunks, whole blobs, batches) are admitted a
#: few at a time: at most UPLOAD_STREAMS at once, at most UPLOAD_STREAMS_PER_TOKEN of them from
#: one token; the others wait, unread (so waiting costs no memory). Each admitted one reads in
#: a worker thread of a pool of its own, never the default pool of 40 the rest of the API
#: uses: slow uploads can only make other uploads wait, one token's only its own beyond its
#: share. A body that sends nothing for BODY_IDLE_SECONDS is dropped.
UPLOAD_STREAMS = 16
UPLOAD_STREAMS_PER_TOKEN = 8
BODY_IDLE_SECONDS = 60.0


@contextlib.asynccontextmanager
async def _upload_slot(request: Request, principal: Principal) -> AsyncIterator[None]:
    state = request.app.state
    if getattr(state, "upload_streams", None) is None:  # made in the app's loop, on first use
        state.upload_streams = anyio.CapacityLimiter(UPLOAD_STREAMS)
        state.upload_threads = anyio.CapacityLimiter(UPLOAD_STREAMS)
        state.upload_streams_by_token = {}
    by_token: dict[str, anyio.CapacityLimiter] = state.upload_streams_by_token
    key = principal.token_id or principal.name
    mine = by_token.setdefault(key, anyio.CapacityLimiter(UPLOAD_STREAMS_PER_TOKEN))
    try:
        async with mine, state.upload_streams:
            yield
    finally:
        if mine.borrowed_tokens == 0 and not mine.statistics().tasks_waiting:
            by_token.pop(key, None)


async def _streaming(request: Request, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread of the upload pool (inside :func:`_upload_slot`)."""
    limiter = request.app.state.upload_threads
    return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=limiter)


def _store(
    store_with: Callable[[ChunkTicket, BytePipe, ResumableSha256], T],
    ticket: ChunkTicket,
    pipe: BytePipe,
    hasher: ResumableSha256,
) -> T:
    try:
        return store_with(ticket, pipe, hasher)
    finally:
        pipe.abandon()


def _append(uploads: UploadService) -> Callable[[ChunkTicket, BytePipe, ResumableSha256], int]:
    """Store a chunk as the next part; the new offset."""
    return lambda ticket, pipe, hasher: uploads.commit_chunk(ticket, pipe, hasher.state)


def _whole(
    uploads: UploadService, principal: Principal
) -> Callable[[ChunkTicket, BytePipe, ResumableSha256], tuple[str, int]]:
    """Store a chunk that is the whole blob in one write; its digest and size."""
    return lambda ticket, pipe, hasher: uploads.finish_whole(
        principal, ticket, pipe, hasher.hexdigest, hasher.state
    )


def _chunk_bounds(
    content_length: int, content_range: str | None, offset_hint: int | None
) -> tuple[int, int]:
    """``(start, length)`` of a chunk; without Content-Range it starts at ``offset_hint``."""
    if content_range is None:
        if offset_hint is None:
            raise InvalidRequestError("chunks must carry 'Content-Range: bytes START-END'")
        return offset_hint, content_length
    match = _RANGE.match(content_range.strip())
    if match is None:
        raise InvalidRequestError(
            f"invalid Content-Range {content_range[:60]!r}: expected 'bytes START-END'"
        )
    start, end = int(match.group(1)), int(match.group(2))
    if end < start or end - start + 1 != content_length:
        raise InvalidRequestError(
            f"Content-Range {start}-{end} does not match Content-Length {content_length}"
        )
    return start, content_length


def _require_length(content_length: int | None) -> int:
    if content_length is None:
        raise InvalidRequestError("chunks must be sent with a Content-Length header")
    return content_length


@router.patch(
    "/v1/uploads/{upload_id}",
    operation_id="upload_chunk",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadPublic,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def upload_chunk(
    upload_id: str,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    content_range: ChunkRange,
    content_length: ContentLength = None,
) -> UploadPublic:
    """Append one chunk. ``Content-Range: bytes START-END`` must start at the current offset;
    every chunk but the last must be at least ``min_chunk_bytes``."""
    length = _require_length(content_length)
    start, length = _chunk_bounds(length, content_range, None)
    await _receive_chunk(
        request, services, principal, upload_id, start, length, _append(services.uploads)
    )
    upload = await run_in_threadpool(services.uploads.status, principal, upload_id)
    return _public(upload, services)


@router.put(
    "/v1/uploads/{upload_id}",
    operation_id="finish_upload",
    status_code=status.HTTP_201_CREATED,
    response_model=BlobPublic,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": False}},
)
async def finish_upload(
    upload_id: str,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    content_length: ContentLength = None,
    content_range: ContentRange = None,
) -> BlobPublic:
    """Finish an upload, optionally with its last chunk in the body. The blob becomes visible
    only if every declared byte arrived and they hash to the declared digest; otherwise 400
    ``digest-mismatch`` and the upload is discarded. A body that is the whole blob goes to the
    store in one write where the store allows it (no parts to assemble)."""
    if content_length:
        status_now = await run_in_threadpool(services.uploads.status, principal, upload_id)
        start, length = _chunk_bounds(content_length, content_range, status_now.offset)
        if services.uploads.takes_whole(start, length, status_now.size):
            digest, size = await _receive_chunk(
                request, services, principal, upload_id, start, length,
                _whole(services.uploads, principal),
            )  # fmt: skip
            return BlobPublic(digest=digest, size=size)
        await _receive_chunk(
            request, services, principal, upload_id, start, length, _append(services.uploads)
        )
    digest, size = await run_in_threadpool(services.uploads.finish, principal, upload_id)
    return BlobPublic(digest=digest, size=size)


@router.delete(
    "/v1/uploads/{upload_id}", operation_id="cancel_upload", status_code=status.HTTP_204_NO_CONTENT
)
def cancel_upload(upload_id: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Abandon an upload; its staged parts are dropped."""
    services.uploads.cancel(principal, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _batch(
    uploads: UploadService, principal: Principal, namespace: str, pipe: BytePipe, length: int
) -> list[tuple[Digest, int]]:
    try:
        return uploads.put_batch(principal, namespace, pipe, length)
    finally:
        pipe.abandon()


@router.post(
    "/v1/namespaces/{namespace}/blobs",
    operation_id="upload_blobs",
    status_code=status.HTTP_201_CREATED,
    response_model=BlobBatchPublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": (
                'One line of JSON, {"blobs": [{"digest": "sha256:<hex>", "size": N}, ...]}, '
                "and a newline, then the blobs' bytes back to back in that order. At most "
                f"{BATCH_MAX_BLOBS} blobs of at most {BATCH_BLOB_MAX_BYTES} bytes each, "
                f"{BATCH_MAX_BYTES} bytes in all."
            ),
            "content": {BATCH_MEDIA_TYPE: {}},
        }
    },
)
async def upload_blobs(
    namespace: NamespacePath,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    content_length: ContentLength = None,
) -> BlobBatchPublic:
    """Upload many small blobs in one request: each is hashed and checked against its declared
    digest before it is stored, and the namespace holds them all only once every one was
    stored (a mismatch records none: 400 ``digest-mismatch``). Larger files use upload
    sessions."""
    validate_name(namespace, what="namespace")
    length = _require_length(content_length)
    principal.require(Action.PUSH, namespace)
    async with _upload_slot(request, principal):
        pipe = BytePipe(max_bytes=BATCH_BLOB_MAX_BYTES)
        store = asyncio.ensure_future(
            _streaming(request, _batch, services.uploads, principal, namespace, pipe, length)
        )
        stored = await _pipe_body(request, pipe, store, length, "batch")
    return BlobBatchPublic(blobs=[BlobPublic(digest=d, size=size) for d, size in stored])
