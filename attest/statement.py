"""in-toto Statement v1: the one payload every modelseal signature carries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attest.digests import is_sha256_hex
from attest.errors import InvalidStatementError
from attest.jsonsafe import dumps_canonical, loads

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MAX_SUBJECTS = 1024


@dataclass(frozen=True, slots=True)
class Subject:
    """What a statement is about: a name and its digests (sha256 required)."""

    name: str
    sha256: str
    other_digests: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {**self.other_digests, "sha256": self.sha256}}


@dataclass(frozen=True, slots=True)
class Statement:
    """An in-toto Statement v1."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_json() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, compact): what a signer signs."""
        return dumps_canonical(self.to_json())

    @property
    def subject(self) -> Subject:
        """The single subject of a statement about one artifact version.

        Raises:
            InvalidStatementError: the statement has several subjects.
        """
        if len(self.subjects) != 1:
            raise InvalidStatementError(f"expected exactly one subject, found {len(self.subjects)}")
        return self.subjects[0]

    @classmethod
    def parse(cls, payload: bytes) -> Statement:
        """Parse and check a statement payload.

        Raises:
            DocumentError subclasses: malformed JSON, size or depth caps, wrong shape.
        """
        document = loads(payload, what="statement")
        return cls.from_json(document)

    @classmethod
    def from_json(cls, document: Any) -> Statement:
        if not isinstance(document, dict):
            raise InvalidStatementError("a statement must be a JSON object")
        if document.get("_type") != STATEMENT_TYPE:
            raise InvalidStatementError(
                f"_type must be {STATEMENT_TYPE!r}, got {str(document.get('_type'))[:80]!r}"
            )
        raw_subjects = document.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise InvalidStatementError("subject must be a non-empty list")
        if len(raw_subjects) > MAX_SUBJECTS:
            raise InvalidStatementError(f"more than {MAX_SUBJECTS} subjects")
        subjects = tuple(_subject(s) for s in raw_subjects)
        predicate_type = document.get("predicateType")
        if not isinstance(predicate_type, str) or not predicate_type:
            raise InvalidStatementError("predicateType must be a non-empty string")
        predicate = document.get("predicate", {})
        if not isinstance(predicate, dict):
            raise InvalidStatementError("predicate must be a JSON object")
        unknown = set(document) - {"_type", "subject", "predicateType", "predicate"}
        if unknown:
            raise InvalidStatementError(f"unknown statement fields: {sorted(unknown)}")
        return cls(subjects, predicate_type, predicate)


def _subject(raw: Any) -> Subject:
    if not isinstance(raw, dict) or not isinstance(raw.get("digest"), dict):
        raise InvalidStatementError("each subject needs a name and a digest object")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise InvalidStatementError("subject name must be a string")
    digest: dict[str, Any] = raw["digest"]
    sha256 = digest.get("sha256")
    if not isinstance(sha256, str) or not is_sha256_hex(sha256):
        raise InvalidStatementError(
            f"subject {name[:80]!r} has no sha256 digest (64 lowercase hex digits)"
        )
    others = {k: v for k, v in digest.items() if k != "sha256"}
    if not all(isinstance(v, str) for v in others.values()):
        raise InvalidStatementError(f"subject {name[:80]!r} has a non-string digest")
    return Subject(name, sha256, others)


def make_statement(
    *, name: str, root_digest: str, predicate_type: str, predicate: Mapping[str, Any]
) -> Statement:
    """A statement about one artifact version."""
    if not is_sha256_hex(root_digest):
        raise InvalidStatementError("root digest must be 64 lowercase hex digits")
    return Statement((Subject(name, root_digest),), predicate_type, dict(predicate))


def subject_names(statement: Statement) -> Sequence[str]:
    return [s.name for s in statement.subjects]
