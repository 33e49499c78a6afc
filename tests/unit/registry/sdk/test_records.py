"""registry.sdk.records: the read answers the CLI prints, checked by hand instead of by pydantic.

Each record mirrors a registry.wire model (same fields, types, defaults), gives the same JSON and
the same times for every answer the model accepts that a registry sends, and turns every
malformed answer into a ResponseVerificationError naming the request and the field: each check
has its rejection here.
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from registry import wire
from registry.errors import InvalidRequestError, ResponseVerificationError
from registry.names import Kind
from registry.sdk import records
from registry.sdk.client import RegistryClient
from registry.sdk.records import parse, parse_list

WHERE = "GET /v1/namespaces/a/artifacts/b/versions/1"
TIME = "2026-12-02T11:50:17.979941Z"
D = "sha256:" + "d" * 64


def _version(**changes: Any) -> dict[str, Any]:
    version: dict[str, Any] = {
        "namespace": "a", "name": "b", "version": "1", "kind": "model", "state": "released",
        "root_digest": "sha256:" + "0" * 64, "file_count": 2, "total_size": 3,
        "created_at": TIME, "created_by": "admin", "state_reason": None, "external": False,
        "files": [{"path": "p", "size": 1, "digest": "sha256:" + "1" * 64, "uri": None},
                  {"path": "q/r", "size": 2, "digest": "sha256:" + "2" * 64}],
    }  # fmt: skip
    version.update(changes)
    return version


SAMPLES: dict[type[records.Record], dict[str, Any]] = {
    records.Namespace: {"name": "vision"},
    records.File: {"path": "p", "size": 0, "digest": "sha256:" + "0" * 64, "uri": "s3://b/p"},
    records.VersionSummary: {k: v for k, v in _version().items() if k != "files"},
    records.Version: _version(state_reason="why", external=True, bom_status="ready"),
    records.Artifact: {"namespace": "a", "name": "b", "kind": "dataset", "created_at": TIME,
                       "version_count": 3},
    records.Attestation: {"id": 7, "ref": "a/b@1", "predicate_type": "https://x/y",
                          "subject_digest": "sha256:" + "0" * 64,
                          "bundle_digest": "sha256:" + "1" * 64,
                          "signer": "ci", "signer_id": "sha256:22", "created_at": TIME,
                          "created_by": "admin"},
    records.Identity: {"name": "ci", "kind": "key", "fingerprint": "sha256:" + "0" * 64,
                       "sigstore_issuer": None, "sigstore_identity": None, "regex": False,
                       "created_at": TIME, "created_by": "admin"},
    records.Policy: {"namespace": "a", "revision": 0, "document": "model: {}\n",
                     "created_at": None, "created_by": None},
    records.AliasMove: {"alias": "prod", "from_version": None, "to_version": "1",
                        "actor": "admin", "at": TIME},
    records.Alias: {"alias": "prod", "version": "1", "state": "revoked", "updated_at": TIME,
                    "updated_by": "admin"},
    records.Token: {"id": "ab12", "name": "t", "role": "deployer", "namespace": "a",
                    "created_at": TIME, "expires_at": "2027-01-01T00:00:00+02:00",
                    "revoked": True, "token": None},
}  # fmt: skip


def _model(record: type[records.Record]) -> Any:
    return getattr(wire, records.MIRRORS[record])


# -- the records mirror the wire models --------------------------------------------------------


@pytest.mark.parametrize("record", list(records.MIRRORS), ids=lambda r: r.__name__)
def test_each_record_has_its_models_fields_types_and_defaults(
    record: type[records.Record],
) -> None:
    model = _model(record)
    mirrored = {m: getattr(wire, w) for m, w in records.MIRRORS.items()}
    # a digest field holds sha256:<hex> on both sides (the model: a pattern; the record: a check)
    digests = {records.DigestText: str, records.DigestText | None: wire.DigestText | None}
    hints = typing.get_type_hints(record, vars(records))
    fields = dict(records.fields(record))
    assert list(fields) == list(model.model_fields)
    for name, info in model.model_fields.items():
        expected, got = info.annotation, hints[name]
        if typing.get_origin(got) is list:  # list[File] mirrors list[FilePublic]
            (item,) = typing.get_args(got)
            assert typing.get_origin(expected) is list
            assert typing.get_args(expected) == (mirrored[item],), name
        else:
            assert digests.get(got, got) == expected, name
        if got is records.DigestText:
            assert "pattern='^sha256:[0-9a-f]{64}$'" in repr(info.metadata), name
        if info.is_required():
            assert fields[name] is records.REQUIRED, name
        else:
            assert fields[name] == info.default, name
        if isinstance(got, types.UnionType):
            assert type(None) in typing.get_args(got)


def test_every_model_the_cli_reads_has_a_record() -> None:
    assert set(records.MIRRORS.values()) >= {
        "VersionPublic", "VersionSummary", "ArtifactPublic", "AttestationPublic",
        "IdentityPublic", "PolicyPublic", "AliasPublic", "AliasMovePublic", "TokenPublic",
    }  # fmt: skip
    assert set(SAMPLES) == set(records.MIRRORS)


@pytest.mark.parametrize("record", list(records.MIRRORS), ids=lambda r: r.__name__)
def test_a_record_dumps_what_its_model_dumps(record: type[records.Record]) -> None:
    sample = {**SAMPLES[record], "unknown_field": [1, 2]}  # ignored by both
    parsed = parse(record, sample, WHERE)
    assert parsed.as_json() == _model(record).model_validate(sample).model_dump(mode="json")
    # and what is left out where a default exists
    required = {k: v for k, v in sample.items() if k in _required(record)}
    assert parse(record, required, WHERE).as_json() == (
        _model(record).model_validate(required).model_dump(mode="json")
    )


def _required(record: type[records.Record]) -> set[str]:
    return {name for name, default in records.fields(record) if default is records.REQUIRED}


def test_token_list_leaves_the_secret_out_as_the_model_does() -> None:
    sample = {**SAMPLES[records.Token], "token": "ms_ab12_secret"}
    token = parse(records.Token, sample, WHERE)
    assert token.as_json(exclude={"token"}) == (
        wire.TokenPublic.model_validate(sample).model_dump(mode="json", exclude={"token"})
    )
    assert "token" not in token.as_json(exclude={"token"})


TIMES = [
    "2026-12-02T11:50:17.979941Z", "2026-12-02T11:50:17Z", "2026-12-02T11:50:17.120000Z",
    "2026-12-02T11:50:17.1Z", "2026-12-02T11:50:17+00:00", "2026-12-02T11:50:17.5+02:00",
    "2026-12-02T11:50:17-05:30", "2026-12-02T11:50:17", "2026-12-02 11:50:17Z",
    "2026-12-02t11:50:17z", "2026-12-02T11:50:17.1234567Z", "2026-12-02T11:50:17.000000Z",
    "2026-12-02T11:50:17.000001-00:00", "1999-01-01T00:00:00+14:00", "2026-12-02T23:59:59-12:00",
]  # fmt: skip


@pytest.mark.parametrize("text", TIMES)
def test_times_read_and_written_as_pydantic_does(text: str) -> None:
    sample = {**SAMPLES[records.Alias], "updated_at": text}
    record = parse(records.Alias, sample, WHERE)
    model = wire.AliasPublic.model_validate(sample)
    assert record.updated_at == model.updated_at
    assert record.updated_at.isoformat() == model.updated_at.isoformat()  # the tables
    assert record.as_json() == model.model_dump(mode="json")  # --json
    assert records.parse_time(text).utcoffset() == model.updated_at.utcoffset()


def test_dump_time_writes_z_for_utc_only() -> None:
    assert records.dump_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    moved = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-3)))
    assert records.dump_time(moved) == "2026-01-02T03:04:05.000006-03:00"
    assert records.dump_time(datetime(2026, 1, 2)) == "2026-01-02T00:00:00"


# -- every check rejects what it is there for --------------------------------------------------


def _rejected(record: type[records.Record], data: Any, *words: str) -> str:
    with pytest.raises(ResponseVerificationError) as caught:
        parse(record, data, WHERE)
    message = str(caught.value)
    assert message.startswith(f"the registry's answer to {WHERE} is malformed: "), message
    assert caught.value.facts == {"request": WHERE}
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize("answer", [[], "text", None, 3, True])
def test_an_answer_that_is_not_an_object(answer: Any) -> None:
    _rejected(records.Version, answer, "the answer is", "not an object")


def test_a_missing_field() -> None:
    broken = _version()
    del broken["created_by"]
    assert _rejected(records.Version, broken).endswith(": created_by is missing")
    del broken["files"][1]["size"]
    _rejected(records.Version, {**broken, "created_by": "x"}, "files[1].size is missing")


@pytest.mark.parametrize("value", [7, None, ["a"], {"a": 1}, 1.5, True])
def test_a_string_that_is_not_one(value: Any) -> None:
    _rejected(records.Version, _version(namespace=value), "namespace is", "not a string")


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "true"), (False, "false"), (1.0, "1.0"), ("12", '"12"'), (None, "null"),
     ([1], "[1]")],
)  # fmt: skip
def test_an_integer_that_is_not_one(value: Any, shown: str) -> None:
    message = _rejected(records.Version, _version(total_size=value), "not an integer")
    assert message.endswith(f"total_size is {shown}, not an integer")


@pytest.mark.parametrize("value", [1, 0, "true", "false", None, "yes"])
def test_a_boolean_that_is_not_one(value: Any) -> None:
    _rejected(records.Version, _version(external=value), "external is", "not true or false")


@pytest.mark.parametrize(
    "value",
    [1700000000, "1700000000", "2026-12-02", "2026-12-02T11:50Z", "yesterday", "",
     "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z", "2026-12-02T24:00:00Z",
     "2026-12-02T11:50:17+24:00", "2026-12-02T11:50:17+0200", "2026-12-02T11:50:17.Z",
     "2026-12-02T11:50:17+00:00:30", " 2026-12-02T11:50:17Z", "2026-12-02T11:50:17Z\n", None],
)  # fmt: skip
def test_a_time_that_is_not_one(value: Any) -> None:
    _rejected(records.Version, _version(created_at=value), "created_at is",
              "not an RFC 3339 date-time")  # fmt: skip


@pytest.mark.parametrize("value", ["Model", "weights", "", 1, None])
def test_a_kind_that_is_not_one(value: Any) -> None:
    _rejected(records.Version, _version(kind=value), "kind is",
              "not one of model, dataset, code")  # fmt: skip


@pytest.mark.parametrize("value", ["done", "Ready", "", 1, False, ["ready"]])
def test_a_status_that_is_not_one_of_its_values(value: Any) -> None:
    _rejected(records.Version, _version(bom_status=value), "bom_status is",
              "not one of pending, ready, failed")  # fmt: skip


def test_an_optional_field_that_is_neither_null_nor_of_its_type() -> None:
    _rejected(records.Version, _version(state_reason=3), "state_reason is 3, not a string")
    token = {**SAMPLES[records.Token], "expires_at": "soon"}
    _rejected(records.Token, token, 'expires_at is "soon", not an RFC 3339 date-time')
    for present in ("namespace", "fingerprint"):  # required even though null is allowed
        record = records.Token if present == "namespace" else records.Identity
        sample = dict(SAMPLES[record])
        del sample[present]
        _rejected(record, sample, f"{present} is missing")


@pytest.mark.parametrize(
    ("files", "words"),
    [({"path": "p"}, "files is {\"path\": \"p\"}, not a list"),
     (None, "files is null, not a list"),
     (["p"], "files[0] is \"p\", not an object"),
     ([{"path": "p", "size": 1, "digest": D}, {"path": 2, "size": 1, "digest": D}],
      "files[1].path is 2, not a string"),
     ([{"path": "p", "size": -0.5, "digest": D}], "files[0].size is -0.5, not an integer"),
     ([{"path": "p", "size": 1, "digest": D, "uri": 5}], "files[0].uri is 5, not a string"),
     ([{"path": "p", "size": 1, "digest": "ab" * 32}],  # hex without its prefix
      'files[0].digest is "abababab'),
     ([{"path": "p", "size": 1, "digest": "sha256:AB"}],
      'files[0].digest is "sha256:AB", not sha256:<64 lowercase hex digits>')],
)  # fmt: skip
def test_a_list_field_and_its_items(files: Any, words: str) -> None:
    _rejected(records.Version, _version(files=files), words)


def test_a_list_answer_and_its_items() -> None:
    with pytest.raises(ResponseVerificationError, match=r"the answer is \{\}, not a list"):
        parse_list(records.Namespace, {}, WHERE)
    with pytest.raises(ResponseVerificationError, match=r": \[2\]\.name is missing$"):
        parse_list(records.Namespace, [{"name": "a"}, {"name": "b"}, {"nom": "c"}], WHERE)
    with pytest.raises(ResponseVerificationError, match=r": \[0\] is null, not an object$"):
        parse_list(records.Namespace, [None], WHERE)
    assert parse_list(records.Namespace, [], WHERE) == []


def test_a_long_value_is_cut_in_the_message() -> None:
    message = _rejected(records.Version, _version(namespace=["x" * 500]))
    assert len(message) < 250 and "..." in message


def test_what_a_registry_sends_is_accepted_whole() -> None:
    version = parse(records.Version, _version(), WHERE)
    assert version.kind is Kind.MODEL
    assert version.created_at == datetime(2026, 12, 2, 11, 50, 17, 979941, tzinfo=UTC)
    assert [f.path for f in version.files] == ["p", "q/r"]
    assert version.files[1].uri is None
    with pytest.raises(AttributeError, match="read-only"):
        version.state = "revoked"  # type: ignore[misc]
    assert version == parse(records.Version, _version(), WHERE)
    assert version != parse(records.Version, _version(state="revoked"), WHERE)
    assert "root_digest='sha256:" in repr(version)
    with pytest.raises(TypeError, match="unhashable"):
        hash(version)


def test_a_record_is_made_of_its_fields_only() -> None:
    with pytest.raises(TypeError, match="Namespace: name is required"):
        records.Namespace()
    with pytest.raises(TypeError, match="Namespace: no field size"):
        records.Namespace(name="a", size=1)
    assert records.File(path="p", size=1, digest=D).uri is None


# -- the client: every read a CLI command makes ------------------------------------------------


def _client(answers: dict[str, Any]) -> RegistryClient:
    """A client whose registry answers ANSWERS[path] (a JSON value, or bytes as they are)."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers.get(request.url.path)
        if answer is None:
            return httpx.Response(404, json={"type": "x", "detail": "no such thing"})
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer, headers={"content-type": "text/html"})
        return httpx.Response(200, json=answer)

    return RegistryClient("http://registry.test", "ms_ab_cd", transport=httpx.MockTransport(handle))


VERSION_PATH = "/v1/namespaces/a/artifacts/b/versions/1"


def test_the_client_reads_records_and_models_alike() -> None:
    answers = {
        VERSION_PATH: _version(),
        "/v1/namespaces": [{"name": "a"}, {"name": "b"}],
        "/v1/namespaces/a/artifacts": [SAMPLES[records.Artifact]],
        "/v1/namespaces/a/artifacts/b/versions": [SAMPLES[records.VersionSummary]],
        f"{VERSION_PATH}/attestations": [SAMPLES[records.Attestation]],
        "/v1/identities": [SAMPLES[records.Identity]],
        "/v1/namespaces/a/policy": SAMPLES[records.Policy],
        "/v1/namespaces/a/artifacts/b/aliases": [SAMPLES[records.Alias]],
        "/v1/namespaces/a/artifacts/b/aliases/prod/history": [SAMPLES[records.AliasMove]],
        "/v1/tokens": [SAMPLES[records.Token]],
    }
    with _client(answers) as client:
        assert client.show_record("a/b@1").as_json() == client.show("a/b@1").model_dump(mode="json")
        assert client.list_namespaces() == ["a", "b"]
        pairs = [
            (client.list_artifact_records("a"), client.list_artifacts("a")),
            (client.list_version_records("a", "b"), client.list_versions("a", "b")),
            (client.list_attestation_records("a/b@1"), client.list_attestations("a/b@1")),
            (client.list_identity_records(), client.list_identities()),
            ([client.policy_record("a")], [client.get_policy("a")]),
            (client.list_alias_records("a", "b"), client.list_aliases("a", "b")),
            (client.alias_history_records("a", "b", "prod"),
             client.alias_history("a", "b", "prod")),
            (client.list_token_records(), client.list_tokens()),
        ]  # fmt: skip
        for got, expected in pairs:
            assert [r.as_json() for r in got] == [m.model_dump(mode="json") for m in expected]


@pytest.mark.parametrize(
    ("read", "path", "answer", "words"),
    [
        (lambda c: c.show_record("a/b@1"), VERSION_PATH, _version(size=1, files=[{}]),
         f"GET {VERSION_PATH} is malformed: files[0].path is missing"),
        (lambda c: c.show_record("a/b@1"), VERSION_PATH, b"<html>busy</html>",
         f"GET {VERSION_PATH} is malformed: not JSON (text/html, 17 bytes)"),
        (lambda c: c.list_namespaces(), "/v1/namespaces", [{"name": 1}],
         "GET /v1/namespaces is malformed: [0].name is 1, not a string"),
        (lambda c: c.list_namespaces(), "/v1/namespaces", [["a"]],
         "GET /v1/namespaces is malformed: [0] is [\"a\"], not an object"),
        (lambda c: c.list_namespaces(), "/v1/namespaces", b"\xff\xfe",
         "GET /v1/namespaces is malformed: not JSON"),
        (lambda c: c.list_version_records("a", "b"), "/v1/namespaces/a/artifacts/b/versions",
         [{**SAMPLES[records.VersionSummary], "file_count": "2"}],
         "[0].file_count is \"2\", not an integer"),
        (lambda c: c.policy_record("a"), "/v1/namespaces/a/policy", [],
         "GET /v1/namespaces/a/policy is malformed: the answer is [], not an object"),
        (lambda c: c.list_token_records(), "/v1/tokens",
         [{**SAMPLES[records.Token], "revoked": "no"}], "[0].revoked is \"no\", not true or"),
    ],
)  # fmt: skip
def test_the_client_refuses_a_malformed_read(read: Any, path: str, answer: Any, words: str) -> None:
    with _client({path: answer}) as client, pytest.raises(ResponseVerificationError) as caught:
        read(client)
    assert words in str(caught.value)


def test_a_list_endpoint_that_answers_no_list_stays_an_invalid_request() -> None:
    with _client({"/v1/tokens": {"items": []}}) as client:
        with pytest.raises(InvalidRequestError, match="/v1/tokens did not answer a list"):
            client.list_token_records()


@pytest.mark.parametrize(
    "page", [{"seq": 1}, [1, 2], [{"seq": 1}, "x"], b"not json"], ids=str
)  # fmt: skip
def test_audit_entries_are_a_list_of_objects(page: Any) -> None:
    with (
        _client({"/v1/audit/log": page}) as client,
        pytest.raises((InvalidRequestError, ResponseVerificationError), match="/v1/audit/log"),
    ):
        client.audit_entries()


def test_audit_entry_fields_the_table_shows() -> None:
    entry = {"seq": 1, "at": "2026-12-02T11:50:17.367680+00:00", "actor": "admin",
             "action": "add_identity", "target": "/v1/identities", "outcome": "ok",
             "hash": "00", "details": "{}"}  # fmt: skip
    assert parse(records.AuditEntry, entry, WHERE).at == entry["at"]  # shown as sent
    for name, value in [("seq", "1"), ("at", 5), ("actor", None), ("outcome", ["ok"])]:
        with pytest.raises(ResponseVerificationError, match=rf": {name} is "):
            parse(records.AuditEntry, {**entry, name: value}, WHERE)
