"""The ``modelseal`` command line: parse, call the SDK, render.

:mod:`registry.cli.app` holds the Typer app and :func:`main`; commands reach the server only
through :mod:`registry.server.entry` (``serve`` and ``admin``), imported inside those commands.
"""
