"""The peers' own tools, run as their users run them: the interop oracles."""

from __future__ import annotations

import subprocess
import sys


def model_signing(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``model_signing`` CLI (OpenSSF Model Signing)."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *args], capture_output=True, text=True, timeout=120
    )
