"""The registry's read answers as plain records, checked by hand: what the CLI's read commands
(``show``, ``list``, ``attestations``, ``alias list``…) print, without pydantic.

Those commands are mostly start-up, and importing pydantic, then building a schema per response
model, is a good part of it. Each class here mirrors one response model of :mod:`registry.wire`
field by field: same names, same types, same defaults (``tests/unit`` holds them together), and
:meth:`Record.as_json` gives what the model's ``model_dump(mode="json")`` gives. The SDK's own
methods (:meth:`RegistryClient.show` …) still answer with the pydantic models.

The checks are stricter than pydantic's lax mode, never looser: a string is a JSON string; an
integer is a JSON integer (not ``true``, ``1.0`` or ``"12"``); a boolean is ``true`` or
``false``; a time is an RFC 3339 date-time string; a kind is one of
:class:`~registry.names.Kind`, a status one of its literal values; a field without a default is
present (null where the model allows it); lists are lists and objects are objects. Fields the
models do not know are ignored, as pydantic ignores them. Anything else raises
:class:`~registry.errors.ResponseVerificationError` naming the request, the field and what was
there: never a traceback, never a table of whatever came.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Collection
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Literal, NewType, TypeVar

from registry.errors import ResponseVerificationError
from registry.names import Kind

R = TypeVar("R", bound="Record")

# RFC 3339 date-time (and what pydantic reads of it: a space or a lower-case t or z, no offset,
# more than six fraction digits, cut to microseconds).
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)
_ZERO = timedelta(0)

#: A digest as the API writes it, ``sha256:<64 lowercase hex digits>`` (``registry.wire``'s
#: ``DigestText``): a record field of this type holds nothing else.
DigestText = NewType("DigestText", str)
_DIGEST_TEXT = re.compile(r"sha256:[0-9a-f]{64}")


def parse_time(text: str) -> datetime:
    """An RFC 3339 date-time.

    Raises:
        ValueError: not one, or a date or offset that does not exist.
    """
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    tz: timezone | None = None
    if zulu:
        tz = UTC
    elif sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro,
                    tzinfo=tz)  # fmt: skip


def dump_time(value: datetime) -> str:
    """VALUE as pydantic writes a datetime in JSON: ISO 8601, ``Z`` for UTC."""
    text = value.isoformat()
    return text[:-6] + "Z" if value.utcoffset() == _ZERO else text


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a record's field that has none
REQUIRED: Any = _Required()


class Record:
    """A JSON object of a registry answer, checked (:func:`parse`) field by field.

    A subclass declares its fields as annotated class attributes, in the wire model's order; a
    value assigned in the class body is the field's default, a field without one is required.
    Records are immutable and compare by value. (Not dataclasses: generating their methods
    cost more of a read command's start-up than everything else here.)
    """

    #: the fields, in order, base classes' first: (name, default or REQUIRED)
    _fields: ClassVar[tuple[tuple[str, Any], ...]] = ()

    def __init_subclass__(cls) -> None:
        own = tuple(
            (name, vars(cls).get(name, REQUIRED))
            for name, kind in vars(cls).get("__annotations__", {}).items()
            if not str(kind).startswith("ClassVar")
        )
        cls._fields = (*cls._fields, *own)

    def __init__(self, **values: Any) -> None:
        for name, default in self._fields:
            value = values.pop(name, default)
            if value is REQUIRED:
                raise TypeError(f"{type(self).__name__}: {name} is required")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__}: no field {', '.join(values)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name, _ in self._fields
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, and holds lists

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, _ in self._fields)
        return f"{type(self).__name__}({fields})"

    def as_json(self, *, exclude: Collection[str] = ()) -> dict[str, Any]:
        """Every field, as ``model_dump(mode="json")`` of the matching wire model gives it."""
        return {
            name: _dumped(getattr(self, name)) for name, _ in self._fields if name not in exclude
        }


def fields(cls: type[Record]) -> tuple[tuple[str, Any], ...]:
    """CLS's fields, in order: (name, default, or :data:`REQUIRED`)."""
    return cls._fields


def _dumped(value: Any) -> Any:
    if isinstance(value, Record):
        return value.as_json()
    if isinstance(value, list):
        return [_dumped(v) for v in value]
    if isinstance(value, datetime):
        return dump_time(value)
    if isinstance(value, Kind):
        return value.value
    return value


_NONE = type(None)


def _field(kind: Any, value: Any, where: str, field: str) -> Any:
    """VALUE checked as KIND (a resolved annotation of a record's field)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (types.UnionType, typing.Union):  # X | None
        if value is None and _NONE in args:
            return None
        (kind,) = (a for a in args if a is not _NONE)
        args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin is list:
        return parse_list(args[0], value, where, field)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        expected = f"one of {', '.join(args)}"
    elif kind is str:
        if isinstance(value, str):
            return value
        expected = "a string"
    elif kind is DigestText:
        if isinstance(value, str) and _DIGEST_TEXT.fullmatch(value):
            return value
        expected = "sha256:<64 lowercase hex digits>"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        expected = "an integer"
    elif kind is bool:
        if isinstance(value, bool):
            return value
        expected = "true or false"
    elif kind is datetime:
        if isinstance(value, str):
            try:
                return parse_time(value)
            except ValueError:
                pass
        expected = "an RFC 3339 date-time"
    elif kind is Kind:
        if isinstance(value, str):
            try:
                return Kind(value)
            except ValueError:
                pass
        expected = f"one of {', '.join(k.value for k in Kind)}"
    else:  # pragma: no cover - a record field of a type this module does not check
        raise TypeError(f"{field}: no check for {kind!r}")
    raise malformed(where, f"{field} is {_shown(value)}, not {expected}")


_PLANS: dict[type[Record], tuple[tuple[str, Any, bool], ...]] = {}


def _fields(cls: type[Record]) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved type, required) of each field of CLS, resolved once."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        plan = tuple((name, hints[name], default is REQUIRED) for name, default in cls._fields)
        _PLANS[cls] = plan
    return plan


def malformed(where: str, problem: str) -> ResponseVerificationError:
    """The error for an answer to WHERE (``GET /v1/…``) that is not what the API promises."""
    return ResponseVerificationError(
        f"the registry's answer to {where} is malformed: {problem}", request=where
    )


def parse(cls: type[R], data: Any, where: str, field: str = "the answer") -> R:
    """DATA (decoded JSON, the answer to WHERE, or its part FIELD) checked as a CLS.

    Raises:
        ResponseVerificationError: naming WHERE, the field and the value that does not fit.
    """
    if not isinstance(data, dict):
        raise malformed(where, f"{field} is {_shown(data)}, not an object")
    values = {}
    for key, kind, required in _fields(cls):
        name = f"{field}.{key}" if field != "the answer" else key
        if key in data:
            values[key] = _field(kind, data[key], where, name)
        elif required:
            raise malformed(where, f"{name} is missing")
    return cls(**values)


def parse_list(cls: type[R], data: Any, where: str, field: str = "the answer") -> list[R]:
    """DATA checked as a JSON list of CLS (see :func:`parse`)."""
    if not isinstance(data, list):
        raise malformed(where, f"{field} is {_shown(data)}, not a list")
    prefix = "" if field == "the answer" else field
    return [parse(cls, item, where, f"{prefix}[{i}]") for i, item in enumerate(data)]


# Mirrors of registry.wire (same order of fields). Optional fields without a default are
# required, as in the models: present, and null or of their type.


class Namespace(Record):
    name: str


class File(Record):
    path: str
    size: int
    digest: DigestText
    uri: str | None = None


class VersionSummary(Record):
    namespace: str
    name: str
    version: str
    kind: Kind
    state: str
    root_digest: DigestText
    file_count: int
    total_size: int
    created_at: datetime
    created_by: str
    state_reason: str | None = None
    external: bool = False


class Version(VersionSummary):
    files: list[File]
    bom_status: Literal["pending", "ready", "failed"] | None = None


class Artifact(Record):
    namespace: str
    name: str
    kind: Kind
    created_at: datetime
    version_count: int


class Attestation(Record):
    id: int
    ref: str
    predicate_type: str
    subject_digest: DigestText
    bundle_digest: DigestText
    signer: str
    signer_id: str
    created_at: datetime
    created_by: str


class Identity(Record):
    name: str
    kind: str
    fingerprint: DigestText | None
    sigstore_issuer: str | None
    sigstore_identity: str | None
    regex: bool
    created_at: datetime
    created_by: str
    public_key_pem: str | None = None


class Policy(Record):
    namespace: str
    revision: int
    document: str
    created_at: datetime | None
    created_by: str | None


class AliasMove(Record):
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    at: datetime


class Alias(Record):
    alias: str
    version: str
    state: str
    updated_at: datetime
    updated_by: str


class Token(Record):
    id: str
    name: str
    role: str
    namespace: str | None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    revoked: bool = False
    token: str | None = None


class AuditEntry(Record):
    """The fields of an audit-log entry that ``audit log`` shows (entries carry more: hashes,
    details; :meth:`RegistryClient.audit_entries` keeps them whole). ``at`` is shown as sent."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str


#: each record and the registry.wire model it mirrors (AuditEntry has none: entries are dicts)
MIRRORS = {
    Namespace: "NamespacePublic",
    File: "FilePublic",
    VersionSummary: "VersionSummary",
    Version: "VersionPublic",
    Artifact: "ArtifactPublic",
    Attestation: "AttestationPublic",
    Identity: "IdentityPublic",
    Policy: "PolicyPublic",
    AliasMove: "AliasMovePublic",
    Alias: "AliasPublic",
    Token: "TokenPublic",
}
