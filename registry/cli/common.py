"""What every command shares: the consoles, the one exit for errors (:func:`fatal`), the API
client from the environment, tables, JSON output, progress bars and the signer the flags name.

Plain lines (:func:`echo`) and tables (:class:`Table`) are written without rich: `show` and `list`
are mostly start-up, and rich's console costs ~25 ms of it. The rich consoles ``out`` and ``err``
are made on first use, for progress bars, trees and coloured messages.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, cast

if TYPE_CHECKING:  # imported where a command needs them: `--help` and typos stay fast
    from rich.console import Console

    from attest.signing import Signer
    from registry.sdk.client import RegistryClient


class _LazyConsole:
    """A rich ``Console`` made (and rich imported) when first used. Markup is off unless a call
    asks for it (``markup=True``, its registry-derived parts passed through ``escape``), and
    every string printed goes through :func:`printable` first."""

    def __init__(self, **options: Any) -> None:
        self._options = {"markup": False, **options}
        self._console: Console | None = None

    def print(self, *objects: Any, **options: Any) -> None:
        self.made().print(*(printable(o) if isinstance(o, str) else o for o in objects), **options)

    def made(self) -> Console:
        """The console itself, for rich objects that take one (progress bars)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)


out = cast("Console", _LazyConsole(soft_wrap=True))
err = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))


_BIDI_AND_FORMAT = "Cf"  # bidi overrides (U+202E…), zero-width and other invisible format marks


def printable(text: str, *, lines: bool = True) -> str:
    """TEXT with every control character (C0, C1: terminal escape sequences) and every invisible
    format character (bidi overrides that make ``weights\u202elkp.nib`` read as
    ``weightsnib.pkl``) shown as U+FFFD: names, reasons and findings come from the registry and
    from files, not from us. Line breaks and tabs are kept unless LINES is false (a one-line
    message must not be able to forge a second line)."""
    kept = "\n\t" if lines else ""
    return "".join(
        "\ufffd" if unicodedata.category(c) in ("Cc", _BIDI_AND_FORMAT) and c not in kept else c
        for c in text
    )


def echo(text: str) -> None:
    """Write one plain line to stdout (no markup, no highlighting)."""
    sys.stdout.write(printable(text) + "\n")


class Styled(NamedTuple):
    """A table cell shown in COLOUR (red, green, yellow, magenta) when stdout is a terminal."""

    text: str
    colour: str


_ANSI = {"red": "31", "green": "32", "yellow": "33", "magenta": "35"}


class Table:
    """Aligned columns under a header line. Cells are never cut or folded: an identifier is copied
    whole (a digest cut with an ellipsis at 80 columns was then "not found", and one folded over
    two lines does not paste back). A cell's own line breaks start new lines within its row."""

    def __init__(self, *headers: str) -> None:
        self.headers = headers
        self.rows: list[tuple[str | Styled, ...]] = []

    def add_row(self, *cells: str | Styled) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"a row of {len(self.headers)} cells, not {len(cells)}")
        self.rows.append(cells)

    def render(self, *, colour: bool = False) -> str:
        def lines(cell: str | Styled) -> list[str]:
            text = cell.text if isinstance(cell, Styled) else cell
            return [printable(line) for line in text.split("\n")] or [""]

        grid = [[lines(c) for c in row] for row in [self.headers, *self.rows]]
        widths = [
            max(len(line) for row in grid for line in row[i]) for i in range(len(self.headers))
        ]
        out_lines = []
        for cells, row in zip(grid, [self.headers, *self.rows], strict=True):
            for k in range(max(len(c) for c in cells)):
                parts = []
                for i, cell in enumerate(cells):
                    text = cell[k] if k < len(cell) else ""
                    pad = " " * (widths[i] - len(text))
                    source = row[i]
                    if colour and isinstance(source, Styled) and source.colour in _ANSI and text:
                        text = f"\x1b[{_ANSI[source.colour]}m{text}\x1b[0m"
                    parts.append(text + pad)
                out_lines.append("  ".join(parts).rstrip())
        return "\n".join(out_lines) + "\n"


def print_table(table: Table) -> None:
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    sys.stdout.write(table.render(colour=colour))


@contextmanager
def transfer_progress(label: str, enabled: bool) -> Any:
    """A rich progress bar on stderr; yields (on_total, advance)."""
    if not enabled:
        yield (None, None)
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=cast(_LazyConsole, err).made(),
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
    client.on_notice = lambda line: err.print(line, highlight=False, markup=False)
    return client


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``2d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        fatal(f"--max-age {text!r}: expected seconds or a number with s, m, h or d")
    if not value >= 1 or value == float("inf"):
        fatal(f"--max-age {text!r}: at least one second")
    return value


def apply_log_options(
    client: RegistryClient,
    max_age: str | None,
    witnesses: list[str] | None,
    threshold: int | None,
) -> None:
    """Set what the log's checkpoints must satisfy from the command line's options (over the
    environment's)."""
    from registry.sdk.logcheck import check_requirements, load_witness

    if max_age is not None:
        client.log_max_age = duration(max_age)
    try:
        if witnesses:
            client.witnesses = [load_witness(w) for w in witnesses]
            client.witness_threshold = len(client.witnesses)
        if threshold is not None:
            client.witness_threshold = threshold
        check_requirements(client.log_max_age, client.witnesses, client.witness_threshold)
    except ValueError as exc:
        fatal(str(exc))


def warn_password_on_argv(database_url: str | None) -> None:
    """A database URL given on the command line with a password puts the password in the
    process list (``ps``, ``/proc/PID/cmdline``), readable by every local user."""
    if not database_url:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(database_url).password
    except (ArgumentError, ValueError):
        return  # the settings report a bad URL themselves
    if password:
        err.print("WARNING: --database-url carries a password, which every local user can read "
                  "in the process list; set MODELSEAL_DATABASE_URL instead")  # fmt: skip


def fatal(message: str, code: int = 1) -> NoReturn:
    """Print MESSAGE (plain text: brackets in names or server messages are not markup) as the
    command's error and exit with CODE.

    SystemExit, not ``typer.Exit``: the same to Typer (it lets it through, and turns its own
    Exit into one), and this module stays importable without Typer (see registry.cli.quick)."""
    from rich.markup import escape

    err.print(f"[red]error:[/red] {escape(printable(message, lines=False))}", highlight=False,
              markup=True)  # fmt: skip
    raise SystemExit(code)


def wide() -> Console:
    """``out``, or when stdout is not a terminal, a console that never cuts lines (logs, pipes)."""
    from rich.console import Console

    return (
        cast(_LazyConsole, out).made()
        if out.is_terminal
        else Console(soft_wrap=True, width=100_000, markup=False)
    )


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
