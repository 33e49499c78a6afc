"""A witness (C2SP tlog-witness): ``POST /add-checkpoint`` cosigns a log's checkpoint once it has
verified that the checkpoint is signed by the log's key and extends the last one it cosigned for
that origin; ``modelseal witness serve`` runs it (docs/transparency-log.md, "Witnesses").

The request body is ``old <size>``, up to 63 base64 consistency-proof hashes, a blank line and
the signed checkpoint (:func:`attest.note.parse_add_checkpoint`). Answers, as the spec has them:

* 200 ``text/plain``: the witness's cosignature line (cosignature/v1, timestamped);
* 400: a malformed body, or an old size larger than the checkpoint's;
* 403: the checkpoint is malformed or not signed by the log's key (or dated in the future);
* 404: a log (origin) this witness does not follow;
* 409 ``text/x.tlog.size``: the old size is not the size of the checkpoint this witness last
  cosigned for the origin (the body is that size), or the checkpoint has the same size with
  another root hash (a fork);
* 413: a body over :data:`MAX_BODY`; 422: the consistency proof does not verify.

The newest cosigned checkpoint per origin is kept in ``STATE_DIR/<sha256(origin)>.checkpoint``,
written atomically (temporary file, fsync, rename, fsync of the directory) under one lock, before
the answer is sent: a witness that restarts never cosigns a checkpoint that does not extend one it
cosigned before.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from attest import note, tlog
from attest.atomic import write_atomic
from attest.errors import AttestError

log = logging.getLogger(__name__)

#: The largest add-checkpoint body: a signed note and a 63-hash proof, with room for its lines.
MAX_BODY = note.MAX_NOTE_SIZE + 64 * 46 + 64
SIZE_TYPE = "text/x.tlog.size"


class WitnessRefusal(Exception):
    """An add-checkpoint request refused: the HTTP status, a text, and for 409 the size."""

    def __init__(self, status: int, text: str, size: int | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.size = size


class WitnessStateError(Exception):
    """The state directory holds a checkpoint that does not verify (refuse to start)."""


class Witness:
    """The witness of the logs whose keys it is given (one key per origin)."""

    def __init__(
        self,
        signer: note.NoteSigner,
        logs: Sequence[note.NoteVerifier],
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if signer.verifier.sig_type != note.SIG_COSIGNATURE_V1:
            raise ValueError("a witness cosigns with a cosignature key (type 0x04)")
        self.signer = signer
        self.logs = {v.name: v for v in logs}
        if len(self.logs) != len(logs):
            raise ValueError("two log keys of the same origin")
        self.state_dir = state_dir
        self.clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, note.Checkpoint] = {}
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for origin, verifier in self.logs.items():
            path = self._path(origin)
            if not path.exists():
                continue
            try:
                text = path.read_text(encoding="utf-8")
                signed = note.verify_checkpoint(text, [verifier], origin=origin,
                                                max_future_skew=1 << 62)  # fmt: skip
            except (AttestError, OSError, UnicodeDecodeError) as exc:
                what = f"{path}: the stored checkpoint of {origin}"
                raise WitnessStateError(f"{what}: {exc}") from None
            self._latest[origin] = signed.checkpoint

    def _path(self, origin: str) -> Path:
        return self.state_dir / f"{hashlib.sha256(origin.encode()).hexdigest()}.checkpoint"

    def latest(self, origin: str) -> note.Checkpoint | None:
        return self._latest.get(origin)

    def add_checkpoint(self, body: bytes) -> str:
        """Verify and cosign the request's checkpoint; returns the cosignature line.

        Raises:
            WitnessRefusal: the status and text to answer.
        """
        try:
            old_size, proof, signed = note.parse_add_checkpoint(body)
        except AttestError as exc:
            raise WitnessRefusal(400, f"malformed add-checkpoint request: {exc}") from None
        try:
            text, _signatures = note.parse_note(signed)
            checkpoint = note.Checkpoint.parse(text)
        except AttestError as exc:
            raise WitnessRefusal(403, f"malformed checkpoint: {exc}") from None
        verifier = self.logs.get(checkpoint.origin)
        if verifier is None:
            raise WitnessRefusal(404, f"this witness does not follow the log {checkpoint.origin!r}")
        try:
            note.verify_checkpoint(signed, [verifier], origin=checkpoint.origin,
                                   now=int(self.clock()))  # fmt: skip
        except AttestError as exc:
            raise WitnessRefusal(
                403, f"the checkpoint does not verify with the log's key: {exc}"
            ) from None
        if old_size > checkpoint.size:
            raise WitnessRefusal(
                400, f"old size {old_size} is larger than the checkpoint's size {checkpoint.size}"
            )
        with self._lock:
            latest = self._latest.get(checkpoint.origin)
            have = latest.size if latest is not None else 0
            if old_size != have:
                raise WitnessRefusal(
                    409, f"this witness last cosigned size {have}, not {old_size}", size=have
                )
            if latest is not None and old_size == checkpoint.size:
                if proof or checkpoint.root_hash != latest.root_hash:
                    raise WitnessRefusal(
                        409,
                        f"checkpoint {checkpoint.describe()} has the size of the one this witness "
                        f"cosigned ({latest.describe()}) with another root hash: a fork",
                        size=have,
                    )
            elif latest is not None:
                try:
                    tlog.verify_consistency(
                        old_size, checkpoint.size, latest.root_hash, checkpoint.root_hash, proof
                    )
                except (AttestError, ValueError) as exc:
                    raise WitnessRefusal(
                        422,
                        f"checkpoint {checkpoint.describe()} does not extend the cosigned "
                        f"{latest.describe()}: {exc}",
                    ) from None
            elif proof:
                raise WitnessRefusal(422, "a proof from size 0 is empty")
            self._store(checkpoint.origin, signed)
            self._latest[checkpoint.origin] = checkpoint
            return note.cosign(text, self.signer, timestamp=int(self.clock()))

    def _store(self, origin: str, signed: str) -> None:
        target = self._path(origin)
        write_atomic(target, signed, mode=0o644, sync_directory=True)


async def _read_bounded(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(witness: Witness) -> Starlette:
    """The witness's HTTP API: ``POST /add-checkpoint`` (and ``GET /`` naming its key)."""
    from starlette.concurrency import run_in_threadpool

    async def add_checkpoint(request: Request) -> Response:
        body = await _read_bounded(request, MAX_BODY)
        if body is None:
            return PlainTextResponse(f"the body is over {MAX_BODY} bytes\n", status_code=413)
        try:
            line = await run_in_threadpool(witness.add_checkpoint, body)
        except WitnessRefusal as refusal:
            log.info("add-checkpoint refused (%d): %s", refusal.status, refusal.text)
            if refusal.status == 409 and refusal.size is not None:
                return Response(f"{refusal.size}\n", status_code=409, media_type=SIZE_TYPE)
            return PlainTextResponse(refusal.text + "\n", status_code=refusal.status)
        return PlainTextResponse(line)

    async def index(_: Request) -> Response:
        return PlainTextResponse(witness.signer.verifier.vkey + "\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/", index, methods=["GET"]),
        ]
    )
