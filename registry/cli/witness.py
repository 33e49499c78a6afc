"""``modelseal witness keygen|serve``: a C2SP tlog-witness that cosigns the transparency log's
checkpoints (the server part through :mod:`registry.server.entry`, imported inside the command)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from registry.cli.common import err, fatal

witness_app = typer.Typer(
    help="Run a witness of a registry's transparency log (C2SP tlog-witness).",
    no_args_is_help=True,
)

_NAME_HELP = (
    "The witness's name (its key name in cosignature lines, e.g. witness.example.com); "
    "clients name it in --witness NAME=KEYFILE."
)


@witness_app.command("keygen")
def keygen(
    prefix: Annotated[
        Path, typer.Argument(help="Writes PREFIX.key (0600), PREFIX.pub and PREFIX.vkey.")
    ],
    name: Annotated[str, typer.Option(help=_NAME_HELP)],
) -> None:
    """Generate a witness key (Ed25519) and print its verifier key (vkey) for clients and the
    registry's MODELSEAL_LOG_WITNESSES."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from attest import keys, note
    from attest.errors import AttestError

    try:
        note.check_key_name(name)
    except AttestError as exc:
        fatal(str(exc))
    key = ed25519.Ed25519PrivateKey.generate()
    try:
        private, public = keys.write_keypair(prefix, key)
    except FileExistsError:
        fatal(f"{prefix}.key exists; refusing to overwrite a private key")
    signer = note.NoteSigner(name, key, note.SIG_COSIGNATURE_V1)
    vkey = signer.verifier.vkey
    vkey_path = prefix.with_name(prefix.name + ".vkey")
    vkey_path.write_text(vkey + "\n")
    err.print(f"wrote {private} (mode 0600), {public} and {vkey_path}")
    sys.stdout.write(vkey + "\n")


@witness_app.command("serve")
def serve(
    log_vkey: Annotated[
        list[Path],
        typer.Option(
            help='File holding the log\'s verifier key, as GET /v1/log/key answers its "vkey" '
            "(<origin>+<key ID>+<key>); the origin is its name. Repeatable (one per log)."
        ),
    ],
    key: Annotated[Path, typer.Option(help="The witness's Ed25519 private key (witness keygen).")],
    name: Annotated[str, typer.Option(help=_NAME_HELP)],
    state: Annotated[
        Path,
        typer.Option(
            help="Directory of the newest cosigned checkpoint per log (keep it: a "
            "witness that loses it can be shown a rolled-back log)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8710,
) -> None:
    """Serve POST /add-checkpoint: cosign each checkpoint signed by the log's key that extends
    the last one cosigned (consistency proof), after saving it."""
    from attest import note
    from attest.errors import AttestError
    from registry.errors import ConfigurationError
    from registry.server import entry

    logs = []
    try:
        for path in log_vkey:
            logs.append(note.NoteVerifier.from_vkey(path.read_text(encoding="utf-8").strip()))
        signer = note.NoteSigner.from_file(name, key, sig_type=note.SIG_COSIGNATURE_V1)
    except (AttestError, UnicodeDecodeError) as exc:
        fatal(str(exc))
    if any(v.sig_type != note.SIG_ED25519 for v in logs):
        fatal("a log's vkey is a note key (type 0x01)")
    err.print(f"witness {signer.verifier.vkey} of {', '.join(v.name for v in logs)}")
    try:
        entry.run_witness(signer, logs, state, host=host, port=port)
    except ConfigurationError as exc:
        fatal(exc.diagnostics())
