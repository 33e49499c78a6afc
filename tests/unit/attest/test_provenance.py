"""SLSA v1 provenance predicates: typed ``--param`` values, build -> read round trips, and
every malformed input refused with a message a user can act on."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from attest.errors import AttestError, MalformedDocumentError
from attest.provenance import (
    BUILD_TYPE,
    MAX_BYPRODUCT,
    MAX_PARAM_VALUE,
    Byproduct,
    GitSource,
    Provenance,
    ProvenanceError,
    VersionDependency,
    build_predicate,
    check_parameters,
    model_card,
    parse_param,
    read_predicate,
)

COMMIT = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e"
DIGEST = "ab" * 32


# -- parse_param ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("epochs=3", 3),
        ("seed=0", 0),
        ("offset=-5", -5),
        ("zero=-0", 0),
        ("lr=0.01", 0.01),
        ("decay=-0.5", -0.5),
        ("wd=1e-4", 1e-4),
        ("big=1E5", 100000.0),
        ("scale=2.5e+3", 2500.0),
        ("early_stop=true", True),
        ("shuffle=false", False),
        ("scheduler=null", None),
    ],
)
def test_parse_param_keeps_numbers_booleans_and_null_typed(text: str, expected: Any) -> None:
    key, value = parse_param(text)
    assert key == text.partition("=")[0]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "adam",
        "1.2.3",  # a version, not a number
        "0x10",  # hex is not a JSON number
        "01",  # a leading zero is not a JSON number (zip codes, ids)
        "007",
        "1.",
        ".5",
        "+1",
        "1_000",
        "True",  # only JSON's lowercase spellings are booleans
        "None",
        "NaN",
        "inf",
        "",
        " 3",  # no trimming: spaces make it a string
    ],
)
def test_parse_param_keeps_everything_else_a_string(raw: str) -> None:
    assert parse_param(f"k={raw}") == ("k", raw)


def test_parse_param_splits_at_the_first_equals_sign_and_trims_the_key() -> None:
    assert parse_param("query=a=b") == ("query", "a=b")
    assert parse_param(" lr =0.1") == ("lr", 0.1)
    assert parse_param("model.dropout-rate_2=0.1") == ("model.dropout-rate_2", 0.1)


@pytest.mark.parametrize(
    "text",
    [
        "epochs",  # no '='
        "=3",  # empty key
        "1lr=3",  # starts with a digit
        "-lr=3",
        "l r=3",
        "lr;rm -rf=3",
        "lr/x=3",
        "ключ=3",
        "k" * 129 + "=3",  # keys are at most 128 characters
    ],
)
def test_parse_param_refuses_keys_that_are_not_plain_names(text: str) -> None:
    with pytest.raises(ProvenanceError, match="expected KEY=VALUE with a plain KEY"):
        parse_param(text)


def test_parse_param_key_length_limit_is_inclusive() -> None:
    assert parse_param("k" * 128 + "=1") == ("k" * 128, 1)


def test_parse_param_refuses_an_oversize_value() -> None:
    assert parse_param("notes=" + "x" * MAX_PARAM_VALUE)[1] == "x" * MAX_PARAM_VALUE
    with pytest.raises(
        ProvenanceError, match=f"--param notes: value longer than {MAX_PARAM_VALUE}"
    ):
        parse_param("notes=" + "x" * (MAX_PARAM_VALUE + 1))


def test_provenance_errors_are_attest_errors() -> None:
    """The CLI turns every AttestError into one readable line; ProvenanceError must be one."""
    assert issubclass(ProvenanceError, AttestError)


@pytest.mark.parametrize("raw", ["1e999", "-1e999", "1" * 400 + ".0"], ids=["+", "-", "digits"])
def test_a_param_that_overflows_to_infinity_is_refused_before_signing(raw: str) -> None:
    key, value = parse_param(f"x={raw}")
    assert math.isinf(value)  # parsed as the number it spells ...
    with pytest.raises(ProvenanceError, match=r"parameter x: -?inf is not a finite number"):
        check_parameters({key: value})  # ... but never recorded: JSON has no Infinity
    with pytest.raises(ProvenanceError, match="is not a finite number"):
        build_predicate(builder_id="https://ci.example/job", parameters={key: value})


# -- build -> read ------------------------------------------------------------------------------


def _full_predicate() -> dict[str, Any]:
    return build_predicate(
        builder_id="https://ci.example/jobs/train/42",
        parameters={
            "lr": 0.01,
            "epochs": 3,
            "optimizer": "adam",
            "early_stop": True,
            "scheduler": None,
        },
        dependencies=[
            VersionDependency("fraud/tx@3", DIGEST, "dataset"),
            VersionDependency("base/bert@1", "cd" * 32, "base-model"),
        ],
        git=GitSource("https://github.com/acme/train.git", COMMIT, dirty=True),
        sources=["s3://lake/raw/2024/", "https://data.example/export.csv"],
        byproducts=[
            Byproduct("environment", "requirements.txt", "text/plain", b"torch==2.3.0\n"),
            Byproduct("model-card", "model-card.json", "application/json", b'{"task": "x"}'),
        ],
        started=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        finished=datetime(2024, 5, 1, 13, 0, tzinfo=UTC),
        invocation_id="run-42",
    )


def test_build_predicate_writes_the_slsa_v1_shape() -> None:
    predicate = _full_predicate()
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"]["lr"] == 0.01
    assert definition["resolvedDependencies"] == [
        {"uri": "modelseal:fraud/tx@3", "digest": {"sha256": DIGEST}, "name": "dataset"},
        {"uri": "modelseal:base/bert@1", "digest": {"sha256": "cd" * 32}, "name": "base-model"},
        {
            "uri": f"git+https://github.com/acme/train.git@{COMMIT}",
            "digest": {"gitCommit": COMMIT},
            "name": "code",
            "annotations": {"dirty": True},
        },
        {"uri": "s3://lake/raw/2024/", "name": "source"},
        {"uri": "https://data.example/export.csv", "name": "source"},
    ]
    run = predicate["runDetails"]
    assert run["builder"] == {"id": "https://ci.example/jobs/train/42"}
    assert run["metadata"] == {
        "invocationId": "run-42",
        "startedOn": "2024-05-01T12:00:00+00:00",
        "finishedOn": "2024-05-01T13:00:00+00:00",
    }
    assert run["byproducts"][0] == {
        "name": "environment",
        "uri": "requirements.txt",
        "mediaType": "text/plain",
        "content": base64.b64encode(b"torch==2.3.0\n").decode(),
    }
    # Plain JSON: it is what gets signed.
    assert json.loads(json.dumps(predicate, allow_nan=False)) == predicate


def test_read_predicate_returns_what_build_predicate_wrote() -> None:
    read = read_predicate(json.loads(json.dumps(_full_predicate())))
    assert read.builder_id == "https://ci.example/jobs/train/42"
    assert read.parameters == {
        "lr": 0.01,
        "epochs": 3,
        "optimizer": "adam",
        "early_stop": True,
        "scheduler": None,
    }
    assert type(read.parameters["epochs"]) is int
    assert read.dependencies == (
        VersionDependency("fraud/tx@3", DIGEST, "dataset"),
        VersionDependency("base/bert@1", "cd" * 32, "base-model"),
    )
    assert read.git == GitSource("https://github.com/acme/train.git", COMMIT, dirty=True)
    assert read.sources == ("s3://lake/raw/2024/", "https://data.example/export.csv")
    assert read.byproducts == (
        Byproduct("environment", "requirements.txt", "text/plain", b"torch==2.3.0\n"),
        Byproduct("model-card", "model-card.json", "application/json", b'{"task": "x"}'),
    )
    assert read.byproduct("environment") is read.byproducts[0]
    assert read.byproduct("nothing") is None
    assert model_card(read) == {"task": "x"}


def test_a_clean_git_checkout_has_no_dirty_annotation() -> None:
    predicate = build_predicate(builder_id="b", git=GitSource("file:///src/repo", COMMIT))
    [entry] = predicate["buildDefinition"]["resolvedDependencies"]
    assert "annotations" not in entry
    assert read_predicate(predicate).git == GitSource("file:///src/repo", COMMIT, dirty=False)


def test_a_sha256_commit_and_an_scp_style_url_with_an_at_sign_round_trip() -> None:
    commit = "0123456789abcdef" * 4
    git = GitSource("git@github.com:acme/train.git", commit)
    assert read_predicate(build_predicate(builder_id="b", git=git)).git == git


def test_a_minimal_predicate_round_trips_to_an_empty_provenance() -> None:
    predicate = build_predicate(builder_id="https://ci.example/job")
    assert predicate == {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {},
            "resolvedDependencies": [],
        },
        "runDetails": {"builder": {"id": "https://ci.example/job"}},
    }
    assert read_predicate(predicate) == Provenance(builder_id="https://ci.example/job")
    assert model_card(read_predicate(predicate)) == {}


def test_only_a_dirty_annotation_of_exactly_true_reads_as_dirty() -> None:
    predicate = build_predicate(builder_id="b", git=GitSource("https://g/r", COMMIT))
    [entry] = predicate["buildDefinition"]["resolvedDependencies"]
    for annotation in ("true", 1, None, ["x"]):
        entry["annotations"] = {"dirty": annotation}
        assert read_predicate(predicate).git == GitSource("https://g/r", COMMIT, dirty=False)


# -- build_predicate refusals -------------------------------------------------------------------


def test_build_predicate_needs_a_builder_id() -> None:
    with pytest.raises(ProvenanceError, match="needs a builder id"):
        build_predicate(builder_id="")


@pytest.mark.parametrize(
    "commit",
    [
        COMMIT[:7],  # abbreviated
        COMMIT[:39],
        COMMIT + "0",  # 41
        COMMIT.upper(),  # git writes lowercase; the SDK lowercases before this
        "g" * 40,
        "",
    ],
)
def test_build_predicate_refuses_a_git_commit_that_is_not_a_full_hex_id(commit: str) -> None:
    with pytest.raises(ProvenanceError, match="is not a full hex commit id"):
        build_predicate(builder_id="b", git=GitSource("https://g/r", commit))


@pytest.mark.parametrize("role", ["source", "code-version", "Dataset", ""])
def test_build_predicate_refuses_an_unknown_dependency_role(role: str) -> None:
    with pytest.raises(ProvenanceError, match=f"unknown dependency role {role!r}"):
        build_predicate(builder_id="b", dependencies=[VersionDependency("a/b@1", DIGEST, role)])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_build_predicate_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ProvenanceError, match=f"parameter lr: {value} is not a finite number"):
        build_predicate(builder_id="b", parameters={"lr": value})


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], (1,), b"bytes", {1, 2}, object()])
def test_build_predicate_refuses_nested_or_non_json_parameters(value: Any) -> None:
    with pytest.raises(ProvenanceError, match="only strings, numbers, booleans and null"):
        build_predicate(builder_id="b", parameters={"p": value})


@pytest.mark.parametrize("key", ["", "1x", "a b", "a/b", 3])
def test_build_predicate_refuses_parameter_names_that_are_not_plain(key: Any) -> None:
    with pytest.raises(ProvenanceError, match="is not a plain name"):
        build_predicate(builder_id="b", parameters={key: 1})


def test_check_parameters_returns_a_copy() -> None:
    given = {"lr": 0.1}
    checked = check_parameters(given)
    assert checked == given and checked is not given


# -- read_predicate refusals --------------------------------------------------------------------


def _with(path: list[str], value: Any) -> dict[str, Any]:
    """A valid predicate with the value at ``path`` replaced."""
    predicate = _full_predicate()
    node: Any = predicate
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return predicate


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        ({}, "provenance has no buildDefinition"),
        ({"buildDefinition": []}, "provenance has no buildDefinition"),
        ({"buildDefinition": "x"}, "provenance has no buildDefinition"),
        (_with(["buildDefinition", "externalParameters"], [1]), "externalParameters is not an"),
        (_with(["buildDefinition", "resolvedDependencies"], {}), "resolvedDependencies is not a"),
        (_with(["buildDefinition", "resolvedDependencies"], "x"), "resolvedDependencies is not a"),
        (_with(["buildDefinition", "resolvedDependencies"], [{"name": "x"}]), "has no uri"),
        (_with(["buildDefinition", "resolvedDependencies"], [{"uri": 3}]), "has no uri"),
        (_with(["buildDefinition", "resolvedDependencies"], ["modelseal:a/b@1"]), "has no uri"),
        (
            _with(["buildDefinition", "resolvedDependencies"], [{"uri": "s3://x", "digest": "y"}]),
            "s3://x: digest is not an object",
        ),
    ],
)
def test_read_predicate_refuses_a_malformed_build_definition(
    predicate: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProvenanceError, match=message):
        read_predicate(predicate)


@pytest.mark.parametrize("content", ["not base64!", "YWJ", "YWJ\njZA==", "YWJj\u00e9"])
def test_read_predicate_refuses_a_byproduct_that_is_not_base64(content: str) -> None:
    predicate = _full_predicate()
    predicate["runDetails"]["byproducts"][0]["content"] = content
    with pytest.raises(ProvenanceError, match="byproduct 'environment' is not base64"):
        read_predicate(predicate)


def test_read_predicate_refuses_an_oversize_byproduct() -> None:
    predicate = _full_predicate()
    item = predicate["runDetails"]["byproducts"][0]
    item["content"] = base64.b64encode(b"x" * MAX_BYPRODUCT).decode()
    assert len(read_predicate(predicate).byproducts[0].content) == MAX_BYPRODUCT
    item["content"] = base64.b64encode(b"x" * (MAX_BYPRODUCT + 1)).decode()
    with pytest.raises(ProvenanceError, match=f"'environment' is over {MAX_BYPRODUCT} bytes"):
        read_predicate(predicate)


def test_read_predicate_tolerates_missing_run_details() -> None:
    predicate = _full_predicate()
    del predicate["runDetails"]
    read = read_predicate(predicate)
    assert read.builder_id is None and read.byproducts == ()
    assert read.dependencies  # the build definition is still read


# -- model_card ---------------------------------------------------------------------------------


def _card(content: bytes) -> Provenance:
    return Provenance(
        byproducts=(Byproduct("model-card", "model-card.json", "application/json", content),)
    )


@pytest.mark.parametrize("content", [b"[1, 2]", b'"task"', b"3", b"null"])
def test_model_card_refuses_a_card_that_is_not_an_object(content: bytes) -> None:
    with pytest.raises(ProvenanceError, match="the model card is not a JSON object"):
        model_card(_card(content))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "model card is not valid JSON"),
        (b"\xff\xfe", "model card is not valid UTF-8"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
    ],
)
def test_model_card_refuses_a_card_that_is_not_strict_json(content: bytes, message: str) -> None:
    with pytest.raises(MalformedDocumentError, match=message):
        model_card(_card(content))


def test_model_card_reads_the_card() -> None:
    card = {"task": "classification", "architecture": "resnet", "considerations": {"x": ["y"]}}
    assert model_card(_card(json.dumps(card).encode())) == card
