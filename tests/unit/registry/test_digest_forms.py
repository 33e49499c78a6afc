"""One Digest type from the database to the wire: rows read back as Digest values, answers write
them as sha256:<hex>, and neither accepts a digest of the other form or none."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, insert, select
from sqlalchemy.orm import Session

from attest.digests import Digest, FileDigest
from attest.errors import InvalidDigestError
from registry.server.models import Base, Blob
from registry.server.services.versions import VersionRecord
from registry.wire import BlobPublic, FilePublic, VersionSummary

HEX = "cd" * 32


def test_a_digest_column_reads_back_a_digest_and_refuses_a_damaged_row() -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[Blob.__table__])  # type: ignore[list-item]
    now = datetime.now(UTC)
    with Session(engine) as session:
        session.add(Blob(digest=Digest(HEX), size=1, created_at=now))
        session.commit()
        stored = session.execute(select(Blob.digest)).scalar_one()
        assert type(stored) is Digest and stored.prefixed == f"sha256:{HEX}"
        # a row written around the ORM (a damaged or hand-edited database) is an error, never
        # a digest of unknown form
        damaged = insert(Blob.__table__).values(digest="sha256:" + HEX, size=1, created_at=now)
        session.execute(damaged)
        session.commit()
        with pytest.raises(InvalidDigestError, match="64 lowercase hex digits"):
            session.execute(select(Blob.digest)).scalars().all()


def test_answers_write_a_digest_prefixed_and_refuse_bare_hex() -> None:
    assert FilePublic(path="p", size=1, digest=Digest(HEX)).digest == f"sha256:{HEX}"
    assert BlobPublic(digest=f"sha256:{HEX}", size=1).digest == f"sha256:{HEX}"
    with pytest.raises(ValidationError, match="sha256"):
        BlobPublic(digest=HEX, size=1)  # a plain str of the other form is not written as is


def test_a_version_answer_is_its_record_read_by_attribute() -> None:
    record = VersionRecord(
        namespace="a", name="b", version="1", kind="model", state="pending",
        root_digest=Digest(HEX), file_count=1, total_size=1,
        created_at=datetime(2026, 12, 3, tzinfo=UTC), created_by="ci",
        files=(FileDigest("p", 1, Digest(HEX)),),
    )  # fmt: skip
    summary = VersionSummary.model_validate(record, from_attributes=True)
    assert summary.root_digest == f"sha256:{HEX}"
    assert summary.model_dump(mode="json")["kind"] == "model"
