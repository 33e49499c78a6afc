"""``modelseal log monitor``: print every event of the transparency log since a checkpoint, each
proven (:mod:`registry.sdk.monitor`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from registry.cli.common import (
    apply_log_options,
    connect,
    err,
    fatal,
    printable,
)
from registry.cli.logflags import MaxAgeOption, WitnessOption, WitnessThresholdOption

log_app = typer.Typer(help="Read the registry's transparency log.", no_args_is_help=True)


@log_app.command("monitor")
def monitor(
    since: Annotated[
        Path | None,
        typer.Option(
            help="Start after this signed checkpoint (a file holding GET /v1/log/checkpoint's "
            "answer). Default: the state file's, else the empty log (every event)."
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="JSON file remembering the newest checkpoint verified: read as the start when "
            "--since is not given, and written (atomically) only after every entry verified."
        ),
    ] = None,
    max_age: MaxAgeOption = None,
    witness: WitnessOption = None,
    witness_threshold: WitnessThresholdOption = None,
) -> None:
    """Verify the log's newest checkpoint (pinned log key, consistency with the start) and print
    one line per event since: releases (who, under which policy revision), revocations and their
    reasons, alias moves and rollbacks, policy revisions, identity and token changes. Exits 1
    naming the cause when anything does not verify."""
    from registry.sdk import monitor as sdk_monitor

    client = connect()
    apply_log_options(client, max_age, witness, witness_threshold)
    url = str(client.base_url)
    start: str | None = None
    if since is not None:
        try:
            start = since.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fatal(f"--since {since}: {exc}")
    elif state is not None:
        start = sdk_monitor.load_state(state, url)

    def show(event: sdk_monitor.LogEvent) -> None:
        sys.stdout.write(f"{event.index} {event.entry.get('at')} {printable(event.line)}\n")

    result = sdk_monitor.monitor(client, since=start, on_event=show)
    sys.stdout.flush()
    if state is not None:
        sdk_monitor.save_state(state, url, result.note)
    begin = f"size {result.since.size}" if result.since is not None else "the empty log"
    err.print(
        f"verified {len(result.events)} event(s) from {begin} to {result.checkpoint.describe()}",
        highlight=False,
        markup=False,
    )
