"""``modelseal …`` (``serve``, ``admin gc``) with a SIGKILL armed at one named crash point.

    python -m tests.crashpoint_server serve --data-dir DIR …
    python -m tests.crashpoint_server admin gc --data-dir DIR …

runs exactly what ``modelseal`` runs with the same arguments (:func:`registry.__main__.run`), after
installing hooks that kill this process (``SIGKILL``: no ``finally``, no rollback sent, no
answer) when a point named in ``CRASHPOINT_AT`` (comma-separated) is reached:

``tx:ACTION``
    inside the transaction that writes the audit entry ``ACTION``, before it commits
    (:data:`registry.server.services.journal.crash_hook`);
``before:MODULE:CLASS.METHOD`` / ``after:MODULE:CLASS.METHOD``
    on entering that method, or once it has returned (committed, the answer not yet sent);
``body:N``
    once one request body's pipe to the store has taken ``N`` bytes (a chunk cut mid-stream);
``gc:after_mark``
    between gc's mark and its sweep (:data:`registry.server.services.maintenance.after_mark`).

With ``CRASHPOINT_STANDBY=FILE`` the process first imports the server and then waits for FILE
to appear before it runs the command: a test keeps the next server warm while the current one
works, so a restart after a crash costs ``serve``'s start-up, not its imports (seconds).

With ``CRASHPOINT_BOM_LEASE=SECONDS`` the ML-BOM workers of this process take leases of that
length instead of :data:`~registry.server.services.bomjobs.LEASE`,
so a retry after a worker was killed
mid-job waits seconds, not half a minute, for the lease to end (the heartbeat renews it at the
same fraction of its length).

A point kills only while the file named by ``CRASHPOINT_ARM`` holds its name (always, when
``CRASHPOINT_ARM`` is unset), so one server can carry every point, a test builds its state through
it and then arms the one point it crashes at. Production code is not touched: every hook is
installed here, in this process only.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

ENV_POINT = "CRASHPOINT_AT"
ENV_ARM = "CRASHPOINT_ARM"
ENV_STANDBY = "CRASHPOINT_STANDBY"
ENV_BOM_LEASE = "CRASHPOINT_BOM_LEASE"


def armed(point: str) -> bool:
    arm = os.environ.get(ENV_ARM)
    if arm is None:
        return True
    try:
        with open(arm) as handle:
            return handle.read().strip() == point
    except FileNotFoundError:
        return False


def die() -> None:
    """The crash: nothing after this line runs in this process."""
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(point: str, spec: str, when: str) -> None:
    module_name, _, attribute = spec.partition(":")
    class_name, _, method_name = attribute.partition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    original: Callable[..., Any] = getattr(cls, method_name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "before" and armed(point):
            die()
        result = original(*args, **kwargs)
        if when == "after" and armed(point):
            die()
        return result

    setattr(cls, method_name, wrapper)


def _cut_bodies(point: str, limit: int) -> None:
    from registry.server.storage.pipe import BytePipe

    original = BytePipe.put

    async def put(self: BytePipe, data: bytes) -> None:
        seen = getattr(self, "_crashpoint_seen", 0) + len(data)
        self._crashpoint_seen = seen  # type: ignore[attr-defined]
        if seen >= limit and armed(point):
            die()
        await original(self, data)

    BytePipe.put = put  # type: ignore[method-assign]


def install(point: str) -> None:
    """Install the hook of ``point`` (see the module docstring)."""
    kind, _, rest = point.partition(":")
    if kind == "tx":
        from registry.server.services import journal

        previous = journal.crash_hook

        def hook(action: str) -> None:
            if previous is not None:
                previous(action)
            if action == rest and armed(point):
                die()

        journal.crash_hook = hook
    elif kind in ("before", "after"):
        _wrap(point, rest, kind)
    elif kind == "body":
        _cut_bodies(point, int(rest))
    elif point == "gc:after_mark":
        from registry.server.services import maintenance

        maintenance.after_mark = lambda _marked: die() if armed(point) else None
    else:
        raise SystemExit(f"unknown crash point {point!r}")


def shorten_bom_lease(seconds: float) -> None:
    """Give every ``BomJobs`` built in this process a lease of ``seconds``."""
    from datetime import timedelta

    from registry.server.services.bomjobs import BomJobs

    original = BomJobs.__init__

    @functools.wraps(original)
    def init(self: BomJobs, *args: Any, **kwargs: Any) -> None:
        kwargs["lease"] = timedelta(seconds=seconds)
        original(self, *args, **kwargs)

    BomJobs.__init__ = init  # type: ignore[method-assign]


def _standby(go: str) -> None:
    import registry.cli.app
    import registry.server.app
    import registry.server.entry  # noqa: F401

    parent = os.getppid()
    while not os.path.exists(go):
        if os.getppid() != parent:  # the test is gone: nobody will start this one
            raise SystemExit(1)
        time.sleep(0.02)


def main() -> None:
    go = os.environ.get(ENV_STANDBY)
    if go:
        _standby(go)
    lease = os.environ.get(ENV_BOM_LEASE)
    if lease:
        shorten_bom_lease(float(lease))
    for point in filter(None, os.environ.get(ENV_POINT, "").split(",")):
        install(point.strip())
    from registry.__main__ import run

    sys.argv = ["modelseal", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
