"""Names, references and in-version paths: validated once, at the edge (README: "How it works",
Names).

Grammar::

    NAME     = [a-z0-9][a-z0-9._-]{0,63}            namespace and artifact segments
    VERSION  = v?[0-9][A-Za-z0-9._+-]{0,63}         starts with a digit (optionally "v")
    ALIAS    = [a-z][a-z0-9._-]{0,63}, not "v<digit>…", not "sha256"
    REF      = NS/NAME@VERSION | NS/NAME@ALIAS | NS/NAME@sha256:<64 hex>

Versions start with a digit and aliases with a letter that is not a version prefix, so ``@X``
is never ambiguous: a publisher cannot create a version that shadows an alias such as ``prod``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from attest.digests import OMS_IGNORE_PATHS, is_sha256_hex
from registry.errors import (
    InvalidNameError,
    InvalidPathError,
    InvalidReferenceError,
    InvalidRequestError,
)

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"v?[0-9][A-Za-z0-9._+-]{0,63}")
_ALIAS = re.compile(r"[a-z][a-z0-9._-]{0,63}")

MAX_PATH_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255

# The same rules as JSON Schema patterns (ECMA-262), for the OpenAPI document: schema-valid means
# valid. The checks below stay the authority (a mismatch is a 400 ``invalid-name`` naming the
# rule); a test holds the two in agreement. A path's byte lengths and NFC form are beyond a
# pattern: for paths the pattern is necessary, not sufficient.
_NAME_RE = r"(?![a-z0-9._-]*\.\.)[a-z0-9][a-z0-9._-]{0,63}"
_VERSION_RE = r"v?[0-9][A-Za-z0-9._+-]{0,63}"
_SELECTOR_RE = rf"(?:{_VERSION_RE}|(?!sha256$)[a-z][a-z0-9._-]{{0,63}}|sha256:[0-9a-f]{{64}})"
_SEGMENT_RE = rf"[^/\x00-\x1f\x7f\\]{{1,{MAX_SEGMENT_LENGTH}}}"
NAME_PATTERN = rf"^{_NAME_RE}$"
VERSION_PATTERN = rf"^{_VERSION_RE}$"
ALIAS_PATTERN = r"^(?!v?[0-9])(?!sha256$)[a-z][a-z0-9._-]{0,63}$"
SELECTOR_PATTERN = rf"^{_SELECTOR_RE}$"
REF_PATTERN = rf"^{_NAME_RE}/{_NAME_RE}@{_SELECTOR_RE}$"
_IGNORED_RE = "|".join(re.escape(p) for p in OMS_IGNORE_PATHS)
PATH_PATTERN = (
    rf"^(?!(?:{_IGNORED_RE})(?:/|$))(?!(?:.*/)?\.\.?(?:/|$)){_SEGMENT_RE}(?:/{_SEGMENT_RE})*$"
)


class Kind(StrEnum):
    """What an artifact is."""

    MODEL = "model"
    DATASET = "dataset"
    CODE = "code"


class RefKind(StrEnum):
    """How a reference selects a version."""

    VERSION = "version"
    ALIAS = "alias"
    DIGEST = "digest"


def validate_name(value: str, *, what: str = "name") -> str:
    """A namespace or artifact name segment."""
    if _NAME.fullmatch(value) is None or value in {".", ".."} or ".." in value:
        raise InvalidNameError(
            f"invalid {what} {_shown(value)}: use 1-64 characters from [a-z0-9._-], "
            "starting with a letter or digit",
            field=what,
            value=_shown(value),
        )
    return value


def validate_version(value: str) -> str:
    """A version string: starts with a digit (optionally prefixed by ``v``)."""
    if _VERSION.fullmatch(value) is None:
        raise InvalidNameError(
            f"invalid version {_shown(value)}: a version starts with a digit (optionally 'v') "
            "and has at most 65 characters from [A-Za-z0-9._+-]",
            field="version",
            value=_shown(value),
        )
    return value


def validate_alias(value: str) -> str:
    """An alias name: starts with a letter and cannot be mistaken for a version."""
    if (
        _ALIAS.fullmatch(value) is None
        or _VERSION.fullmatch(value) is not None
        or value == "sha256"
    ):
        raise InvalidNameError(
            f"invalid alias {_shown(value)}: an alias starts with a letter, is not shaped "
            "like a version (v1…), and has at most 64 characters from [a-z0-9._-]",
            field="alias",
            value=_shown(value),
        )
    return value


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference to one artifact version."""

    namespace: str
    name: str
    selector: str
    kind: RefKind

    @property
    def artifact(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}@{self.selector}"


def parse_selector(selector: str) -> tuple[str, RefKind]:
    """Classify what follows ``@`` in a reference."""
    if selector.startswith("sha256:"):
        hexpart = selector.removeprefix("sha256:")
        if not is_sha256_hex(hexpart):
            raise InvalidReferenceError(
                f"invalid digest selector {_shown(selector)}: expected sha256:<64 lowercase hex>",
                value=_shown(selector),
            )
        return selector, RefKind.DIGEST
    if _VERSION.fullmatch(selector):
        return selector, RefKind.VERSION
    return validate_alias(selector), RefKind.ALIAS


def parse_ref(value: str, *, require_selector: bool = True) -> Ref:
    """Parse ``NS/NAME@SELECTOR``.

    Raises:
        InvalidReferenceError: the shape is wrong.
        InvalidNameError: a part breaks the naming rules.
    """
    artifact, at, selector = value.partition("@")
    parts = artifact.split("/")
    if len(parts) != 2 or (require_selector and not (at and selector)):
        raise InvalidReferenceError(
            f"invalid reference {_shown(value)}: expected NS/NAME@VERSION, NS/NAME@ALIAS "
            "or NS/NAME@sha256:<digest>",
            value=_shown(value),
        )
    namespace = validate_name(parts[0], what="namespace")
    name = validate_name(parts[1], what="artifact name")
    if not selector:
        return Ref(namespace, name, "", RefKind.VERSION)
    sel, kind = parse_selector(selector)
    return Ref(namespace, name, sel, kind)


def validate_path(value: str) -> str:
    """A file path inside a version: relative, normalized POSIX, no traversal.

    Refused: empty, absolute, ``.``/``..``/empty segments, backslashes, NUL and other control
    characters, non-NFC Unicode (two spellings of one name), over-long paths or segments, and the
    top-level paths that OMS signatures ignore (``.git``…), which could never be signed.
    """
    if not value:
        raise InvalidPathError("empty file path", path=value)
    problem: str | None = None
    if value.startswith("/"):
        problem = "absolute paths are not allowed"
    elif "\\" in value:
        problem = "backslashes are not allowed"
    elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        problem = "control characters (including NUL) are not allowed"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_LENGTH:
        problem = f"longer than {MAX_PATH_LENGTH} bytes"
    elif unicodedata.normalize("NFC", value) != value:
        problem = "not in Unicode NFC form"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "not valid UTF-8"
    if problem is None:
        for segment in value.split("/"):
            if segment in {"", ".", ".."}:
                problem = "empty, '.' and '..' segments are not allowed"
                break
            if len(segment.encode("utf-8")) > MAX_SEGMENT_LENGTH:
                problem = f"a segment is longer than {MAX_SEGMENT_LENGTH} bytes"
                break
    if problem is None and value.split("/", 1)[0] in OMS_IGNORE_PATHS:
        problem = f"top-level {value.split('/', 1)[0]!r} is ignored by model signatures"
    if problem is not None:
        raise InvalidPathError(f"invalid file path {_shown(value)}: {problem}", path=_shown(value))
    return value


def _shown(value: str) -> str:
    """A value safe to echo back in an error: bounded and with control characters escaped."""
    text = value if len(value) <= 120 else value[:117] + "..."
    return text.encode("unicode_escape").decode("ascii")


EXTERNAL_SCHEMES = frozenset(
    {"s3", "gs", "gcs", "az", "abfs", "abfss", "wasbs", "hdfs", "https", "http", "file"}
)
_SECRET_QUERY = re.compile(r"(?i)(signature|credential|token|secret|password|(^|[_-])sig$|key)")
MAX_URI_LENGTH = 2048


def validate_external_uri(value: str) -> str:
    """Where an external file's bytes live: a plain URI, never one that carries credentials."""
    if not value or len(value) > MAX_URI_LENGTH:
        raise InvalidRequestError(f"a file URI must be 1-{MAX_URI_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise InvalidRequestError(f"file URI {_shown(value)} has spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme.lower() not in EXTERNAL_SCHEMES:
        raise InvalidRequestError(
            f"file URI {_shown(value)}: scheme must be one of {', '.join(sorted(EXTERNAL_SCHEMES))}"
        )
    if parts.scheme.lower() != "file" and not parts.netloc:
        raise InvalidRequestError(f"file URI {_shown(value)} has no host or bucket")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError(f"file URI {_shown(value)} carries credentials")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_QUERY.search(key):
            raise InvalidRequestError(
                f"file URI {_shown(value)} carries a credential-like query parameter {key!r} "
                "(presigned URLs expire and leak access; register the plain object URI)"
            )
    return value
