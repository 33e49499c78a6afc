"""`modelseal scan` over the whole corpus, as a user runs it: exit 1 for every malicious file,
exit 0 for the benign set, one line instead of a traceback when a path cannot be scanned."""

from __future__ import annotations

import json
from pathlib import Path

from tests import scan_corpus as corpus
from tests.support import run_cli
from tests.unit.attest.test_scan import all_malicious, benign_corpus, real_world_benign


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_every_malicious_file_makes_scan_exit_1(tmp_path: Path) -> None:
    sentinel = tmp_path / "PWNED"
    files = all_malicious(sentinel)
    scanned = run_cli("scan", str(_write(tmp_path / "bad", files)), "--json")
    assert scanned.returncode == 1, scanned.stderr
    report = json.loads(scanned.stdout)
    assert {f["path"] for f in report["files"] if f["verdict"] == "clean"} == set()
    assert len(report["files"]) == len(files)
    assert scanned.stderr.strip().startswith(f"{len(files)} file(s) not clean (")
    one = run_cli("scan", str(tmp_path / "bad" / "headerless.pkl"))
    assert one.returncode == 1 and "os.system" in one.stdout
    assert not sentinel.exists()


def test_the_benign_set_makes_scan_exit_0(tmp_path: Path) -> None:
    files = {**benign_corpus(), **real_world_benign(tmp_path)}
    scanned = run_cli("scan", str(_write(tmp_path / "good", files)), "--json")
    assert scanned.returncode == 0, scanned.stdout
    assert json.loads(scanned.stdout)["verdict"] == "clean"


def test_unknown_and_unscannable_files_exit_1_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 16)
    unknown = run_cli("scan", str(tmp_path / "blob.bin"))
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "1 file(s) not clean (1 unknown)"
    (tmp_path / "bomb.bz2").write_bytes(corpus.bz2_bomb())
    bomb = run_cli("scan", str(tmp_path / "bomb.bz2"))
    assert bomb.returncode == 1 and "1 unscannable" in bomb.stderr
    missing = run_cli("scan", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "is not a regular file or directory" in missing.stderr
