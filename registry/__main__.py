"""``python -m registry`` and the ``modelseal`` console script."""

from __future__ import annotations

import os
import sys


def run() -> None:
    # The CLI runs no trio code, but httpcore imports trio whenever it is installed, only to
    # support it (~0.1 s of every command's start-up, measured with -X importtime). Blocking the
    # import sends httpcore down its "no trio" branch; a process that imported trio keeps it.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    # httpx imports its own command line (click and friends, ~40 ms) unless that import fails.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # pydantic looks for plugins (observability hooks for services) by scanning every installed
    # distribution's entry points, ~15 ms; a client command has no use for them. `serve` keeps
    # them, and a value the user set is kept.
    if sys.argv[1:2] != ["serve"]:
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from registry.cli.app import main

    main()


if __name__ == "__main__":
    run()
