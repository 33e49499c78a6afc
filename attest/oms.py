"""OpenSSF Model Signing (OMS) statements, built from digests already known.

The statement ``model_signing`` 1.1 signs for a directory (``files`` serialization, sha256):
subject = the model's root digest, predicate = the file list and the serialization parameters.
Built here from the digests the registry verified during the upload, so signing re-reads nothing;
``model_signing verify`` accepts the result (tested with its CLI).
"""

from __future__ import annotations

from collections.abc import Sequence

from attest.digests import OMS_IGNORE_PATHS, FileDigest, oms_order, root_digest
from attest.errors import InvalidStatementError, ManifestMismatchError, SubjectMismatchError
from attest.predicates import OMS_SIGNATURE
from attest.statement import Statement, make_statement


def oms_statement(name: str, files: Sequence[FileDigest]) -> Statement:
    """The OMS statement for a file set named ``name`` (``NS/NAME``)."""
    predicate = {
        "resources": [
            {"name": f.path, "algorithm": "sha256", "digest": f.sha256}
            for f in sorted(files, key=oms_order)
        ],
        "serialization": {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "ignore_paths": sorted(OMS_IGNORE_PATHS),
        },
    }
    return make_statement(
        name=name,
        root_digest=root_digest(files),
        predicate_type=OMS_SIGNATURE,
        predicate=predicate,
    )


def oms_resources(statement: Statement) -> dict[str, str]:
    """``path -> sha256`` from an OMS statement, after checking its shape.

    Raises:
        InvalidStatementError: not an OMS statement over sha256 ``files`` serialization.
    """
    if statement.predicate_type != OMS_SIGNATURE:
        raise InvalidStatementError(
            f"predicateType is {statement.predicate_type!r}, not {OMS_SIGNATURE!r}"
        )
    serialization = statement.predicate.get("serialization")
    if not isinstance(serialization, dict) or serialization.get("method") != "files":
        raise InvalidStatementError("OMS serialization method must be 'files'")
    if serialization.get("hash_type") != "sha256":
        raise InvalidStatementError("OMS hash_type must be 'sha256'")
    if serialization.get("allow_symlinks") not in (False, None):
        raise InvalidStatementError("OMS signatures that allow symlinks are not accepted")
    resources = statement.predicate.get("resources")
    if not isinstance(resources, list) or not resources:
        raise InvalidStatementError("OMS resources must be a non-empty list")
    out: dict[str, str] = {}
    for item in resources:
        if not isinstance(item, dict):
            raise InvalidStatementError("each OMS resource must be an object")
        name, algorithm, digest = item.get("name"), item.get("algorithm"), item.get("digest")
        if not isinstance(name, str) or not isinstance(digest, str) or algorithm != "sha256":
            raise InvalidStatementError(f"OMS resource {str(name)[:80]!r} is not sha256")
        if name in out:
            raise InvalidStatementError(f"OMS resource {name!r} appears twice")
        out[name] = digest
    return out


def check_oms(statement: Statement, files: Sequence[FileDigest]) -> None:
    """Check that an OMS statement covers exactly ``files`` and names their root digest.

    Raises:
        InvalidStatementError: not an OMS statement.
        SubjectMismatchError: the subject is another root digest.
        ManifestMismatchError: files missing, extra, or with other digests (each named).
    """
    listed = oms_resources(statement)
    have = {f.path: f.sha256 for f in files}
    missing = sorted(have.keys() - listed.keys())
    extra = sorted(listed.keys() - have.keys())
    changed = sorted(p for p in have.keys() & listed.keys() if have[p] != listed[p])
    if missing or extra or changed:
        parts: list[str] = []
        for label, paths in (
            ("not signed", missing),
            ("not pushed", extra),
            ("different", changed),
        ):
            if paths:
                shown = ", ".join(paths[:5]) + (
                    f" and {len(paths) - 5} more" if len(paths) > 5 else ""
                )
                parts.append(f"{label}: {shown}")
        raise ManifestMismatchError(
            "the signed manifest does not match the files: " + "; ".join(parts),
            missing=missing,
            extra=extra,
            changed=changed,
        )
    expected_root = root_digest(files)
    subject = statement.subject
    if subject.sha256 != expected_root:
        raise SubjectMismatchError(
            f"signature subject is sha256:{subject.sha256}, the files have sha256:{expected_root}",
            expected=f"sha256:{expected_root}",
            got=f"sha256:{subject.sha256}",
        )
