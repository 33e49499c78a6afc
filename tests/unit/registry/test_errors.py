from __future__ import annotations

import pytest

from registry import errors
from registry.errors import (
    PROBLEM_TYPE_BASE,
    PROBLEMS,
    RegistryError,
    error_from_problem,
    problem_for,
)


@pytest.mark.parametrize("cls", list(PROBLEMS))
def test_problem_roundtrip_rebuilds_the_same_class(cls: type[RegistryError]) -> None:
    status, slug = problem_for(cls("boom", path="a"))
    body = {"type": PROBLEM_TYPE_BASE + slug, "detail": "boom", "facts": {"path": "a"}}
    rebuilt = error_from_problem(status, body)
    assert type(rebuilt) is cls
    assert rebuilt.detail == "boom"
    assert rebuilt.facts == {"path": "a"}


def test_every_error_class_is_in_the_table() -> None:
    classes = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, RegistryError)
    }
    assert classes == set(PROBLEMS)


def test_unknown_problem_type_falls_back_on_status() -> None:
    error = error_from_problem(404, {"type": "about:blank", "title": "Not Found"})
    assert isinstance(error, errors.NotFoundError)
    assert error.detail == "Not Found"


def test_a_database_outage_reaches_the_sdk_as_its_own_error() -> None:
    """The server answers 503 database-unavailable for a lost database (the store has its own
    slug); the SDK rebuilds the matching class, both under ServiceUnavailableError."""
    from registry.errors import (
        PROBLEM_TYPE_BASE,
        DatabaseUnavailableError,
        ServiceUnavailableError,
        StorageUnavailableError,
        error_from_problem,
    )

    body = {"type": PROBLEM_TYPE_BASE + "database-unavailable", "detail": "retry shortly"}
    error = error_from_problem(503, body)
    assert type(error) is DatabaseUnavailableError and isinstance(error, ServiceUnavailableError)
    assert issubclass(StorageUnavailableError, ServiceUnavailableError)
