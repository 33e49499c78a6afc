"""What every command shares: the consoles, the one exit for errors (:func:`fatal`), the API
client from the environment, tables, JSON output, progress bars and the signer the flags name."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

if TYPE_CHECKING:  # imported where a command needs them: `--help` and typos stay fast
    from attest.signing import Signer
    from registry.sdk.client import RegistryClient


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def transfer_progress(label: str, enabled: bool) -> Any:
    """A rich progress bar on stderr; yields (on_total, advance)."""
    if not enabled:
        yield (None, None)
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{label}: preparing", total=None)
        started = False

        def on_total(total: int) -> None:
            # Known size, nothing moved yet: the first file is being hashed (pushes) or the
            # evidence checked (pulls).
            progress.update(task, total=total, description=f"{label}: hashing / verifying")

        def advance(n: int) -> None:
            nonlocal started
            if not started:
                started = True
                progress.update(task, description=label)
            progress.advance(task, n)

        yield (on_total, advance)


def connect() -> RegistryClient:
    from registry.errors import InvalidRequestError
    from registry.sdk.client import RegistryClient

    if not os.environ.get("MODELSEAL_TOKEN", "").strip():
        fatal("MODELSEAL_TOKEN is not set: export MODELSEAL_TOKEN=<API token> (an admin's is "
              "in DATA_DIR/admin-token; `modelseal token create` makes others)")  # fmt: skip
    url = os.environ.get("MODELSEAL_URL", "http://127.0.0.1:8700")
    try:
        client = RegistryClient.from_env()
    except InvalidRequestError as exc:
        if exc.facts.get("url") == url:
            fatal(f"MODELSEAL_URL={url!r} is not a registry URL: it needs http:// or https:// "
                  "and a host, e.g. http://127.0.0.1:8700 (the default)")  # fmt: skip
        raise
    client.on_pinned = lambda url, fingerprint, path: err.print(
        f"pinned the registry key {fingerprint} for {url} in {path} (first contact; a "
        "different key will be refused)", highlight=False, markup=False)  # fmt: skip
    return client


def fatal(message: str, code: int = 1) -> NoReturn:
    """Print MESSAGE as the command's error and exit with CODE."""
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def make_table(*headers: str) -> Table:
    """A table whose cells wrap instead of being cut: an identifier is copied whole or not at all
    (a digest cut with an ellipsis at 80 columns was then "not found")."""
    table = Table(*headers)
    for column in table.columns:
        column.overflow = "fold"
    return table


def wide() -> Console:
    """``out``, or when stdout is not a terminal, a console that never cuts lines (logs, pipes)."""
    return out if out.is_terminal else Console(soft_wrap=True, width=100_000)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def chosen_signer(
    sign_key: Path | None, sigstore: bool, trust_config: Path | None
) -> Signer | None:
    """The signer the options name: a key file or signer URI, Sigstore keyless, or none.

    A signer URI (``awskms:…``, ``gcpkms:…``, ``hsm:…``, ``file2:PATH``…) needs the public key in
    ``MODELSEAL_SIGN_KEY_PUB`` (a PEM file), which is how verifiers will know the signer.
    """
    from attest.keys import load_public
    from attest.signing import KeySigner, SigstoreSigner, UriSigner

    if sign_key is not None and sigstore:
        fatal("--sign-key and --sigstore exclude each other")
    if sign_key is not None:
        text = str(sign_key)
        if ":" in text.split("/", 1)[0]:
            pub = os.environ.get("MODELSEAL_SIGN_KEY_PUB")
            if not pub:
                fatal("a signer URI needs MODELSEAL_SIGN_KEY_PUB=<public key PEM file>")
            return UriSigner(text, load_public(Path(pub).read_bytes()))
        password = os.environ.get("MODELSEAL_SIGN_KEY_PASSWORD")
        return KeySigner.from_file(sign_key, password.encode() if password else None)
    if sigstore:
        signer = SigstoreSigner(trust_config=trust_config)
        err.print(f"signing keylessly as {signer.identity}")  # fails now, before any upload
        return signer
    return None
