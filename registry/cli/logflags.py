"""The transparency log's options, declared once for the commands that check the log (``pull``,
``verify``, ``audit verify``); their values go to :func:`registry.cli.common.apply_log_options`."""

from __future__ import annotations

from typing import Annotated

import typer

#: ``--max-age``, ``--witness`` and ``--witness-threshold`` (pull, verify, audit verify).
MAX_AGE_HELP = (
    "How old the transparency log's signed checkpoint may be: seconds, or with a unit "
    "(90s, 30m, 24h, 2d); default 24h, or MODELSEAL_LOG_MAX_AGE. An older one (a registry "
    "that stopped re-signing: a frozen view) is refused."
)
WITNESS_HELP = (
    "Require the cosignature of this witness on the log's checkpoint: NAME=KEYFILE (its vkey, "
    "or Ed25519 public key PEM). Repeatable; or MODELSEAL_WITNESSES=NAME=FILE,NAME=FILE."
)
WITNESS_THRESHOLD_HELP = (
    "How many of the --witness keys must have cosigned (default: all named; none when no "
    "witness is named), or MODELSEAL_WITNESS_THRESHOLD."
)

MaxAgeOption = Annotated[str | None, typer.Option("--max-age", help=MAX_AGE_HELP, metavar="AGE")]
WitnessOption = Annotated[
    list[str] | None, typer.Option("--witness", help=WITNESS_HELP, metavar="NAME=KEYFILE")
]
WitnessThresholdOption = Annotated[
    int | None,
    typer.Option("--witness-threshold", help=WITNESS_THRESHOLD_HELP, min=0, metavar="K"),
]
