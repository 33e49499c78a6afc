"""Export a version's supply chain as classic in-toto metadata that ``in-toto-verify`` checks.

:func:`export_layout` turns the chain the registry has already verified (datasets → training →
evaluation → release) into an in-toto 3.x *metablock* root layout plus one link per step, all
signed with the registry key. An auditor who trusts only that key re-checks the chain with the
stock CLI, no modelseal code involved::

    in-toto-verify --layout DIR/root.layout --verification-keys DIR/registry.pub --link-dir DIR

``registry.pub`` is the registry's SubjectPublicKeyInfo PEM (:func:`attest.keys.public_pem`), for
ECDSA P-256/384/521 and Ed25519 alike: in-toto 3.1 loads ``--verification-keys`` files with
``SSlibKey.from_crypto(load_pem_public_key(...))`` and needs no key-type flag. The keyid in the
layout and links is the one securesystemslib derives from that key (sha256 of the canonical JSON
of keytype, scheme and public value), so it does not depend on how the PEM is laid out. Links are
named ``<step>.<first 8 hex of the keyid>.link``, the name ``in-toto-verify`` looks for.

What the layout makes the verifier check, step by step:

1. every link is signed by the registry key (each step's ``pubkeys``, threshold 1);
2. every link lists exactly the artifacts the layout names (``REQUIRE`` each, ``DISALLOW *``);
3. a material that an earlier step produced has that product's digest
   (``MATCH <name> WITH PRODUCTS FROM <step>``): training used the datasets' digests, evaluation
   the model files training produced; materials nobody in the chain produced (code commits, base
   models) are ``ALLOW``-ed by name;
4. the final ``release`` step, added here from ``final_products``, took each final product from
   the step that produced it and released it unchanged.

5. the files handed over with the evidence (``files/`` beside the layout, as ``modelseal export
   --with-files`` writes them) are exactly the released ones: an inspection named ``files``
   makes ``in-toto-verify`` record every file under its working directory, and its rules
   ``REQUIRE`` each released file, ``MATCH`` it with the ``release`` step's product of the same
   path, and ``DISALLOW`` anything else under ``files/`` (an altered, added or missing file
   fails). Run the verifier inside the export directory::

       cd DIR && in-toto-verify --layout root.layout --verification-keys registry.pub

   in-toto records nothing whose name matches its ``ARTIFACT_EXCLUDE_PATTERNS`` (``*.link*``,
   ``.git``, ``*.pyc``, ``*~``), so no rule can see such a file. The inspection's command
   therefore checks ``files/`` itself: a POSIX ``sh`` script (:data:`FILES_CHECK`; no modelseal
   code) that lists every non-directory entry under ``files/`` with ``find`` and exits non-zero
   unless they are exactly the released paths, passed to it as arguments in the signed layout;
   ``in-toto-verify`` fails on that exit status (``BadReturnValueError``). A layout without files
   (``files_dir=None``) leaves the comparison to whoever verifies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attest import keys
from attest.digests import is_sha256_hex, parse_sha256
from attest.errors import IntotoExportError, InvalidDigestError

# in-toto and securesystemslib are imported where they are used: ``securesystemslib.signer``
# imports its AWS signer and with it boto3 (~30 MiB), which a server on local storage that never
# exports a layout would otherwise carry from its first import of this module.
if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]

__all__ = [
    "LAYOUT_FILENAME",
    "RELEASE_STEP",
    "EvidenceStep",
    "IntotoExportError",
    "LinkArtifact",
    "export_layout",
    "keyid",
    "link_filename",
]

#: File name of the signed root layout in an export.
LAYOUT_FILENAME = "root.layout"
#: Name of the step :func:`export_layout` adds for the final products.
RELEASE_STEP = "release"
#: The folder beside the layout that holds the released files, and the inspection checking it.
FILES_DIR = "files"
#: What the ``files`` inspection runs, as ``sh -c FILES_CHECK files-check DIR PATH...``: the
#: non-directory entries under DIR (found by ``find``, whatever in-toto excludes from recording)
#: must be exactly ``DIR/PATH`` for the PATHs given, compared as sorted lines; a name holding a
#: newline fails (released paths never do: :class:`LinkArtifact`). No braces: in-toto formats the
#: command into its error message with ``str.format``.
FILES_CHECK = r"""set -u
dir=$1; shift
if [ ! -d "$dir" ] || [ -h "$dir" ]; then
  echo "$dir/ is missing or not a directory" >&2; exit 1
fi
expected=$(for path in "$@"; do printf '%s\n' "$dir/$path"; done | LC_ALL=C sort)
found=$(find "$dir" ! -type d -print | LC_ALL=C sort)
newline=$(find "$dir" -name '*
*' -print)
if [ -n "$newline" ]; then echo "$dir/ holds a name with a newline" >&2; exit 1; fi
if [ "$found" = "$expected" ]; then exit 0; fi
echo "$dir/ holds other files than the released ones:" >&2
printf '%s\n' "$found" | while IFS= read -r entry; do
  case "
$expected
" in *"
$entry
"*) ;; *) printf '  not released: %s\n' "$entry" >&2 ;; esac
done
exit 1
"""

_HASH = "sha256"
# Step names become file names (``<step>.<keyid8>.link``): keep them plain.
_STEP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_GLOB_SPECIALS = re.compile(r"([*?\[])")


@dataclass(frozen=True, kw_only=True)
class LinkArtifact:
    """One artifact as in-toto sees it: a relative POSIX name and its sha256 hex digest.

    Names are e.g. ``model/weights.safetensors`` for files, ``datasets/NS/NAME@V`` for a dataset
    version known only by its root digest, ``code/REPO@COMMIT`` for a git commit.

    Raises:
        IntotoExportError: the name is empty, absolute, has ``.``/``..`` or empty segments, a
            backslash or a control character.
        InvalidDigestError: ``sha256`` is not 64 lowercase hex digits.
    """

    name: str
    sha256: str

    def __post_init__(self) -> None:
        segments = self.name.split("/")
        if (
            not self.name
            or any(segment in ("", ".", "..") for segment in segments)
            or "\\" in self.name
            or any(ord(char) < 0x20 or char == "\x7f" for char in self.name)
        ):
            raise IntotoExportError(
                f"invalid artifact name {self.name!r}: expected a relative POSIX path without "
                "'.', '..' or empty segments, backslashes or control characters",
                name=self.name,
            )
        if not is_sha256_hex(self.sha256):
            raise InvalidDigestError(self.sha256, expected="64 lowercase hex digits (sha256)")


@dataclass(frozen=True, kw_only=True)
class EvidenceStep:
    """One step of the chain and what it used and made, as the registry verified it.

    Attributes:
        name: the in-toto step name (``dataset-0``, ``training``, ``evaluation``):
            ``[a-z0-9][a-z0-9._-]{0,63}``, unique, and not ``release``.
        materials: artifacts the step used. One that an earlier step produced must carry that
            product's digest.
        products: artifacts the step made.
        command: how the step ran, recorded in the link and as the layout's expected command
            (in-toto only warns when they differ).
        evidence: ``sha256:<hex>`` digests of the attestation bundles this step was derived
            from, recorded in the link's ``byproducts``.
    """

    name: str
    materials: tuple[LinkArtifact, ...] = ()
    products: tuple[LinkArtifact, ...] = ()
    command: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if _STEP_NAME.fullmatch(self.name) is None:
            raise IntotoExportError(
                f"invalid step name {self.name!r}: expected [a-z0-9][a-z0-9._-]{{0,63}}",
                step=self.name,
            )
        for digest in self.evidence:
            parse_sha256(digest)
        _artifact_dict(self.name, "materials", self.materials)
        _artifact_dict(self.name, "products", self.products)


def keyid(public_key: keys.PublicKey) -> str:
    """The keyid in-toto computes for ``public_key`` when ``in-toto-verify`` loads its PEM."""
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    key: SSlibKey = SSlibKey.from_crypto(public_key)
    return key.keyid


def link_filename(step: str, key_id: str) -> str:
    """``<step>.<keyid prefix>.link``, the file ``in-toto-verify`` loads for a step."""
    from in_toto.models.link import FILENAME_FORMAT  # type: ignore[import-untyped]

    return str(FILENAME_FORMAT.format(step_name=step, keyid=key_id))


def export_layout(
    *,
    key: keys.PrivateKey,
    steps: Sequence[EvidenceStep],
    expires: datetime,
    final_products: Sequence[LinkArtifact],
    readme: str = "",
    files_dir: str | None = FILES_DIR,
) -> dict[str, bytes]:
    """Sign a root layout and one link per step, plus a ``release`` link for ``final_products``.

    Steps are in chain order: a material is matched against the latest *earlier* step that
    produced an artifact of the same name. Each final product must be a product of some step;
    the ``release`` step takes it from there unchanged and its link is the in-toto "final
    product" record. Write every returned file into one directory and verify with::

        in-toto-verify --layout DIR/root.layout --verification-keys registry.pub --link-dir DIR

    where ``registry.pub`` is ``keys.public_pem(key.public_key())``, pinned by the verifier (no
    ``--key-types`` flag exists or is needed in in-toto 3.1).

    Args:
        key: the registry's signing key (ECDSA P-256/384/521 or Ed25519); it signs the layout
            and every link and is the only functionary.
        steps: the chain, upstream first.
        expires: when the layout stops verifying; must be timezone-aware (stored in UTC, to the
            second). A time in the past gives a layout every verifier rejects.
        final_products: the artifacts the caller checked against the actual files.
        readme: human-readable description stored in the layout.
        files_dir: where the verifier finds the released files, relative to the directory it
            runs in: each final product ``<folder>/<path>`` is expected at
            ``<files_dir>/<path>`` with the same digest, and nothing else there (the ``files``
            inspection). None: no inspection; the files are not checked.

    Returns:
        ``{"root.layout": ..., "<step>.<keyid8>.link": ..., ...}``, layout first, then the links
        in chain order, ``release`` last.

    Raises:
        IntotoExportError: no steps or no final products, duplicate or reserved step names, a
            material whose digest differs from the earlier step's product, a final product no
            step produced, or a naive ``expires``. Nothing is signed when the chain would not
            verify.
    """
    if not steps:
        raise IntotoExportError("nothing to export: the chain has no steps")
    if not final_products:
        raise IntotoExportError("nothing to export: no final products")
    if expires.tzinfo is None or expires.utcoffset() is None:
        raise IntotoExportError(f"expires must be timezone-aware, got {expires.isoformat()}")
    from in_toto.models.layout import Layout, Step  # type: ignore[import-untyped]
    from in_toto.models.link import Link
    from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]

    signing_key = SSlibKey.from_crypto(key.public_key())
    signer = CryptoSigner(key, signing_key)
    key_id: str = signing_key.keyid

    chain = [*steps, _release_step(steps, final_products)]
    layout_steps: list[Any] = []
    links: dict[str, bytes] = {}
    producers: dict[str, tuple[str, str]] = {}  # artifact name -> (step, sha256)
    for step in chain:
        if link_filename(step.name, key_id) in links:
            raise IntotoExportError(f"duplicate step name {step.name!r}", step=step.name)
        if step.name == FILES_DIR and files_dir is not None:
            raise IntotoExportError(
                f"step name {FILES_DIR!r} is reserved for the files inspection", step=step.name
            )
        if step is not chain[-1] and step.name == RELEASE_STEP:
            raise IntotoExportError(
                f"step name {RELEASE_STEP!r} is reserved for the final products", step=step.name
            )
        layout_steps.append(
            Step(
                name=step.name,
                pubkeys=[key_id],
                threshold=1,
                expected_command=list(step.command),
                expected_materials=_material_rules(step, producers),
                expected_products=_product_rules(step, is_release=step is chain[-1]),
            )
        )
        link = Link(
            name=step.name,
            command=list(step.command),
            materials=_artifact_dict(step.name, "materials", step.materials),
            products=_artifact_dict(step.name, "products", step.products),
            byproducts={"evidence": list(step.evidence)} if step.evidence else {},
        )
        links[link_filename(step.name, key_id)] = _signed(link, signer)
        for product in step.products:
            producers[product.name] = (step.name, product.sha256)

    layout = Layout(
        steps=layout_steps,
        inspect=[] if files_dir is None else [_files_inspection(final_products, files_dir)],
        keys={key_id: {**signing_key.to_dict(), "keyid": key_id}},
        expires=expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        readme=readme,
    )
    return {LAYOUT_FILENAME: _signed(layout, signer), **links}


def _files_inspection(final_products: Sequence[LinkArtifact], files_dir: str) -> Any:
    """Bind ``files_dir/<path>`` to the ``release`` step's ``<folder>/<path>`` products."""
    if _STEP_NAME.fullmatch(files_dir) is None:
        raise IntotoExportError(f"invalid files directory {files_dir!r}: expected a plain name")
    folders = {artifact.name.split("/", 1)[0] for artifact in final_products}
    if len(folders) != 1 or any("/" not in artifact.name for artifact in final_products):
        raise IntotoExportError(
            "the final products must share one folder (e.g. model/<path>) to be found under "
            f"{files_dir}/: got {', '.join(sorted(folders))}"
        )
    [folder] = folders
    from in_toto.models.layout import Inspection

    paths = [artifact.name.split("/", 1)[1] for artifact in final_products]
    required = [["REQUIRE", f"{files_dir}/{path}"] for path in paths]
    matched = [
        ["MATCH", _literal(path), "IN", files_dir, "WITH", "PRODUCTS", "IN", folder, "FROM",
         RELEASE_STEP]
        for path in paths
    ]  # fmt: skip
    return Inspection(
        name=FILES_DIR,
        run=["sh", "-c", FILES_CHECK, "files-check", files_dir, *paths],
        expected_materials=[*required, *matched, ["DISALLOW", f"{files_dir}/*"], ["ALLOW", "*"]],
        expected_products=[["ALLOW", "*"]],
    )


def _release_step(
    steps: Sequence[EvidenceStep], final_products: Sequence[LinkArtifact]
) -> EvidenceStep:
    produced = {product.name for step in steps for product in step.products}
    for artifact in final_products:
        if artifact.name not in produced:
            raise IntotoExportError(
                f"final product {artifact.name} is not a product of any step",
                artifact=artifact.name,
            )
    artifacts = tuple(final_products)
    return EvidenceStep(name=RELEASE_STEP, materials=artifacts, products=artifacts)


def _material_rules(step: EvidenceStep, producers: dict[str, tuple[str, str]]) -> list[list[str]]:
    required = [["REQUIRE", material.name] for material in step.materials]
    consumed: list[list[str]] = []
    for material in step.materials:
        producer = producers.get(material.name)
        if producer is None:
            consumed.append(["ALLOW", _literal(material.name)])
            continue
        producer_step, digest = producer
        if digest != material.sha256:
            raise IntotoExportError(
                f"step {step.name}: material {material.name} has sha256 {material.sha256}, "
                f"but step {producer_step} produced it with sha256 {digest}",
                step=step.name,
                artifact=material.name,
                expected=digest,
                got=material.sha256,
            )
        consumed.append(
            ["MATCH", _literal(material.name), "WITH", "PRODUCTS", "FROM", producer_step]
        )
    return [*required, *consumed, ["DISALLOW", "*"]]


def _product_rules(step: EvidenceStep, *, is_release: bool) -> list[list[str]]:
    required = [["REQUIRE", product.name] for product in step.products]
    if is_release:
        # Released exactly the files it took in (which MATCH the producing step's products).
        consumed = [
            ["MATCH", _literal(product.name), "WITH", "MATERIALS", "FROM", step.name]
            for product in step.products
        ]
    else:
        consumed = [["ALLOW", _literal(product.name)] for product in step.products]
    return [*required, *consumed, ["DISALLOW", "*"]]


def _artifact_dict(
    step: str, field: str, artifacts: Sequence[LinkArtifact]
) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for artifact in artifacts:
        if artifact.name in out:
            raise IntotoExportError(
                f"step {step}: {artifact.name} is listed twice in its {field}",
                step=step,
                artifact=artifact.name,
            )
        out[artifact.name] = {_HASH: artifact.sha256}
    return out


def _literal(name: str) -> str:
    """``name`` as an fnmatch pattern that matches only itself (rules are globs)."""
    return _GLOB_SPECIALS.sub(r"[\1]", name)


def _signed(signable: Any, signer: CryptoSigner) -> bytes:
    from in_toto.models.metadata import Metablock  # type: ignore[import-untyped]

    metablock = Metablock(signed=signable)
    metablock.create_signature(signer)
    document: dict[str, Any] = metablock.to_dict()
    return json.dumps(document, indent=1, sort_keys=True).encode("utf-8") + b"\n"
