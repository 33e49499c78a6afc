"""Read commands without Typer: ``show REF``, ``list``, ``attestations REF``… written plainly run
their body (:mod:`registry.cli.reads`) straight away.

Such a command is mostly start-up, and Typer was most of that: its import, and the pydantic
TypeAdapter it builds (importing pydantic) to coerce every parameter, a string included. So
:func:`parse` recognises the command lines whose meaning is beyond doubt and hands everything
else to the Typer app, which parses, helps and complains exactly as before: ``--help`` anywhere,
an option it does not know, ``--opt=value``, an option given twice, a value or argument that
starts with ``-``, ``--``, a missing or extra argument, and shell completion. What it recognises
means what Typer makes of it: string arguments in order, ``--json``-style flags (True when
given), string options followed by their value; options anywhere among the arguments, as click
allows. ``tests/unit`` checks each entry of :data:`QUICK` against the Typer command's own
parameters, and runs both ways on the same command lines.

:func:`run` then does what Typer's main loop does around a command: exit 130 on Ctrl-C, "Aborted!"
on end of input, exit 1 quietly when stdout is a closed pipe.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple


class Quick(NamedTuple):
    """How one read command's words map onto its body's parameters."""

    #: the body, in :mod:`registry.cli.reads`
    body: str
    #: positional parameters, in order, and how many are required (the others default to None)
    arguments: tuple[str, ...] = ()
    required: int = 0
    #: ``--flag`` -> boolean parameter (False unless given)
    flags: tuple[tuple[str, str], ...] = ()
    #: ``--option VALUE`` -> string parameter (None unless given)
    options: tuple[tuple[str, str], ...] = ()
    #: parameters of the body the quick path never sets (Typer only: None)
    typer_only: tuple[str, ...] = ()


_JSON = (("--json", "as_json"),)

#: command words -> what they take. Each body also runs under Typer with every parameter.
QUICK: dict[tuple[str, ...], Quick] = {
    ("show",): Quick("show", ("ref",), 1, _JSON),
    ("list",): Quick("list_", ("target",), 0, _JSON),
    ("attestations",): Quick(
        "attestations",
        ("ref",),
        1,
        _JSON,
        (("--predicate-type", "predicate_type"),),
        typer_only=("save",),
    ),
    ("identity", "list"): Quick("identity_list", (), 0, _JSON),
    ("policy", "show"): Quick("policy_show", ("namespace",), 1),
    ("alias", "list"): Quick("alias_list", ("artifact",), 1, _JSON),
    ("alias", "history"): Quick("alias_history", ("artifact", "alias"), 2, _JSON),
    ("token", "list"): Quick("token_list", (), 0, _JSON),
    ("audit", "log"): Quick("audit_log", (), 0, _JSON, (("--since", "since"),)),
}


def parse(argv: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The body and its keyword arguments for ARGV (the words after ``modelseal``), or None when
    ARGV is not a plainly written read command (Typer then takes it)."""
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return None  # shell completion: click's business
    words = tuple(argv[:1]) if tuple(argv[:1]) in QUICK else tuple(argv[:2])
    spec = QUICK.get(words)
    if spec is None:
        return None
    rest = argv[len(words) :]
    flags, options = dict(spec.flags), dict(spec.options)
    values: dict[str, Any] = {name: False for name in flags.values()}
    values.update({name: None for name in (*spec.arguments, *options.values(), *spec.typer_only)})
    given: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in given:
            return None
        if word in flags:
            values[flags[word]] = True
        elif word in options:
            if i + 1 == len(rest) or rest[i + 1].startswith("-"):
                return None
            values[options[word]] = rest[i + 1]
            i += 1
        elif word.startswith("-"):
            return None  # --help, -h, --, --opt=value, an unknown option, a negative-looking value
        else:
            positional.append(word)
            i += 1
            continue
        given.add(word)
        i += 1
    if not spec.required <= len(positional) <= len(spec.arguments):
        return None
    values.update(zip(spec.arguments, positional, strict=False))
    return spec.body, values


class _Pacified:
    """A stream whose flush ignores a closed pipe (click's PacifyFlushWrapper)."""

    def __init__(self, stream: Any) -> None:
        self.wrapped = stream

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def run(body: str, values: dict[str, Any]) -> None:
    """Run BODY of :mod:`registry.cli.reads` with VALUES as Typer's main loop runs a command:
    Ctrl-C exits 130, end of input prints "Aborted!" and exits 1, a closed stdout pipe exits 1
    quietly; everything else propagates (to :func:`registry.cli.app.main`)."""
    from registry.cli import reads

    command: Callable[..., None] = getattr(reads, body)
    try:
        command(**values)
    except KeyboardInterrupt:
        sys.exit(130)
    except EOFError:
        sys.stderr.write("\nAborted!\n")
        sys.exit(1)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = _Pacified(sys.stdout)
        sys.stderr = _Pacified(sys.stderr)
        sys.exit(1)
