"""The README's "Using it" walk, run exactly as written (its code blocks, in order, in one bash)
against a registry started as its first set-up command starts it: the README cannot drift from
what works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from registry.server.config import Settings
from tests.support import serve

ROOT = Path(__file__).resolve().parents[2]


def walk_blocks(readme: str) -> list[str]:
    """The ```bash blocks between "## Using it" and the next section."""
    section = readme.split("\n## Using it\n", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_walk_has_every_role() -> None:
    text = "\n".join(walk_blocks((ROOT / "README.md").read_text()))
    for step in ("modelseal keygen", "modelseal identity add", "--sign-key training.key",
                 "--evaluation metrics.json", "modelseal policy set", "modelseal release",
                 "--role deployer", "modelseal pull"):  # fmt: skip
        assert step in text, step


@pytest.mark.timeout(300)
def test_the_readme_walk_works_as_written(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"  # stands for the clone: .venv and modelseal-data beside README
    repo.mkdir()
    (repo / ".venv").symlink_to(Path(sys.executable).resolve().parents[1])
    settings = Settings(data_dir=repo / "modelseal-data")
    home = tmp_path / "home"
    home.mkdir()
    script = "set -euo pipefail\n" + "\n".join(walk_blocks((ROOT / "README.md").read_text()))
    with serve(settings) as live:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSEAL_", "GIT_"))}
        env.update(HOME=str(home), MODELSEAL_URL=live.url,
                   PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # fmt: skip
        done = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=280)  # fmt: skip
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    walk = home / "modelseal-walk"
    assert sorted(p.name for p in (walk / "deployed").iterdir()) == [
        "config.json", "model.safetensors"]  # fmt: skip
    assert "released" in done.stdout
    assert "pinned the registry key sha256:" in done.stderr  # said once, on first contact
    assert done.stderr.count("pinned the registry key") == 1
    assert "note: no code recorded in the provenance (not in a git checkout" in done.stderr
