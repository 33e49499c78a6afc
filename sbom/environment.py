"""Read a training environment's packages from a pip requirements file or a CycloneDX JSON SBOM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from packageurl import PackageURL

from attest.errors import DocumentError
from attest.jsonsafe import loads as strict_json_loads
from sbom.errors import BomError
from sbom.model import EnvPackage

#: Largest environment file accepted.
MAX_ENVIRONMENT_BYTES = 1024 * 1024

#: Component types of a CycloneDX SBOM that count as installed packages.
_PACKAGE_TYPES = frozenset({"library", "framework", "application"})

# PEP 508 names, optional extras, then either "@ url" or version specifiers.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_REQUIREMENT = re.compile(rf"(?P<name>{_NAME})\s*(?:\[[^\]]*\])?\s*(?P<rest>.*)")
_SPEC = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[^,\s()]+"
_SPECIFIERS = re.compile(rf"\(?\s*(?:{_SPEC}\s*(?:,\s*{_SPEC}\s*)*)?\)?")
_EXACT = re.compile(r"\(?\s*===?\s*(?P<version>[^,\s()*]+)\s*\)?")
_COMMENT = re.compile(r"(?:^|\s)#.*")
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
#: Environment descriptions we do not read (conda, Poetry, Pipenv, uv, SPDX…): refused by name.
_OTHER_FORMATS = (".yml", ".yaml", ".toml", ".lock", ".cfg", ".ini", ".xml", ".spdx", ".rdf")


def parse_environment(data: bytes, filename: str) -> tuple[EnvPackage, ...]:
    """The packages listed in a training-environment file, in file order, without repeats.

    A file is read as a CycloneDX JSON SBOM when its name ends in ``.json`` or its content starts
    with ``{`` (it must then say ``"bomFormat": "CycloneDX"``); a name ending in another known
    format's extension (``.yml``, ``.toml``, ``.lock``…) is refused; anything else is read as a
    pip requirements file, where a line that is not a requirement is an error.

    Requirements: ``name==version`` (or ``===``) gives ``pkg:pypi/<normalized name>@<version>``;
    any other specifier, or ``name @ url``, gives the package without a version. Comments,
    blank lines, option lines (``-r``, ``-e``, ``--index-url``…), per-line options such as
    ``--hash``, environment markers and extras are ignored, as are bare URLs, paths and archives.

    Raises:
        BomError: the file is over :data:`MAX_ENVIRONMENT_BYTES`, binary or not UTF-8, of an
            unknown format, or has a line or component that cannot be read. The message names
            the file.
    """
    if len(data) > MAX_ENVIRONMENT_BYTES:
        raise BomError(
            f"environment file {filename!r} is {len(data)} bytes; "
            f"the limit is {MAX_ENVIRONMENT_BYTES}",
            size=len(data),
        )
    if b"\x00" in data:
        raise BomError(f"environment file {filename!r} is binary, not text")
    lowered = filename.lower()
    if lowered.endswith(".json") or data.lstrip()[:1] == b"{":
        return _dedupe(_cyclonedx_packages(data, filename))
    if lowered.endswith(_OTHER_FORMATS):
        raise BomError(
            f"environment file {filename!r} has an unknown format: expected a pip requirements "
            "file or a CycloneDX JSON SBOM"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BomError(f"environment file {filename!r} is not UTF-8: {exc.reason}") from None
    return _dedupe(_requirements(text, filename))


def pypi_purl(name: str, version: str | None) -> str:
    """The purl of a PyPI package, with its name normalized as PEP 503 says."""
    normalized = re.sub(r"[-_.]+", "-", name).lower()
    return str(PackageURL(type="pypi", name=normalized, version=version).to_string())


def _requirements(text: str, filename: str) -> Iterator[EnvPackage]:
    for number, line in _logical_lines(text):
        line = _COMMENT.sub("", line).strip()
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT.fullmatch(line)
        if match is not None and match["rest"].startswith("@"):
            # name @ url: the name is known, the version is whatever the URL holds.
            yield EnvPackage(name=match["name"], version=None, purl=pypi_purl(match["name"], None))
            continue
        if _is_location(line):
            continue
        if match is None:
            raise _line_error(filename, number, line)
        name, rest = match["name"], match["rest"].strip()
        # Drop per-requirement options (--hash=…) and environment markers (; python_version…).
        rest = re.split(r"\s-|;", rest, maxsplit=1)[0].strip()
        if _SPECIFIERS.fullmatch(rest) is None:
            raise _line_error(filename, number, line)
        exact = _EXACT.fullmatch(rest)
        version = exact["version"] if exact is not None else None
        yield EnvPackage(name=name, version=version, purl=pypi_purl(name, version))


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined, numbered by the line they start on."""
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, " ".join(pending)
        pending = []
    if pending:
        yield start, " ".join(pending)


def _is_location(line: str) -> bool:
    """A bare URL, VCS reference, local path or archive: nothing names the package reliably."""
    head = line.split(";", 1)[0].split()[0]
    return (
        "://" in head
        or head.startswith((".", "/", "~"))
        or head.lower().endswith(_ARCHIVE_SUFFIXES)
    )


def _line_error(filename: str, number: int, line: str) -> BomError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return BomError(
        f"environment file {filename!r} line {number}: {shown!r} is not a requirement "
        "(the file was read as pip requirements; CycloneDX JSON SBOMs are also accepted)",
        line=number,
    )


def _cyclonedx_packages(data: bytes, filename: str) -> Iterator[EnvPackage]:
    try:
        doc = strict_json_loads(
            data, what=f"environment file {filename!r}", max_bytes=MAX_ENVIRONMENT_BYTES
        )
    except DocumentError as exc:
        raise BomError(str(exc)) from None
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise BomError(
            f"environment file {filename!r} is JSON but not a CycloneDX SBOM "
            '(no "bomFormat": "CycloneDX")'
        )
    components = doc.get("components", [])
    if not isinstance(components, list):
        raise BomError(f"environment file {filename!r}: components is not a list")
    for component in _walk(components, filename):
        if component.get("type") not in _PACKAGE_TYPES:
            continue
        name, version, purl = (component.get(key) for key in ("name", "version", "purl"))
        if not isinstance(name, str) or not name:
            raise BomError(f"environment file {filename!r}: a component has no name")
        if version is not None and not isinstance(version, str):
            raise BomError(f"environment file {filename!r}: {name} has a non-string version")
        if purl is not None:
            try:
                purl = PackageURL.from_string(purl).to_string()
            except ValueError as exc:
                raise BomError(
                    f"environment file {filename!r}: {name} has an invalid purl: {exc}"
                ) from None
        yield EnvPackage(name=name, version=version or None, purl=purl)


def _walk(components: list[Any], filename: str) -> Iterator[dict[str, Any]]:
    """Components and their nested components, depth first, in document order."""
    stack = list(reversed(components))
    while stack:
        component = stack.pop()
        if not isinstance(component, dict):
            raise BomError(f"environment file {filename!r}: a component is not an object")
        yield component
        nested = component.get("components", [])
        if not isinstance(nested, list):
            raise BomError(f"environment file {filename!r}: nested components are not a list")
        stack.extend(reversed(nested))


def _dedupe(packages: Iterator[EnvPackage]) -> tuple[EnvPackage, ...]:
    """First occurrence of each package (by purl, or by name and version without one)."""
    seen: dict[tuple[str, str | None], EnvPackage] = {}
    for package in packages:
        key = (package.purl, None) if package.purl else (package.name, package.version)
        seen.setdefault(key, package)
    return tuple(seen.values())
