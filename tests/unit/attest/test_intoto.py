"""in-toto export: the stock ``in-toto-verify`` CLI accepts an exported chain and rejects every
tampering (changed link, missing link, other key, expired layout, broken chain)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from in_toto.models._signer import load_public_key_from_file  # type: ignore[import-untyped]
from in_toto.models.metadata import Metablock  # type: ignore[import-untyped]
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

from attest import keys
from attest.digests import sha256_file
from attest.errors import InvalidDigestError
from attest.intoto import (
    LAYOUT_FILENAME,
    EvidenceStep,
    IntotoExportError,
    LinkArtifact,
    export_layout,
    keyid,
    link_filename,
)
from tests.peers import in_toto_verify
from tests.support import make_model_dir

CLI_TIMEOUT = 60
COMMIT = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e"
KEY_MAKERS: dict[str, Callable[[], keys.PrivateKey]] = {
    "ecdsa-p256": lambda: keys.generate(keys.KeyType.ECDSA_P256),
    "ed25519": lambda: keys.generate(keys.KeyType.ED25519),
    "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Chain:
    steps: list[EvidenceStep]
    final_products: list[LinkArtifact]
    model: Path | None = None  # the released files, copied to files/ in an export


def _chain(model: Path) -> Chain:
    """Two datasets (one by root digest, one by files), a git commit, a base model, a model
    trained from them (real safetensors files) and its evaluation."""
    tx = LinkArtifact(name="datasets/fraud/tx@3", sha256=_sha("tx root digest"))
    labels = (
        LinkArtifact(name="datasets/fraud/labels@1/part-0.parquet", sha256=_sha("labels part 0")),
        LinkArtifact(name="datasets/fraud/labels@1/part-1.parquet", sha256=_sha("labels part 1")),
    )
    code = LinkArtifact(name=f"code/acme-train@{COMMIT}", sha256=_sha(COMMIT))
    base = LinkArtifact(name="models/hub/tiny-base@2", sha256=_sha("base root digest"))
    files = sorted(p for p in model.rglob("*") if p.is_file())
    assert len(files) == 3
    weights = tuple(
        LinkArtifact(name=f"model/{p.relative_to(model).as_posix()}", sha256=sha256_file(p)[0])
        for p in files
    )
    metrics = LinkArtifact(name="evaluation/metrics.json", sha256=_sha('{"auc": 0.97}'))
    steps = [
        EvidenceStep(name="dataset-0", products=(tx,), evidence=("sha256:" + _sha("oms tx"),)),
        EvidenceStep(name="dataset-1", products=labels),
        EvidenceStep(
            name="training",
            materials=(tx, *labels, code, base),
            products=weights,
            command=("python", "train.py", "--epochs", "3"),
            evidence=("sha256:" + _sha("slsa provenance"), "sha256:" + _sha("oms model")),
        ),
        EvidenceStep(name="evaluation", materials=weights, products=(metrics,)),
    ]
    return Chain(steps=steps, final_products=list(weights), model=model)


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return _chain(make_model_dir(tmp_path / "model", shards=1))


@pytest.fixture
def key() -> keys.PrivateKey:
    return keys.generate()


def _export(
    directory: Path,
    key: keys.PrivateKey,
    chain: Chain,
    *,
    expires: datetime | None = None,
) -> dict[str, bytes]:
    files = export_layout(
        key=key,
        steps=chain.steps,
        expires=expires or datetime.now(UTC) + timedelta(days=30),
        final_products=chain.final_products,
        readme="fraud/detector@7",
    )
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    (directory / "registry.pub").write_bytes(keys.public_pem(key.public_key()))
    if chain.model is not None:  # as `modelseal export --with-files` lays them out
        shutil.copytree(chain.model, directory / "files")
    return files


def _in_toto_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    assert LAYOUT_FILENAME == "root.layout"
    return in_toto_verify(directory)


def _rejected(directory: Path, error: str) -> str:
    result = _in_toto_verify(directory)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"(in-toto-verify) {error}" in result.stderr, result.stderr
    return result.stderr


def _link(directory: Path, key: keys.PrivateKey, step: str) -> Path:
    return directory / link_filename(step, keyid(key.public_key()))


def _resign(path: Path, key: keys.PrivateKey, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a link or layout with ``change`` applied and a valid signature by ``key``."""
    document = json.loads(path.read_bytes())
    change(document["signed"])
    metablock = Metablock.from_dict({"signatures": [], "signed": document["signed"]})
    metablock.create_signature(CryptoSigner(key))
    path.write_text(json.dumps(metablock.to_dict()))


# -- acceptance ------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KEY_MAKERS))
def test_exported_chain_passes_in_toto_verify(tmp_path: Path, chain: Chain, key_type: str) -> None:
    key = KEY_MAKERS[key_type]()
    files = _export(tmp_path / "export", key, chain)

    # The keyid is the one in-toto derives from the PEM file the auditor passes.
    pinned = load_public_key_from_file(str(tmp_path / "export" / "registry.pub"))
    assert pinned["keyid"] == keyid(key.public_key())
    prefix = pinned["keyid"][:8]
    assert list(files) == [
        "root.layout",
        f"dataset-0.{prefix}.link",
        f"dataset-1.{prefix}.link",
        f"training.{prefix}.link",
        f"evaluation.{prefix}.link",
        f"release.{prefix}.link",
    ]
    result = _in_toto_verify(tmp_path / "export")
    assert result.returncode == 0, result.stdout + result.stderr


def test_layout_pins_the_registry_key_and_the_chain(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey
) -> None:
    files = _export(tmp_path / "export", key, chain)
    kid = keyid(key.public_key())
    layout = json.loads(files["root.layout"])["signed"]
    assert list(layout["keys"]) == [kid]
    [inspection] = layout["inspect"]
    assert inspection["name"] == "files"
    rules = inspection["expected_materials"]
    assert ["REQUIRE", "files/config.json"] in rules
    assert ["MATCH", "config.json", "IN", "files", "WITH", "PRODUCTS", "IN", "model", "FROM",
            "release"] in rules  # fmt: skip
    assert rules[-2:] == [["DISALLOW", "files/*"], ["ALLOW", "*"]]
    # Its command checks files/ itself, against the released paths (what in-toto records
    # leaves out names matching its exclude patterns).
    released = sorted(a.name.removeprefix("model/") for a in chain.final_products)
    assert inspection["run"][:2] == ["sh", "-c"]
    assert inspection["run"][3:] == ["files-check", "files", *released]
    assert layout["readme"] == "fraud/detector@7"
    steps = {step["name"]: step for step in layout["steps"]}
    assert list(steps) == ["dataset-0", "dataset-1", "training", "evaluation", "release"]
    assert all(step["pubkeys"] == [kid] and step["threshold"] == 1 for step in steps.values())
    training = steps["training"]["expected_materials"]
    assert ["MATCH", "datasets/fraud/tx@3", "WITH", "PRODUCTS", "FROM", "dataset-0"] in training
    assert ["ALLOW", f"code/acme-train@{COMMIT}"] in training
    assert training[-1] == ["DISALLOW", "*"]
    assert steps["training"]["expected_command"] == ["python", "train.py", "--epochs", "3"]

    release = json.loads(files[link_filename("release", kid)])["signed"]
    expected = {a.name: {"sha256": a.sha256} for a in chain.final_products}
    assert release["materials"] == release["products"] == expected
    training_link = json.loads(files[link_filename("training", kid)])["signed"]
    assert training_link["byproducts"]["evidence"] == list(chain.steps[2].evidence)


def test_artifact_names_are_matched_literally(tmp_path: Path, key: keys.PrivateKey) -> None:
    # "[" "*" "?" would be glob syntax in artifact rules; names must still match only themselves.
    model = tmp_path / "model"
    model.mkdir()
    (model / "shard[0]*?.bin").write_bytes(b"shard")
    (model / "shard0x.bin").write_bytes(b"other")
    shard = LinkArtifact(name="model/shard[0]*?.bin", sha256=hashlib.sha256(b"shard").hexdigest())
    other = LinkArtifact(name="model/shard0x.bin", sha256=hashlib.sha256(b"other").hexdigest())
    chain = Chain(
        steps=[
            EvidenceStep(name="training", products=(shard, other)),
            EvidenceStep(name="evaluation", materials=(shard, other)),
        ],
        final_products=[shard, other],
        model=model,
    )
    _export(tmp_path / "export", key, chain)
    result = _in_toto_verify(tmp_path / "export")
    assert result.returncode == 0, result.stdout + result.stderr


# -- rejections by the CLI -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("alter", "'DISALLOW files/*' matched the following artifacts: ['files/config.json']"),
        # Added or removed: the inspection's own check refuses first.
        ("add", "BadReturnValueError"),
        ("remove", "BadReturnValueError"),
    ],
)
def test_a_file_changed_under_files_is_rejected(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey, tamper: str, error: str
) -> None:
    """Attacker: a malicious export (docs/threat-model.md). Every link and the layout are
    intact, but the files handed over with them are not the released ones; the acceptance is
    test_exported_chain_passes_in_toto_verify."""
    directory = tmp_path / "export"
    _export(directory, key, chain)
    target = directory / "files" / "config.json"
    if tamper == "alter":
        target.write_text(target.read_text().replace("Tiny", "Tinz"))
    elif tamper == "add":
        (directory / "files" / "evil.pkl").write_bytes(b"cos\nsystem\n.")
    else:
        target.unlink()

    if tamper == "alter":
        stderr = _rejected(directory, "RuleVerificationError")
        assert "Full trace for 'expected_materials' of item 'files'" in stderr
    else:
        stderr = _rejected(directory, "BadReturnValueError")
        assert "'files-check', 'files', 'config.json'" in stderr, stderr
    assert error in stderr, stderr


@pytest.mark.parametrize(
    "added", ["evil.pyc", "x.link", ".git/config", "data.json~", "sub/y.link.bak", "a\nb"]
)
def test_a_file_added_under_files_is_rejected_even_where_in_toto_records_nothing(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey, added: str
) -> None:
    """Attacker: a malicious export adding a file whose name in-toto's default
    ARTIFACT_EXCLUDE_PATTERNS (``*.link*``, ``.git``, ``*.pyc``, ``*~``) keep out of what it
    records, so no artifact rule can see it (a file name with a newline for good measure). The
    ``files`` inspection's own command compares files/ with the released paths; the acceptance
    is test_exported_chain_passes_in_toto_verify."""
    directory = tmp_path / "export"
    _export(directory, key, chain)
    target = directory / "files" / added
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    stderr = _rejected(directory, "BadReturnValueError")
    assert "'files-check', 'files', 'config.json'" in stderr, stderr


def test_changed_byte_in_a_link_is_rejected(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey
) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain)
    link = _link(directory, key, "training")
    digest = chain.final_products[0].sha256
    forged = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    original = link.read_bytes()
    link.write_bytes(original.replace(digest.encode(), forged.encode()))
    assert link.read_bytes() != original

    stderr = _rejected(directory, "ThresholdVerificationError")
    assert "Step 'training' requires at least '1' links validly signed" in stderr


def test_missing_link_is_rejected(tmp_path: Path, chain: Chain, key: keys.PrivateKey) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain)
    _link(directory, key, "evaluation").unlink()

    stderr = _rejected(directory, "LinkNotFoundError")
    assert "Step 'evaluation' requires '1' link metadata file(s), found '0'" in stderr


def test_other_pinned_key_is_rejected(tmp_path: Path, chain: Chain, key: keys.PrivateKey) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain)
    other = keys.generate()
    (directory / "registry.pub").write_bytes(keys.public_pem(other.public_key()))

    stderr = _rejected(directory, "SignatureVerificationError")
    assert f"No signature found for key '{keyid(other.public_key())}'" in stderr


def test_layout_signed_by_another_key_is_rejected(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey
) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain)
    intruder = keys.generate()
    forged = export_layout(
        key=intruder,
        steps=chain.steps,
        expires=datetime.now(UTC) + timedelta(days=30),
        final_products=chain.final_products,
    )
    (directory / LAYOUT_FILENAME).write_bytes(forged[LAYOUT_FILENAME])

    stderr = _rejected(directory, "SignatureVerificationError")
    assert f"No signature found for key '{keyid(key.public_key())}'" in stderr


def test_layout_signature_under_the_registry_keyid_is_checked(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey
) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain)
    kid = keyid(key.public_key())

    def extend_expiry(layout: dict[str, Any]) -> None:
        layout["expires"] = "2099-01-01T00:00:00Z"

    layout_path = directory / LAYOUT_FILENAME
    _resign(layout_path, keys.generate(), extend_expiry)
    document = json.loads(layout_path.read_bytes())
    document["signatures"][0]["keyid"] = kid  # claim the registry's keyid
    layout_path.write_text(json.dumps(document))

    stderr = _rejected(directory, "SignatureVerificationError")
    assert f"Invalid signature for keyid '{kid}'" in stderr


def test_expired_layout_is_rejected(tmp_path: Path, chain: Chain, key: keys.PrivateKey) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain, expires=datetime.now(UTC) - timedelta(seconds=1))

    stderr = _rejected(directory, "LayoutExpiredError")
    assert "Layout expired" in stderr


@pytest.mark.parametrize(
    ("step", "field", "artifact"),
    [
        ("training", "materials", "datasets/fraud/tx@3"),
        ("training", "materials", "datasets/fraud/labels@1/part-1.parquet"),
        ("evaluation", "materials", "model/config.json"),
        ("release", "materials", "model/config.json"),
        ("release", "products", "model/config.json"),
    ],
)
def test_digest_that_breaks_the_chain_is_rejected(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey, step: str, field: str, artifact: str
) -> None:
    """Validly signed by the registry key, but the digest is not what the upstream step made."""
    directory = tmp_path / "export"
    _export(directory, key, chain)

    def swap_digest(link: dict[str, Any]) -> None:
        link[field][artifact] = {"sha256": _sha("swapped")}

    _resign(_link(directory, key, step), key, swap_digest)

    stderr = _rejected(directory, "RuleVerificationError")
    assert f"'DISALLOW *' matched the following artifacts: ['{artifact}']" in stderr


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("drop", "'REQUIRE datasets/fraud/tx@3' did not find datasets/fraud/tx@3"),
        ("add", "'DISALLOW *' matched the following artifacts: ['datasets/evil/poison@1']"),
    ],
)
def test_link_listing_other_artifacts_is_rejected(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey, change: str, error: str
) -> None:
    directory = tmp_path / "export"
    _export(directory, key, chain)

    def edit(link: dict[str, Any]) -> None:
        if change == "drop":
            del link["materials"]["datasets/fraud/tx@3"]
        else:
            link["materials"]["datasets/evil/poison@1"] = {"sha256": _sha("poison")}

    _resign(_link(directory, key, "training"), key, edit)

    stderr = _rejected(directory, "RuleVerificationError")
    assert error in stderr


def test_resigned_but_unchanged_link_still_verifies(
    tmp_path: Path, chain: Chain, key: keys.PrivateKey
) -> None:
    """The tampering helper itself keeps links valid: rejections above come from the change."""
    directory = tmp_path / "export"
    _export(directory, key, chain)
    _resign(_link(directory, key, "training"), key, lambda link: None)

    result = _in_toto_verify(directory)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the exporter refuses chains that could not verify ---------------------------------------


def _replace_step(chain: Chain, index: int, step: EvidenceStep) -> Chain:
    steps = list(chain.steps)
    steps[index] = step
    return Chain(steps=steps, final_products=chain.final_products)


def test_export_refuses_a_material_that_differs_from_its_product(
    chain: Chain, key: keys.PrivateKey
) -> None:
    training = chain.steps[2]
    swapped = LinkArtifact(name="datasets/fraud/tx@3", sha256=_sha("other"))
    broken = EvidenceStep(
        name="training", materials=(swapped, *training.materials[1:]), products=training.products
    )
    bad = _replace_step(chain, 2, broken)
    with pytest.raises(IntotoExportError) as raised:
        export_layout(
            key=key,
            steps=bad.steps,
            expires=datetime.now(UTC) + timedelta(days=1),
            final_products=bad.final_products,
        )
    assert str(raised.value) == (
        f"step training: material datasets/fraud/tx@3 has sha256 {_sha('other')}, "
        f"but step dataset-0 produced it with sha256 {_sha('tx root digest')}"
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: Chain(steps=[], final_products=c.final_products), "the chain has no steps"),
        (lambda c: Chain(steps=c.steps, final_products=[]), "no final products"),
        (
            lambda c: Chain(
                steps=c.steps,
                final_products=[LinkArtifact(name="model/extra.bin", sha256=_sha("x"))],
            ),
            "final product model/extra.bin is not a product of any step",
        ),
        (
            lambda c: Chain(steps=[*c.steps, c.steps[0]], final_products=c.final_products),
            "duplicate step name 'dataset-0'",
        ),
        (
            lambda c: Chain(
                steps=[*c.steps, EvidenceStep(name="release")], final_products=c.final_products
            ),
            "step name 'release' is reserved",
        ),
    ],
)
def test_export_refuses_an_unverifiable_chain(
    chain: Chain, key: keys.PrivateKey, mutate: Callable[[Chain], Chain], message: str
) -> None:
    bad = mutate(chain)
    with pytest.raises(IntotoExportError, match=re.escape(message)):
        export_layout(
            key=key,
            steps=bad.steps,
            expires=datetime.now(UTC) + timedelta(days=1),
            final_products=bad.final_products,
        )


def test_export_refuses_a_naive_expiry(chain: Chain, key: keys.PrivateKey) -> None:
    with pytest.raises(IntotoExportError, match="expires must be timezone-aware"):
        export_layout(
            key=key,
            steps=chain.steps,
            expires=datetime(2030, 1, 1),
            final_products=chain.final_products,
        )


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a\nb", "model/"])
def test_artifact_names_are_validated(name: str) -> None:
    with pytest.raises(IntotoExportError, match="invalid artifact name"):
        LinkArtifact(name=name, sha256=_sha("x"))


@pytest.mark.parametrize("digest", ["", "ABC", _sha("x").upper(), "sha256:" + _sha("x")])
def test_artifact_digests_are_validated(digest: str) -> None:
    with pytest.raises(InvalidDigestError, match="64 lowercase hex digits"):
        LinkArtifact(name="model/a.bin", sha256=digest)


@pytest.mark.parametrize("name", ["Training", "a/b", "-x", "a b", "x" * 65, ""])
def test_step_names_are_validated(name: str) -> None:
    with pytest.raises(IntotoExportError, match="invalid step name"):
        EvidenceStep(name=name)


def test_step_rejects_duplicate_artifacts_and_bad_evidence() -> None:
    a = LinkArtifact(name="model/a.bin", sha256=_sha("a"))
    with pytest.raises(
        IntotoExportError, match=re.escape("model/a.bin is listed twice in its products")
    ):
        EvidenceStep(name="training", products=(a, a))
    with pytest.raises(InvalidDigestError):
        EvidenceStep(name="training", evidence=(_sha("bundle"),))
