"""Builds the scanner's test corpus: real malicious and benign model files, made here.

Malicious pickles carry payloads that would create a sentinel file if anything ever loaded them;
the tests prove the file never appears.
"""

from __future__ import annotations

import code
import gzip
import io
import operator
import os
import pickle
import pydoc
import struct
import subprocess
import sys
import tarfile
import timeit
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save


class _Reduce:
    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args


def malicious_payloads(sentinel: Path) -> dict[str, Any]:
    """Objects whose unpickling would touch ``sentinel``: one per attack technique."""
    touch = f"touch {sentinel}"
    create = f"open({str(sentinel)!r}, 'w').close()"
    inner = pickle.dumps(_Reduce(os.system, (touch,)), protocol=2)
    return {
        "os.system": _Reduce(os.system, (touch,)),
        "builtins.exec": _Reduce(exec, (create,)),
        "builtins.eval": _Reduce(eval, (create,)),
        "subprocess.Popen": _Reduce(subprocess.Popen, (["touch", str(sentinel)],)),
        "timeit.timeit": _Reduce(timeit.timeit, (create,)),
        "pydoc.pipepager": _Reduce(pydoc.pipepager, ("x", touch)),
        "operator.methodcaller": _Reduce(operator.methodcaller, ("system", touch)),
        "code.InteractiveInterpreter": _Reduce(code.InteractiveInterpreter, ()),
        "nested pickle.loads": _Reduce(pickle.loads, (inner,)),
    }


def malicious_pickles(sentinel: Path) -> dict[str, bytes]:
    """Every payload at every pickle protocol 0-5."""
    out = {}
    for name, payload in malicious_payloads(sentinel).items():
        for protocol in range(6):
            out[f"{name} p{protocol}"] = pickle.dumps(payload, protocol=protocol)
    return out


def torch_zip(pickle_bytes: bytes) -> bytes:
    """A PyTorch-style checkpoint archive: archive/data.pkl plus storages."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", b"\x00" * 64)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def benign_torch_pickle() -> bytes:
    """A state-dict pickle that references only torch's rebuild helpers (built without torch:
    stand-in modules give the globals torch's own names)."""
    fake_utils = types.ModuleType("torch._utils")
    fake_torch = types.ModuleType("torch")

    def _rebuild_tensor_v2(*args: Any) -> None: ...

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    fake_torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils
    try:
        state = OrderedDict(
            [("layer.weight", _Reduce(_rebuild_tensor_v2, (FloatStorage, 0, (2, 2), (2, 1))))]
        )
        return pickle.dumps(state, protocol=2)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def safetensors_bytes() -> bytes:
    rng = np.random.default_rng(0)
    return st_save({"w": rng.standard_normal((4, 3), dtype=np.float32),
                    "b": np.arange(3, dtype=np.int64)})  # fmt: skip


def safetensors_raw(
    header: dict[str, Any] | bytes, data: bytes, *, length: int | None = None
) -> bytes:
    import json

    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def malformed_safetensors() -> dict[str, bytes]:
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    return {
        "huge header length": safetensors_raw({"w": f32}, b"\x00" * 8, length=2**40),
        "header longer than the file": safetensors_raw({"w": f32}, b"", length=10_000),
        "overlapping offsets": safetensors_raw(
            {"a": f32, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
            b"\x00" * 12,
        ),
        "overflowing shape": safetensors_raw(
            {"w": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, b"\x00" * 8
        ),
        "trailing bytes": safetensors_raw({"w": f32}, b"\x00" * 8 + b"EXTRA"),
        "unknown dtype": safetensors_raw(
            {"w": {"dtype": "PYOBJ", "shape": [1], "data_offsets": [0, 8]}}, b"\x00" * 8
        ),
        "gap between tensors": safetensors_raw(
            {"a": f32, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}},
            b"\x00" * 20,
        ),
        "invalid JSON header": safetensors_raw(b'{"w": [1,2', b""),
        "offsets beyond data": safetensors_raw(
            {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\x00" * 8
        ),
    }


# -- ONNX (protobuf written by hand: no onnx package needed) -----------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def onnx_model(location: str | None) -> bytes:
    """ModelProto{ir_version, graph{initializer{name, [external_data location], data_location}}}"""
    tensor = _field(8, b"weight") + _varint(2 << 3) + _varint(1)  # name, data_type=FLOAT
    if location is not None:
        entry = _field(1, b"location") + _field(2, location.encode())
        tensor += _field(13, entry) + _varint(14 << 3) + _varint(1)
    else:
        tensor += _field(9, b"\x00" * 16)  # raw_data
    node = _field(1, b"weight") + _field(4, b"Identity")
    graph = _field(1, node) + _field(2, b"g") + _field(5, tensor)
    return _varint(1 << 3) + _varint(8) + _field(2, b"modelseal-tests") + _field(7, graph)


# -- archives and others --------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], *, compress: bool = True,
              symlink: str | None = None) -> bytes:  # fmt: skip
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


def keras_zip(layers: list[dict[str, Any]]) -> bytes:
    import json

    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": "m", "layers": layers}}  # fmt: skip
    return zip_bytes({
        "metadata.json": b'{"keras_version": "3.6.0"}',
        "config.json": json.dumps(config).encode(),
        "model.weights.h5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 64,
    })  # fmt: skip


DENSE = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 4}}
LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAA"}}},
}


def hdf5_with(config_json: bytes) -> bytes:
    return b"\x89HDF\r\n\x1a\n" + b"\x00" * 120 + config_json + b"\x00" * 200


def gguf_bytes(*, kv_count: int = 1, tensors: int = 0, bad_string: bool = False) -> bytes:
    key = b"general.name"
    value = b"tiny" if not bad_string else b""
    body = struct.pack("<Q", len(key)) + key + struct.pack("<I", 8)
    body += struct.pack("<Q", 2**40 if bad_string else len(value)) + value
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, kv_count) + body


def npy_bytes(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)
