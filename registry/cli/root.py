"""The root of the Typer app: its one option (``--version``) and its help text. Kept apart from
:mod:`registry.cli.app` so that the entry point does not import Typer for a command line that
:mod:`registry.cli.quick` runs without it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def _version(value: bool) -> None:
    if value:
        from registry import __version__

        sys.stdout.write(f"modelseal {__version__}\n")
        raise typer.Exit()


def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A model registry that only releases what it can prove."""
