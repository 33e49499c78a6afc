"""How long does each everyday `modelseal` command take, against Python's own start-up?

    python3 -m bench.cli_speed [--repeat 10] [--compare-rev GIT_REV] [--only show,list]
                               [--server-rev GIT_REV]

Starts a registry on the embedded default (SQLite + local directory) on a free port, registers a
signing key, pushes a released 1 MB model once, then times each command as a fresh process
(median and spread of ``--repeat`` runs): ``--help``, ``show``, ``list``, the other read
commands (``list NS/NAME``, ``attestations``, ``alias list``, ``audit log``), a signed push of a
1 MB model (a new version each run), ``sbom``, ``provenance``; the baseline is
``python -c pass`` in the same run. Targets from the issue tracker are printed beside each.
``--only`` times the commands named (comma-separated names of the table's first column) and the
baseline. The registry runs from the checkout, or with ``--server-rev`` from that git revision
(a temporary worktree: a server being edited meanwhile does not stop the measurement).

The packages are byte-compiled first, as installing a wheel does (with PYTHONDONTWRITEBYTECODE
set, an editable checkout would otherwise compile every module of every command from source).
With ``--compare-rev``, the CLI of that git revision (a temporary worktree, same interpreter and
dependencies, same registry) is timed too, each of its runs right after the matching current
one, and the ratio current/old is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "attest", "sbom")
TARGETS = {"--help": 0.25, "show": 0.25, "list": 0.25, "push (signed, 1 MB)": 0.8,
           "sbom": 0.5, "provenance": 0.5}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compile_tree(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(root / p) for p in PACKAGES)],
                   check=True, capture_output=True)  # fmt: skip


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return elapsed


def model(directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"w": {"dtype": "U8", "shape": [1 << 20], "data_offsets": [0, 1 << 20]}})
    payload = (seed.to_bytes(4, "little") * (1 << 18))[: 1 << 20]
    raw = len(header).to_bytes(8, "little") + header.encode() + payload
    (directory / "model.safetensors").write_bytes(raw)
    (directory / "config.json").write_text('{"architectures": ["Tiny"]}\n')
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--compare-rev", help="also time the CLI of this git revision")
    parser.add_argument("--only", help="time only these commands (comma-separated)")
    parser.add_argument("--server-rev", help="run the registry from this git revision")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "registry"]
    compile_tree(ROOT)
    with tempfile.TemporaryDirectory(prefix="modelseal-cli-bench-") as tmp:
        root = Path(tmp)
        trees: list[Path] = []

        def worktree(name: str, rev: str) -> Path:
            tree = root / name
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                            rev], check=True, capture_output=True)  # fmt: skip
            trees.append(tree)
            compile_tree(tree)
            return tree

        old_tree = worktree("old", args.compare_rev) if args.compare_rev else None
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSEAL_", "GIT_"))}
        env.update(MODELSEAL_URL=f"http://127.0.0.1:{port}",
                   MODELSEAL_CONFIG_DIR=str(root / "config"))  # fmt: skip
        server_env = dict(env)
        if args.server_rev:
            server_env["PYTHONPATH"] = str(worktree("server", args.server_rev))
        server = subprocess.Popen([*cli, "serve", "--data-dir", str(root / "data"), "--port",
                                   str(port)], env=server_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:  # up when it answers /health
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                        if b" 200 " in sock.recv(64):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the registry did not start")
                time.sleep(0.2)
            env["MODELSEAL_TOKEN"] = (root / "data" / "admin-token").read_text().strip()
            run = lambda *a: timed([*cli, *a], env, root)  # noqa: E731
            run("keygen", str(root / "ci"))
            run("identity", "add", "ci", "--key", str(root / "ci.pub"))
            run("push", str(model(root / "m0", 0)), "bench/m@0", "--sign-key",
                str(root / "ci.key"), "--no-progress")  # fmt: skip
            run("release", "bench/m@0")
            run("alias", "set", "bench/m", "prod", "0")
            commands: dict[str, list[list[str]]] = {
                "python -c pass": [[sys.executable, "-c", "pass"]] * args.repeat,
                "--help": [[*cli, "--help"]] * args.repeat,
                "show": [[*cli, "show", "bench/m@0"]] * args.repeat,
                "list": [[*cli, "list"]] * args.repeat,
                "list NS/NAME": [[*cli, "list", "bench/m"]] * args.repeat,
                "attestations": [[*cli, "attestations", "bench/m@0"]] * args.repeat,
                "alias list": [[*cli, "alias", "list", "bench/m"]] * args.repeat,
                "audit log": [[*cli, "audit", "log"]] * args.repeat,
                "push (signed, 1 MB)": [
                    [
                        *cli,
                        "push",
                        str(model(root / f"m{i}", i)),
                        f"bench/m@{i}",
                        "--sign-key",
                        str(root / "ci.key"),
                        "--no-progress",
                    ]
                    for i in range(1, args.repeat + 1)
                ],
                "sbom": [[*cli, "sbom", "bench/m@0"]] * args.repeat,
                "provenance": [[*cli, "provenance", "bench/m@0"]] * args.repeat,
            }
            if args.only:
                wanted = {"python -c pass", *(n.strip() for n in args.only.split(","))}
                unknown = wanted - set(commands)
                if unknown:
                    raise SystemExit(f"--only: no command {', '.join(sorted(unknown))}; "
                                     f"the commands: {', '.join(commands)}")  # fmt: skip
                commands = {k: v for k, v in commands.items() if k in wanted}
            old_env = None if old_tree is None else {**env, "PYTHONPATH": str(old_tree)}
            baseline = None
            print(f"{'command':22} {'median s':>9} {'min':>6} {'max':>6} {'x python':>9} "
                  f"{'target':14}" + ("  old median  new/old" if old_env else ""))  # fmt: skip
            for name, runs in commands.items():
                times, old_times = [], []
                for i, command in enumerate(runs):
                    times.append(timed(command, env, root))
                    if old_env is not None and name != "python -c pass":
                        if name.startswith("push"):  # the old CLI pushes its own versions
                            command = [*command[:-4], f"bench/old@{i}", *command[-3:]]
                        old_times.append(timed(command, old_env, root))
                median = statistics.median(times)
                baseline = baseline or median
                target = TARGETS.get(name)
                mark = "" if target is None else (f"<= {target}" + (" ok" if median <= target
                                                                    else " MISSED"))  # fmt: skip
                line = (f"{name:22} {median:9.3f} {min(times):6.3f} {max(times):6.3f} "
                        f"{median / baseline:9.1f} {mark:14}")  # fmt: skip
                if old_times:
                    old = statistics.median(old_times)
                    line += f"  {old:10.3f} {median / old:8.2f}"
                print(line, flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            shutil.rmtree(root / "data", ignore_errors=True)
            for tree in trees:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], capture_output=True)  # fmt: skip


if __name__ == "__main__":
    main()
