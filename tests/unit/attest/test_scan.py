"""The scanner against a corpus built here: malicious files flagged, benign files pass, and no
payload ever runs."""

from __future__ import annotations

import ast
import io
import os
import pickle
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from attest.scan import Format, Verdict, scan_directory, scan_stream
from tests import scan_corpus as corpus

ROOT = Path(__file__).resolve().parents[3]


def scan(name: str, data: bytes, **kwargs: object) -> object:
    return scan_stream(name, io.BytesIO(data), len(data), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def malicious_corpus(sentinel: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name, data in corpus.malicious_pickles(sentinel).items():
        files[f"{name}.pkl"] = data
    rce = pickle.dumps(corpus.malicious_payloads(sentinel)["os.system"], protocol=2)
    files["torch zip.pt"] = corpus.torch_zip(rce)
    files["renamed.bin"] = corpus.torch_zip(rce)
    files["no-extension"] = rce
    files["raw pickle renamed.safetensors"] = rce
    files["gzip-wrapped.pkl.gz"] = corpus.gzip_bytes(rce)
    files["joblib-style.joblib"] = __import__("zlib").compress(rce)
    files["object array.npy"] = corpus.npy_bytes(
        np.array([corpus.malicious_payloads(sentinel)["builtins.eval"]], dtype=object)
    )
    files["npz with object array.npz"] = corpus.zip_bytes({"a.npy": files["object array.npy"]})
    for label, data in corpus.malformed_safetensors().items():
        files[f"safetensors {label}.safetensors"] = data
    files["onnx absolute.onnx"] = corpus.onnx_model("/etc/passwd")
    files["onnx traversal.onnx"] = corpus.onnx_model("../../secrets/weights.bin")
    files["onnx missing data.onnx"] = corpus.onnx_model("weights-not-pushed.bin")
    files["zip bomb.zip"] = corpus.zip_bytes({"zeros.bin": b"\x00" * (64 * 1024 * 1024)})
    files["zip slip.zip"] = corpus.zip_bytes({"../../evil.sh": b"#!/bin/sh\n"})
    files["zip symlink.zip"] = corpus.zip_bytes({"a.txt": b"a"}, symlink="link")
    files["zip holding a pickle.zip"] = corpus.zip_bytes({"inner/model.pkl": rce})
    files["tar symlink.tar"] = corpus.tar_bytes({"a.txt": b"a"}, symlink="evil")
    files["tar traversal.tar"] = corpus.tar_bytes({"../evil.sh": b"x"})
    files["tar holding a pickle.tar"] = corpus.tar_bytes({"model.pkl": rce})
    files["keras lambda.keras"] = corpus.keras_zip([corpus.DENSE, corpus.LAMBDA])
    files["keras foreign module.keras"] = corpus.keras_zip(
        [{"module": "os", "class_name": "system", "config": {}}]
    )
    files["hdf5 lambda.h5"] = corpus.hdf5_with(b'{"class_name": "Lambda", "config": {}}')
    files["gguf implausible.gguf"] = corpus.gguf_bytes(kv_count=10**9)
    files["gguf string past end.gguf"] = corpus.gguf_bytes(bad_string=True)
    return files


def benign_corpus() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for protocol in range(6):
        files[f"plain dict p{protocol}.pkl"] = pickle.dumps(
            {"lr": 0.01, "epochs": 3, "name": "x", "tags": ["a"]}, protocol=protocol
        )
    for protocol in range(2, 6):
        files[f"numpy arrays p{protocol}.pkl"] = pickle.dumps(
            {"w": np.ones((2, 2), dtype=np.float32)}, protocol=protocol
        )
    files["ordered dict.pkl"] = pickle.dumps(OrderedDict(a=1), protocol=4)
    files["torch state dict.pt"] = corpus.torch_zip(corpus.benign_torch_pickle())
    files["model.safetensors"] = corpus.safetensors_bytes()
    files["array.npy"] = corpus.npy_bytes(np.arange(10, dtype=np.float64))
    files["arrays.npz"] = corpus.zip_bytes(
        {"a.npy": corpus.npy_bytes(np.zeros(3)), "b.npy": corpus.npy_bytes(np.ones(2))}
    )
    files["model.onnx"] = corpus.onnx_model(None)
    files["model-external.onnx"] = corpus.onnx_model("weights.bin")
    files["weights.bin"] = b"\x00" * 16
    files["model.keras"] = corpus.keras_zip([corpus.DENSE])
    files["model.h5"] = corpus.hdf5_with(b'{"class_name": "Dense", "module": "keras.layers"}')
    files["model.gguf"] = corpus.gguf_bytes()
    files["config.json"] = b'{"architectures": ["Tiny"], "hidden_size": 32}\n'
    files["README.md"] = "# Tiny model ✓\n".encode()
    files["tokenizer.model"] = bytes(range(256)) * 4
    files["docs.tar"] = corpus.tar_bytes({"a.txt": b"hello", "b.json": b"{}"})
    files["data.zip"] = corpus.zip_bytes({"a.txt": b"hello", "nested/b.csv": b"1,2\n"})
    files["config.json.gz"] = corpus.gzip_bytes(b'{"a": 1}')
    return files


def test_every_malicious_file_is_flagged_and_nothing_runs(tmp_path: Path, sentinel: Path) -> None:
    files = malicious_corpus(sentinel)
    model = tmp_path / "malicious"
    model.mkdir()
    for name, data in files.items():
        (model / name).write_bytes(data)
    report = scan_directory(model)
    flagged = {f.path for f in report.unsafe}
    missed = sorted(set(files) - flagged)
    assert missed == [], missed
    assert not sentinel.exists(), "a payload executed during scanning"
    assert not any(m in sys.modules for m in ("torch", "keras", "tensorflow", "joblib"))
    print(f"\n{len(files)} malicious files tried, {len(flagged)} flagged, 0 executed")


def test_no_benign_file_is_flagged(tmp_path: Path) -> None:
    files = benign_corpus()
    model = tmp_path / "benign"
    model.mkdir()
    for name, data in files.items():
        (model / name).write_bytes(data)
    report = scan_directory(model)
    assert [(f.path, f.findings) for f in report.unsafe] == []
    print(f"\n{len(files)} benign files, 0 false alarms")


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("x", corpus.safetensors_bytes(), Format.SAFETENSORS),
        ("x", pickle.dumps({"a": 1}, protocol=0), Format.PICKLE),
        ("x", pickle.dumps({"a": 1}, protocol=5), Format.PICKLE),
        ("x.safetensors", pickle.dumps([1], protocol=4), Format.PICKLE),
        ("x.txt", corpus.torch_zip(pickle.dumps({})), Format.PYTORCH_ZIP),
        ("x", corpus.npy_bytes(np.zeros(2)), Format.NUMPY),
        ("x", corpus.zip_bytes({"a.npy": corpus.npy_bytes(np.zeros(2))}), Format.NUMPY_ZIP),
        ("x", corpus.gzip_bytes(pickle.dumps({})), Format.JOBLIB),
        ("x", corpus.onnx_model(None), Format.ONNX),
        ("x", corpus.keras_zip([corpus.DENSE]), Format.KERAS_ZIP),
        ("x", corpus.hdf5_with(b"{}"), Format.HDF5),
        ("x", corpus.gguf_bytes(), Format.GGUF),
        ("x", corpus.tar_bytes({"a": b"a"}), Format.TAR),
        ("x", corpus.zip_bytes({"a.txt": b"a"}), Format.ZIP),
        ("x", b'{"a": [1, 2]}', Format.JSON),
        ("x", b"plain text\n", Format.TEXT),
        ("x", b"\x00\x01\x02\x03" * 10, Format.UNKNOWN),
    ],
)
def test_classified_by_content_not_extension(name: str, data: bytes, fmt: Format) -> None:
    verdict = scan(name, data)
    assert verdict.format is fmt  # type: ignore[attr-defined]


def test_findings_name_the_problem(sentinel: Path) -> None:
    rce = pickle.dumps(corpus.malicious_payloads(sentinel)["os.system"], protocol=4)
    verdict = scan("evil.pkl", rce)
    assert verdict.verdict is Verdict.UNSAFE  # type: ignore[attr-defined]
    assert any("posix.system" in f and "not allowlisted" in f for f in verdict.findings)  # type: ignore[attr-defined]
    bomb = scan("bomb.zip", corpus.zip_bytes({"z": b"\x00" * (64 * 1024 * 1024)}))
    assert any("decompression bomb" in f for f in bomb.findings)  # type: ignore[attr-defined]
    overlap = scan("o.safetensors", corpus.malformed_safetensors()["overlapping offsets"])
    assert any("overlaps the previous tensor" in f for f in overlap.findings)  # type: ignore[attr-defined]
    slip = scan("s.onnx", corpus.onnx_model("../x.bin"))
    assert any("'..'" in f for f in slip.findings)  # type: ignore[attr-defined]


def test_pickle_family_is_marked_even_when_clean() -> None:
    assert scan("a.pkl", pickle.dumps({"a": 1})).pickle  # type: ignore[attr-defined]
    assert scan("b.pt", corpus.torch_zip(corpus.benign_torch_pickle())).pickle  # type: ignore[attr-defined]
    assert not scan("c.safetensors", corpus.safetensors_bytes()).pickle  # type: ignore[attr-defined]


def test_no_code_path_can_deserialize_a_model() -> None:
    """registry/ and attest/ never import pickle loaders or ML frameworks."""
    banned_modules = {"torch", "keras", "tensorflow", "joblib", "dill", "cloudpickle", "marshal"}
    offenders = []
    for package in ("registry", "attest", "sbom"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in banned_modules or top in {"pickle", "_pickle"}:
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
                if isinstance(node, ast.Attribute) and node.attr in {"load", "loads"}:
                    if isinstance(node.value, ast.Name) and node.value.id in {"pickle", "np"}:
                        offenders.append(
                            f"{path.relative_to(ROOT)} calls {node.value.id}.{node.attr}"
                        )
    assert offenders == []
    assert os.environ.get("MODELSEAL_TEST_MARKER", "") == ""
