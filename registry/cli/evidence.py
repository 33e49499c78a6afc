"""Evidence: signing keys, attestations, offline signature and evidence checks, local scans,
export and online verification."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from attest.keys import KeyType
from registry.cli import reads
from registry.cli.common import (
    Styled,
    Table,
    apply_log_options,
    chosen_signer,
    connect,
    err,
    fatal,
    out,
    print_json,
    print_table,
    printable,
)
from registry.cli.logflags import MaxAgeOption, WitnessOption, WitnessThresholdOption


def keygen(
    prefix: Annotated[Path, typer.Argument(help="Writes PREFIX.key (0600) and PREFIX.pub.")],
    key_type: Annotated[KeyType, typer.Option("--type", help="Key type.")] = KeyType.ECDSA_P256,
) -> None:
    """Generate a signing key pair (ECDSA P-256 by default)."""
    from attest import keys

    password = os.environ.get("MODELSEAL_SIGN_KEY_PASSWORD")
    try:
        private, public = keys.write_keypair(
            prefix, keys.generate(key_type), password.encode() if password else None
        )
    except FileExistsError:
        fatal(f"{prefix}.key exists; refusing to overwrite a private key")
    fingerprint = keys.fingerprint(keys.load_public(public.read_bytes()))
    err.print(f"wrote {private} (mode 0600) and {public}")
    sys.stdout.write(f"sha256:{fingerprint}\n")


def attest(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    evaluation: Annotated[
        Path | None,
        typer.Option(
            help="JSON file: a flat object of metric name to number, e.g. "
            '{"accuracy": 0.93}; signed as the test-result statement the release gate reads.'
        ),
    ] = None,
    predicate_type: Annotated[
        str | None, typer.Option(help="Any other statement: its predicateType URI.")
    ] = None,
    predicate: Annotated[
        Path | None, typer.Option(help="With --predicate-type: JSON file holding the predicate.")
    ] = None,
    sign_key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    sigstore: Annotated[bool, typer.Option("--sigstore", help="Sign keylessly.")] = False,
    sigstore_trust_config: Annotated[Path | None, typer.Option(help="Trust config.")] = None,
) -> None:
    """Sign a statement about a version and attach it: evaluation metrics (--evaluation), or any
    predicate (--predicate-type with --predicate)."""
    from attest.errors import AttestError
    from attest.evaluation import check_evaluation_predicate, evaluation_predicate
    from attest.jsonsafe import loads
    from attest.predicates import TEST_RESULT
    from attest.statement import make_statement

    if (evaluation is None) == (predicate_type is None and predicate is None):
        fatal("attest needs either --evaluation METRICS.json or --predicate-type URI "
              "--predicate FILE")  # fmt: skip
    if evaluation is None and (predicate_type is None or predicate is None):
        fatal("--predicate-type and --predicate go together")
    signer = chosen_signer(sign_key, sigstore, sigstore_trust_config)
    if signer is None:
        fatal("attest needs --sign-key FILE or --sigstore")
    source = evaluation or predicate
    assert source is not None
    try:
        body = loads(source.read_bytes(), what=str(source))
        if evaluation is not None:
            body = evaluation_predicate(body)
            predicate_type = TEST_RESULT
        elif not isinstance(body, dict):
            fatal(f"{source} must hold a JSON object")
        elif predicate_type == TEST_RESULT:
            check_evaluation_predicate(body)
    except OSError as exc:
        fatal(f"cannot read {source}: {exc.strerror or exc}")
    except AttestError as exc:
        fatal(f"{source}: {exc}")
    assert predicate_type is not None
    with connect() as client:
        version = client.show(ref)
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=predicate_type,
            predicate=body,
        )
        record = client.attach(
            f"{version.namespace}/{version.name}@{version.version}", signer.sign(statement).raw
        )
    err.print(f"attached {record.predicate_type} signed by {record.signer}")
    sys.stdout.write(printable(record.bundle_digest) + "\n")


def attestations(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION, @ALIAS or @sha256:<digest>")],
    predicate_type: Annotated[str | None, typer.Option(help="Only this predicateType.")] = None,
    save: Annotated[
        Path | None, typer.Option(help="Write each bundle to DIR/<id>.sigstore.json.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the evidence attached to a version (optionally saving the exact bundles)."""
    reads.attestations(ref, predicate_type, save, as_json)


def verify_signature(
    directory: Annotated[Path, typer.Argument(help="A local copy of the files.")],
    signature: Annotated[Path, typer.Option(help="The OMS bundle (model.sig).")],
    key: Annotated[
        list[Path] | None, typer.Option(help="A trusted PEM public key (repeatable).")
    ] = None,
    sigstore_issuer: Annotated[str | None, typer.Option(help="Trusted OIDC issuer.")] = None,
    sigstore_identity: Annotated[str | None, typer.Option(help="Trusted identity.")] = None,
    trusted_root: Annotated[
        Path | None, typer.Option(help="Sigstore trusted_root.json (default: shipped copy).")
    ] = None,
) -> None:
    """Offline: check that an OMS bundle by a trusted signer covers exactly DIRECTORY."""
    from attest.bundle import Bundle
    from attest.files import verify_directory
    from attest.keys import TrustedKey
    from attest.verifying import SigstoreIdentity, Verifier

    trusted = [TrustedKey.from_pem(p.name, p.read_bytes()) for p in key or []]
    identities = []
    if sigstore_issuer and sigstore_identity:
        identities.append(SigstoreIdentity("sigstore", sigstore_issuer, sigstore_identity))
    verifier = Verifier(keys=trusted, identities=identities, trusted_root=trusted_root)
    verified = verify_directory(directory, Bundle.parse(signature.read_bytes()), verifier)
    err.print(f"verified: {len(verified.statement.predicate['resources'])} files signed by "
              f"{verified.signer} ({verified.signer_id})")  # fmt: skip
    sys.stdout.write(f"sha256:{verified.statement.subject.sha256}\n")


def scan(
    path: Annotated[Path, typer.Argument(help="A model directory or a single file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Scan model files locally, as the registry does on push. Exit 1 unless every file is clean
    (unsafe, unscannable and unknown files all count)."""
    from attest.errors import AttestError
    from attest.scan import ScanReport, ScanVerdict, scan_directory, scan_stream

    try:
        if path.is_dir() and not path.is_symlink():
            report = scan_directory(path)
        elif path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                report = ScanReport((scan_stream(path.name, handle, path.stat().st_size),))
        else:
            fatal(f"{path} is not a regular file or directory")
    except (AttestError, OSError) as exc:
        fatal(f"cannot scan {path}: {exc}")
    if as_json:
        print_json(report.to_json())
    else:
        colours = {ScanVerdict.CLEAN: "green", ScanVerdict.UNKNOWN: "yellow",
                   ScanVerdict.UNSCANNABLE: "magenta", ScanVerdict.UNSAFE: "red"}  # fmt: skip
        table = Table("path", "format", "verdict", "findings")
        for f in report.files:
            style = "yellow" if f.clean and f.pickle else colours[f.verdict]
            verdict = Styled(f"{f.verdict}{' (pickle)' if f.pickle else ''}", style)
            table.add_row(f.path, str(f.format), verdict, "\n".join(f.findings))
        print_table(table)
    if not report.clean:
        counts = {v: sum(f.verdict is v for f in report.files) for v in ScanVerdict if v.severity}
        detail = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        err.print(f"{len(report.not_clean)} file(s) not clean ({detail})")
        raise typer.Exit(1)


def export(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    to: Annotated[Path, typer.Option("--to", help="Directory to create (must not exist).")],
    with_files: Annotated[
        bool, typer.Option("--with-files", help="Also pull the files into DIR/files.")
    ] = False,
    in_toto: Annotated[
        bool, typer.Option("--in-toto", help="Also write an in-toto layout and links.")
    ] = False,
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: pinned).")
    ] = None,
) -> None:
    """Write the version's whole evidence chain for offline verification (verify-evidence)."""
    from registry.sdk.export import export_evidence

    with connect() as client:
        key = registry_key.read_bytes() if registry_key else None
        written = export_evidence(client, ref, to, with_files=with_files, in_toto=in_toto,
                                  registry_key=key)  # fmt: skip
    count = len(list((written / "evidence").glob("*.sigstore.json")))
    proofs = len(list((written / "log").glob("*.tlog-proof")))
    err.print(f"exported {ref} to {written} ({count} bundles, {proofs} transparency-log proofs)")


def _print_verdict(verdict: Any) -> None:
    """One line per check, then the verdict. Exit 0 only for VERIFIED (every link holds against
    keys the caller brought); 3 for UNANCHORED (holds only against the export's own keys)."""
    for check in verdict.checks:
        colour = "green" if check.ok else "red"
        word = "ok  " if check.ok else "FAIL"
        link, message = (escape(printable(t, lines=False)) for t in (check.link, check.message))
        out.print(f"[{colour}]{word}[/{colour}] {link}: {message}",
                  highlight=False, markup=True, soft_wrap=True)  # fmt: skip
    if verdict.ok:
        out.print("[green]VERIFIED[/green]", markup=True)
        return
    if verdict.holds and not verdict.anchored:
        out.print(
            "[yellow]UNANCHORED[/yellow]: every link holds, but only against what the export "
            f"itself carries: {escape(printable('; '.join(verdict.unanchored), lines=False))}",
            markup=True, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(3)
    unanchored = "" if verdict.anchored else " (UNANCHORED)"
    out.print(f"[red]NOT VERIFIED[/red]{unanchored}", markup=True)
    raise typer.Exit(1)


def _auditor_inputs(trust: Path | None, policy: Path | None) -> tuple[Any, str | None]:
    from attest.trust import parse_trust

    parsed = parse_trust(trust.read_text(), trust.parent) if trust is not None else None
    return parsed, policy.read_text() if policy is not None else None


def _registry_anchor(
    registry_key: Path | None, registry_url: str | None, trusted: Any
) -> tuple[Any, str]:
    """The registry key the auditor brings: ``--registry-key``, else the key pinned for
    ``--registry URL``, else (when the trust file names no ``registry:``) the one registry key
    this machine pinned. The export's own ``registry`` URL is unsigned: it never chooses among
    several pins, nor supplies a key."""
    from attest.keys import TrustedKey
    from registry.sdk.pins import PinStore

    if registry_key is not None:
        try:
            key = TrustedKey.from_pem("registry", registry_key.read_bytes())
        except ValueError as exc:
            fatal(f"--registry-key {registry_key}: not a PEM public key ({exc})")
        return key, f"--registry-key {registry_key}"
    pins = PinStore()
    try:
        pinned = pins.registry_keys()
    except ValueError as exc:
        fatal(f"{pins.path}: {exc}")
    if registry_url is not None:
        if registry_url not in pinned:
            known = ", ".join(sorted(pinned)) or "none"
            fatal(f"no registry key is pinned for {registry_url} in {pins.path} (pinned: "
                  f"{known}); pass --registry-key FILE")  # fmt: skip
        return (TrustedKey.from_pem("registry", pinned[registry_url].encode()),
                f"the key pinned for {registry_url} ({pins.path})")  # fmt: skip
    if trusted is not None and trusted.registry_key is not None:
        return None, ""
    keys = {TrustedKey.from_pem("registry", pem.encode()).fingerprint: (url, pem)
            for url, pem in sorted(pinned.items())}  # fmt: skip
    if len(keys) > 1:
        fatal(f"{len(keys)} registry keys are pinned on this machine ({', '.join(sorted(pinned))}) "
              "and the export's manifest.json, which names its registry, is signed by nothing: "
              "say which one anchors it with --registry-key FILE or --registry URL")  # fmt: skip
    if not keys:
        return None, ""
    [(url, pem)] = keys.values()
    source = f"the key pinned for {url} ({pins.path}), the only registry key pinned here"
    return TrustedKey.from_pem("registry", pem.encode()), source


def verify_evidence_cmd(
    directory: Annotated[
        Path,
        typer.Argument(
            help="A directory written by `modelseal export`, or the .tar.gz of one the web "
            "console downloads (unpacked into a private temporary directory, links refused)."
        ),
    ],
    trust: Annotated[
        Path | None,
        typer.Option(
            help="Your trust.yaml (signers you accept, registry key). Without it the "
            "export's signer identities are taken as given: at most UNANCHORED."
        ),
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Your policy.yaml (e.g. stricter).")] = None,
    registry_key: Annotated[
        Path | None,
        typer.Option(
            help="The registry's public key (PEM) to anchor on; default: your trust file's "
            "registry:, else the one registry key pinned here. Never the export's own."
        ),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="The registry URL whose pinned key anchors (needed when several are pinned; "
            "the export's own manifest.json never chooses).",
        ),
    ] = None,
    trust_export_keys: Annotated[
        bool,
        typer.Option(
            "--trust-export-keys",
            help="No key of yours: check against the export's own registry.pub and trust.yaml. "
            "Reported UNANCHORED (exit 3), never VERIFIED.",
        ),
    ] = False,
    without_audit: Annotated[
        bool,
        typer.Option(
            "--without-audit",
            help="Accept an export without audit/ (a deployer's): revocations go unchecked.",
        ),
    ] = False,
    without_log: Annotated[
        bool,
        typer.Option(
            "--without-log",
            help="Accept released versions without a proof in the transparency log (released "
            "before the registry had one): their release and any revocation go unchecked by "
            "the log. The proofs the export holds are still checked.",
        ),
    ] = False,
    witness: WitnessOption = None,
    witness_threshold: WitnessThresholdOption = None,
) -> None:
    """Re-run the whole release gate from DIR alone, offline, against keys you bring; exit 0
    only if every link holds (1: a link broke or no registry key anchors it; 3: UNANCHORED).
    The transparency log's proofs (log/) must show each released version's release, under the
    log key your registry key vouches for, in one checkpoint (cosigned by the --witness keys
    you name)."""
    import tempfile

    from attest.evidence import verify_evidence
    from attest.export import unpack

    trusted, policy_text = _auditor_inputs(trust, policy)
    key, source = _registry_anchor(registry_key, registry_url, trusted)
    witnesses, threshold = _witnesses(witness, witness_threshold)
    with tempfile.TemporaryDirectory(prefix="modelseal-evidence-") as tmp:
        if directory.is_file():
            directory = unpack(directory, Path(tmp))
        elif not directory.is_dir():
            fatal(f"{directory}: no such directory or archive")
        verdict = verify_evidence(directory, trust=trusted, policy_text=policy_text,
                                  registry_key=key, registry_key_source=source,
                                  trust_export_keys=trust_export_keys,
                                  require_audit=not without_audit, require_log=not without_log,
                                  witnesses=witnesses, witness_threshold=threshold)  # fmt: skip
    _print_verdict(verdict)


def _witnesses(specs: list[str] | None, threshold: int | None) -> tuple[list[Any], int]:
    """The witnesses whose cosignatures the export's log checkpoint must carry, and how many:
    ``--witness``/``--witness-threshold``, else ``MODELSEAL_WITNESSES`` and
    ``MODELSEAL_WITNESS_THRESHOLD`` (default: every witness named)."""
    from registry.sdk.logcheck import (
        DEFAULT_LOG_MAX_AGE,
        check_requirements,
        load_witness,
        settings_from_env,
    )

    settings: dict[str, Any] = {}
    try:
        if specs:
            settings["witnesses"] = [load_witness(w) for w in specs]
        if threshold is not None:
            settings["witness_threshold"] = threshold
        settings_from_env(settings)
        witnesses = list(settings.get("witnesses", []))
        k = check_requirements(DEFAULT_LOG_MAX_AGE, witnesses, settings.get("witness_threshold"))
    except ValueError as exc:
        fatal(str(exc))
    return witnesses, k


def verify(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    trust: Annotated[Path | None, typer.Option(help="Your trust.yaml.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Your policy.yaml.")] = None,
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: pinned).")
    ] = None,
    max_age: MaxAgeOption = None,
    witness: WitnessOption = None,
    witness_threshold: WitnessThresholdOption = None,
) -> None:
    """Fetch the version's evidence and verify it here, without trusting the server's verdict.
    First the version's current signed status: its audit-log head must extend the newest
    checkpoint this client saw (a rolled-back log is refused, naming both); and the
    transparency log: the version's newest status event (its release, naming the release
    statement served) proven in a fresh checkpoint that extends the newest one seen."""
    from registry.sdk.export import verify_online
    from registry.sdk.logcheck import verify_version_log

    trusted, policy_text = _auditor_inputs(trust, policy)
    with connect() as client:
        apply_log_options(client, max_age, witness, witness_threshold)
        key = registry_key.read_bytes() if registry_key else None
        shown = client.show(ref)
        client.version_status(shown, registry_key=key)
        verify_version_log(client, ref, shown, registry_key=key)
        verdict = verify_online(client, ref, trust=trusted, policy_text=policy_text,
                                registry_key=key)  # fmt: skip
    _print_verdict(verdict)
