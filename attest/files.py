"""A directory as a file set: walk it the way OMS signing does, hash it in parallel, verify it.

Used by pushes (the digests then name the upload and the signature) and by auditors verifying a
local copy against an OMS bundle (``modelseal verify-signature``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from attest.bundle import Bundle
from attest.digests import OMS_IGNORE_PATHS, FileDigest, sha256_file
from attest.errors import FileSetError
from attest.oms import check_oms
from attest.verifying import Verified, Verifier


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A regular file found in a directory."""

    path: str  # relative POSIX path
    source: Path
    size: int


@dataclass(frozen=True, slots=True)
class FileSet:
    files: list[LocalFile]
    ignored: list[str]  # top-level paths skipped as OMS signing skips them


def file_set(directory: Path, *, follow_symlinks_within: Path | None = None) -> FileSet:
    """The regular files under ``directory``, sorted by path.

    Top-level ``.git``, ``.gitattributes``, ``.github`` and ``.gitignore`` are skipped and
    reported. Symlinks and special files are refused: a file set is exactly the bytes of
    regular files. With ``follow_symlinks_within``, a symlink to a regular file that resolves
    inside that directory (a Hugging Face cache snapshot links into the cache's ``blobs/``)
    stands for the target's bytes under the link's path; links to directories, links that
    leave it, and dangling links are still refused.

    Raises:
        FileSetError: not a directory, empty, or holding a symlink or special file.
    """
    within = Path(follow_symlinks_within).resolve() if follow_symlinks_within else None
    root = Path(directory)
    if root.is_symlink() or not root.is_dir():
        raise FileSetError(f"{directory} is not a directory")
    files: list[LocalFile] = []
    ignored: list[str] = []
    for current, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(current).relative_to(root).as_posix()
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel_dir == "." and name in OMS_IGNORE_PATHS:
                ignored.append(rel)
                if name in dirnames:
                    dirnames.remove(name)
                continue
            full = Path(current) / name
            info = full.lstat()
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                if within is None:
                    raise FileSetError(
                        f"{rel!r} is a symbolic link; versions hold regular files only "
                        "(a Hugging Face cache snapshot? push it with --follow-symlinks)",
                        path=rel,
                    )
                files.append(_followed(full, rel, within))
                if name in dirnames:
                    dirnames.remove(name)  # os.walk would not descend anyway; never list it
                continue
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise FileSetError(f"{rel!r} is not a regular file", path=rel)
            files.append(
                LocalFile(rel, Path(current) / name, (Path(current) / name).stat().st_size)
            )
    if not files:
        raise FileSetError(f"{directory} holds no file")
    files.sort(key=lambda f: f.path)
    return FileSet(files, ignored)


def _followed(link: Path, rel: str, within: Path) -> LocalFile:
    """The regular file a symlink names, if it lies inside ``within``."""
    target = link.resolve()  # every hop, relative or absolute
    try:
        target.relative_to(within)
    except ValueError:
        raise FileSetError(
            f"{rel!r} links to {target}, outside {within} (links are followed only inside it)",
            path=rel,
        ) from None
    try:
        info = target.stat()
    except OSError:
        raise FileSetError(f"{rel!r} is a dangling symbolic link", path=rel) from None
    if not stat.S_ISREG(info.st_mode):
        raise FileSetError(f"{rel!r} links to something that is not a regular file", path=rel)
    return LocalFile(rel, target, info.st_size)


def hf_cache_root(directory: Path) -> Path:
    """Where a pushed directory's symlinks may point: a Hugging Face cache repository
    (``…/models--org--name``, holding ``snapshots/`` and ``blobs/``) when the directory is one of
    its snapshots, otherwise the directory itself."""
    resolved = Path(directory).resolve()
    for parent in resolved.parents:
        if parent.name == "snapshots" and parent.parent.name.startswith(
            ("models--", "datasets--", "spaces--")
        ):
            return parent.parent
    return resolved


def hash_file(item: LocalFile) -> FileDigest:
    """SHA-256 of one file.

    Raises:
        FileSetError: the file changed size while it was read.
    """
    digest, size = sha256_file(item.source)
    if size != item.size:
        raise FileSetError(f"{item.path!r} changed while it was being read", path=item.path)
    return FileDigest(item.path, size, digest)


def hash_files(files: Sequence[LocalFile], *, workers: int | None = None) -> list[FileDigest]:
    """SHA-256 of every file, several files at a time (hashlib releases the GIL).

    Raises:
        FileSetError: a file changed size while it was read.
    """
    count = workers or min(8, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=max(1, count)) as pool:
        return list(pool.map(hash_file, files))


def verify_directory(directory: Path, bundle: Bundle, verifier: Verifier) -> Verified:
    """Verify that an OMS bundle, signed by a trusted signer, covers exactly ``directory``.

    Signature first (cheap, and nothing is read for an untrusted bundle), then every file.

    Raises:
        VerificationError subclasses: untrusted signer, bad signature, manifest mismatch.
        FileSetError: the directory holds symlinks or special files.
    """
    verified = verifier.verify(bundle)
    check_oms(verified.statement, hash_files(file_set(directory).files))
    return verified
