"""Small pieces the services share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.errors import NotFoundError
from registry.server.models import Namespace

Clock = Callable[[], datetime]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """At most ``limit`` items of a list, those after the one whose key is ``after``."""

    limit: int
    after: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; ``next_after`` is the key to ask for the next one (None: the end)."""

    items: list[T]
    next_after: str | None


def paged(rows: Sequence[T], page: PageRequest, key: Callable[[T], str]) -> Page[T]:
    """The page made of ROWS, fetched as up to ``page.limit + 1`` items after the cursor: the
    extra one only tells that more follow."""
    items = list(rows[: page.limit])
    more = len(rows) > page.limit
    return Page(items, key(items[-1]) if more and items else None)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def insert_for(session: Session) -> Any:
    """The dialect's INSERT construct (both support ``on_conflict_do_nothing``)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def ensure_namespace(session: Session, name: str, now: datetime) -> Namespace:
    """Get or create a namespace, safe under concurrent creators (INSERT … ON CONFLICT)."""
    insert = insert_for(session)
    session.execute(
        insert(Namespace)
        .values(name=name, created_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.execute(select(Namespace).where(Namespace.name == name)).scalar_one()


def get_namespace(session: Session, name: str) -> Namespace:
    found = session.execute(select(Namespace).where(Namespace.name == name)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"namespace {name!r} does not exist", namespace=name)
    return found


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the C heap's free memory back to the OS (glibc keeps what a large piece of work,
    a BOM, a scan, freed, and the process's resident size stays at its peak). A no-op
    elsewhere; about a millisecond here."""
    if _TRIM is not None:
        _TRIM(0)
