"""The provenance surface of the ``modelseal`` command line, run as a user runs it: training
pushes with datasets, parameters and git, the lineage tree, the ML-BOM, external datasets, and
every refusal leaving nothing stored.

Every subprocess runs with an explicit working directory, because ``push`` records the git
checkout of the current directory: outside a test that wants one, that is a temporary
directory which is not inside any git checkout (the project itself is one).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from attest import keys
from attest.signing import KeySigner
from registry.names import Kind
from registry.sdk.training import TrainingRun
from tests.support import Live, make_model_dir, run_cli

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

SOURCE = "s3://lake/raw/transactions/2024/"
BUILDER = "https://ci.example/job"
REQUIREMENTS = "torch==2.3.0\nnumpy>=1.26\nscikit_learn==1.4.2\n"


def cli(
    live: Live | None, cwd: Path, *args: str, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``modelseal ARGS`` in ``cwd``, against ``live`` with the admin token."""
    return run_cli(*args, live=live, cwd=cwd, columns=columns)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=t@example.com",
         "-c", "commit.gpgsign=false", *args],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip()


def in_git_checkout(directory: Path) -> bool:
    done = subprocess.run(
        ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A signing key made by ``modelseal keygen`` (once: keys do not depend on the server)."""
    root = tmp_path_factory.mktemp("keys")
    made = cli(None, root, "keygen", str(root / "ci"))
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("sha256:") and len(made.stdout.strip()) == 71
    assert (root / "ci.key").stat().st_mode & 0o777 == 0o600
    return root / "ci.key"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working directory outside any git checkout."""
    path = tmp_path / "work"
    path.mkdir()
    assert not in_git_checkout(path), "the temporary directory is inside a git checkout"
    return path


@pytest.fixture
def trusted(live: Live, key: Path) -> Path:
    """``key`` registered at ``live`` as the identity ``ci`` (through the SDK: one subprocess
    less per test; the CLI's ``identity add`` is run in the first test)."""
    live.client().add_key_identity("ci", key.with_suffix(".pub").read_text())
    return key


def push_dataset(live: Live, work: Path, key: Path, ref: str = "fraud/tx@1") -> str:
    data = work / ref.replace("/", "_")
    data.mkdir()
    (data / "transactions.csv").write_text("id,amount,label\n1,10.5,0\n2,99.0,1\n")
    pushed = cli(
        live, work, "push", str(data), ref, "--no-progress", "--kind", "dataset",
        "--sign-key", str(key), "--source", SOURCE, "--classification", "confidential",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "OMS signature and SLSA provenance attached" in pushed.stderr
    digest = last_line(pushed)
    assert digest.startswith("sha256:") and len(digest) == 71
    return digest


def clean_repo(root: Path) -> tuple[Path, str]:
    """A fresh git repository with one commit: train.py and requirements.txt."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('train')\n")
    (repo / "requirements.txt").write_text(REQUIREMENTS)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    return repo, git(repo, "rev-parse", "HEAD")


def train(
    live: Live, cwd: Path, key: Path, model: Path, ref: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """A training push of ``model`` run in ``cwd`` (which holds requirements.txt)."""
    return cli(
        live, cwd, "push", str(model), ref, "--no-progress", "--sign-key", str(key),
        "--dataset", "fraud/tx@1", "--param", "lr=0.01", "--param", "epochs=3",
        "--param", "optimizer=adam", "--builder-id", BUILDER,
        "--environment", str(cwd / "requirements.txt"),
        "--task", "classification", "--architecture", "resnet", *extra,
    )  # fmt: skip


def nothing_stored(live: Live, work: Path, ref: str) -> None:
    shown = cli(live, work, "show", ref)
    assert shown.returncode == 1
    assert f"error: {ref} does not exist" in shown.stderr
    assert shown.stdout == ""


# -- a training push, its lineage and its ML-BOM ------------------------------------------------


@embedded
def test_training_push_from_a_git_checkout_records_lineage_and_an_ml_bom(
    live: Live, key: Path, work: Path, tmp_path: Path
) -> None:
    added = cli(live, work, "identity", "add", "ci", "--key", str(key.with_suffix(".pub")))
    assert added.returncode == 0, added.stderr
    assert "identity ci added" in added.stderr
    trusted = key
    dataset = push_dataset(live, work, trusted)
    repo, commit = clean_repo(tmp_path)
    model = make_model_dir(tmp_path / "model")

    pushed = train(live, repo, trusted, model, "fraud/m@1")
    assert pushed.returncode == 0, pushed.stderr
    assert "OMS signature and SLSA provenance attached" in pushed.stderr
    assert "dirty" not in pushed.stderr
    model_digest = last_line(pushed)

    tree = json.loads(cli(live, work, "provenance", "fraud/m@1", "--json").stdout)
    assert tree["ref"] == "fraud/m@1" and tree["digest"] == model_digest
    assert tree["builder"] == BUILDER and tree["provenance_signer"] == "ci"
    assert tree["signers"] == {"signature": ["ci"], "provenance": ["ci"]}
    assert tree["parameters"] == {"lr": 0.01, "epochs": 3, "optimizer": "adam"}
    assert type(tree["parameters"]["lr"]) is float and type(tree["parameters"]["epochs"]) is int
    children = {c["role"]: c for c in tree["children"]}
    assert set(children) == {"dataset", "code"}
    ds = children["dataset"]
    assert (ds["ref"], ds["kind"], ds["digest"]) == ("fraud/tx@1", "dataset", dataset)
    assert ds["children"] == [{"role": "source", "ref": SOURCE}]
    assert "problems" not in ds
    code = children["code"]
    assert code == {
        "role": "code",
        "kind": "git",
        "ref": repo.resolve().as_uri(),  # no origin remote: the checkout's path
        "commit": commit,
        "dirty": False,
    }

    # Wide enough not to crop (see test_the_human_tree_is_not_cropped_when_piped).
    human = cli(live, work, "provenance", "fraud/m@1", columns=400)
    assert human.returncode == 0, human.stderr
    assert f"model fraud/m@1 {model_digest} " in human.stdout
    assert f"── dataset fraud/tx@1 {dataset} " in human.stdout
    assert f"│   └── source {SOURCE}\n" in human.stdout  # under the dataset
    assert f"code git {repo.resolve().as_uri()} @ {commit}" in human.stdout
    assert "(dirty)" not in human.stdout
    assert "signed by provenance: ci; signature: ci" in human.stdout

    sbom = cli(live, work, "sbom", "fraud/m@1")
    assert sbom.returncode == 0, sbom.stderr
    bom = json.loads(sbom.stdout)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    component = bom["metadata"]["component"]
    assert component["bom-ref"] == "model:fraud/m@1"
    assert component["modelCard"]["modelParameters"]["task"] == "classification"
    assert component["modelCard"]["modelParameters"]["modelArchitecture"] == "resnet"
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    data = by_ref["dataset:fraud/tx@1"]
    assert data["type"] == "data"
    assert data["hashes"] == [{"alg": "SHA-256", "content": dataset.removeprefix("sha256:")}]
    [entry] = data["data"]
    assert entry["classification"] == "confidential" and entry["contents"]["url"] == SOURCE
    properties = {p["name"]: p["value"] for p in component["properties"]}
    assert {k: v for k, v in properties.items() if k.startswith("modelseal:param:")} == {
        "modelseal:param:lr": "0.01",
        "modelseal:param:epochs": "3",
        "modelseal:param:optimizer": "adam",
    }
    assert by_ref[f"code:{repo.resolve().as_uri()}@{commit}"]["version"] == commit
    libraries = {c["purl"] for c in bom["components"] if c["type"] == "library"}
    assert libraries == {"pkg:pypi/torch@2.3.0", "pkg:pypi/numpy", "pkg:pypi/scikit-learn@1.4.2"}

    # --registry-key: the BOM must verify with the key given, not merely with some key.
    registry = KeySigner.from_file(live.settings.data_dir / "registry.key")
    (work / "registry.pub").write_bytes(keys.public_pem(registry.public_key))
    pinned = cli(live, work, "sbom", "fraud/m@1", "--registry-key", "registry.pub")
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout) == bom
    other = cli(live, work, "sbom", "fraud/m@1", "--registry-key", str(key.with_suffix(".pub")))
    assert other.returncode == 1
    assert "fraud/m@1: no ML-BOM verifies with the registry key" in other.stderr
    assert other.stdout == ""


@embedded
def test_a_dirty_checkout_is_refused_unless_allowed_and_then_recorded(
    live: Live, trusted: Path, work: Path, tmp_path: Path
) -> None:
    push_dataset(live, work, trusted)
    repo, commit = clean_repo(tmp_path)
    (repo / "train.py").write_text("print('changed, not committed')\n")
    model = make_model_dir(tmp_path / "model")

    refused = train(live, repo, trusted, model, "fraud/m@1")
    assert refused.returncode == 1
    assert "uncommitted changes" in refused.stderr and "--allow-dirty" in refused.stderr
    assert refused.stdout == ""
    nothing_stored(live, work, "fraud/m@1")

    allowed = train(live, repo, trusted, model, "fraud/m@1", "--allow-dirty")
    assert allowed.returncode == 0, allowed.stderr
    assert "the git checkout is dirty (recorded)" in allowed.stderr
    tree = json.loads(cli(live, work, "provenance", "fraud/m@1", "--json").stdout)
    [code] = [c for c in tree["children"] if c["role"] == "code"]
    assert (code["commit"], code["dirty"]) == (commit, True)


# -- refusals before anything is uploaded -----------------------------------------------------


@embedded
def test_unknown_or_mismatched_datasets_are_refused_and_nothing_is_stored(
    live: Live, trusted: Path, work: Path
) -> None:
    dataset = push_dataset(live, work, trusted)
    model = make_model_dir(work / "model")
    other = "sha256:" + "0" * 64

    def push(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(live, work, "push", str(model), "fraud/m@1", "--no-progress",
                   "--sign-key", str(trusted), *args)  # fmt: skip

    unknown = push("--dataset", "fraud/tx@2")
    assert unknown.returncode == 1
    assert "dataset fraud/tx@2 is not registered; push or register it first" in unknown.stderr
    mismatch = push("--dataset", f"fraud/tx@1#{other}")
    assert mismatch.returncode == 1
    assert f"has digest {dataset}, not the pinned {other}" in mismatch.stderr
    for refused in (unknown, mismatch):
        assert refused.stdout == ""
        assert "Traceback" not in refused.stderr
    nothing_stored(live, work, "fraud/m@1")

    # The same push with the right pin and the code named explicitly goes through.
    upper = "ABCDEF0123456789" * 2 + "ABCDEF01"
    pinned = push("--dataset", f"fraud/tx@1#{dataset}",
                  "--git-repo", "https://github.com/acme/train", "--git-commit", upper)  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    tree = json.loads(cli(live, work, "provenance", "fraud/m@1", "--json").stdout)
    assert tree["builder"] == "https://modelseal.dev/builders/cli"
    assert {(c["role"], c["ref"]) for c in tree["children"]} == {
        ("dataset", "fraud/tx@1"),
        ("code", "https://github.com/acme/train"),
    }
    [code] = [c for c in tree["children"] if c["role"] == "code"]
    assert code["commit"] == upper.lower() and code["dirty"] is False


@embedded
def test_provenance_flags_need_a_signer_and_must_not_contradict(
    live: Live, key: Path, work: Path
) -> None:
    model = make_model_dir(work / "model")
    (work / "bad-requirements.txt").write_text("torch==2.3.0\nnot a requirement !!\n")

    def push(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(live, work, "push", str(model), "ns/m@1", "--no-progress", *args)

    cases = [
        (("--param", "lr=0.01"), "--param goes into signed provenance: it needs --sign-key"),
        (("--dataset", "ns/ds@1"), "--dataset goes into signed provenance"),
        (
            ("--sign-key", str(key), "--code", "ns/code@1", "--git-repo", "https://g/r"),
            "--code and --git-repo/--git-commit exclude each other",
        ),
        (
            ("--sign-key", str(key), "--git-repo", "https://g/r"),
            "--git-repo and --git-commit go together",
        ),
        (("--sign-key", str(key), "--param", "1lr=3"), "expected KEY=VALUE with a plain KEY"),
        # Parsed as a number, refused before anything is uploaded: JSON has no Infinity.
        (("--sign-key", str(key), "--param", "x=1e999"), "parameter x: inf is not a finite"),
        (
            ("--sign-key", str(key), "--kind", "dataset", "--source", "https://u:pw@host/x"),
            "carries credentials",
        ),
        (
            ("--sign-key", str(key), "--environment", "bad-requirements.txt"),
            "environment file 'bad-requirements.txt' line 2",
        ),
    ]
    for args, message in cases:
        refused = push(*args)
        assert refused.returncode == 1, args
        assert message in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
        assert refused.stdout == ""
    assert json.loads(cli(live, work, "list", "--json").stdout) == []


# -- external datasets --------------------------------------------------------------------------


@embedded
def test_external_dataset_by_manifest_is_shown_external_and_never_pulled(
    live: Live, trusted: Path, work: Path
) -> None:
    lake = work / "lake-copy"
    (lake / "2024").mkdir(parents=True)
    (lake / "2024" / "part-0.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4 + b"PAR1")
    (lake / "part-1.parquet").write_bytes(b"PAR1\x00PAR1")

    made = cli(live, work, "manifest", str(lake), "--base-uri", "s3://lake/x/")
    assert made.returncode == 0, made.stderr
    manifest = json.loads(made.stdout)
    assert sorted((f["path"], f["uri"], f["size"]) for f in manifest["files"]) == [
        ("2024/part-0.parquet", "s3://lake/x/2024/part-0.parquet", 1032),
        ("part-1.parquet", "s3://lake/x/part-1.parquet", 9),
    ]
    (work / "manifest.json").write_text(made.stdout)

    registered = cli(live, work, "register", "manifest.json", "ns/ext@1",
                     "--sign-key", str(trusted))  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert "(external, 2 files, 1041 bytes" in registered.stderr
    digest = last_line(registered)

    shown = cli(live, work, "show", "ns/ext@1")
    assert shown.returncode == 0, shown.stderr
    assert "external" in shown.stdout and "registry holds no bytes" in shown.stdout
    assert "uri" in shown.stdout  # the file table has a uri column
    for item in manifest["files"]:  # piped output is never cut
        assert item["uri"] in shown.stdout
    listed = cli(live, work, "list", "ns/ext")
    assert "pending (external)" in listed.stdout and digest in listed.stdout
    document = json.loads(cli(live, work, "show", "ns/ext@1", "--json").stdout)
    assert document["external"] is True and document["root_digest"] == digest
    assert {f["uri"] for f in document["files"]} == {f["uri"] for f in manifest["files"]}

    target = work / "D"
    pulled = cli(live, work, "pull", "ns/ext@1", "--pending", "--to", str(target),
                 "--no-progress")  # fmt: skip
    assert pulled.returncode == 1
    assert "external" in pulled.stderr
    assert not target.exists()


# -- the human tree ---------------------------------------------------------------------------


def sdk_dataset(live: Live, key: Path, root: Path, ref: str, source: str) -> str:
    """A signed dataset with one source, pushed through the SDK (setup, not the subject)."""
    data = root / "data"
    data.mkdir()
    (data / "rows.csv").write_text("id\n1\n")
    client = live.client()
    signer = KeySigner.from_file(key)
    with TrainingRun.start(client, ref, signer=signer, kind=Kind.DATASET) as run:
        run.add_source(source)
        return run.push(data).root_digest


@embedded
def test_the_human_tree_prints_states_and_brackets_verbatim(
    live: Live, trusted: Path, work: Path
) -> None:
    source = "https://data.example/export[/v2]"
    digest = sdk_dataset(live, trusted, work, "ns/ds@1", source)
    human = cli(live, work, "provenance", "ns/ds@1", columns=400)
    assert human.returncode == 0, human.stderr
    assert f"dataset ns/ds@1 {digest} [pending]" in human.stdout
    assert f"source {source}" in human.stdout


@embedded
def test_the_human_tree_is_not_cropped_when_piped(live: Live, trusted: Path, work: Path) -> None:
    digest = sdk_dataset(live, trusted, work, "ns/ds@1", "s3://lake/raw/")
    human = cli(live, work, "provenance", "ns/ds@1")  # no COLUMNS: what a pipe or CI log gets
    assert human.returncode == 0, human.stderr
    assert digest in human.stdout
    assert "signed by provenance: ci; signature: ci" in human.stdout


@embedded
def test_a_missing_environment_file_is_one_clear_error(live: Live, key: Path, work: Path) -> None:
    model = make_model_dir(work / "model")
    refused = cli(live, work, "push", str(model), "ns/m@1", "--no-progress",
                  "--sign-key", str(key), "--environment", "missing.txt")  # fmt: skip
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "missing.txt" in refused.stderr
