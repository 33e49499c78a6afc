"""How long does each everyday `modelseal` command take, against Python's own start-up?

    python3 bench/cli_speed.py [--repeat 10]

Starts a registry on the embedded default (SQLite + local directory) on a free port, registers a
signing key, pushes a released 1 MB model once, then times each command as a fresh process
(median and spread of ``--repeat`` runs): ``--help``, ``show``, ``list``, a signed push of a
1 MB model (a new version each run), ``sbom``, ``provenance``; the baseline is
``python -c pass`` in the same run. Targets from the issue tracker are printed beside each.
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

TARGETS = {"--help": 0.25, "show": 0.25, "list": 0.25, "push (signed, 1 MB)": 0.8,
           "sbom": 0.5, "provenance": 0.5}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    args = parser.parse_args()
    cli = [sys.executable, "-m", "registry"]
    with tempfile.TemporaryDirectory(prefix="modelseal-cli-bench-") as tmp:
        root = Path(tmp)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSEAL_", "GIT_"))}
        env.update(MODELSEAL_URL=f"http://127.0.0.1:{port}",
                   MODELSEAL_CONFIG_DIR=str(root / "config"))  # fmt: skip
        server = subprocess.Popen([*cli, "serve", "--data-dir", str(root / "data"), "--port",
                                   str(port)], env=env, stdout=subprocess.DEVNULL,
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
            commands: dict[str, list[list[str]]] = {
                "python -c pass": [[sys.executable, "-c", "pass"]] * args.repeat,
                "--help": [[*cli, "--help"]] * args.repeat,
                "show": [[*cli, "show", "bench/m@0"]] * args.repeat,
                "list": [[*cli, "list"]] * args.repeat,
                "push (signed, 1 MB)": [
                    [*cli, "push", str(model(root / f"m{i}", i)), f"bench/m@{i}", "--sign-key",
                     str(root / "ci.key"), "--no-progress"]
                    for i in range(1, args.repeat + 1)
                ],
                "sbom": [[*cli, "sbom", "bench/m@0"]] * args.repeat,
                "provenance": [[*cli, "provenance", "bench/m@0"]] * args.repeat,
            }
            baseline = None
            print(f"{'command':22} {'median s':>9} {'min':>6} {'max':>6} {'x python':>9} target")
            for name, runs in commands.items():
                times = [timed(command, env, root) for command in runs]
                median = statistics.median(times)
                baseline = baseline or median
                target = TARGETS.get(name)
                mark = "" if target is None else (f"<= {target}" + (" ok" if median <= target
                                                                    else " MISSED"))  # fmt: skip
                print(f"{name:22} {median:9.3f} {min(times):6.3f} {max(times):6.3f} "
                      f"{median / baseline:9.1f} {mark}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            shutil.rmtree(root / "data", ignore_errors=True)


if __name__ == "__main__":
    main()
