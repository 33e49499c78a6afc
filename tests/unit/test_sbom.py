"""The CycloneDX 1.6 ML-BOM: strict validity, digests, determinism, golden files, environments.

Golden files live in tests/data/sbom/; ``MODELSEAL_REGEN_GOLDEN=1`` rewrites them (review the diff:
a changed golden means BOMs signed by earlier versions no longer match what we build).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

import sbom
import sbom.build
import sbom.validate
from attest.digests import FileDigest, root_digest
from attest.errors import AttestError
from sbom import (
    BomCode,
    BomDataset,
    BomError,
    BomFile,
    BomModelRef,
    EnvPackage,
    Metric,
    ModelBomInput,
    bom_bytes,
    build_model_bom,
    parse_environment,
    validate_bom,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "sbom"
CREATED = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
COMMIT = "3f2c1e0b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


# -- factories -----------------------------------------------------------------------------


def _file(path: str, content: bytes) -> BomFile:
    return BomFile(path=path, size=len(content), sha256=hashlib.sha256(content).hexdigest())


def _root(files: tuple[BomFile, ...]) -> str:
    return "sha256:" + root_digest(
        FileDigest(path=f.path, size=f.size, sha256=f.sha256) for f in files
    )


def _digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


MODEL_FILES = (
    _file("model.safetensors", b"weights"),
    _file("config.json", b'{"hidden": 8}'),
    _file("tokenizer/vocab.txt", b"a\nb\n"),
)
TX_FILES = (_file("train.parquet", b"rows"), _file("test.parquet", b"more rows"))
WEB_FILES = (_file("shard-000.jsonl", b"{}\n"),)

TX = BomDataset(
    ref="fraud/transactions@3",
    root_digest=_root(TX_FILES),
    files=TX_FILES,
    state="released",
    description="Card transactions 2024, labelled.",
    classification="confidential",
    owner="Fraud Data Team",
)
WEB = BomDataset(
    ref="public/webtext@1",
    root_digest=_root(WEB_FILES),
    files=WEB_FILES,
    sources=("s3://corpus/webtext/2025-01/", "https://example.org/webtext.tar.gz"),
    external=True,
    state="released",
    classification="public",
)
BASE = BomModelRef(ref="hub/bert-base@2", root_digest=_digest("bert-base"))
ENVIRONMENT = (
    EnvPackage(name="torch", version="2.3.1", purl="pkg:pypi/torch@2.3.1"),
    EnvPackage(name="numpy", version="1.26.4", purl="pkg:pypi/numpy@1.26.4"),
    EnvPackage(name="scikit-learn", version=None, purl="pkg:pypi/scikit-learn"),
    EnvPackage(name="in-house-tool", version="7", purl=None),
)
CONSIDERATIONS = {
    "users": ["fraud analysts"],
    "useCases": ["score card transactions"],
    "technicalLimitations": ["trained on EU transactions only"],
    "ethicalConsiderations": [{"name": "bias", "mitigationStrategy": "monthly audit"}],
}


def _minimal(**changes: Any) -> ModelBomInput:
    inp = ModelBomInput(
        ref="fraud/classifier@1",
        root_digest=_root(MODEL_FILES),
        files=MODEL_FILES,
        created=CREATED,
        tool_version="0.2.0",
    )
    return dataclasses.replace(inp, **changes)


def _full(**changes: Any) -> ModelBomInput:
    inp = _minimal(
        datasets=(TX, WEB),
        base_models=(BASE,),
        code=BomCode(git_uri="https://github.com/acme/fraud.git", git_commit=COMMIT),
        environment=ENVIRONMENT,
        metrics=(
            Metric(name="accuracy", value=0.93),
            Metric(name="auc", value=0.9871, slice="country=FR"),
            Metric(name="support", value=1200),
            Metric(name="verdict", value="pass"),
        ),
        task="binary-classification",
        architecture="BertForSequenceClassification",
        considerations=CONSIDERATIONS,
        parameters={"learning_rate": 0.0003, "epochs": 3, "optimizer": "adamw", "layers": [8, 8]},
    )
    return dataclasses.replace(inp, **changes)


CASES: dict[str, Callable[[], ModelBomInput]] = {
    "minimal": _minimal,
    "one-dataset": lambda: _minimal(datasets=(TX,), task="classification"),
    "registered-code": lambda: _minimal(
        code=BomCode(ref="fraud/train-code@4", root_digest=_digest("code")),
        base_models=(BASE,),
    ),
    "full": _full,
}


# -- helpers -------------------------------------------------------------------------------


def _lib_validate(bom: dict[str, Any]) -> None:
    """The oracle: cyclonedx-python-lib's strict 1.6 validator, called directly."""
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert error is None, str(error)


def _components(bom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in bom.get("components", [])}


def _props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def _digests_in(value: Any) -> Iterator[str]:
    """Every digest the BOM states: hash contents and root-digest properties, anywhere."""
    if isinstance(value, dict):
        for item in value.get("hashes", []):
            yield f"{item['alg']}:{item['content']}"
        if value.get("name") == "modelseal:root-digest":
            alg, _, hexpart = value["value"].partition(":")
            yield f"SHA-256:{hexpart}" if alg == "sha256" else value["value"]
        for item in value.values():
            yield from _digests_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _digests_in(item)


def _input_digests(inp: ModelBomInput) -> set[str]:
    roots = [inp.root_digest, *(d.root_digest for d in inp.datasets)]
    roots += [b.root_digest for b in inp.base_models]
    if inp.code is not None and inp.code.root_digest is not None:
        roots.append(inp.code.root_digest)
    files = [*inp.files, *(f for d in inp.datasets for f in d.files)]
    return {"SHA-256:" + r.removeprefix("sha256:") for r in roots} | {
        "SHA-256:" + f.sha256 for f in files
    }


# -- strictly valid BOMs -------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_bom_is_strictly_valid_cyclonedx_1_6(case: str) -> None:
    bom = build_model_bom(CASES[case]())
    _lib_validate(bom)
    validate_bom(bom)
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == sbom.CYCLONEDX_SPEC_VERSION == "1.6"


def test_model_is_the_metadata_component_with_its_files() -> None:
    inp = _minimal()
    model = build_model_bom(inp)["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["bom-ref"] == "model:fraud/classifier@1"
    assert (model["group"], model["name"], model["version"]) == ("fraud", "classifier", "1")
    assert model["hashes"] == [{"alg": "SHA-256", "content": inp.root_digest[7:]}]
    assert _props(model)["modelseal:root-digest"] == inp.root_digest
    files = {c["bom-ref"]: c for c in model["components"]}
    assert set(files) == {f"file:{f.path}" for f in MODEL_FILES}
    for f in MODEL_FILES:
        assert files[f"file:{f.path}"]["type"] == "file"
        assert files[f"file:{f.path}"]["name"] == f.path
        assert files[f"file:{f.path}"]["hashes"] == [{"alg": "SHA-256", "content": f.sha256}]
        assert _props(files[f"file:{f.path}"])["modelseal:size"] == str(f.size)
    assert "modelCard" not in model  # nothing to say without task, datasets or metrics


def test_metadata_names_time_tool_and_serial() -> None:
    bom = build_model_bom(_minimal())
    assert bom["metadata"]["timestamp"] == "2026-03-01T12:30:05+00:00"
    assert bom["metadata"]["tools"]["components"][0]["name"] == "modelseal"
    assert bom["metadata"]["tools"]["components"][0]["version"] == "0.2.0"
    assert bom["version"] == 1
    expected = uuid.uuid5(sbom.build.SERIAL_NAMESPACE, f"fraud/classifier@1\n{_root(MODEL_FILES)}")
    assert bom["serialNumber"] == f"urn:uuid:{expected}"
    other = build_model_bom(_minimal(ref="fraud/classifier@2"))
    assert other["serialNumber"] != bom["serialNumber"]


def test_model_card_lists_datasets_task_architecture_metrics_considerations() -> None:
    bom = build_model_bom(_full())
    card = bom["metadata"]["component"]["modelCard"]
    assert card["modelParameters"] == {
        "task": "binary-classification",
        "modelArchitecture": "BertForSequenceClassification",
        "datasets": [{"ref": "dataset:fraud/transactions@3"}, {"ref": "dataset:public/webtext@1"}],
    }
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "accuracy", "value": "0.93"},
        {"type": "auc", "value": "0.9871", "slice": "country=FR"},
        {"type": "support", "value": "1200"},
        {"type": "verdict", "value": "pass"},
    ]
    assert card["considerations"] == CONSIDERATIONS
    components = _components(bom)
    for item in card["modelParameters"]["datasets"]:
        assert components[item["ref"]]["type"] == "data"


def test_hyperparameters_are_properties() -> None:
    props = _props(build_model_bom(_full())["metadata"]["component"])
    assert props["modelseal:param:learning_rate"] == "0.0003"
    assert props["modelseal:param:epochs"] == "3"
    assert props["modelseal:param:optimizer"] == "adamw"
    assert props["modelseal:param:layers"] == "[8,8]"


def test_registered_dataset_has_data_governance_and_files() -> None:
    component = _components(build_model_bom(_full()))["dataset:fraud/transactions@3"]
    assert component["type"] == "data"
    assert component["hashes"] == [{"alg": "SHA-256", "content": TX.root_digest[7:]}]
    props = _props(component)
    assert props["modelseal:root-digest"] == TX.root_digest
    assert props["modelseal:state"] == "released"
    assert props["modelseal:file-count"] == "2"
    assert "modelseal:external" not in props
    assert "external" not in component["description"].lower()
    assert "externalReferences" not in component
    assert {c["bom-ref"]: c["hashes"][0]["content"] for c in component["components"]} == {
        f"dataset:fraud/transactions@3#file:{f.path}": f.sha256 for f in TX_FILES
    }
    assert component["data"] == [
        {
            "type": "dataset",
            "name": "fraud/transactions@3",
            "contents": {
                "properties": [{"name": "modelseal:root-digest", "value": TX.root_digest}]
            },
            "classification": "confidential",
            "description": "Card transactions 2024, labelled.",
            "governance": {"owners": [{"organization": {"name": "Fraud Data Team"}}]},
        }
    ]


def test_external_dataset_says_so_and_names_its_sources() -> None:
    component = _components(build_model_bom(_full()))["dataset:public/webtext@1"]
    assert _props(component)["modelseal:external"] == "true"
    assert "external" in component["description"].lower()
    assert sorted(r["url"] for r in component["externalReferences"]) == sorted(WEB.sources)
    assert {r["type"] for r in component["externalReferences"]} == {"distribution"}
    (data,) = component["data"]
    assert "external" in data["description"].lower()
    assert data["contents"]["url"] == WEB.sources[0]
    assert data["contents"]["properties"] == [
        {"name": "modelseal:root-digest", "value": WEB.root_digest},
        *({"name": "modelseal:source", "value": s} for s in WEB.sources),
    ]
    assert data["classification"] == "public"
    assert "governance" not in data


def test_large_dataset_is_described_by_digest_and_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sbom.build, "MAX_LISTED_DATASET_FILES", 1)
    bom = build_model_bom(_minimal(datasets=(TX,)))
    component = _components(bom)["dataset:fraud/transactions@3"]
    assert "components" not in component
    assert _props(component)["modelseal:file-count"] == "2"
    assert _props(component)["modelseal:files-listed"] == "false"
    assert component["hashes"] == [{"alg": "SHA-256", "content": TX.root_digest[7:]}]
    _lib_validate(bom)


def test_base_model_git_code_and_packages() -> None:
    components = _components(build_model_bom(_full()))
    base = components["model:hub/bert-base@2"]
    assert base["type"] == "machine-learning-model"
    assert base["hashes"] == [{"alg": "SHA-256", "content": BASE.root_digest[7:]}]
    assert "modelCard" not in base
    code = components[f"code:https://github.com/acme/fraud.git@{COMMIT}"]
    assert code["version"] == COMMIT
    assert code["pedigree"] == {"commits": [{"uid": COMMIT}]}
    assert code["externalReferences"] == [
        {"type": "vcs", "url": "https://github.com/acme/fraud.git"}
    ]
    assert _props(code) == {"modelseal:git-commit": COMMIT, "modelseal:git-dirty": "false"}
    torch = components["pkg:pypi/torch@2.3.1"]
    assert (torch["type"], torch["name"], torch["version"], torch["purl"]) == (
        "library", "torch", "2.3.1", "pkg:pypi/torch@2.3.1",
    )  # fmt: skip
    assert components["pkg:pypi/scikit-learn"]["purl"] == "pkg:pypi/scikit-learn"
    assert "version" not in components["pkg:pypi/scikit-learn"]
    assert "purl" not in components["env:in-house-tool@7"]


def test_dirty_checkout_is_recorded() -> None:
    code = BomCode(git_uri="https://github.com/acme/fraud.git", git_commit=COMMIT, dirty=True)
    components = _components(build_model_bom(_minimal(code=code)))
    component = components[f"code:https://github.com/acme/fraud.git@{COMMIT}"]
    assert _props(component)["modelseal:git-dirty"] == "true"
    assert "uncommitted" in component["description"]


def test_registered_code_carries_its_root_digest() -> None:
    bom = build_model_bom(CASES["registered-code"]())
    code = _components(bom)["code:fraud/train-code@4"]
    assert code["hashes"] == [{"alg": "SHA-256", "content": _digest("code")[7:]}]
    assert _props(code)["modelseal:root-digest"] == _digest("code")


def test_dependency_graph_model_depends_on_everything_it_was_made_from() -> None:
    bom = build_model_bom(_full())
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert graph["model:fraud/classifier@1"] == set(_components(bom))
    assert len(graph["model:fraud/classifier@1"]) == 2 + 1 + 1 + len(ENVIRONMENT)
    for ref in _components(bom):
        assert graph[ref] == set()


def test_minimal_model_has_an_empty_graph_entry() -> None:
    assert build_model_bom(_minimal())["dependencies"] == [{"ref": "model:fraud/classifier@1"}]


# -- every digest is a stored digest ---------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_digest_in_the_bom_is_an_input_digest(case: str) -> None:
    inp = CASES[case]()
    stated = list(_digests_in(build_model_bom(inp)))
    assert set(stated) <= _input_digests(inp)
    # Every file and root digest is stated (so the walk above really looked at them).
    assert set(stated) == _input_digests(inp)


def test_digest_walk_notices_a_foreign_digest() -> None:
    inp = _full()
    bom = build_model_bom(inp)
    _tx(bom)["hashes"][0]["content"] = "0" * 64
    assert not set(_digests_in(bom)) <= _input_digests(inp)


def test_files_that_do_not_add_up_to_the_root_digest_are_refused() -> None:
    with pytest.raises(BomError, match=r"model fraud/classifier@1: its files add up to sha256:"):
        build_model_bom(_minimal(root_digest=_digest("something else")))
    tampered = dataclasses.replace(TX, files=(TX_FILES[0], _file("test.parquet", b"changed")))
    with pytest.raises(BomError, match=r"dataset fraud/transactions@3: its files add up to"):
        build_model_bom(_minimal(datasets=(tampered,)))


#: Changes to a good input that the builder refuses, and what it says.
BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"root_digest": "sha256:ABC"}, r"root digest 'sha256:ABC' is not sha256:<64"),
    ({"files": ()}, r"a file set needs at least one file"),
    ({"ref": "classifier@1"}, r"model reference 'classifier@1' is not NS/NAME@VERSION"),
    (
        {"base_models": (BomModelRef(ref="hub/bert@1", root_digest="md5:00"),)},
        r"base model hub/bert@1: root digest 'md5:00'",
    ),
    (
        {"base_models": (BomModelRef(ref="fraud/classifier@1", root_digest=_digest("x")),)},
        r"names itself as its base model",
    ),
    (
        {"datasets": (TX, dataclasses.replace(TX, root_digest=_digest("other"), files=()))},
        r"two different datasets have the same bom-ref 'dataset:fraud/transactions@3'",
    ),
    (
        {"code": BomCode(ref="a/b@1", root_digest=_digest("c"), git_uri="https://x")},
        r"either a registered version .* or a git commit",
    ),
    ({"code": BomCode(git_uri="https://x")}, r"either a registered version"),
    (
        {"code": BomCode(ref="a/b@1", git_uri="https://x", git_commit=COMMIT)},
        r"either a registered version",
    ),
    (
        {"code": BomCode(git_uri="https://x", git_commit="HEAD")},
        r"git commit 'HEAD' is not a full lowercase hex object id",
    ),
    (
        {"code": BomCode(ref="a/b@1", root_digest=_digest("c"), dirty=True)},
        r"only a git checkout can be dirty",
    ),
    (
        {"environment": (EnvPackage(name="x", version="1", purl="not-a-purl"),)},
        r"package x: invalid purl 'not-a-purl'",
    ),
    ({"metrics": (Metric(name="loss", value=float("nan")),)}, r"metric 'loss' is nan"),
    ({"parameters": {"seed": object()}}, r"parameter 'seed': a object cannot be written"),
    (
        {"datasets": (dataclasses.replace(TX, sources=("http://x/%zz",)),)},
        r"dataset fraud/transactions@3: 'http://x/%zz' is not a valid URI",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD_INPUTS)
def test_bad_input_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BomError, match=message):
        build_model_bom(_minimal(**changes))


def test_considerations_that_break_the_schema_are_refused() -> None:
    with pytest.raises(BomError, match=r"modelCard\.considerations.*'vibes'"):
        build_model_bom(_minimal(considerations={"vibes": ["good"]}))


# -- tampered BOMs are rejected --------------------------------------------------------------


def _model(bom: dict[str, Any]) -> dict[str, Any]:
    return bom["metadata"]["component"]  # type: ignore[no-any-return]


def _card(bom: dict[str, Any]) -> dict[str, Any]:
    return _model(bom)["modelCard"]  # type: ignore[no-any-return]


def _tx(bom: dict[str, Any]) -> dict[str, Any]:
    return _components(bom)["dataset:fraud/transactions@3"]


TAMPERINGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "model card of the wrong type": (
        lambda bom: _model(bom).update(modelCard=["not", "an", "object"]),
        r"at \$\.metadata\.component\.modelCard: .* is not of type 'object'",
    ),
    "task of the wrong type": (
        lambda bom: _card(bom)["modelParameters"].update(task=5),
        r"modelParameters\.task: 5 is not of type 'string'",
    ),
    "unknown model card field": (
        lambda bom: _card(bom).update(license="MIT"),
        r"Additional properties are not allowed \('license' was unexpected\)",
    ),
    "metric value as a number": (
        lambda bom: _card(bom)["quantitativeAnalysis"]["performanceMetrics"][0].update(value=0.93),
        r"performanceMetrics\[0\]\.value: 0\.93 is not of type 'string'",
    ),
    "bad hash algorithm": (
        lambda bom: _model(bom)["hashes"][0].update(alg="SHA-257"),
        r"component\.hashes\[0\]\.alg: 'SHA-257' is not one of",
    ),
    "short hash": (
        lambda bom: _model(bom)["hashes"][0].update(content="abc"),
        r"component\.hashes\[0\]\.content: 'abc' does not match",
    ),
    "data of an unknown type": (
        lambda bom: _tx(bom)["data"][0].update(type="table"),
        r"data\[0\]\.type: 'table' is not one of",
    ),
    "governance party without a name": (
        lambda bom: _tx(bom)["data"][0]["governance"].update(owners=[{}]),
        r"governance\.owners\[0\]",
    ),
    "data that is not an array": (
        lambda bom: _tx(bom).update(data={"type": "dataset"}),
        r"components\[\d+\]\.data: .* is not of type 'array'",
    ),
    "model card on a dataset with an unknown field": (
        lambda bom: _tx(bom).update(modelCard={"owner": "me"}),
        r"modelCard: Additional properties are not allowed \('owner' was unexpected\)",
    ),
    "bad timestamp": (
        lambda bom: bom["metadata"].update(timestamp="yesterday"),
        r"metadata\.timestamp: 'yesterday' is not a 'date-time'",
    ),
    "dependency on an unknown component": (
        lambda bom: bom["dependencies"][-1].update(dependsOn=["dataset:nobody/nothing@1"]),
        r"dependency graph names unknown bom-ref 'dataset:nobody/nothing@1'",
    ),
    "model card naming an unknown dataset": (
        lambda bom: _card(bom)["modelParameters"].update(datasets=[{"ref": "dataset:x/y@1"}]),
        r"model card names unknown dataset 'dataset:x/y@1'",
    ),
    "duplicate bom-ref": (
        lambda bom: _components(bom)["model:hub/bert-base@2"].update(
            {"bom-ref": "dataset:fraud/transactions@3"}
        ),
        r"reuses bom-ref 'dataset:fraud/transactions@3'",
    ),
    "other spec version": (
        lambda bom: bom.update(specVersion="1.5"),
        r"not a CycloneDX 1\.6 BOM: bomFormat 'CycloneDX', specVersion '1\.5'",
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_tampered_bom_is_rejected(name: str) -> None:
    bom = build_model_bom(_full())
    validate_bom(bom)
    tamper, message = TAMPERINGS[name]
    tampered = copy.deepcopy(bom)
    tamper(tampered)
    assert tampered != bom
    with pytest.raises(BomError, match=message):
        validate_bom(tampered)


def test_long_arrays_are_validated_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sbom.validate, "_SLICE", 2)
    bom = build_model_bom(_full())
    _lib_validate(bom)
    validate_bom(bom)
    last_file = copy.deepcopy(bom)
    _model(last_file)["components"][2]["hashes"][0]["alg"] = "SHA-257"
    with pytest.raises(
        BomError, match=r"at \$\.metadata\.component\.components\[2\]\.hashes\[0\]\.alg:"
    ):
        validate_bom(last_file)
    last_dependency = copy.deepcopy(bom)
    last_dependency["dependencies"][-1]["dependsOn"] = "model:hub/bert-base@2"
    index = len(bom["dependencies"]) - 1
    with pytest.raises(
        BomError, match=rf"at \$\.dependencies\[{index}\]\.dependsOn: .* not of type"
    ):
        validate_bom(last_dependency)
    duplicate = copy.deepcopy(bom)
    duplicate["components"][-1] = copy.deepcopy(duplicate["components"][0])
    with pytest.raises(BomError, match=r"at \$\.components: items 0 and \d+ are the same"):
        validate_bom(duplicate)


def test_many_files_do_not_make_validation_quadratic() -> None:
    # The schema's uniqueItems, checked pairwise by jsonschema, took ~30 s for 5000 files.
    files = tuple(_file(f"shards/{i:05d}.bin", str(i).encode()) for i in range(5000))
    bom = build_model_bom(_minimal(files=files, root_digest=_root(files)))  # seconds, not minutes
    assert len(_model(bom)["components"]) == 5000


def test_non_json_bom_is_rejected() -> None:
    bom = build_model_bom(_minimal())
    bom["metadata"]["timestamp"] = CREATED
    with pytest.raises(BomError, match="not JSON-serializable"):
        validate_bom(bom)


def test_bom_error_is_an_attest_error() -> None:
    assert issubclass(BomError, AttestError)


# -- determinism and golden files -------------------------------------------------------------


def test_same_input_gives_the_same_bytes() -> None:
    assert bom_bytes(build_model_bom(_full())) == bom_bytes(build_model_bom(_full()))


def test_order_of_unordered_inputs_does_not_matter() -> None:
    shuffled = _full(
        environment=tuple(reversed(ENVIRONMENT)),
        files=tuple(reversed(MODEL_FILES)),
        parameters=dict(reversed(list(_full().parameters.items()))),
    )
    assert bom_bytes(build_model_bom(shuffled)) == bom_bytes(build_model_bom(_full()))


def test_timestamp_is_utc_whatever_the_input_zone() -> None:
    naive = _full(created=CREATED.replace(tzinfo=None))
    paris = _full(created=CREATED.astimezone(timezone(timedelta(hours=1))))
    expected = bom_bytes(build_model_bom(_full()))
    assert bom_bytes(build_model_bom(naive)) == expected
    assert bom_bytes(build_model_bom(paris)) == expected


def test_bom_bytes_are_canonical_json() -> None:
    bom = build_model_bom(_minimal())
    data = bom_bytes(bom)
    assert data == json.dumps(bom, sort_keys=True, separators=(",", ":")).encode()
    assert json.loads(data) == bom


@pytest.mark.parametrize("case", ["minimal", "full"])
def test_golden_bom(case: str) -> None:
    path = GOLDEN / f"{case}.json"
    data = bom_bytes(build_model_bom(CASES[case]()))
    if os.environ.get("MODELSEAL_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    golden = path.read_bytes()
    _lib_validate(json.loads(golden))
    assert data == golden, f"{path.name} changed; MODELSEAL_REGEN_GOLDEN=1 rewrites it"


# -- parse_environment -------------------------------------------------------------------------

REQUIREMENTS = b"""\
# training image, pinned
-r base.txt
--index-url https://pypi.example.org/simple
numpy==1.26.4
Torch_Vision>=0.18 ; python_version >= "3.10"
requests[socks]==2.31.0 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
transformers === 4.41.2  # exact, arbitrary equality
pandas==2.*
scipy>=1.11,<2
attrs
mylib @ https://files.example.org/mylib-1.0-py3-none-any.whl
-e git+https://github.com/acme/tools.git#egg=tools
git+https://github.com/acme/other.git
./vendor/pkg-1.0.tar.gz
https://files.example.org/thing-2.0-py3-none-any.whl
numpy==1.26.4

"""


def test_requirements_txt() -> None:
    assert parse_environment(REQUIREMENTS, "requirements.txt") == (
        EnvPackage(name="numpy", version="1.26.4", purl="pkg:pypi/numpy@1.26.4"),
        EnvPackage(name="Torch_Vision", version=None, purl="pkg:pypi/torch-vision"),
        EnvPackage(name="requests", version="2.31.0", purl="pkg:pypi/requests@2.31.0"),
        EnvPackage(name="transformers", version="4.41.2", purl="pkg:pypi/transformers@4.41.2"),
        EnvPackage(name="pandas", version=None, purl="pkg:pypi/pandas"),
        EnvPackage(name="scipy", version=None, purl="pkg:pypi/scipy"),
        EnvPackage(name="attrs", version=None, purl="pkg:pypi/attrs"),
        EnvPackage(name="mylib", version=None, purl="pkg:pypi/mylib"),
    )


def test_requirements_without_a_telling_name() -> None:
    assert parse_environment(b"numpy==1.26.4\n", "environment") == (
        EnvPackage(name="numpy", version="1.26.4", purl="pkg:pypi/numpy@1.26.4"),
    )
    assert parse_environment(b"", "environment") == ()


def test_requirements_local_version_is_encoded_in_the_purl() -> None:
    (torch,) = parse_environment(b"torch==2.3.1+cu121\n", "freeze.txt")
    assert torch == EnvPackage(
        name="torch", version="2.3.1+cu121", purl="pkg:pypi/torch@2.3.1%2Bcu121"
    )


def _cyclonedx_sbom(components: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components}
    ).encode()


def test_cyclonedx_json_environment() -> None:
    data = _cyclonedx_sbom(
        [
            {
                "type": "library",
                "name": "torch",
                "version": "2.3.1",
                "purl": "pkg:pypi/torch@2.3.1",
            },
            {
                "type": "framework",
                "name": "Jax_Lib",
                "version": "0.4.30",
                "purl": "pkg:pypi/Jax_Lib@0.4.30",
                "components": [{"type": "library", "name": "inner"}],
            },
            {"type": "file", "name": "/usr/lib/libc.so.6"},
            {
                "type": "library",
                "name": "torch",
                "version": "2.3.1",
                "purl": "pkg:pypi/torch@2.3.1",
            },
        ]
    )
    assert parse_environment(data, "env.cdx.json") == (
        EnvPackage(name="torch", version="2.3.1", purl="pkg:pypi/torch@2.3.1"),
        EnvPackage(name="Jax_Lib", version="0.4.30", purl="pkg:pypi/jax-lib@0.4.30"),
        EnvPackage(name="inner", version=None, purl=None),
    )


def test_parsed_environment_goes_into_a_valid_bom() -> None:
    environment = parse_environment(REQUIREMENTS, "requirements.txt")
    bom = build_model_bom(_minimal(environment=environment))
    _lib_validate(bom)
    assert {c["purl"] for c in bom["components"]} == {p.purl for p in environment}


BAD_ENVIRONMENTS: dict[str, tuple[bytes, str, str]] = {
    "binary": (b"numpy==1.0\n\x00\x01\x02", "requirements.txt", r"'requirements.txt' is binary"),
    "not utf-8": (b"numpy==1.0\n\xff\xfe", "requirements.txt", r"'requirements.txt' is not UTF-8"),
    "too large": (
        b"numpy==1.0\n" + b"#" * (1024 * 1024),
        "requirements.txt",
        r"'requirements.txt' is 1048587 bytes; the limit is 1048576",
    ),
    "prose": (b"numpy==1.0\nthis is not a requirement\n", "r.txt", r"'r.txt' line 2: 'this is not"),
    "single equals": (b"numpy=1.0\n", "r.txt", r"'r.txt' line 1: 'numpy=1.0' is not a requirement"),
    "yaml without a telling name": (
        b"name: env\ndependencies: [numpy]\n",
        "environment",
        r"'environment' line 1: 'name: env' is not a requirement \(the file was read as pip",
    ),
    "poetry lock": (b"[[package]]\n", "poetry.lock", r"'poetry.lock' has an unknown format"),
    "conda yaml": (
        b"name: env\ndependencies: [numpy]\n",
        "environment.yml",
        r"'environment.yml' has an unknown format",
    ),
    "bad json": (b'{"components": [', "env.json", r"'env.json' is not valid JSON"),
    "duplicate key": (
        b'{"bomFormat": "CycloneDX", "bomFormat": "SPDX"}',
        "env.json",
        r"duplicate key 'bomFormat'",
    ),
    "spdx": (
        b'{"spdxVersion": "SPDX-2.3"}',
        "sbom.json",
        r"'sbom.json' is JSON but not a CycloneDX",
    ),
    "components not a list": (
        b'{"bomFormat": "CycloneDX", "components": {}}',
        "env.json",
        r"'env.json': components is not a list",
    ),
    "invalid purl": (
        _cyclonedx_sbom([{"type": "library", "name": "x", "purl": "nope"}]),
        "env.json",
        r"'env.json': x has an invalid purl",
    ),
    "no name": (
        _cyclonedx_sbom([{"type": "library"}]),
        "env.json",
        r"'env.json': a component has no name",
    ),
    "numeric version": (
        _cyclonedx_sbom([{"type": "library", "name": "x", "version": 1}]),
        "env.json",
        r"'env.json': x has a non-string version",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ENVIRONMENTS))
def test_bad_environment_files_are_rejected(case: str) -> None:
    data, filename, message = BAD_ENVIRONMENTS[case]
    with pytest.raises(BomError, match=message):
        parse_environment(data, filename)


def test_public_surface() -> None:
    assert set(sbom.__all__) == {
        "CYCLONEDX_SPEC_VERSION", "MAX_ENVIRONMENT_BYTES",
        "BomCode", "BomDataset", "BomError", "BomFile", "BomModelRef", "EnvPackage", "Metric",
        "ModelBomInput", "bom_bytes", "build_model_bom", "parse_environment", "validate_bom",
    }  # fmt: skip
    from attest.predicates import CYCLONEDX_BOM

    assert CYCLONEDX_BOM == "https://cyclonedx.org/bom"
