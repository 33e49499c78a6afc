"""A SHA-256 whose running state can be saved and restored by another process.

Chunked uploads are resumable and may land on different API replicas, so the digest of the bytes
received so far must live in the database, not in one process's memory (the same reason OCI
registries persist hash states). ``hashlib`` cannot export its state, so this uses OpenSSL's
``SHA256_Init/Update/Final`` through ctypes: the ``SHA256_CTX`` struct is a stable public ABI of
fixed size, its bytes are the state. Calls release the GIL and run at hashlib's speed (SHA-NI).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from functools import cache

from registry.errors import ConfigurationError

_CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (all 32-bit)


@cache
def _libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto")
    if name is None:  # pragma: no cover - every supported platform ships libcrypto
        raise ConfigurationError(
            "libcrypto (OpenSSL) not found; it is needed for resumable uploads"
        )
    lib = ctypes.CDLL(name)
    lib.SHA256_Init.argtypes = [ctypes.c_void_p]
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    _self_test(lib)
    return lib


def _self_test(lib: ctypes.CDLL) -> None:
    ctx = ctypes.create_string_buffer(_CTX_SIZE)
    lib.SHA256_Init(ctx)
    lib.SHA256_Update(ctx, b"abc", 3)
    out = ctypes.create_string_buffer(32)
    lib.SHA256_Final(out, ctx)
    if out.raw != hashlib.sha256(b"abc").digest():  # pragma: no cover
        raise ConfigurationError("libcrypto SHA256 self-test failed")


class ResumableSha256:
    """SHA-256 with :meth:`state` / :meth:`from_state` for persistence between requests."""

    __slots__ = ("_ctx",)

    def __init__(self) -> None:
        self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
        _libcrypto().SHA256_Init(self._ctx)

    @classmethod
    def from_state(cls, state: bytes) -> ResumableSha256:
        """Restore a hasher from :meth:`state` output."""
        if len(state) != _CTX_SIZE:
            raise ValueError(f"hash state must be {_CTX_SIZE} bytes, got {len(state)}")
        obj = cls.__new__(cls)
        obj._ctx = ctypes.create_string_buffer(state, _CTX_SIZE)
        return obj

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if not view.contiguous:  # pragma: no cover - callers pass plain buffers
            view = memoryview(view.tobytes())
        n = view.nbytes
        if n == 0:
            return
        if view.readonly:
            ptr: object = ctypes.c_char_p(view.tobytes()) if not isinstance(data, bytes) else data
        else:
            ptr = (ctypes.c_char * n).from_buffer(view)
        _libcrypto().SHA256_Update(self._ctx, ptr, n)

    def state(self) -> bytes:
        """The opaque running state (112 bytes)."""
        return self._ctx.raw

    def hexdigest(self) -> str:
        """The digest of everything so far; the hasher stays usable."""
        ctx = ctypes.create_string_buffer(self._ctx.raw, _CTX_SIZE)
        out = ctypes.create_string_buffer(32)
        _libcrypto().SHA256_Final(out, ctx)
        return out.raw.hex()
