"""``modelseal serve``: run the registry (through :mod:`registry.server.entry`, imported inside the
command so no other command loads the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from registry.cli.common import err, fatal, warn_password_on_argv


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    data_dir: Annotated[Path, typer.Option(help="Data directory (SQLite, blobs, tokens).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL (default: MODELSEAL_DATABASE_URL, else SQLite in the "
            "data dir). Prefer the variable for a URL with a password."
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="s3://bucket/prefix or file:///path (default: data dir).")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    drain_seconds: Annotated[
        int,
        typer.Option(
            min=1,
            max=3600,
            help="On SIGTERM/SIGINT: stop accepting connections, let requests in flight finish "
            "for at most this many seconds, then cancel them and close their connections.",
        ),
    ] = 30,
    insecure_plain_http: Annotated[
        bool,
        typer.Option(
            "--insecure-plain-http",
            help="Allow plain HTTP on a non-loopback address (tokens travel in clear text).",
        ),
    ] = False,
) -> None:
    """Run the registry. On first start it migrates the database and writes an admin token."""
    from registry.errors import ConfigurationError
    from registry.server import entry

    if bool(tls_cert) != bool(tls_key):
        fatal("--tls-cert and --tls-key go together")
    if not tls_cert and not _is_loopback(host):
        if not insecure_plain_http:
            fatal(
                f"refusing plain HTTP on {host}: give --tls-cert/--tls-key, or "
                "--insecure-plain-http behind a TLS-terminating proxy"
            )
        from rich.markup import escape

        err.print(f"[red]WARNING[/red]: serving plain HTTP on {escape(host)}; API tokens are not "
                  "encrypted", markup=True)  # fmt: skip
    warn_password_on_argv(database_url)
    settings = entry.settings(data_dir, database_url, storage)
    # Misconfiguration found at start-up (bootstrap, or building the app: webhooks, keys, the
    # log's state) is said plainly, in one line, without a traceback.
    try:
        written = entry.bootstrap(settings)
        if written is not None:
            err.print(f"admin token written to {written} (mode 0600)")
        entry.run(
            settings,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            drain_seconds=drain_seconds,
        )
    except ConfigurationError as exc:
        fatal(exc.diagnostics())
