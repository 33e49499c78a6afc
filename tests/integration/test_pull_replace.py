"""pull --replace: the verified new copy is swapped in for what the target holds, in one step;
a refused pull leaves the old copy exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import InvalidRequestError, PullVerificationError
from tests.integration.test_release import World, _deployer, _released
from tests.support import Live


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def test_replace_swaps_a_verified_copy_in(world: World, tmp_path: Path) -> None:
    _released(world)
    deployer = _deployer(world)
    target = tmp_path / "serving" / "model"
    deployer.pull("fraud/m@1", target)
    (target / "stale.txt").write_text("left from an older deploy")
    with pytest.raises(InvalidRequestError, match="pass --replace to swap it"):
        deployer.pull("fraud/m@1", target)
    deployer.pull("fraud/m@1", target, replace=True)
    assert not (target / "stale.txt").exists()
    pulled = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert pulled == sorted(f.path for f in deployer.show("fraud/m@1").files)
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # nothing left beside it


def test_a_refused_pull_with_replace_leaves_the_old_copy(world: World, tmp_path: Path) -> None:
    _released(world)
    world.model("fraud/m@2")  # pending: a deployer may not pull it
    deployer = _deployer(world)
    target = tmp_path / "model"
    deployer.pull("fraud/m@1", target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    with pytest.raises(PullVerificationError, match="only released versions are pulled"):
        deployer.pull("fraud/m@2", target, replace=True)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidRequestError, match="exists and is not a directory"):
        deployer.pull("fraud/m@1", tmp_path / "file", replace=True)
