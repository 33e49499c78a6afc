"""``python -m registry`` and the ``modelseal`` console script."""

from __future__ import annotations

import sys


def run() -> None:
    # The CLI runs no trio code, but httpcore imports trio whenever it is installed, only to
    # support it (~0.1 s of every command's start-up, measured with -X importtime). Blocking the
    # import sends httpcore down its "no trio" branch; a process that imported trio keeps it.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    # httpx imports its own command line (click and friends, ~40 ms) unless that import fails.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from registry.cli.app import main

    main()


if __name__ == "__main__":
    run()
