"""The ``modelseal`` Typer app: the root options, the table of every command in the order
``--help`` lists them, and :func:`main`, the console script.

Start-up is most of what a command like ``show`` costs, so a command line that names one command
builds (and imports the module of) that command only; ``--help``, no arguments and anything not
in the table build the whole app, so help and "no such command" read as they always did. A
plainly written read command (``show REF``, ``list``…) does not even build that: Typer is not
imported, :mod:`registry.cli.quick` runs the command's body.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

# (name, module under registry.cli, attribute, is a sub-app) in the order `modelseal --help`
# lists them.
COMMANDS: tuple[tuple[str, str, str, bool], ...] = (
    ("serve", "serve", "serve", False),
    ("push", "artifacts", "push", False),
    ("pull", "artifacts", "pull", False),
    ("list", "artifacts", "list_", False),
    ("show", "artifacts", "show", False),
    ("register", "artifacts", "register", False),
    ("manifest", "artifacts", "manifest", False),
    ("sbom", "artifacts", "sbom", False),
    ("provenance", "artifacts", "provenance", False),
    ("keygen", "evidence", "keygen", False),
    ("identity", "governance", "identity_app", True),
    ("attest", "evidence", "attest", False),
    ("attestations", "evidence", "attestations", False),
    ("verify-signature", "evidence", "verify_signature", False),
    ("scan", "evidence", "scan", False),
    ("policy", "governance", "policy_app", True),
    ("release", "governance", "release", False),
    ("reject", "governance", "reject", False),
    ("revoke", "governance", "revoke", False),
    ("alias", "governance", "alias_app", True),
    ("token", "admin", "token_app", True),
    ("audit", "admin", "audit_app", True),
    ("export", "evidence", "export", False),
    ("verify-evidence", "evidence", "verify_evidence_cmd", False),
    ("verify", "evidence", "verify", False),
    ("admin", "admin", "admin_app", True),
    ("witness", "witness", "witness_app", True),
    ("log", "monitor", "log_app", True),
)


def build(only: str | None = None) -> typer.Typer:
    """The app with every command, or with the command named ONLY (which must be in the table)."""
    import typer

    from registry.cli.root import root

    app = typer.Typer(
        name="modelseal",
        help="A model registry that only releases what it can prove.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        # Plain click help and usage errors: rich's formatter imports a markdown parser, ~70 ms
        # of every `--help` and of every mistyped option.
        rich_markup_mode=None,
    )
    app.callback()(root)
    for name, module, attribute, is_group in COMMANDS:
        if only is not None and name != only:
            continue
        target = getattr(import_module(f"registry.cli.{module}"), attribute)
        if is_group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def _named_command(argv: list[str]) -> str | None:
    """The command ARGV names when it names one from the table as its first word, else None."""
    if not argv or argv[0].startswith("-"):
        return None
    return argv[0] if any(argv[0] == entry[0] for entry in COMMANDS) else None


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole app, for tools that import it (docs, completion, CliRunner)
        return build()
    raise AttributeError(name)


def main() -> None:
    """Console-script entry point: library errors become one readable line and exit 1."""
    from attest.errors import AttestError
    from registry.cli import quick
    from registry.cli.common import err, printable
    from registry.errors import AuthenticationError, RegistryError

    argv = sys.argv[1:]
    try:
        plain = quick.parse(argv)
        if plain is not None:
            quick.run(*plain)
        else:
            build(_named_command(argv))()
    except AuthenticationError as exc:
        detail = printable(exc.diagnostics(), lines=False)
        err.print(f"error: {detail} (the token in MODELSEAL_TOKEN was not accepted: expired, "
                  "revoked or mistyped?)", highlight=False, markup=False)  # fmt: skip
        sys.exit(1)
    except (RegistryError, AttestError) as exc:
        err.print(f"error: {printable(exc.diagnostics(), lines=False)}", highlight=False,
                  markup=False)  # fmt: skip
        sys.exit(1)
    except OSError as exc:  # a file named on the command line cannot be read or written
        err.print(f"error: {printable(str(exc), lines=False)}", highlight=False, markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
