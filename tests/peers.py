"""The peers' own tools, run as their users run them: the interop oracles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def model_signing(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``model_signing`` CLI (OpenSSF Model Signing)."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *args], capture_output=True, text=True, timeout=120
    )


def in_toto_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    """The stock ``in-toto-verify`` CLI on an export: layout, registry key and links in one dir,
    run inside it (the layout's inspection records the files under ``files/`` from there)."""
    return subprocess.run(
        ["in-toto-verify", "--layout", str(directory / "root.layout"),
         "--verification-keys", str(directory / "registry.pub"), "--link-dir", str(directory)],
        capture_output=True, text=True, timeout=120, cwd=directory,
    )  # fmt: skip
