"""The transparency log in an evidence export (#21 point 6): ``modelseal export`` and the web
console's archive carry, for each released version of the chain, a C2SP tlog-proof of its newest
status event (the entry's bytes, its inclusion proof and the one signed checkpoint every proof of
the export shares), with the log key and the registry-signed statement vouching for it;
``verify-evidence`` checks them offline against the registry key the auditor brings.

Acceptance: both exports verify, VERIFIED, reporting the checkpoint's size and time. Each check
is then broken on its own (docs/transparency-log.md, "Evidence exports"): a changed entry byte,
a changed proof hash, a checkpoint signed by another key, the log-key statement signed by
another registry key or missing, a release bundle swapped (re-signed by a stolen registry key) so
the logged statement_sha256 no longer matches, a proof deleted (accepted only with
--without-log), another version's proof in its place, proofs against two checkpoints, a revoked
version (hidden from every other check of the export), and the witnesses an auditor requires:
missing, forged, and the only defence against a stolen registry key vouching for a log of its
own."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest import keys, note, tlog
from attest.bundle import Bundle
from attest.evidence import EvidenceVerdict, verify_evidence
from attest.export import unpack
from attest.predicates import LOG_KEY, RELEASE, REVOCATION
from attest.signing import KeySigner
from attest.statement import Statement, make_statement
from attest.tlogproof import TlogProof, parse_entries, write_entries
from registry.sdk.export import export_evidence
from registry.server.services.keys import load_registry_signer
from tests.integration.test_export import Chain, _auditor, _failed, _registry_key
from tests.integration.test_ui import Browser, _auditor_trust, _download
from tests.support import Live, run_cli

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

ROOT, DATASET = "fraud/m@1", "fraud/tx@3"
PROOF = {ROOT: "fraud@m@1.tlog-proof", DATASET: "fraud@tx@3.tlog-proof"}


@pytest.fixture
def chain(live: Live, tmp_path: Path) -> Chain:
    return Chain(live, tmp_path)


def _proof(directory: Path, ref: str) -> TlogProof:
    return TlogProof.parse((directory / "log" / PROOF[ref]).read_bytes())


def _entry(proof: TlogProof) -> dict[str, object]:
    assert proof.extra is not None
    parsed = json.loads(proof.extra)
    assert isinstance(parsed, dict)
    return parsed


def _cosigned(proof: TlogProof, witness: note.NoteSigner) -> TlogProof:
    """The proof with a witness's genuine cosignature of its checkpoint appended (what a
    witness that saw the tree returns, C2SP tlog-cosignature)."""
    text, _ = note.parse_note(proof.checkpoint)
    line = note.cosign(text, witness)
    return TlogProof(proof.index, proof.hashes, proof.checkpoint + line, proof.extra)


def _rewrite(directory: Path, change: Callable[[TlogProof], TlogProof], *refs: str) -> None:
    for ref in refs or tuple(PROOF):
        path = directory / "log" / PROOF[ref]
        path.write_bytes(change(TlogProof.parse(path.read_bytes())).serialize())


def _served_size(chain: Chain) -> int:
    served = chain.admin._request("GET", "/v1/log/checkpoint").text
    return note.Checkpoint.parse(note.parse_note(served)[0]).size


def _log_lines(verdict: EvidenceVerdict) -> list[str]:
    return [str(c) for c in verdict.checks if c.link.startswith("log")]


@embedded
def test_both_exports_prove_each_release_in_one_checkpoint_and_verify(
    chain: Chain, live: Live, tmp_path: Path
) -> None:
    exported = export_evidence(chain.admin, ROOT, tmp_path / "export")
    log = exported / "log"
    assert sorted(p.name for p in log.iterdir()) == sorted(
        [*PROOF.values(), "entries", "log-key.sigstore.json", "log.vkey"]
    )
    proofs = {ref: _proof(exported, ref) for ref in PROOF}
    assert len({p.checkpoint for p in proofs.values()}) == 1  # one checkpoint for all
    text = (log / PROOF[ROOT]).read_text()
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    checkpoint = note.Checkpoint.parse(note.parse_note(proofs[ROOT].checkpoint)[0])
    # Each proof's entry is that version's release, naming the release bundle exported.
    release_sha = hashlib.sha256((exported / "release.sigstore.json").read_bytes()).hexdigest()
    root_entry = _entry(proofs[ROOT])
    assert (root_entry["type"], root_entry["subject"]) == ("release", ROOT)
    assert root_entry["statement_sha256"] == release_sha
    assert root_entry["root_digest"] == chain.admin.show(ROOT).root_digest
    dataset_entry = _entry(proofs[DATASET])
    assert (dataset_entry["type"], dataset_entry["subject"]) == ("release", DATASET)
    dataset_releases = {
        Bundle.parse(p.read_bytes()).digest
        for p in (exported / "evidence").glob("fraud.tx@3.*.sigstore.json")
        if Bundle.parse(p.read_bytes()).statement().predicate_type == RELEASE
    }
    assert dataset_entry["statement_sha256"] in dataset_releases
    assert (log / "log.vkey").read_text().strip() == chain.admin._request(
        "GET", "/v1/log/key"
    ).json()["vkey"]

    anchor, auditor = _registry_key(live), _auditor(chain)
    verdict = verify_evidence(exported, registry_key=anchor, trust=auditor)
    assert verdict.ok, _failed(verdict)
    lines = _log_lines(verdict)
    assert lines[0].startswith(f"ok   log key: log {checkpoint.origin} with key ")
    assert lines[1].startswith(f"ok   log checkpoint: {checkpoint.origin} size {checkpoint.size},")
    assert f"(timestamp {checkpoint.timestamp})" in lines[1] and "signed at 20" in lines[1]
    assert any(line.startswith(f"ok   log: {ROOT} released in the log (entry ") for line in lines)
    assert any(line.startswith(f"ok   log: {DATASET} released in the log") for line in lines)

    # The console's archive: the same log files, byte for byte, and VERIFIED from the CLI.
    browser = Browser(live, live.admin_token)
    try:
        archive = _download(browser, "fraud/m/1", tmp_path)
    finally:
        browser.http.close()
    (tmp_path / "unpacked").mkdir()
    console = unpack(archive, tmp_path / "unpacked")
    for path in sorted(log.iterdir()):
        assert (console / "log" / path.name).read_bytes() == path.read_bytes(), path.name
    assert verify_evidence(console, registry_key=anchor, trust=auditor).ok
    trust = _auditor_trust(chain, tmp_path / "auditor", (exported / "registry.pub").read_bytes())
    ok = run_cli("verify-evidence", str(archive), "--trust", str(trust), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok   log checkpoint:" in ok.stdout and ok.stdout.rstrip().endswith("VERIFIED")


@embedded
def test_each_log_check_fails_on_its_own(chain: Chain, live: Live, tmp_path: Path) -> None:
    exported = export_evidence(chain.admin, ROOT, tmp_path / "export")
    anchor, auditor = _registry_key(live), _auditor(chain)
    assert verify_evidence(exported, registry_key=anchor, trust=auditor).ok
    origin = note.Checkpoint.parse(note.parse_note(_proof(exported, ROOT).checkpoint)[0]).origin

    def tampered(change: Callable[[Path], object], **kwargs: object) -> list[str]:
        copy = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        shutil.copytree(exported, copy)
        change(copy)
        verdict = verify_evidence(copy, registry_key=anchor, trust=auditor, **kwargs)  # type: ignore[arg-type]
        assert not verdict.ok
        return _failed(verdict)

    root_index = _proof(exported, ROOT).index

    # A byte of an entry changed (the actor of the root's release): not in the checkpoint.
    def entry_byte(proof: TlogProof) -> TlogProof:
        assert proof.extra is not None
        extra = proof.extra.replace(b'"actor":"', b'"actor":"X', 1)
        return TlogProof(proof.index, proof.hashes, proof.checkpoint, extra)

    failures = tampered(lambda d: _rewrite(d, entry_byte, ROOT))
    assert len(failures) == 1 and failures[0].startswith(
        f"FAIL log: {ROOT}: log entry {root_index} is not in the checkpoint: inclusion proof of "
        f"index {root_index} in tree of size "
    ), failures
    assert "it leads to root" in failures[0], failures

    # One hash of the inclusion proof changed.
    def proof_hash(proof: TlogProof) -> TlogProof:
        first = bytes([proof.hashes[0][0] ^ 1]) + proof.hashes[0][1:]
        return TlogProof(proof.index, (first, *proof.hashes[1:]), proof.checkpoint, proof.extra)

    failures = tampered(lambda d: _rewrite(d, proof_hash, DATASET))
    assert len(failures) == 1 and failures[0].startswith(
        f"FAIL log: {DATASET}: log entry {_proof(exported, DATASET).index} is not in the checkpoint"
    ), failures

    # The checkpoint signed by another key under the log's name (every proof's).
    impostor = note.NoteSigner(origin, ed25519.Ed25519PrivateKey.generate())

    def resigned(proof: TlogProof) -> TlogProof:
        text, _ = note.parse_note(proof.checkpoint)
        return TlogProof(proof.index, proof.hashes, note.sign_note(text, [impostor]), proof.extra)

    failures = tampered(lambda d: _rewrite(d, resigned))
    assert failures[0].startswith("FAIL log checkpoint: does not verify with the log key ")
    assert "signed by no trusted key" in failures[0], failures
    assert f"FAIL log: {ROOT}: its proof's checkpoint does not verify" in failures
    assert f"FAIL log: {DATASET}: its proof's checkpoint does not verify" in failures

    # The log-key statement signed by another registry key, or missing, or another vkey listed.
    statement = Bundle.parse((exported / "log" / "log-key.sigstore.json").read_bytes()).statement()
    other_registry = KeySigner(keys.generate())
    failures = tampered(lambda d: (d / "log" / "log-key.sigstore.json").write_bytes(
        other_registry.sign(statement).raw))  # fmt: skip
    assert failures == [
        "FAIL log key: log/log-key.sigstore.json does not vouch for a log key with your registry "
        f"key: signed by key sha256:{other_registry.identity.removeprefix('sha256:')}, which is "
        "not a trusted key"
    ], failures
    failures = tampered(lambda d: (d / "log" / "log-key.sigstore.json").unlink())
    assert failures == [
        "FAIL log key: log/log-key.sigstore.json is missing: nothing anchors the log's key on "
        "your registry key, and a log key by itself proves nothing"
    ], failures
    failures = tampered(lambda d: (d / "log" / "log.vkey").write_text(impostor.verifier.vkey))
    assert len(failures) == 1 and failures[0].startswith("FAIL log key: log/log.vkey names")

    # The root's release swapped for another one signed by the (stolen) registry key: every
    # other check holds, the log names the release it recorded.
    registry = load_registry_signer(live.settings)
    release = Bundle.parse((exported / "release.sigstore.json").read_bytes()).statement()
    predicate = {**release.predicate, "releasedAt": "2020-01-01T00:00:00+00:00"}
    swapped = registry.sign(Statement(release.subjects, RELEASE, predicate)).raw

    def swap_release(d: Path) -> None:
        for path in (d / "evidence").glob("fraud.m@1.*.sigstore.json"):
            if Bundle.parse(path.read_bytes()).statement().predicate_type == RELEASE:
                path.write_bytes(swapped)
        (d / "release.sigstore.json").write_bytes(swapped)

    failures = tampered(swap_release)
    logged = _entry(_proof(exported, ROOT))["statement_sha256"]
    assert failures == [
        f"FAIL log: {ROOT}: log entry {root_index}: the logged release statement is sha256:"
        f"{logged}, not the registry-signed release the export holds (sha256:"
        f"{hashlib.sha256(swapped).hexdigest()}): a release the log does not record"
    ], failures

    # A proof deleted: named, fail closed, unless the auditor accepts versions released before
    # the log existed.
    failures = tampered(lambda d: (d / "log" / PROOF[DATASET]).unlink())
    assert failures == [
        f"FAIL log: {DATASET}: no proof of its release (log/{PROOF[DATASET]} is missing): "
        "released before the log existed, or the proof was left out; no signed log shows it "
        "released and not revoked (--without-log accepts that)"
    ], failures
    copy = tmp_path / "lenient"
    shutil.copytree(exported, copy)
    (copy / "log" / PROOF[DATASET]).unlink()
    lenient = verify_evidence(copy, registry_key=anchor, trust=auditor, require_log=False)
    assert lenient.ok, _failed(lenient)
    assert f"ok   log: {DATASET}: no proof in the log; accepted (--without-log)" in " ".join(
        _log_lines(lenient)
    )
    failures = tampered(lambda d: shutil.rmtree(d / "log"))
    assert len(failures) == 1 and failures[0].startswith(
        "FAIL log: missing: the export holds no log/ directory"
    ), failures
    shutil.rmtree(copy / "log")
    assert verify_evidence(copy, registry_key=anchor, trust=auditor, require_log=False).ok

    # The dataset's proof in the root's place: about another version.
    failures = tampered(lambda d: shutil.copy(d / "log" / PROOF[DATASET], d / "log" / PROOF[ROOT]))
    assert failures[0] == (
        f"FAIL log: {ROOT}: log entry {_proof(exported, DATASET).index} is about '{DATASET}', "
        f"not {ROOT}: the proof of another version's event"
    ), failures
    # ... and the log's later entries show the root's own release after the proven entry
    assert len(failures) == 2 and failures[1].startswith(
        f"FAIL log: {ROOT}: the log records a later event about it than the one proven (entry "
        f"{_proof(exported, ROOT).index}, release,"
    ), failures

    # Proofs against two checkpoints: the dataset's from a later export (the log grew since).
    size = note.Checkpoint.parse(note.parse_note(_proof(exported, ROOT).checkpoint)[0]).size
    chain.admin.create_token("one-more-entry", "deployer", "fraud")  # a logged change
    deadline = time.monotonic() + 30  # signed about half a second after the append
    while _served_size(chain) <= size:
        assert time.monotonic() < deadline, "no newer checkpoint signed"
        time.sleep(0.1)
    later = export_evidence(chain.admin, ROOT, tmp_path / "later")
    assert _proof(later, ROOT).checkpoint != _proof(exported, ROOT).checkpoint
    failures = tampered(
        lambda d: shutil.copy(later / "log" / PROOF[DATASET], d / "log" / PROOF[DATASET])
    )
    assert len(failures) == 1 and failures[0].startswith(
        "FAIL log checkpoint: the proofs are against 2 different checkpoints"
    ), failures


@embedded
def test_a_revoked_version_is_not_verified_even_with_every_other_trace_removed(
    chain: Chain, live: Live, tmp_path: Path
) -> None:
    """Attacker: hands an auditor the export of a revoked chain with the registry-signed
    revocations, the recorded states and the audit log removed; the log's proofs still show the
    newest status event of each version: its revocation."""
    chain.releaser.revoke(DATASET, "poisoned rows")  # cascades to the model built on it
    exported = export_evidence(chain.admin, ROOT, tmp_path / "export")
    for ref in PROOF:
        entry = _entry(_proof(exported, ref))
        assert (entry["type"], entry["subject"]) == ("revocation", ref)
    for path in (exported / "evidence").glob("*.sigstore.json"):
        if Bundle.parse(path.read_bytes()).statement().predicate_type == REVOCATION:
            path.unlink()
    for name in ("manifest.json", "versions.json"):
        text = (exported / name).read_text().replace('"revoked"', '"released"')
        (exported / name).write_text(text)
    shutil.rmtree(exported / "audit")
    verdict = verify_evidence(
        exported, registry_key=_registry_key(live), trust=_auditor(chain), require_audit=False
    )
    failures = _failed(verdict)
    assert failures and all(f.startswith("FAIL log: ") for f in failures), failures
    for ref in PROOF:
        assert any(
            f.startswith(f"FAIL log: {ref} is revoked in the transparency log (entry ")
            and "by release-bot" in f
            for f in failures
        ), failures
    assert any("poisoned rows" in f for f in failures), failures


@embedded
def test_an_older_release_proven_in_a_newer_checkpoint_does_not_hide_the_revocation(
    chain: Chain, live: Live, tmp_path: Path
) -> None:
    """Attacker (found in review): keeps the newest checkpoint, which already holds the
    revocations, but proves each version's older *release* entry in it (inclusion proofs are
    public), with the revocation bundles and states removed and the audit log of an earlier
    export. Every proof verifies; only the log's later entries show the revocation."""
    before = export_evidence(chain.admin, ROOT, tmp_path / "before")
    chain.releaser.revoke(DATASET, "poisoned rows")  # cascades to the model built on it
    forged = export_evidence(chain.admin, ROOT, tmp_path / "after")
    for path in (forged / "evidence").glob("*.sigstore.json"):
        if Bundle.parse(path.read_bytes()).statement().predicate_type == REVOCATION:
            path.unlink()
    for name in ("manifest.json", "versions.json"):
        text = (forged / name).read_text().replace('"revoked"', '"released"')
        (forged / name).write_text(text)
    shutil.rmtree(forged / "audit")
    shutil.copytree(before / "audit", forged / "audit")
    for ref in PROOF:
        newest, release = _proof(forged, ref), _proof(before, ref)
        size = note.Checkpoint.parse(note.parse_note(newest.checkpoint)[0]).size
        answer = chain.admin._request(
            "GET", "/v1/log/proof/inclusion", params={"index": release.index, "size": size}
        ).json()
        hashes = tuple(base64.b64decode(h) for h in answer["hashes"])
        proof = TlogProof(release.index, hashes, newest.checkpoint, release.extra)
        (forged / "log" / PROOF[ref]).write_bytes(proof.serialize())
    # ... and the log's genuine entries from the oldest proven one on (also public)
    first = min(_proof(forged, ref).index for ref in PROOF)
    served = chain.admin._request("GET", "/v1/log/entries", params={"start": first, "end": size})
    entries = [base64.b64decode(e["entry"]) for e in served.json()["entries"]]
    (forged / "log" / "entries").write_bytes(write_entries(first, entries))
    verdict = verify_evidence(forged, registry_key=_registry_key(live), trust=_auditor(chain))
    failures = _failed(verdict)
    for ref in PROOF:
        assert any(
            f.startswith(
                f"FAIL log: {ref}: the log records a later event about it than the one "
                f"proven (entry "
            )
            and ", revocation, " in f
            for f in failures
        ), failures
    # The entries file cannot be trimmed to before the revocations either.
    start, entries = parse_entries((forged / "log" / "entries").read_bytes())
    (forged / "log" / "entries").write_bytes(write_entries(start, entries[:-2]))
    failures = _failed(verify_evidence(forged, registry_key=_registry_key(live),
                                       trust=_auditor(chain)))  # fmt: skip
    assert any("do not reach the checkpoint's size" in f for f in failures), failures
    # Nor can an entry be rewritten (a revocation renamed into something else).
    changed = [e.replace(b'"revocation"', b'"annotation"') for e in entries]
    (forged / "log" / "entries").write_bytes(write_entries(start, changed))
    failures = _failed(verify_evidence(forged, registry_key=_registry_key(live),
                                       trust=_auditor(chain)))  # fmt: skip
    assert any("do not rebuild the checkpoint's root" in f for f in failures), failures
    (forged / "log" / "entries").unlink()
    failures = _failed(verify_evidence(forged, registry_key=_registry_key(live),
                                       trust=_auditor(chain)))  # fmt: skip
    assert any("log/entries is missing" in f for f in failures), failures


@embedded
def test_witnesses_an_auditor_requires_and_a_stolen_registry_key(
    chain: Chain, live: Live, tmp_path: Path
) -> None:
    exported = export_evidence(chain.admin, ROOT, tmp_path / "export")
    anchor, auditor = _registry_key(live), _auditor(chain)
    witness = note.NoteSigner(
        "witness.example/w1", ed25519.Ed25519PrivateKey.generate(), note.SIG_COSIGNATURE_V1
    )
    other = note.NoteSigner(
        "witness.example/w2", ed25519.Ed25519PrivateKey.generate(), note.SIG_COSIGNATURE_V1
    )
    needs = {"witnesses": [witness.verifier], "witness_threshold": 1}

    # Not cosigned: the requirement is unmet, named.
    failures = _failed(verify_evidence(exported, registry_key=anchor, trust=auditor, **needs))  # type: ignore[arg-type]
    assert failures[0].startswith("FAIL log checkpoint: does not verify with the log key ")
    assert "0 of the 1 required witness cosignatures (missing: witness.example/w1)" in failures[0]

    # Cosigned by the witness: verified, and said.
    cosigned = tmp_path / "cosigned"
    shutil.copytree(exported, cosigned)
    _rewrite(cosigned, lambda p: _cosigned(p, witness))
    verdict = verify_evidence(cosigned, registry_key=anchor, trust=auditor, **needs)  # type: ignore[arg-type]
    assert verdict.ok, _failed(verdict)
    [head] = [c for c in verdict.checks if c.link == "log checkpoint"]
    assert "cosigned by witness.example/w1 (1 of the witnesses you named required)" in head.message
    # Another witness's cosignature does not count for this one.
    both = {"witnesses": [witness.verifier, other.verifier], "witness_threshold": 2}
    failures = _failed(verify_evidence(cosigned, registry_key=anchor, trust=auditor, **both))  # type: ignore[arg-type]
    assert "1 of the 2 required witness cosignatures (missing: witness.example/w2)" in failures[0]

    # A forged cosignature under the witness's name and key ID.
    forged = tmp_path / "forged"
    shutil.copytree(exported, forged)

    def forge(proof: TlogProof) -> TlogProof:
        line = witness.signature_line("another checkpoint\n1\n" + "A" * 43 + "=\n")
        return TlogProof(proof.index, proof.hashes, proof.checkpoint + line, proof.extra)

    _rewrite(forged, forge)
    failures = _failed(verify_evidence(forged, registry_key=anchor, trust=auditor, **needs))  # type: ignore[arg-type]
    assert "the signature by witness.example/w1" in failures[0] and "does not verify" in failures[0]

    # From the command line: --witness NAME=KEYFILE (its vkey), --witness-threshold K.
    (tmp_path / "w1.vkey").write_text(witness.verifier.vkey + "\n")
    trust = _auditor_trust(chain, tmp_path / "auditor", (exported / "registry.pub").read_bytes())
    flags = ["--trust", str(trust), "--witness", f"witness.example/w1={tmp_path / 'w1.vkey'}"]
    ok = run_cli("verify-evidence", str(cosigned), *flags, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "cosigned by witness.example/w1" in ok.stdout
    refused = run_cli("verify-evidence", str(exported), *flags, cwd=tmp_path)
    assert refused.returncode == 1 and "FAIL log checkpoint:" in refused.stdout, refused.stdout
    relaxed = run_cli("verify-evidence", str(exported), *flags, "--witness-threshold", "0",
                      cwd=tmp_path)  # fmt: skip
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    too_many = run_cli("verify-evidence", str(exported), *flags, "--witness-threshold", "2",
                       cwd=tmp_path)  # fmt: skip
    assert too_many.returncode == 1 and "only 1 witness(es) named" in too_many.stderr
    # --without-log from the command line: a proof deleted is accepted, and said.
    (exported / "log" / PROOF[DATASET]).unlink()
    strict = run_cli("verify-evidence", str(exported), "--trust", str(trust), cwd=tmp_path)
    assert strict.returncode == 1 and f"FAIL log: {DATASET}: no proof" in strict.stdout
    lenient = run_cli("verify-evidence", str(exported), "--trust", str(trust), "--without-log",
                      cwd=tmp_path)  # fmt: skip
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "accepted (--without-log)" in lenient.stdout

    # A thief of the registry key vouches for a log of its own, whose tree records a release
    # it signed: every check of the export holds against the registry key alone (the
    # limit docs/transparency-log.md names), and fails once a witness is required.
    stolen = load_registry_signer(live.settings)
    fake_log = note.NoteSigner("attacker/log", ed25519.Ed25519PrivateKey.generate())
    fork = tmp_path / "fork"
    shutil.copytree(cosigned, fork)
    binding = make_statement(
        name="log:attacker/log",
        root_digest=hashlib.sha256(fake_log.verifier.vkey.encode()).hexdigest(),
        predicate_type=LOG_KEY,
        predicate={"origin": "attacker/log", "vkey": fake_log.verifier.vkey},
    )
    (fork / "log" / "log-key.sigstore.json").write_bytes(stolen.sign(binding).raw)
    (fork / "log" / "log.vkey").write_text(fake_log.verifier.vkey + "\n")
    entries = [_proof(cosigned, ref).extra for ref in (DATASET, ROOT)]
    assert all(e is not None for e in entries)
    tree = tlog.MemoryTree(tlog.leaf_hash(e) for e in entries if e is not None)
    head = note.Checkpoint("attacker/log", 2, tree.root(), _checkpoint_time(cosigned))
    signed = note.sign_checkpoint(head, fake_log)
    for index, ref in enumerate((DATASET, ROOT)):
        proof = TlogProof(index, tuple(tree.inclusion_proof(index)), signed, entries[index])
        (fork / "log" / PROOF[ref]).write_bytes(proof.serialize())
    (fork / "log" / "entries").write_bytes(write_entries(0, [e for e in entries if e]))
    alone = verify_evidence(fork, registry_key=anchor, trust=auditor)
    assert alone.ok, _failed(alone)
    failures = _failed(verify_evidence(fork, registry_key=anchor, trust=auditor, **needs))  # type: ignore[arg-type]
    assert "0 of the 1 required witness cosignatures" in failures[0], failures
    # The witness's genuine cosignature, of the registry's real tree, does not carry over.
    genuine, _ = note.parse_note(_proof(exported, ROOT).checkpoint)
    replayed = signed + note.cosign(genuine, witness)
    for index, ref in enumerate((DATASET, ROOT)):
        proof = TlogProof(index, tuple(tree.inclusion_proof(index)), replayed, entries[index])
        (fork / "log" / PROOF[ref]).write_bytes(proof.serialize())
    failures = _failed(verify_evidence(fork, registry_key=anchor, trust=auditor, **needs))  # type: ignore[arg-type]
    assert "the signature by witness.example/w1" in failures[0], failures


def _checkpoint_time(directory: Path) -> int:
    proof = _proof(directory, ROOT)
    stamp = note.Checkpoint.parse(note.parse_note(proof.checkpoint)[0]).timestamp
    assert stamp is not None
    return stamp
